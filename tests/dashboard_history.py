"""A day of history for the demo clinics, written through the domain's own writers (the
health counters' upserts, the rollout audit trail) and as ledger rows: what the
dashboard's charts draw in the tests."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from appointments.health import READ_FALLBACK, WRITE_FAILURE, add_counts, add_reads
from appointments.history import SERIES
from appointments.models import Appointment, MigrationMismatch, RolloutAction
from appointments.rollout import audit
from appointments.seed import DEMO_CLINICS, demo_id
from appointments.stages import Stage

STEP = timedelta(minutes=5)
STEPS = 287  # the last 24 hours, the oldest step well inside the window
SERVES_NEW = {Stage.LIVE, Stage.RAMPDOWN, Stage.COMPLETE}


@dataclass(frozen=True)
class Move:
    hours_ago: float
    from_stage: Stage
    to_stage: Stage


# Some demo clinics' moves over the day, oldest first (each ends in its demo stage).
MOVES = {
    "Riverside Clinic": [Move(10, Stage.DUAL_WRITE, Stage.SHADOW)],
    "Hillcrest Medical": [
        Move(20, Stage.DUAL_WRITE, Stage.SHADOW),
        Move(6, Stage.SHADOW, Stage.LIVE),
    ],
    "Lakeview Care": [Move(3, Stage.LIVE, Stage.RAMPDOWN)],
}


@dataclass
class Seeded:
    """What was written, per clinic."""

    totals: dict[str, Counter[uuid.UUID]] = field(
        default_factory=lambda: {name: Counter() for name in SERIES}
    )


def stage_at(moves: list[Move], stage_now: Stage, hours_ago: float) -> Stage:
    stage = moves[0].from_stage if moves else stage_now
    for move in moves:
        if move.hours_ago > hours_ago:
            stage = move.to_stage
    return stage


def hours_since_move(moves: list[Move], hours_ago: float) -> float | None:
    since = [move.hours_ago - hours_ago for move in moves if move.hours_ago >= hours_ago]
    return min(since, default=None)


async def seed_history(session: AsyncSession, now: datetime) -> Seeded:
    """Reads every five minutes with a wave, fallbacks for two hours after each move into a
    stage that serves the new side, failed writes in Lakeview every two hours, and new
    mismatches thinning out after each move into a compared stage; the caller commits."""
    seeded = Seeded()
    for number, (name, stage_now) in enumerate(DEMO_CLINICS):
        clinic_id = demo_id("clinic", number)
        moves = MOVES.get(name, [])
        reads: dict[tuple[uuid.UUID, datetime, str], int] = {}
        for step in range(STEPS):
            moment = (now - step * STEP).replace(second=0, microsecond=0)
            hours_ago = (now - moment) / timedelta(hours=1)
            origin = "new" if stage_at(moves, stage_now, hours_ago) in SERVES_NEW else "legacy"
            volume = 20 + (step * 7 + number * 13) % 30
            reads[(clinic_id, moment, origin)] = volume
            seeded.totals[f"reads_{origin}"][clinic_id] += volume
            since = hours_since_move(moves, hours_ago)
            fallbacks = 0
            if origin == "new" and since is not None and since < 2:
                fallbacks = max(0, 9 - int(since * 4))
            failures = 2 if name == "Lakeview Care" and step % 24 == 5 else 0
            if fallbacks or failures:
                counts = Counter(
                    {(clinic_id, READ_FALLBACK): fallbacks, (clinic_id, WRITE_FAILURE): failures}
                )
                await add_counts(session, counts, now=moment)
                seeded.totals["read_fallbacks"][clinic_id] += fallbacks
                seeded.totals["write_failures"][clinic_id] += failures
        await add_reads(session, reads)
        for index, move in enumerate(moves):
            await audit.record(
                session,
                clinic_id,
                "autopilot",
                RolloutAction.PROMOTE,
                f"soaked in {move.from_stage.value}",
                move.from_stage,
                move.to_stage,
                now=now - timedelta(hours=move.hours_ago),
            )
            seeded.totals["new_mismatches"][clinic_id] += await _mismatches(
                session, clinic_id, move, index, now
            )
    return seeded


async def _mismatches(
    session: AsyncSession, clinic_id: uuid.UUID, move: Move, index: int, now: datetime
) -> int:
    """Ledger entries first seen after ``move``, fewer each hour (a backfill catching up)."""
    appointments = (
        await session.scalars(
            select(Appointment.id)
            .where(Appointment.clinic_id == clinic_id)
            .order_by(Appointment.id)
            .offset(20 * index)
            .limit(20)
        )
    ).all()
    added = 0
    for n, appointment_id in enumerate(appointments):
        seen = now - timedelta(hours=move.hours_ago) + timedelta(minutes=3 + n * n)
        if seen >= now:
            break
        session.add(
            MigrationMismatch(
                appointment_id=appointment_id,
                clinic_id=clinic_id,
                field="doctor" if n % 2 else "patient",
                legacy_value=None,
                new_value=None,
                stage=move.to_stage.value,
                first_seen_at=seen,
                last_seen_at=seen,
                times_seen=1,
            )
        )
        added += 1
    await session.flush()
    return added
