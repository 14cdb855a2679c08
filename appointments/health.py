"""Per-clinic health counters in the database: read fallbacks, failed writes and reads by
origin per minute.

A request counts its own events (``MigrationEventLog.by_clinic``) and adds them
to the clinic's row of the current minute once, when it ends. Every process
writes to the same table, so the rollout autopilot's guards see the whole
service, which one process's Prometheus counters cannot show. Reads are not
written per request (most requests are reads): each process tallies them per
minute and adds them every few seconds (``appointments.read_tally``).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from appointments.models import ClinicHealthCounter, utcnow

READ_FALLBACK = "read_fallback"
WRITE_FAILURE = "write_failure"
COLUMNS = {READ_FALLBACK: "read_fallbacks", WRITE_FAILURE: "write_failures"}

HealthCounts = Counter[tuple[uuid.UUID, str]]
"""Events per (clinic, kind), kind being ``READ_FALLBACK`` or ``WRITE_FAILURE``."""


def minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


async def add_counts(
    session: AsyncSession, counts: HealthCounts, now: datetime | None = None
) -> None:
    """Add ``counts`` to each clinic's row of the current minute (one upsert; the caller
    commits)."""
    minute = minute_of(now or utcnow())
    rows: dict[uuid.UUID, dict[str, Any]] = {}
    for (clinic_id, kind), count in counts.items():
        row = rows.setdefault(
            clinic_id,
            {"clinic_id": clinic_id, "minute": minute, "read_fallbacks": 0, "write_failures": 0},
        )
        row[COLUMNS[kind]] += count
    await _add(session, list(rows.values()), ("read_fallbacks", "write_failures"))


ReadCounts = Mapping[tuple[uuid.UUID, datetime, str], int]
"""Appointment sides read per (clinic, minute, origin), origin being ``legacy`` or ``new``."""


async def add_reads(session: AsyncSession, reads: ReadCounts) -> None:
    """Add ``reads`` to their clinics' rows of their minutes (one upsert; the caller commits)."""
    rows: dict[tuple[uuid.UUID, datetime], dict[str, Any]] = {}
    for (clinic_id, minute, origin), count in reads.items():
        row = rows.setdefault(
            (clinic_id, minute),
            {"clinic_id": clinic_id, "minute": minute, "reads_legacy": 0, "reads_new": 0},
        )
        row[f"reads_{origin}"] += count
    await _add(session, list(rows.values()), ("reads_legacy", "reads_new"))


async def _add(session: AsyncSession, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    """Insert ``rows``, or add their ``columns`` to the rows already there."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(ClinicHealthCounter).values(rows)
    table = ClinicHealthCounter.__table__.c
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[ClinicHealthCounter.clinic_id, ClinicHealthCounter.minute],
            set_={name: table[name] + statement.excluded[name] for name in columns},
        )
    )


async def counts_since(
    session: AsyncSession, since: Mapping[uuid.UUID, datetime]
) -> dict[uuid.UUID, tuple[int, int]]:
    """(read fallbacks, write failures) of each clinic in the minutes from its own start on.

    The minute holding a start counts whole: an event up to a minute older may be
    counted, never one of the window left out.
    """
    if not since:
        return {}
    earliest = minute_of(min(since.values()))
    rows = await session.execute(
        select(
            ClinicHealthCounter.clinic_id,
            ClinicHealthCounter.minute,
            ClinicHealthCounter.read_fallbacks,
            ClinicHealthCounter.write_failures,
        )
        .where(ClinicHealthCounter.clinic_id.in_(list(since)))
        .where(ClinicHealthCounter.minute >= earliest)
    )
    totals = dict.fromkeys(since, (0, 0))
    for clinic_id, minute, fallbacks, failures in rows:
        if minute >= minute_of(since[clinic_id]):
            old_fallbacks, old_failures = totals[clinic_id]
            totals[clinic_id] = (old_fallbacks + fallbacks, old_failures + failures)
    return totals
