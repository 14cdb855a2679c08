"""Benchmark: Python bytecodes executed per hot list request, per stage (deterministic).

    .venv/bin/python -m bench.opcodes [--stages legacy,shadow] [--top 25]
    .venv/bin/python -m bench.opcodes --database-url postgresql+psycopg://.../clinic_bench

On a shared machine the wall time of identical requests moves by tens of percent
from minute to minute, so a change worth a few percent cannot be seen in it. The
number of bytecodes the interpreter executes for one request moves by a few dozen
in a million: it measures the service's Python work exactly, and that is where a
list spends most of its time (see README, Performance). It does not see time
spent in C (psycopg, orjson, SQLAlchemy's compiled parts), in other threads
(aiosqlite runs SQLite in one) or in PostgreSQL; use the wrk benchmark
(``bench.graphql``) for those.

By default the benchmark's quick PostgreSQL database is read (``clinic_bench_quick``
on ``BENCH_POSTGRES_URL``'s server, seeded by ``bench.graphql`` on first use: 20,000
consistent appointments); ``--database-url`` reads another migrated, seeded one. The
clinic is the first by name, as ``bench.graphql`` reads. For each stage the app is
started in process with the flags file serving that stage to the clinic, the hot list
query (100 rows, both field sets, as the frontend asks for it) is sent a few times to
warm caches, then counted over ``--requests`` requests. Prints bytecodes per request
per stage and the ratio to ``legacy``; ``--top N`` also prints the N functions
that execute the most bytecodes in the last stage measured.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import sysconfig
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from appointments.models import UserRole
from appointments.stages import Stage
from bench.backfill import bench_admin
from bench.graphql import (
    DEFAULT_URL,
    QUICK_DATABASE,
    QUICK_VOLUME,
    in_process_settings,
    load_fixture,
    prepare_database,
    set_stage,
)
from server.app import create_app
from server.auth import mint_token

HOT_QUERY = """
query Hot($clinicId: ID!) {
  appointments(first: 100, filter: {clinicId: $clinicId}) {
    edges {
      node {
        id startsAt status
        doctor { name }
        patient { fullName }
        clinicDoctor { active user { name } }
        clinicPatient { patient { fullName } }
      }
    }
  }
}
"""
"""The hot list: a clinic's first 100 appointments with both field sets."""

WARM_UP = 10


@dataclass
class BytecodeCount:
    """Bytecodes executed while counting, in total and per function (file, name)."""

    total: int = 0
    by_function: Counter[tuple[str, str]] = field(default_factory=Counter)


@contextmanager
def counting_bytecodes(count: BytecodeCount) -> Iterator[None]:
    """Count the bytecodes this thread executes in frames entered inside the block."""

    def trace(frame: FrameType, event: str, _arg: Any) -> Any:
        frame.f_trace_opcodes = True
        if event == "opcode":
            count.total += 1
            code = frame.f_code
            count.by_function[(code.co_filename, code.co_name)] += 1
        return trace

    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        yield
    finally:
        sys.settrace(previous)


async def count_requests(
    ask: Callable[[], Awaitable[None]], requests: int
) -> tuple[list[int], BytecodeCount]:
    """Bytecodes of each of ``requests`` calls of ``ask``, and all of them per function."""
    totals: list[int] = []
    combined = BytecodeCount()
    for _ in range(requests):
        one = BytecodeCount()
        with counting_bytecodes(one):
            await ask()
        totals.append(one.total)
        combined.total += one.total
        combined.by_function.update(one.by_function)
    return totals, combined


@asynccontextmanager
async def admin_client(
    database_url: str, flags_file: Path, clinic_id: str, stage: Stage, others: Sequence[str] = ()
) -> AsyncIterator[httpx.AsyncClient]:
    """The app started in process with the flags file serving ``stage`` to the clinic (and
    ``others`` in mixed stages, ``bench.graphql.set_stage``), and a client sending an
    admin's token to it."""
    settings = in_process_settings(database_url, flags_file, secrets.token_urlsafe(32))
    set_stage(flags_file, clinic_id, stage, others)
    token = mint_token(settings, await bench_admin(database_url), UserRole.ADMIN, hours=1)
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://bench",
            headers={"Authorization": f"Bearer {token}"},
        ) as client,
    ):
        yield client


@asynccontextmanager
async def hot_list_app(
    database_url: str, directory: Path, clinic_id: str, stage: Stage
) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """The app started in process with the flags file serving ``stage`` to the clinic,
    warmed up; yields a function sending the hot list query once (and checking the
    answer and the stage served)."""
    flags_file = directory / f"flags-{stage.value}.json"
    payload = {"query": HOT_QUERY, "variables": {"clinicId": clinic_id}}
    async with admin_client(database_url, flags_file, clinic_id, stage) as client:

        async def ask() -> None:
            response = await client.post("/graphql", json=payload)
            answer = response.json()
            if response.status_code != 200 or "errors" in answer:
                raise RuntimeError(f"the hot query failed: {response.text[:500]}")
            served = answer.get("extensions", {}).get("migration", {}).get("stages", {})
            if served.get(clinic_id) != stage.value:
                raise RuntimeError(f"the app served {served}, not {stage.value}")

        for _ in range(WARM_UP):
            await ask()
        yield ask


async def measure_stage(
    database_url: str, directory: Path, clinic_id: str, stage: Stage, requests: int
) -> tuple[list[int], BytecodeCount]:
    async with hot_list_app(database_url, directory, clinic_id, stage) as ask:
        return await count_requests(ask, requests)


def quick_database() -> str:
    """The benchmark's quick database on ``BENCH_POSTGRES_URL``'s server, seeded on first use."""
    return prepare_database(
        os.environ.get("BENCH_POSTGRES_URL", DEFAULT_URL),
        QUICK_DATABASE,
        QUICK_VOLUME,
        reseed=False,
    )


def _short(path: str) -> str:
    if "/site-packages/" in path:
        return path.split("/site-packages/", 1)[1]
    stdlib = sysconfig.get_paths()["stdlib"] + "/"
    if path.startswith(stdlib):
        return "stdlib/" + path.removeprefix(stdlib)
    return path.removeprefix(str(Path(__file__).resolve().parent.parent) + "/")


def hot_list_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """The options every in-process hot list benchmark takes."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--database-url", help="a migrated, seeded database (default: clinic_bench_quick)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = hot_list_parser("python -m bench.opcodes", __doc__)
    parser.add_argument(
        "--stages",
        default="legacy,dual_write,shadow,live,complete",
        help="comma-separated stages to measure",
    )
    parser.add_argument("--requests", type=int, default=3, help="counted requests per stage")
    parser.add_argument("--top", type=int, default=0, help="functions to list for the last stage")
    arguments = parser.parse_args(argv)
    stages = [Stage.parse(name) for name in arguments.stages.split(",")]
    database_url = arguments.database_url or quick_database()
    clinic_id = load_fixture(database_url).clinic_id
    asyncio.run(report(database_url, clinic_id, stages, arguments.requests, arguments.top))
    return 0


async def report(
    database_url: str, clinic_id: str, stages: list[Stage], requests: int, top: int
) -> None:
    print(f"hot list query, clinic {clinic_id}, {requests} counted requests per stage")
    print(f"{'stage':<11} {'bytecodes per request':>22} {'vs legacy':>10}")
    results: dict[Stage, int] = {}
    combined = BytecodeCount()
    with tempfile.TemporaryDirectory(prefix="bench-opcodes-") as temporary:
        for stage in stages:
            totals, combined = await measure_stage(
                database_url, Path(temporary), clinic_id, stage, requests
            )
            results[stage] = min(totals)
            base = results.get(Stage.LEGACY)
            ratio = f"{results[stage] / base:10.3f}" if base else f"{'':>10}"
            spread = max(totals) - min(totals)
            print(f"{stage.value:<11} {results[stage]:>22,} {ratio}   (spread {spread:,})")
    if top:
        print(f"\nfunctions executing the most bytecodes ({stages[-1].value}, per request):")
        for (path, name), count in combined.by_function.most_common(top):
            share = count / combined.total * 100
            print(f"{count // requests:>10,} {share:5.1f}%  {_short(path)}:{name}")


if __name__ == "__main__":
    raise SystemExit(main())
