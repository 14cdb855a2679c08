"""Benchmark: the batched backfill against one set-based UPDATE ... FROM, on PostgreSQL.

    .venv/bin/python -m bench.backfill [--rows 1000000] [--batch-size 10000]

Creates (and drops) its own database on BENCH_POSTGRES_URL (default: the local
server), seeds clinics, doctors, patients, memberships and appointments with
SQL, then on the same data times (1) a single UPDATE ... FROM linking both
sides and (2) `run_backfill`, which it runs in a child process so that its
peak memory is its own. Prints the figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import time
import uuid

import psycopg
from sqlalchemy import insert, make_url, select

import migrations
from appointments.backfill import BackfillOptions, run_backfill
from appointments.db import create_engine, create_session_factory
from appointments.models import User, UserRole, utcnow

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
JOIN numbered_patients p ON p.n = (g * 13) % {patients};
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

UNLINK = "UPDATE appointments SET clinic_doctor_id = NULL, clinic_patient_id = NULL"


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


def _child(url: str, batch_size: int) -> None:
    async def run() -> float:
        engine = create_engine(url)
        try:
            started = time.perf_counter()
            await run_backfill(
                create_session_factory(engine), BackfillOptions(batch_size=batch_size, restart=True)
            )
            return time.perf_counter() - started
        finally:
            await engine.dispose()

    print(f"{asyncio.run(run()):.6f}")


def _timed_backfill(url: str, batch_size: int) -> tuple[float, float]:
    """Seconds the backfill took (measured in the child), and the child's peak memory in MiB."""
    child = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "bench.backfill", "--child", url, "--batch-size", str(batch_size)],
        check=True,
        capture_output=True,
        text=True,
    )
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return float(child.stdout.strip().splitlines()[-1]), peak_kib / 1024


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


def measure(base_url: str, rows: int, batch_size: int) -> None:
    name = f"clinic_bench_{uuid.uuid4().hex[:8]}"
    url = create_database(base_url, name)
    try:
        migrate(url)
        seconds = seed(url, clinics=50, doctors=2000, patients=100_000, rows=rows)
        print(f"seeded {rows:,} appointments in {seconds:.1f} s")
        single = _timed_sql(dsn(url), SINGLE_UPDATE)
        _timed_sql(dsn(url), UNLINK)
        backfill, peak = _timed_backfill(url, batch_size)
        with psycopg.connect(dsn(url)) as connection:
            unlinked = connection.execute(
                "SELECT count(*) FROM appointments WHERE clinic_doctor_id IS NULL"
                " OR clinic_patient_id IS NULL"
            ).fetchone()
        print(f"rows                     {rows:>12,}")
        print(f"single UPDATE ... FROM   {single:>10.2f} s")
        print(f"backfill, batch {batch_size:<8} {backfill:>10.2f} s")
        print(f"ratio backfill / single  {backfill / single:>10.2f}")
        print(f"backfill peak memory     {peak:>10.1f} MiB")
        print(f"left unlinked            {unlinked[0] if unlinked else '?':>10}")
    finally:
        drop_database(base_url, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, action="append", help="repeatable (default 1000000)")
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        _child(arguments.child, arguments.batch_size)
        return
    for rows in arguments.rows or [1_000_000]:
        measure(os.environ.get("BENCH_POSTGRES_URL", DEFAULT_URL), rows, arguments.batch_size)


if __name__ == "__main__":
    main()
