"""Benchmark: a `shadow` list whose mismatches are already in the ledger, in process.

    .venv/bin/python -m bench.ledger_reads [--broken 10] [--requests 300]

On the benchmark's quick database (whose two sides are consistent), every
``len/broken``-th of the first clinic's first 100 appointments gets a doctor
membership of another doctor of the clinic: a ``DOCTOR`` difference. The app is
started in process as ``bench.hot_list`` does (production settings, a token,
``shadow``, the hot list query of 100 rows, a warm-up, during which the ledger
records the differences as first seen); then ``--requests`` requests are sent
one at a time. Prints the SQL statements per request (all of the request's
cursor executions, the token's user included) and the wall time per request
(mean and median). The rows and the ledger entries are restored at the end.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop
from sqlalchemy import Engine, create_engine, event, text

from appointments.stages import Stage
from bench.graphql import load_fixture
from bench.opcodes import hot_list_app, hot_list_parser, quick_database

FIRST_ROWS = """
SELECT a.id, a.clinic_doctor_id FROM appointments a
WHERE a.clinic_id = :clinic ORDER BY a.starts_at, a.id LIMIT 100
"""
OTHER_MEMBERSHIP = """
SELECT d.id FROM clinic_doctors d
WHERE d.clinic_id = :clinic AND d.id <> :membership
  AND d.user_id <> (SELECT user_id FROM clinic_doctors WHERE id = :membership)
LIMIT 1
"""


def break_rows(url: str, clinic_id: str, every: int) -> dict[Any, Any]:
    """Give every ``every``-th row of the hot list another doctor's membership; the rows'
    memberships before."""
    engine = create_engine(url)
    broken: dict[Any, Any] = {}
    with engine.begin() as connection:
        rows = connection.execute(text(FIRST_ROWS), {"clinic": clinic_id}).all()
        for appointment_id, membership in rows[::every]:
            other = connection.execute(
                text(OTHER_MEMBERSHIP), {"clinic": clinic_id, "membership": membership}
            ).scalar_one()
            connection.execute(
                text("UPDATE appointments SET clinic_doctor_id = :other WHERE id = :id"),
                {"other": other, "id": appointment_id},
            )
            broken[appointment_id] = membership
        connection.execute(text("DELETE FROM migration_mismatches"))
    engine.dispose()
    return broken


def restore_rows(url: str, broken: dict[Any, Any]) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        for appointment_id, membership in broken.items():
            connection.execute(
                text("UPDATE appointments SET clinic_doctor_id = :membership WHERE id = :id"),
                {"membership": membership, "id": appointment_id},
            )
        connection.execute(text("DELETE FROM migration_mismatches"))
    engine.dispose()


async def measure(url: str, clinic_id: str, requests: int) -> tuple[list[int], list[float]]:
    statements: list[int] = []
    seconds: list[float] = []
    sent = [0]

    def count(*_args: Any) -> None:
        sent[0] += 1

    with tempfile.TemporaryDirectory(prefix="bench-ledger-reads-") as directory:
        async with hot_list_app(url, Path(directory), clinic_id, Stage.SHADOW) as ask:
            event.listen(Engine, "before_cursor_execute", count)
            try:
                for _ in range(requests):
                    sent[0] = 0
                    started = time.perf_counter()
                    await ask()
                    seconds.append(time.perf_counter() - started)
                    statements.append(sent[0])
            finally:
                event.remove(Engine, "before_cursor_execute", count)
    return statements, seconds


def main(argv: list[str] | None = None) -> int:
    parser = hot_list_parser("python -m bench.ledger_reads", __doc__)
    parser.add_argument("--broken", type=int, default=10, help="rows of the 100 that differ")
    parser.add_argument("--requests", type=int, default=300, help="measured requests")
    arguments = parser.parse_args(argv)
    url = arguments.database_url or quick_database()
    clinic_id = load_fixture(url).clinic_id
    broken = break_rows(url, clinic_id, max(1, 100 // arguments.broken))
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            statements, seconds = runner.run(measure(url, clinic_id, arguments.requests))
    finally:
        restore_rows(url, broken)
    print(
        f"shadow hot list, {len(broken)} of 100 rows differing (entries open), "
        f"{arguments.requests} requests: statements per request "
        f"{statistics.fmean(statements):.2f} (min {min(statements)}, max {max(statements)}), "
        f"ms per request mean {statistics.fmean(seconds) * 1000:.2f}, "
        f"median {statistics.median(seconds) * 1000:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
