"""Appointment sides read per clinic, minute and origin, tallied in this process and added
to the health counters every ``CLINIC_HEALTH_FLUSH_SECONDS``, for the dashboard's charts.

A read request costs a dictionary increment per clinic and origin, no SQL: one
upsert per process and interval carries them all (``appointments.batched``). A
process killed without a clean stop loses what it tallied since its last flush; a
failed flush keeps its counts for the next one.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from appointments.batched import BatchedCounts
from appointments.health import add_reads

logger = logging.getLogger("appointments.health")
FLUSH_FAILED = "could not add the tallied reads to the health counters"

Key = tuple[uuid.UUID, int, str]
"""(clinic, minute as seconds since the epoch divided by 60, origin)."""


class Tallied(Counter[Key]):
    """Sides read, not yet added to the health counters."""

    def absorb(self, later: Tallied) -> None:
        self.update(later)


class ReadTally(BatchedCounts[Tallied]):
    """``flush`` adds what was tallied to the health counters and says how many
    (clinic, minute, origin) counts it wrote."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__(Tallied, _add_tallied, None, logger, FLUSH_FAILED)
        self._clock = clock

    def add(self, counts: Counter[tuple[uuid.UUID, str]]) -> None:
        """Count sides read now, per (clinic, origin)."""
        minute = int(self._clock() // 60)
        with self.lock:
            pending = self.pending
            for (clinic_id, origin), count in counts.items():
                pending[(clinic_id, minute, origin)] += count


async def _add_tallied(session: AsyncSession, tallied: Tallied) -> int:
    reads = {
        (clinic_id, datetime.fromtimestamp(minute * 60, UTC), origin): count
        for (clinic_id, minute, origin), count in tallied.items()
    }
    await add_reads(session, reads)
    return len(reads)


READS = ReadTally()
