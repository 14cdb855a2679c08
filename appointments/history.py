"""Each clinic's last day, for the dashboard's charts: reads by origin, read fallbacks,
failed writes (the health counters), new mismatches (the ledger's first sightings) and
stage changes (the rollout audit trail), in equal buckets from ``now - WINDOW`` to now."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from appointments.models import (
    ClinicHealthCounter,
    MigrationMismatch,
    RolloutAudit,
    RolloutState,
    utcnow,
)
from appointments.stages import Stage

WINDOW = timedelta(hours=24)
BUCKETS = 48
SERIES = ("reads_legacy", "reads_new", "read_fallbacks", "new_mismatches", "write_failures")


@dataclass(frozen=True, slots=True)
class StageChange:
    at: datetime
    from_stage: Stage | None
    to_stage: Stage
    actor: str
    reason: str


@dataclass
class ClinicHistory:
    """``series`` maps each of ``SERIES`` to ``BUCKETS`` counts, oldest first; ``changes``
    are the applied stage changes of the window, ``stage_before`` the stage the last
    change before it set (None when the trail has none)."""

    start: datetime
    end: datetime
    series: dict[str, list[int]] = field(
        default_factory=lambda: {name: [0] * BUCKETS for name in SERIES}
    )
    changes: list[StageChange] = field(default_factory=list)
    stage_before: Stage | None = None

    def bucket_of(self, moment: datetime) -> int:
        share = (moment - self.start) / (self.end - self.start)
        return min(BUCKETS - 1, max(0, int(share * BUCKETS)))

    def total(self, name: str) -> int:
        return sum(self.series[name])


async def clinic_histories(
    session: AsyncSession, clinic_ids: Sequence[uuid.UUID], now: datetime | None = None
) -> dict[uuid.UUID, ClinicHistory]:
    """The last ``WINDOW`` of each clinic in ``clinic_ids`` (three queries)."""
    end = now or utcnow()
    start = end - WINDOW
    histories = {clinic_id: ClinicHistory(start, end) for clinic_id in clinic_ids}
    if not histories:
        return histories
    wanted = list(histories)
    counters = await session.execute(
        select(
            ClinicHealthCounter.clinic_id,
            ClinicHealthCounter.minute,
            ClinicHealthCounter.reads_legacy,
            ClinicHealthCounter.reads_new,
            ClinicHealthCounter.read_fallbacks,
            ClinicHealthCounter.write_failures,
        ).where(
            ClinicHealthCounter.clinic_id.in_(wanted),
            ClinicHealthCounter.minute >= start,
            ClinicHealthCounter.minute <= end,
        )
    )
    for clinic_id, minute, legacy, new, fallbacks, failures in counters:
        history = histories[clinic_id]
        bucket = history.bucket_of(minute)
        for name, count in (
            ("reads_legacy", legacy),
            ("reads_new", new),
            ("read_fallbacks", fallbacks),
            ("write_failures", failures),
        ):
            history.series[name][bucket] += count
    mismatches = await session.execute(
        select(MigrationMismatch.clinic_id, MigrationMismatch.first_seen_at).where(
            MigrationMismatch.clinic_id.in_(wanted),
            MigrationMismatch.first_seen_at >= start,
            MigrationMismatch.first_seen_at <= end,
        )
    )
    for clinic_id, first_seen in mismatches:
        history = histories[clinic_id]
        history.series["new_mismatches"][history.bucket_of(first_seen)] += 1
    changes = await session.execute(
        select(RolloutAudit)
        .where(
            RolloutAudit.clinic_id.in_(wanted),
            RolloutAudit.state == RolloutState.APPLIED.value,
            RolloutAudit.to_stage.is_not(None),
            RolloutAudit.at <= end,
        )
        .order_by(RolloutAudit.at, RolloutAudit.id)
    )
    for entry in changes.scalars():
        history = histories[entry.clinic_id]
        if entry.to_stage is None:
            continue
        to_stage = Stage(entry.to_stage)
        if entry.at < start:
            history.stage_before = to_stage
            continue
        from_stage = None if entry.from_stage is None else Stage(entry.from_stage)
        history.changes.append(
            StageChange(entry.at, from_stage, to_stage, entry.actor, entry.reason)
        )
    return histories
