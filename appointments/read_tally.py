"""Appointment sides read per clinic, minute and origin, tallied in this process and added
to the health counters every ``CLINIC_HEALTH_FLUSH_SECONDS``, for the dashboard's charts.

A read request costs a dictionary increment per clinic and origin, no SQL: one
upsert per process and interval carries them all. A process killed without a
clean stop loses what it tallied since its last flush; a failed flush keeps its
counts for the next one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.health import add_reads

logger = logging.getLogger("appointments.health")
FLUSH_FAILED = "could not add the tallied reads to the health counters"

Key = tuple[uuid.UUID, int, str]
"""(clinic, minute as seconds since the epoch divided by 60, origin)."""


class ReadTally:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._counts: Counter[Key] = Counter()
        self._lock = threading.Lock()

    def add(self, counts: Counter[tuple[uuid.UUID, str]]) -> None:
        """Count sides read now, per (clinic, origin)."""
        minute = int(self._clock() // 60)
        with self._lock:
            for (clinic_id, origin), count in counts.items():
                self._counts[(clinic_id, minute, origin)] += count

    async def flush(self, sessions: async_sessionmaker[AsyncSession]) -> int:
        """Add what was tallied to the health counters; how many (clinic, minute, origin)
        counts it wrote. On failure the counts are kept for the next flush and the error
        raised."""
        with self._lock:
            taken, self._counts = self._counts, Counter()
        if not taken:
            return 0
        reads = {
            (clinic_id, datetime.fromtimestamp(minute * 60, UTC), origin): count
            for (clinic_id, minute, origin), count in taken.items()
        }
        try:
            async with sessions() as session, session.begin():
                await add_reads(session, reads)
        except BaseException:
            with self._lock:
                self._counts.update(taken)
            raise
        return len(reads)

    async def flush_forever(
        self, sessions: Callable[[], async_sessionmaker[AsyncSession]], seconds: float
    ) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await self.flush(sessions())
            except Exception:
                logger.warning(
                    "could not add the tallied reads to the health counters", exc_info=True
                )


READS = ReadTally()
