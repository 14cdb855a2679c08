"""Recent activity: reads and writes per stage over the last minutes, of the whole fleet.

Prometheus counters answer "how many since start" per process; the dashboard wants
"how many lately" across every instance without a Prometheus server. Each process
counts per minute in memory (a dictionary increment per read or write, no SQL) and
adds its counts to ``stage_activity`` every ``CLINIC_HEALTH_FLUSH_SECONDS`` (one
upsert, ``appointments.batched``), as the health counters are; the dashboard sums
the table's last minutes. A process killed without a clean stop loses what it
counted since its last flush.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from appointments.batched import BatchedCounts
from appointments.models import StageActivity

WINDOW_MINUTES = 15
KEPT_MINUTES = 60
"""Rows older than this are removed by the flushes: the dashboard shows the last 15."""
logger = logging.getLogger("appointments.activity")

Key = tuple[int, str, str]
"""(minute as seconds since the epoch divided by 60, kind, stage)."""


class Counted(Counter[Key]):
    """Reads and writes not yet added to ``stage_activity``."""

    def absorb(self, later: Counted) -> None:
        self.update(later)


class RecentActivity(BatchedCounts[Counted]):
    """``flush`` adds what was counted to ``stage_activity``, removes rows past
    ``KEPT_MINUTES`` and says how many rows it added to."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__(
            Counted, self._add, None, logger, "could not add the recent activity to the database"
        )
        self.clock = clock
        self._recorded: Counter[tuple[str, str]] = Counter()

    def record(self, kind: str, stage: str, count: int = 1) -> None:
        """Count reads or writes (``kind``) served in ``stage``."""
        minute = int(self.clock() // 60)
        with self.lock:
            self.pending[(minute, kind, stage)] += count
            self._recorded[(kind, stage)] += count

    def totals(self) -> Counter[tuple[str, str]]:
        """(kind, stage) counts this process recorded since it started."""
        with self.lock:
            return Counter(self._recorded)

    async def _add(self, session: AsyncSession, counted: Counted) -> int:
        rows = [
            {"minute": _moment(minute), "kind": kind, "stage": stage, "count": count}
            for (minute, kind, stage), count in counted.items()
        ]
        oldest = _moment(int(self.clock() // 60) - KEPT_MINUTES)
        dialect = session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(StageActivity).values(rows)
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=[StageActivity.minute, StageActivity.kind, StageActivity.stage],
                set_={"count": StageActivity.count + statement.excluded.count},
            )
        )
        await session.execute(delete(StageActivity).where(StageActivity.minute < oldest))
        return len(rows)


async def fleet_totals(
    session: AsyncSession, minutes: int = WINDOW_MINUTES, now: datetime | None = None
) -> Counter[tuple[str, str]]:
    """(kind, stage) counts of every process over the last ``minutes`` minutes (the current
    one included), as far as each has flushed."""
    end = now or datetime.now(UTC)
    since = end.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
    rows = await session.execute(
        select(StageActivity.kind, StageActivity.stage, func.sum(StageActivity.count))
        .where(StageActivity.minute >= since)
        .group_by(StageActivity.kind, StageActivity.stage)
    )
    return Counter({(kind, stage): int(total) for kind, stage, total in rows})


def _moment(minute: int) -> datetime:
    return datetime.fromtimestamp(minute * 60, UTC)


RECENT = RecentActivity()
