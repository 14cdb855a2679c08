"""Pure helpers of the GraphQL benchmark (bench/graphql.py): wrk output, Lua, settings."""

from __future__ import annotations

import pytest

from bench.graphql import STARTS, Scenario, parse_wrk
from server.settings import Settings, SettingsError

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
