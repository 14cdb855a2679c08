"""Differences the ledger already has, seen again: counted in this process, added in batches.

A read that finds a difference whose entry is open (or ignored) changes nothing
QA acts on, only the entry's count, its last sighting and the values last seen:
they are counted here (``SEEN_AGAIN``, the same mechanism as the deprecated
field usage, ``appointments.batched``) and added to the entries every
``CLINIC_HEALTH_FLUSH_SECONDS``, before the ledger is listed, and when the
service stops. A flush never changes an entry's status (a sighting counted
before a repair does not reopen what the repair fixed) and skips entries that no
longer exist. A process killed without a clean stop loses the counts since its
last flush; first sightings are never among them (they are written before the
response).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Table, bindparam, case
from sqlalchemy.ext.asyncio import AsyncSession

from appointments import metrics
from appointments.batched import BatchedCounts
from appointments.ledger import EntryKey, SeenAgain
from appointments.models import MigrationMismatch

logger = logging.getLogger("appointments.ledger")
BATCH_ROWS = 500


class Sightings(dict[EntryKey, SeenAgain]):
    """Differences seen again by entry, until flushed."""

    def add(self, entry: EntryKey, seen: SeenAgain) -> None:
        earlier = self.get(entry)
        if earlier is None:
            self[entry] = seen
        else:
            _add_later(earlier, seen)

    def absorb(self, later: Sightings) -> None:
        for entry, seen in later.items():
            self.add(entry, seen)


def _add_later(earlier: SeenAgain, later: SeenAgain) -> None:
    """Both counts, and the values of the later sighting."""
    earlier.times += later.times
    if later.last_seen_at >= earlier.last_seen_at:
        earlier.last_seen_at = later.last_seen_at
        earlier.legacy_value = later.legacy_value
        earlier.new_value = later.new_value
        earlier.stage = later.stage


async def add_sightings(session: AsyncSession, sightings: Mapping[EntryKey, SeenAgain]) -> int:
    """Add ``sightings`` to their entries (the caller commits): the count, and the last
    sighting's moment and values where it is the latest; how many entries it updated
    at most. Entries go in key order, so that concurrent writers lock them in the same
    order."""
    table: Table = MigrationMismatch.__table__  # type: ignore[assignment]

    def seen(column: str) -> Any:
        return bindparam(f"seen_{column}", type_=table.c[column].type)

    later = table.c.last_seen_at <= seen("last_seen_at")

    def latest(column: str) -> Any:
        return case((later, seen(column)), else_=table.c[column])

    statement = (
        table.update()
        .where(table.c.appointment_id == bindparam("entry_appointment", type_=table.c.id.type))
        .where(table.c.field == bindparam("entry_field"))
        .values(
            times_seen=table.c.times_seen + bindparam("seen_times_seen"),
            last_seen_at=latest("last_seen_at"),
            legacy_value=latest("legacy_value"),
            new_value=latest("new_value"),
            stage=latest("stage"),
        )
    )
    rows = [
        {
            "entry_appointment": appointment_id,
            "entry_field": field,
            "seen_times_seen": sighting.times,
            "seen_last_seen_at": sighting.last_seen_at,
            "seen_legacy_value": sighting.legacy_value,
            "seen_new_value": sighting.new_value,
            "seen_stage": sighting.stage,
        }
        for (appointment_id, field), sighting in sorted(sightings.items())
    ]
    connection = await session.connection()
    for start in range(0, len(rows), BATCH_ROWS):
        await connection.execute(statement, rows[start : start + BATCH_ROWS])
    return len(rows)


SEEN_AGAIN: BatchedCounts[Sightings] = BatchedCounts(
    Sightings,
    add_sightings,
    metrics.LEDGER_FLUSHES,
    logger,
    "could not add the differences seen again to the ledger; kept for later",
)
"""The process's differences seen again, until flushed."""
