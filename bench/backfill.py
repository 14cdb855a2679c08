"""Benchmark: the batched backfill against one set-based UPDATE ... FROM, on PostgreSQL,
and what it does to a concurrent writer.

    .venv/bin/python -m bench.backfill [--rows 1000000] [--writer-rate 50]
        [--batch-size N] [--batch-seconds S] [--writer-seconds 30]

Creates (and drops) its own database on BENCH_POSTGRES_URL (default: the local
server), seeds clinics, doctors, patients, memberships and appointments with
SQL, then on the same data:

1. times a single UPDATE ... FROM linking both sides;
2. runs ``run_backfill`` alone, with the CLI's defaults unless told otherwise,
   in a child process so that its peak memory is its own, and records how long
   each batch's transaction took (which bounds how long it held row locks);
3. runs the concurrent writer (bench/backfill_writer.py) alone for
   ``--writer-seconds``, then beside a backfill, for as long as that runs;
4. times the single statement once more, so the figures show how much two
   timings of the same statement differ on this machine.

Each of the four starts from its own file copy of the seeded database (CREATE
DATABASE ... TEMPLATE), so all start from the same pages, with the rows in the
order they were written, as an appointments table mostly is. (Run one after
another on one database, the single statement's hash join would rewrite the
rows in another order, and the backfill's keyset order would then visit a
different page for almost every row.)

Prints the figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import psycopg
from sqlalchemy import insert, make_url, select

import migrations
from appointments.backfill import (
    DEFAULT_BATCH_SECONDS,
    DEFAULT_BATCH_SIZE,
    BackfillOptions,
    Progress,
    run_backfill,
)
from appointments.db import create_engine, create_session_factory
from appointments.models import User, UserRole, utcnow
from bench.backfill_writer import Latencies, write_while

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

SEED = """
INSERT INTO clinics (id, name, created_at)
SELECT gen_random_uuid(), 'Clinic ' || n, now() FROM generate_series(1, {clinics}) n;
INSERT INTO users (id, name, email, role, created_at)
SELECT gen_random_uuid(), 'Doctor ' || n, 'doctor' || n || '@bench.test', 'doctor', now()
FROM generate_series(1, {doctors}) n;
INSERT INTO patients (id, full_name, created_at)
SELECT gen_random_uuid(), 'Patient ' || n, now() FROM generate_series(1, {patients}) n;
CREATE TEMP TABLE numbered_clinics AS
SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM clinics;
CREATE TEMP TABLE numbered_doctors AS
SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM users;
CREATE TEMP TABLE numbered_patients AS
SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM patients;
INSERT INTO appointments (id, clinic_id, starts_at, ends_at, status, doctor_id, patient_id,
                          created_at, updated_at)
SELECT gen_random_uuid(), c.id,
       timestamptz '2026-01-01' + (g % 500000) * interval '1 minute',
       timestamptz '2026-01-01' + (g % 500000) * interval '1 minute' + interval '30 minutes',
       'scheduled', d.id, p.id,
       timestamptz '2025-01-01' + g * interval '10 seconds',
       timestamptz '2025-01-01' + g * interval '10 seconds'
FROM generate_series(0, {rows} - 1) g
JOIN numbered_clinics c ON c.n = g % {clinics}
JOIN numbered_doctors d ON d.n = (g * 7) % {doctors}
JOIN numbered_patients p ON p.n = (g * 13) % {patients}
ORDER BY g;
INSERT INTO clinic_doctors (id, clinic_id, user_id, active, created_at)
SELECT gen_random_uuid(), clinic_id, doctor_id, true, now()
FROM (SELECT DISTINCT clinic_id, doctor_id FROM appointments) pairs;
INSERT INTO clinic_patients (id, clinic_id, patient_id, created_at)
SELECT gen_random_uuid(), clinic_id, patient_id, now()
FROM (SELECT DISTINCT clinic_id, patient_id FROM appointments) pairs;
"""

SINGLE_UPDATE = """
UPDATE appointments a
SET clinic_doctor_id = cd.id, clinic_patient_id = cp.id, updated_at = now()
FROM clinic_doctors cd, clinic_patients cp
WHERE a.clinic_doctor_id IS NULL AND a.clinic_patient_id IS NULL
  AND cd.clinic_id = a.clinic_id AND cd.user_id = a.doctor_id
  AND cp.clinic_id = a.clinic_id AND cp.patient_id = a.patient_id
"""


def dsn(url: str) -> str:
    """The libpq connection string of a SQLAlchemy URL (for psycopg directly)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _timed_sql(dsn: str, statement: str) -> float:
    with psycopg.connect(dsn, autocommit=True) as connection:
        started = time.perf_counter()
        connection.execute(statement)
        elapsed = time.perf_counter() - started
        connection.execute("VACUUM ANALYZE appointments")
    return elapsed


@dataclass(frozen=True, slots=True)
class BackfillRun:
    """What the child reports of one backfill run."""

    seconds: float
    batches: int
    batch_p50: float
    batch_p99: float
    batch_max: float
    paused_seconds: float
    peak_mib: float

    def describe(self) -> str:
        return (
            f"{self.seconds:.2f} s, {self.batches} batches, batch transaction"
            f" p50 {self.batch_p50:.3f} s p99 {self.batch_p99:.3f} s max {self.batch_max:.3f} s,"
            f" paused {self.paused_seconds:.1f} s, peak memory {self.peak_mib:.1f} MiB"
        )


def _child(url: str, batch_size: int, batch_seconds: float) -> None:
    """Run the backfill; print a BackfillRun as JSON (the last line of stdout)."""

    async def run() -> BackfillRun:
        engine = create_engine(url)
        durations: list[float] = []

        def note(progress: Progress) -> None:
            if progress.paused is None:
                durations.append(progress.batch_seconds)

        try:
            started = time.perf_counter()
            summary = await run_backfill(
                create_session_factory(engine),
                BackfillOptions(
                    batch_size=batch_size, batch_seconds=batch_seconds or None, restart=True
                ),
                note,
            )
            seconds = time.perf_counter() - started
        finally:
            await engine.dispose()
        batches = Latencies(sorted(durations))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return BackfillRun(
            seconds,
            summary.batches,
            batches.percentile(0.5),
            batches.percentile(0.99),
            batches.percentile(1.0),
            summary.paused_seconds,
            peak,
        )

    print(json.dumps(asdict(asyncio.run(run()))))


def _child_command(url: str, batch_size: int, batch_seconds: float) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bench.backfill",
        "--child",
        url,
        "--batch-size",
        str(batch_size),
        "--batch-seconds",
        str(batch_seconds),
    ]


def _timed_backfill(url: str, batch_size: int, batch_seconds: float) -> BackfillRun:
    child = subprocess.run(  # noqa: S603 - our own interpreter and module
        _child_command(url, batch_size, batch_seconds), check=True, capture_output=True, text=True
    )
    return BackfillRun(**json.loads(child.stdout.strip().splitlines()[-1]))


async def _backfill_beside_writer(
    url: str, batch_size: int, batch_seconds: float, rate: float
) -> tuple[BackfillRun, Latencies]:
    """A backfill in a child process, and the writer in this one for as long as it runs."""
    child = await asyncio.create_subprocess_exec(
        *_child_command(url, batch_size, batch_seconds),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    finished = asyncio.ensure_future(child.communicate())
    latencies = await write_while(url, rate, finished)
    out, err = await finished
    if child.returncode != 0:
        raise RuntimeError(f"the backfill failed: {err.decode()}")
    return BackfillRun(**json.loads(out.decode().strip().splitlines()[-1])), latencies


def create_database(base_url: str, name: str) -> str:
    """Create database ``name`` on the server of ``base_url``; its SQLAlchemy URL."""
    with psycopg.connect(dsn(base_url), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


def drop_database(base_url: str, name: str) -> None:
    with psycopg.connect(dsn(base_url), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrate(url: str) -> None:
    """Upgrade the database to the service's schema with our migrations."""

    async def run() -> None:
        engine = create_engine(url)
        try:
            await migrations.upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(run())


BENCH_ADMIN = uuid.UUID("5b1c0a7e-2d4f-4e8a-9c61-0be7c4a1d001")


async def bench_admin(url: str) -> uuid.UUID:
    """The stored admin the benchmarks' tokens name (a token's subject must be a stored user)."""
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            found = await connection.execute(select(User.id).where(User.id == BENCH_ADMIN))
            if found.first() is None:
                await connection.execute(
                    insert(User).values(
                        id=BENCH_ADMIN,
                        name="Bench admin",
                        email="bench-admin@example.org",
                        role=UserRole.ADMIN.value,
                        active=True,
                        created_at=utcnow(),
                    )
                )
    finally:
        await engine.dispose()
    return BENCH_ADMIN


def seed(url: str, clinics: int, doctors: int, patients: int, rows: int) -> float:
    """Seed a migrated, empty database with legacy-linked appointments (set-based SQL),
    memberships for every (clinic, person) pair they use, and ANALYZE; the seconds taken."""
    with psycopg.connect(dsn(url), autocommit=True) as connection:
        started = time.perf_counter()
        statement = SEED.format(clinics=clinics, doctors=doctors, patients=patients, rows=rows)
        connection.execute(statement.encode())
        connection.execute("VACUUM ANALYZE")
        return time.perf_counter() - started


@dataclass(frozen=True, slots=True)
class Settings:
    batch_size: int
    batch_seconds: float
    writer_rate: float
    writer_seconds: float


def _unlinked(url: str) -> int:
    with psycopg.connect(dsn(url)) as connection:
        row = connection.execute(
            "SELECT count(*) FROM appointments WHERE clinic_doctor_id IS NULL"
            " OR clinic_patient_id IS NULL"
        ).fetchone()
    return int(row[0]) if row else -1


def copy_database(base_url: str, template: str, name: str) -> str:
    """A new database ``name``, a file copy of ``template`` (same pages, statistics and
    visibility map); its SQLAlchemy URL."""
    with psycopg.connect(dsn(base_url), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


@contextmanager
def fresh_copy(base_url: str, template: str) -> Iterator[str]:
    """A copy of the seeded database for one measurement, dropped after it."""
    name = f"{template}_{uuid.uuid4().hex[:6]}"
    url = copy_database(base_url, template, name)
    try:
        yield url
    finally:
        drop_database(base_url, name)


def measure(base_url: str, rows: int, settings: Settings) -> None:
    """Seed once, then give each measurement its own copy of the seeded database: each
    starts from the same pages, in the order the rows were written."""
    template = f"clinic_bench_{uuid.uuid4().hex[:8]}"
    url = create_database(base_url, template)
    sized = (settings.batch_size, settings.batch_seconds)
    try:
        migrate(url)
        seconds = seed(url, clinics=50, doctors=2000, patients=100_000, rows=rows)
        print(f"seeded {rows:,} appointments in {seconds:.1f} s", flush=True)
        with fresh_copy(base_url, template) as copy:
            single = _timed_sql(dsn(copy), SINGLE_UPDATE)
        with fresh_copy(base_url, template) as copy:
            alone = _timed_backfill(copy, *sized)
            left_alone = _unlinked(copy)
        with fresh_copy(base_url, template) as copy:
            quiet = asyncio.run(write_while(copy, settings.writer_rate, settings.writer_seconds))
            beside, busy = asyncio.run(_backfill_beside_writer(copy, *sized, settings.writer_rate))
            left_beside = _unlinked(copy)
        with fresh_copy(base_url, template) as copy:
            again = _timed_sql(dsn(copy), SINGLE_UPDATE)
        ceiling = f"batch size at most {settings.batch_size:,}"
        target = f"{settings.batch_seconds:g} s per batch" if settings.batch_seconds else "fixed"
        print(f"rows                         {rows:>12,}")
        print(f"batches                      {ceiling}, {target}")
        print(f"single UPDATE ... FROM       {single:>10.2f} s (again, last: {again:.2f} s)")
        print(f"backfill alone               {alone.describe()}")
        print(f"ratio backfill / single      {alone.seconds / single:>10.2f}")
        print(f"backfill beside the writer   {beside.describe()}")
        print(f"ratio (beside) / single      {beside.seconds / single:>10.2f}")
        print(f"writer at {settings.writer_rate:g}/s, no backfill  {quiet.describe()}")
        print(f"writer at {settings.writer_rate:g}/s, backfill     {busy.describe()}")
        ratio = busy.percentile(0.99) / quiet.percentile(0.99)
        print(f"writer p99 with / without    {ratio:>10.2f}")
        print(f"left unlinked                {left_alone:>10} (alone), {left_beside} (beside)")
    finally:
        drop_database(base_url, template)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, action="append", help="repeatable (default 1000000)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument(
        "--batch-seconds", type=float, default=DEFAULT_BATCH_SECONDS, help="0: fixed batches"
    )
    parser.add_argument("--writer-rate", type=float, default=50.0, help="writes per second")
    parser.add_argument("--writer-seconds", type=float, default=30.0, help="the writer alone")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        _child(arguments.child, arguments.batch_size, arguments.batch_seconds)
        return
    settings = Settings(
        arguments.batch_size,
        arguments.batch_seconds,
        arguments.writer_rate,
        arguments.writer_seconds,
    )
    for rows in arguments.rows or [1_000_000]:
        measure(os.environ.get("BENCH_POSTGRES_URL", DEFAULT_URL), rows, settings)


if __name__ == "__main__":
    main()
