"""Pure helpers of the benchmarks: wrk output, Lua, settings (bench/graphql.py), the
bytecode counter (bench/opcodes.py), the garbage collector watch (bench/hot_list.py),
and short runs of the flag cost benchmark (bench/flag_cost.py, which reaches into the
file source's SDK client) and of the hot list benchmark on the test database."""

from __future__ import annotations

import gc

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.stages import Stage
from bench import flag_cost
from bench.backfill_writer import Latencies
from bench.graphql import STARTS, Scenario, parse_wrk
from bench.hot_list import Collections, measure, report, watching_collections
from bench.opcodes import BytecodeCount, count_requests, counting_bytecodes
from server.settings import Settings, SettingsError
from tests.conftest import World, consistent_links, insert_appointment

WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:8000/graphql
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    41.20ms   12.03ms 210.50ms   88.10%
    Req/Sec    97.40     14.20   130.00     71.00%
  Latency Distribution
     50%   38.91ms
     75%   44.02ms
     90%   52.30ms
     99%    1.02s
  1948 requests in 10.01s, 21.45MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 4
Requests/sec:    194.61
Transfer/sec:      2.14MB
bad responses: 5
"""


def test_wrk_output_is_parsed_into_milliseconds_and_counts() -> None:
    result = parse_wrk(WRK_OUTPUT)

    assert result.requests_per_second == pytest.approx(194.61)
    assert result.p50_ms == pytest.approx(38.91)
    assert result.p99_ms == pytest.approx(1020.0)
    assert result.requests == 1948
    assert (result.socket_errors, result.non_2xx, result.bad) == (3, 4, 5)


def test_wrk_output_without_latency_distribution_is_refused() -> None:
    without = "\n".join(line for line in WRK_OUTPUT.splitlines() if "%   " not in line)

    with pytest.raises(ValueError, match="latency"):
        parse_wrk(without)


def test_create_script_fills_start_and_end_per_request() -> None:
    scenario = Scenario(
        "create",
        "http://127.0.0.1:1/graphql",
        "AppointmentSuccess",
        create_template='{"startsAt": "' + STARTS + '", "endsAt": "@@ENDS@@"}',
    )

    script = scenario.lua("token", base_epoch=1_893_456_000, stride=100_000)

    assert "[====[Bearer token]====]" in script
    assert '{ [====[{"startsAt": "]====], [====[", "endsAt": "]====], [====["}]====] }' in script
    assert "local base = 1893456000" in script


@pytest.mark.parametrize(("raw", "expected"), [("off", None), ("0", 0), ("12", 12), ("", 5)])
def test_prepare_threshold_setting(raw: str, expected: int | None) -> None:
    settings = Settings.from_environment({"CLINIC_DATABASE_PREPARE_THRESHOLD": raw})

    assert settings.database_prepare_threshold == expected


def test_prepare_threshold_setting_rejects_nonsense() -> None:
    with pytest.raises(SettingsError, match="CLINIC_DATABASE_PREPARE_THRESHOLD"):
        Settings.from_environment({"CLINIC_DATABASE_PREPARE_THRESHOLD": "-1"})


def _collatz_steps(start: int) -> int:
    steps = 0
    while start != 1:
        start = start // 2 if start % 2 == 0 else 3 * start + 1
        steps += 1
    return steps


def _twice(start: int) -> int:
    return _collatz_steps(start) + _collatz_steps(start + 1)


def test_the_bytecode_count_is_the_same_for_the_same_work_and_grows_with_it() -> None:
    counts = []
    for start in (27, 27, 97):
        count = BytecodeCount()
        with counting_bytecodes(count):
            _twice(start)
        counts.append(count)

    assert counts[0].total == counts[1].total > 0
    assert counts[2].total > counts[0].total  # 97 takes more steps than 27
    functions = {name for _, name in counts[0].by_function}
    assert {"_twice", "_collatz_steps"} <= functions
    assert sum(counts[0].by_function.values()) == counts[0].total


async def test_requests_are_counted_one_by_one_and_together() -> None:
    starts = iter((27, 27, 97))

    async def ask() -> None:
        _twice(next(starts))

    totals, combined = await count_requests(ask, 3)

    assert totals[0] == totals[1] < totals[2]
    assert combined.total == sum(totals)


def test_the_flag_cost_benchmark_times_every_layer(capsys: pytest.CaptureFixture[str]) -> None:
    assert flag_cost.main(["--clinics", "6", "--calls", "20", "--cold-calls", "2"]) == 0

    lines = capsys.readouterr().out.splitlines()
    timed = {line[:34].strip(): [float(value) for value in line[34:].split()] for line in lines[2:]}
    assert list(timed) == [
        "StageResolver, one per request",
        "LocalFileFlagSource.variant",
        "UnleashClient.get_variant",
        "os.stat of the flags file",
    ]
    assert all(len(values) == 2 and min(values) > 0 for values in timed.values())


def test_the_flag_cost_benchmark_times_one_clinic_by_pinned_clinics(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert flag_cost.main(["--pins", "3", "40", "--calls", "5", "--cold-calls", "1"]) == 0

    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    assert [(row[0], row[1]) for row in rows] == [
        (pins, clinic)
        for pins in ("3", "40")
        for clinic in ("pinned", "unpinned")
        for _ in range(3)
    ]
    assert all(float(row[-1]) > 0 and float(row[-2]) > 0 for row in rows)


def test_the_collection_watch_counts_what_the_collector_freed() -> None:
    seen = Collections()
    with watching_collections(seen):
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        gc.collect()
    gc.collect()

    assert seen.count[2] == 1
    assert seen.freed[2] >= 1
    assert seen.seconds[2] > 0


async def test_a_short_hot_list_run_reports_cpu_and_collections(
    database_url: str, sessions: async_sessionmaker[AsyncSession], world: World
) -> None:
    async with sessions() as session, session.begin():
        for hour in range(3):
            await insert_appointment(session, world, hour, **consistent_links(world))

    figures = await measure(database_url, str(world.clinic_a.id), Stage.SHADOW, requests=4)

    assert len(figures.cpu_seconds) == 4
    assert min(figures.cpu_seconds) > 0
    assert report(figures).startswith("shadow ")


def test_writer_latency_percentiles_are_nearest_rank() -> None:
    latencies = Latencies([n / 1000 for n in range(1, 201)])

    assert latencies.percentile(0.5) == 0.1
    assert latencies.percentile(0.99) == 0.198
    assert latencies.percentile(1.0) == 0.2
    assert "200 writes, p50 100.0 ms, p99 198.0 ms" in latencies.describe()
