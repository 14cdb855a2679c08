"""Benchmark: CPU time and garbage collection per hot list request, in process.

    .venv/bin/python -m bench.hot_list [--stages legacy,shadow] [--requests 1000]
    .venv/bin/py-spy record --native -o var/bench/hot-list.svg -- \\
        .venv/bin/python -m bench.hot_list --stages shadow --requests 2000

For each stage the app is started in process on the benchmark's quick database (as
``bench.opcodes`` does: the flags file serving that stage to the first clinic, the
hot list query of 100 rows with both field sets, a warm-up), then ``--requests``
requests are sent one at a time, on uvloop as the service runs. Prints, per stage,
the process's CPU time per request (mean and median: the mean carries the garbage
collector's pauses, the median does not), and what Python's cyclic garbage
collector did meanwhile: collections per generation, their total time per request
and the objects they freed per request. Objects freed only by the collector are
objects some reference cycle kept alive past the end of their request.

It is also the workload to profile: run under ``py-spy record --native`` (a
sampling profiler that sees C extensions and the interpreter as well as Python),
it spends nearly all its time in the service's request path.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop

from appointments.stages import Stage
from bench.graphql import load_fixture
from bench.opcodes import hot_list_app, hot_list_parser, quick_database


@dataclass
class Collections:
    """What the cyclic garbage collector did, per generation."""

    count: dict[int, int] = field(default_factory=lambda: {0: 0, 1: 0, 2: 0})
    seconds: dict[int, float] = field(default_factory=lambda: {0: 0.0, 1: 0.0, 2: 0.0})
    freed: dict[int, int] = field(default_factory=lambda: {0: 0, 1: 0, 2: 0})


@contextmanager
def watching_collections(seen: Collections) -> Iterator[None]:
    started: list[float] = []

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started.append(time.perf_counter())
            return
        generation = info["generation"]
        seen.count[generation] += 1
        seen.seconds[generation] += time.perf_counter() - started.pop()
        seen.freed[generation] += info["collected"]

    gc.callbacks.append(callback)
    try:
        yield
    finally:
        gc.callbacks.remove(callback)


@dataclass
class StageFigures:
    stage: Stage
    cpu_seconds: list[float]
    collections: Collections


async def measure(database_url: str, clinic_id: str, stage: Stage, requests: int) -> StageFigures:
    collections = Collections()
    cpu_seconds: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-hot-list-") as directory:
        async with hot_list_app(database_url, Path(directory), clinic_id, stage) as ask:
            with watching_collections(collections):
                for _ in range(requests):
                    started = time.process_time()
                    await ask()
                    cpu_seconds.append(time.process_time() - started)
    return StageFigures(stage, cpu_seconds, collections)


def report(figures: StageFigures) -> str:
    requests = len(figures.cpu_seconds)
    seen = figures.collections
    per_generation = "  ".join(
        f"gen{generation} {seen.count[generation]:>4}" for generation in sorted(seen.count)
    )
    gc_ms = sum(seen.seconds.values()) / requests * 1000
    freed = sum(seen.freed.values()) / requests
    return (
        f"{figures.stage.value:<11} {statistics.fmean(figures.cpu_seconds) * 1000:>9.2f} "
        f"{statistics.median(figures.cpu_seconds) * 1000:>9.2f}   {per_generation}  "
        f"{gc_ms:>9.3f} {freed:>10.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = hot_list_parser("python -m bench.hot_list", __doc__)
    parser.add_argument("--stages", default="legacy,shadow", help="comma-separated stages")
    parser.add_argument("--requests", type=int, default=1000, help="measured requests per stage")
    arguments = parser.parse_args(argv)
    database_url = arguments.database_url or quick_database()
    clinic_id = load_fixture(database_url).clinic_id
    print(f"hot list query, clinic {clinic_id}, {arguments.requests} requests per stage")
    print(
        f"{'stage':<11} {'CPU ms':>9} {'median':>9}   {'collections':<30} "
        f"{'GC ms/req':>9} {'freed/req':>10}"
    )
    for name in arguments.stages.split(","):
        # uvloop, as the service runs under uvicorn (--loop uvloop).
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            figures = runner.run(
                measure(database_url, clinic_id, Stage.parse(name), arguments.requests)
            )
        print(report(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
