"""The batch loop: window after window, each one short transaction, sized and paced,
with its checkpoint committed in the same transaction."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import ColumnElement, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.backfill.options import (
    BackfillOptions,
    BackfillSummary,
    Direction,
    Progress,
    ProgressCallback,
)
from appointments.backfill.pacing import BatchSizer, Pacing, Throttle, database_probe
from appointments.backfill.preview import preview, remaining_after
from appointments.backfill.statements import (
    Position,
    count_work,
    create_memberships,
    link_window,
    next_window,
)
from appointments.db import dialect_of
from appointments.models import BackfillCheckpoint, utcnow
from appointments.sides import SIDES

logger = logging.getLogger("appointments.backfill")


async def run_backfill(
    sessions: async_sessionmaker[AsyncSession],
    options: BackfillOptions,
    on_progress: ProgressCallback | None = None,
    pacing: Pacing | None = None,
) -> BackfillSummary:
    """Run (or, with ``dry_run``, preview) a backfill; what it did.

    Each batch is one transaction: the next window of appointments needing work,
    forward with ``create_memberships`` the memberships its rows lack, its links
    filled, and the checkpoint. A run resumes from an unfinished checkpoint of the
    same direction and scope unless ``restart``; a run that finds nothing to do
    changes no appointment. Between batches it waits while the throttle finds the database
    busy. ``on_progress`` is called after every batch and when a pause starts; an
    exception it raises stops the run after a committed batch, as a crash would.
    """
    pacing = pacing or Pacing()
    summary = BackfillSummary(options.direction, options.scope, options.dry_run)
    if options.dry_run:
        await preview(sessions, options, summary)
        return summary
    started = pacing.clock()
    async with sessions() as session, session.begin():
        checkpoint = await _start(session, options)
        summary.resumed = checkpoint.batches > 0
        after = _position(checkpoint)
        total = await count_work(session, options.direction, options.clinic_id, after)
    _restore(summary, checkpoint)
    sizer = BatchSizer(options.batch_size, options.batch_seconds)
    done = 0
    last_seconds = 0.0
    last_finished = started

    def progress(paused: str | None = None) -> Progress:
        elapsed = last_finished - started
        return Progress(
            done,
            total,
            summary.batches,
            sizer.size,
            last_seconds,
            done / elapsed if elapsed > 0 else 0.0,
            paused,
        )

    def paused(reason: str) -> None:
        if on_progress is not None:
            on_progress(progress(reason))

    throttle = _throttle(sessions, options, pacing, paused)
    while True:
        summary.paused_seconds += await throttle.wait(sessions)
        batch_started = pacing.clock()
        async with sessions() as session, session.begin():
            found = await next_window(
                session, options.direction, options.clinic_id, after, sizer.size
            )
            if found is None:
                await _finish(session, options)
                break
            rows, window = found
            now = utcnow()
            if options.direction is Direction.FORWARD and options.create_memberships:
                for side in SIDES:
                    created = await create_memberships(session, side, window, now)
                    summary.created_memberships[side.name] += created
            linked = await link_window(session, options.direction, window, now)
            for name, count in linked.items():
                summary.linked[name] += count
            summary.batches += 1
            await _save(session, options, window.upper, summary)
        last_finished = pacing.clock()
        last_seconds = last_finished - batch_started
        after = window.upper
        done += rows
        sizer.record(rows, last_seconds)
        if on_progress is not None:
            on_progress(progress())
    summary.remaining = await remaining_after(sessions, options)
    return summary


def _throttle(
    sessions: async_sessionmaker[AsyncSession],
    options: BackfillOptions,
    pacing: Pacing,
    on_pause: Callable[[str], None],
) -> Throttle:
    dialect = dialect_of(sessions)
    probe = pacing.probe or database_probe(dialect)
    throttle = Throttle(options.throttle, probe, pacing.sleep, on_pause)
    if probe is None:
        logger.info(
            "backfill throttle: none, %s has no load probe; batches run back to back", dialect
        )
    elif throttle.probing:
        limits = options.throttle
        logger.info(
            "backfill throttle: pause above %s active backends or %s s of replica lag",
            limits.max_active_backends,
            limits.max_replica_lag_seconds,
        )
    return throttle


def _position(checkpoint: BackfillCheckpoint) -> Position | None:
    if checkpoint.last_appointment_id is None or checkpoint.last_created_at is None:
        return None
    return Position(checkpoint.last_created_at, checkpoint.last_appointment_id)


async def _start(session: AsyncSession, options: BackfillOptions) -> BackfillCheckpoint:
    """The run's checkpoint: an unfinished one to resume, or a new or reset one."""
    checkpoint = await session.get(
        BackfillCheckpoint, (options.direction.value, options.scope), with_for_update=True
    )
    now = utcnow()
    if checkpoint is not None and checkpoint.finished_at is None and not options.restart:
        return checkpoint
    if checkpoint is None:
        checkpoint = BackfillCheckpoint(direction=options.direction.value, scope=options.scope)
        session.add(checkpoint)
    checkpoint.last_appointment_id = None
    checkpoint.last_created_at = None
    checkpoint.batches = 0
    checkpoint.linked_doctors = checkpoint.linked_patients = 0
    checkpoint.created_doctor_memberships = checkpoint.created_patient_memberships = 0
    checkpoint.started_at = checkpoint.updated_at = now
    checkpoint.finished_at = None
    await session.flush()
    return checkpoint


def _restore(summary: BackfillSummary, checkpoint: BackfillCheckpoint) -> None:
    summary.batches = checkpoint.batches
    summary.linked = {"doctor": checkpoint.linked_doctors, "patient": checkpoint.linked_patients}
    summary.created_memberships = {
        "doctor": checkpoint.created_doctor_memberships,
        "patient": checkpoint.created_patient_memberships,
    }


def _checkpoint_of(options: BackfillOptions) -> tuple[ColumnElement[bool], ...]:
    return (
        BackfillCheckpoint.direction == options.direction.value,
        BackfillCheckpoint.scope == options.scope,
    )


async def _save(
    session: AsyncSession, options: BackfillOptions, upper: Position, summary: BackfillSummary
) -> None:
    await session.execute(
        update(BackfillCheckpoint)
        .where(*_checkpoint_of(options))
        .values(
            last_appointment_id=upper.id,
            last_created_at=upper.created_at,
            batches=summary.batches,
            linked_doctors=summary.linked["doctor"],
            linked_patients=summary.linked["patient"],
            created_doctor_memberships=summary.created_memberships["doctor"],
            created_patient_memberships=summary.created_memberships["patient"],
            updated_at=utcnow(),
        )
    )


async def _finish(session: AsyncSession, options: BackfillOptions) -> None:
    now = utcnow()
    await session.execute(
        update(BackfillCheckpoint)
        .where(*_checkpoint_of(options))
        .values(finished_at=now, updated_at=now)
    )
