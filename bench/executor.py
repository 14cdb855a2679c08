"""Benchmark: the hot list query, graphql-core's stock executor against ``FastExecutor``.

    .venv/bin/python -m bench.executor [--rows 100] [--runs 300]

Seeds the demo data set into a throw-away SQLite file (``--rows`` appointments per
clinic), then runs, in this process, a clinic's first 100 appointments with both
field sets, as the frontend asks for them:

1. ``schema.execute`` with a fresh request context per run (fresh DataLoaders, so
   each run does its SQL). The time spent in SQL is measured apart (around every
   ``SerializedSession.run``), so "outside SQL" is the executor, the resolvers and
   the loaders' Python; "CPU time" is the process's (SQLite's thread included),
   which other processes' load disturbs less than wall time.
   Then again with one context reused per executor: the DataLoaders' caches are
   warm, so only the page query runs SQL, and what remains is mostly execution.
2. The whole request through the ASGI app (in-process HTTP client): parsing,
   validation, execution and the JSON response body.

Runs alternate between the two executors so drift affects both alike. Prints
medians (and the 10th/90th percentiles); asserts only that both executors give the
same answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import strawberry
from starlette.requests import Request

import migrations
from appointments.db import SerializedSession, create_engine, create_session_factory
from appointments.events import PendingEvents
from appointments.seed import DEMO_CLINICS, demo_clinic_stages, demo_id, seed_demo
from appointments.stages import Stage
from flags.document import build_document, write_document
from schema.schema import build_schema
from server.app import Services, create_app
from server.auth import DEMO_ADMIN
from server.context import RequestContext
from server.settings import Settings

T = TypeVar("T")

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


class SqlTimer:
    """Time spent inside one request's ``SerializedSession.run`` calls."""

    def __init__(self, db: SerializedSession) -> None:
        self.seconds = 0.0
        self._run = db.run
        setattr(db, "run", self.run)  # noqa: B010 - wraps this instance's method only

    async def run(self, operation: Callable[[Any], Awaitable[T]]) -> T:
        async def timed(session: Any) -> T:
            # Inside the session's lock: concurrent loaders' statements do not overlap.
            started = time.perf_counter()
            try:
                return await operation(session)
            finally:
                self.seconds += time.perf_counter() - started

        return await self._run(timed)


def percentiles(samples: list[float]) -> str:
    """Median, fastest, and the 10th-90th percentile range, in milliseconds.

    On a shared machine the median moves with the neighbours' load; the fastest run
    is the steadier figure for comparing the two executors.
    """
    ordered = sorted(samples)
    tenth = ordered[len(ordered) // 10]
    ninetieth = ordered[(len(ordered) * 9) // 10]
    return (
        f"median {statistics.median(ordered) * 1000:6.2f} ms, fastest {ordered[0] * 1000:6.2f} ms"
        f"  (p10-p90 {tenth * 1000:.2f}-{ninetieth * 1000:.2f})"
    )


async def seed(database_url: str, flags_file: Path, rows: int) -> None:
    engine = create_engine(database_url)
    try:
        await migrations.upgrade(engine)
        sessions = create_session_factory(engine)
        async with sessions() as session, session.begin():
            await seed_demo(session, PendingEvents(), appointments_per_clinic=rows)
    finally:
        await engine.dispose()
    write_document(flags_file, build_document(demo_clinic_stages(), []))


@asynccontextmanager
async def started(settings: Settings) -> AsyncIterator[Services]:
    services = await Services.start(settings)
    try:
        yield services
    finally:
        await services.stop()


def new_context(services: Services) -> RequestContext:
    request = Request({"type": "http", "method": "POST", "path": "/graphql", "headers": []})
    return services.request_context(request, None, DEMO_ADMIN)


async def execute_once(
    schema: strawberry.Schema, context: RequestContext, clinic_id: str
) -> tuple[float, float, float, dict[str, Any]]:
    timer = SqlTimer(context.db)
    begin, begin_cpu = time.perf_counter(), time.process_time()
    result = await schema.execute(
        HOT_QUERY, variable_values={"clinicId": clinic_id}, context_value=context
    )
    elapsed, cpu = time.perf_counter() - begin, time.process_time() - begin_cpu
    assert not result.errors, result.errors
    assert result.data is not None
    return elapsed, timer.seconds, cpu, result.data


async def bench_execute(settings: Settings, clinic_id: str, runs: int, warm: bool) -> None:
    schemas = {"stock": build_schema(fast_execution=False), "fast": build_schema()}
    totals: dict[str, list[float]] = {name: [] for name in schemas}
    outside_sql: dict[str, list[float]] = {name: [] for name in schemas}
    cpu_times: dict[str, list[float]] = {name: [] for name in schemas}
    answers: dict[str, dict[str, Any]] = {}
    async with started(settings) as services:
        contexts = {name: new_context(services) for name in schemas}
        for run in range(runs + 20):
            for name, schema in schemas.items():
                context = contexts[name] if warm else new_context(services)
                total, sql, cpu, data = await execute_once(schema, context, clinic_id)
                answers[name] = data
                if run >= 20:  # warm-up: imports, caches, SQLite page cache
                    totals[name].append(total)
                    outside_sql[name].append(total - sql)
                    cpu_times[name].append(cpu)
    assert answers["stock"] == answers["fast"], "the executors disagree"
    rows = len(answers["fast"]["appointments"]["edges"])
    how = "one context reused: loaders warm, only the page query's SQL" if warm else "fresh context"
    print(f"schema.execute, {rows} appointments, {how}, {runs} runs each:")
    for name in schemas:
        print(f"  {name:5}  total       {percentiles(totals[name])}")
        print(f"         outside SQL {percentiles(outside_sql[name])}")
        print(f"         CPU time    {percentiles(cpu_times[name])}")


async def bench_http(settings: Settings, clinic_id: str, runs: int) -> None:
    apps = {
        "stock": create_app(Settings(**{**_fields(settings), "fast_execution": False})),
        "fast": create_app(settings),
    }
    samples: dict[str, list[float]] = {name: [] for name in apps}
    bodies: dict[str, Any] = {}
    payload = {"query": HOT_QUERY, "variables": {"clinicId": clinic_id}}
    async with (
        apps["stock"].router.lifespan_context(apps["stock"]),
        apps["fast"].router.lifespan_context(apps["fast"]),
    ):
        clients = {
            name: httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench")
            for name, app in apps.items()
        }
        try:
            for run in range(runs + 20):
                for name, client in clients.items():
                    begin = time.perf_counter()
                    response = await client.post("/graphql", json=payload)
                    elapsed = time.perf_counter() - begin
                    assert response.status_code == 200, response.text
                    bodies[name] = json.loads(response.content)
                    if run >= 20:
                        samples[name].append(elapsed)
        finally:
            for client in clients.values():
                await client.aclose()
    assert bodies["stock"]["data"] == bodies["fast"]["data"], "the executors disagree"
    size = len(json.dumps(bodies["fast"]))
    print(f"POST /graphql (in-process ASGI, {size:,} byte body), {runs} runs each:")
    for name in apps:
        print(f"  {name:5}  {percentiles(samples[name])}")


def _fields(settings: Settings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in Settings.__dataclass_fields__}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=120, help="appointments per demo clinic")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument(
        "--stage",
        type=Stage.parse,
        default=Stage.DUAL_WRITE,
        help="the demo clinic to read, by its stage (compared stages also write the ledger)",
    )
    arguments = parser.parse_args()
    clinic_number = next(n for n, (_, stage) in enumerate(DEMO_CLINICS) if stage is arguments.stage)
    clinic_id = str(demo_id("clinic", clinic_number))
    with tempfile.TemporaryDirectory(prefix="bench-executor-") as directory:
        database_url = f"sqlite+aiosqlite:///{directory}/clinic.sqlite3"
        flags_file = Path(directory) / "flags.json"
        await seed(database_url, flags_file, arguments.rows)
        settings = Settings(
            database_url=database_url,
            auto_migrate=False,
            flags_file=flags_file,
            log_level="WARNING",
        )
        await bench_execute(settings, clinic_id, arguments.runs, warm=False)
        await bench_execute(settings, clinic_id, arguments.runs, warm=True)
        await bench_http(settings, clinic_id, arguments.runs)


if __name__ == "__main__":
    asyncio.run(main())
