"""Benchmark: reads split between a PostgreSQL primary and a streaming replica.

    .venv/bin/python -m bench.replicas [--requests 400] [--concurrency 8] [--writes 100]

Starts a primary and a hot standby of its own (tests/replication.py: ``initdb``,
``pg_basebackup -R``, free loopback ports; never the shared server), seeds the demo
data on the primary and waits for the standby to replay it. Then, with the app in
process (dev mode, the demo admin) as the benchmarks do:

1. ``--requests`` list reads (100 appointments of a clinic, both field sets) at
   ``--concurrency``, first with no replica configured, then with the standby as
   the replica: requests per second, median and 95th percentile latency, and the
   statements each server ran;
2. ``--writes`` times, a created appointment read back at once with the
   ``Clinic-Read-After`` position the mutation answered: how many of those reads the
   replica served (the rest went to the primary, the replica not having replayed the
   write yet), and how long the replica took to replay each write.

Both servers share this machine's cores with the benchmark, so the split measures
routing and its costs, not the capacity a replica on a machine of its own adds.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy import event

import migrations
from appointments.db import create_engine, create_session_factory
from appointments.events import PendingEvents
from appointments.replicas import READ_AFTER_HEADER, parse_lsn
from appointments.seed import DEMO_ROLLOUT, demo_clinic_stages, demo_id, seed_demo
from flags.document import build_document, write_document
from server.app import create_app
from server.services import Services
from server.settings import Settings
from tests.replication import ReplicatedCluster, replicated_cluster

LIST = """
query List($clinicId: ID!) {
  appointments(first: 100, filter: {clinicId: $clinicId}) {
    edges { node { id startsAt doctor { id } clinicDoctor { id } patient { id } } }
  }
}
"""
CREATE = """
mutation Create($input: CreateAppointmentInput!) {
  createAppointment(input: $input) {
    __typename ... on AppointmentSuccess { appointment { id } }
  }
}
"""
READ = "query Read($id: ID!) { appointment(id: $id) { id } }"


@dataclass
class Counter:
    count: int = 0

    def __call__(self, *_arguments: Any) -> None:
        self.count += 1


@dataclass
class Run:
    name: str
    seconds: float
    latencies: list[float]
    primary_statements: int
    replica_statements: int

    def line(self) -> str:
        ordered = sorted(self.latencies)
        p95 = ordered[int(len(ordered) * 0.95) - 1]
        return (
            f"{self.name:<22} {len(ordered) / self.seconds:7.1f} req/s"
            f"  median {statistics.median(ordered) * 1000:6.1f} ms  p95 {p95 * 1000:6.1f} ms"
            f"  statements: primary {self.primary_statements:5d},"
            f" replica {self.replica_statements:5d}"
        )


async def seed(cluster: ReplicatedCluster) -> None:
    engine = create_engine(cluster.primary_url)
    try:
        await migrations.upgrade(engine)
        async with create_session_factory(engine)() as session, session.begin():
            await seed_demo(session, PendingEvents())
    finally:
        await engine.dispose()
    await asyncio.to_thread(cluster.wait_replayed)


@asynccontextmanager
async def app(
    cluster: ReplicatedCluster, flags_file: Path, replica: bool
) -> AsyncIterator[tuple[httpx.AsyncClient, Services, Counter, Counter]]:
    replicas = (cluster.standby_url,) if replica else ()
    settings = Settings(
        database_url=cluster.primary_url,
        database_replica_urls=replicas,
        auto_migrate=False,
        flags_file=flags_file,
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        services: Services = application.state.services
        on_primary, on_replica = Counter(), Counter()
        event.listen(services.engine.sync_engine, "before_cursor_execute", on_primary)
        if services.replicas is not None:
            engine = services.replicas.replicas[0].engine
            event.listen(engine.sync_engine, "before_cursor_execute", on_replica)
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            yield client, services, on_primary, on_replica


async def reads(
    cluster: ReplicatedCluster, flags_file: Path, replica: bool, requests: int, concurrency: int
) -> Run:
    clinics = [str(demo_id("clinic", number)) for number in range(3)]
    async with app(cluster, flags_file, replica) as (client, _, on_primary, on_replica):
        for clinic in clinics:  # warm-up: prepared statements, caches
            await client.post("/graphql", json={"query": LIST, "variables": {"clinicId": clinic}})
        on_primary.count = on_replica.count = 0
        latencies: list[float] = []
        queue = list(range(requests))

        async def worker() -> None:
            while queue:
                number = queue.pop()
                variables = {"clinicId": clinics[number % len(clinics)]}
                started = time.perf_counter()
                response = await client.post(
                    "/graphql", json={"query": LIST, "variables": variables}
                )
                latencies.append(time.perf_counter() - started)
                assert "errors" not in response.json(), response.text

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        name = "primary + replica" if replica else "primary only"
        return Run(name, seconds, latencies, on_primary.count, on_replica.count)


async def reads_after_writes(
    cluster: ReplicatedCluster, flags_file: Path, writes: int
) -> tuple[int, list[float]]:
    """(reads the replica served, seconds the replica took to replay each write)."""
    served_by_replica = 0
    replay_seconds: list[float] = []
    async with app(cluster, flags_file, True) as (client, services, _, on_replica):
        assert services.replicas is not None
        with psycopg.connect(
            host="127.0.0.1", port=cluster.standby_port, user="postgres",
            dbname=cluster.database, autocommit=True,
        ) as standby:  # fmt: skip
            for number in range(writes):
                await services.replicas.refresh()
                created = await client.post(
                    "/graphql", json={"query": CREATE, "variables": {"input": _input(number)}}
                )
                committed = time.perf_counter()
                position = created.headers[READ_AFTER_HEADER]
                appointment = created.json()["data"]["createAppointment"]["appointment"]["id"]
                before = on_replica.count
                replayed = asyncio.create_task(
                    asyncio.to_thread(_replayed, standby, parse_lsn(position))
                )
                read = await client.post(
                    "/graphql",
                    json={"query": READ, "variables": {"id": appointment}},
                    headers={READ_AFTER_HEADER: position},
                )
                assert read.json()["data"]["appointment"]["id"] == appointment, read.text
                served_by_replica += on_replica.count > before
                replay_seconds.append(await replayed - committed)
    return served_by_replica, replay_seconds


def _replayed(standby: psycopg.Connection[Any], position: int) -> float:
    while True:
        row = standby.execute("SELECT pg_last_wal_replay_lsn()::text").fetchone()
        if row is not None and row[0] is not None and parse_lsn(str(row[0])) >= position:
            return time.perf_counter()
        time.sleep(0.0005)


def _input(number: int) -> dict[str, str]:
    day = 1 + number % 28
    hour = 7 + (number // 28) % 12
    return {
        "clinicId": str(demo_id("clinic", 0)),
        "startsAt": f"2027-02-{day:02d}T{hour:02d}:00:00Z",
        "endsAt": f"2027-02-{day:02d}T{hour:02d}:30:00Z",
        "doctorId": str(demo_id("doctor", 0)),
        "patientId": str(demo_id("patient", 0)),
    }


async def main_async(arguments: argparse.Namespace) -> None:
    with replicated_cluster() as cluster, tempfile.TemporaryDirectory() as directory:
        flags_file = Path(directory) / "flags.json"
        write_document(flags_file, build_document(demo_clinic_stages(), [DEMO_ROLLOUT]))
        await seed(cluster)
        for replica in (False, True):
            run = await reads(
                cluster, flags_file, replica, arguments.requests, arguments.concurrency
            )
            print(run.line(), flush=True)
        served, replays = await reads_after_writes(cluster, flags_file, arguments.writes)
        ordered = sorted(replays)
        median, longest = statistics.median(ordered) * 1000, ordered[-1] * 1000
        print(
            f"read-your-writes: {served} of {arguments.writes} reads right after a write served"
            f" by the replica; replay after commit median {median:.2f} ms, max {longest:.2f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--writes", type=int, default=100)
    # The compared reads of the demo's shadow clinics log each mismatch they meet.
    logging.disable(logging.WARNING)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
