"""Carrying out one pass's decisions: each move written, verified, then recorded.

A move is recorded as an ``intent`` (committed), then written to the flag with
one atomic call that touches only that clinic's pin, then verified by reading
the flag back and evaluating the moved clinic and a sample of the others. Only a
verified move is marked ``applied``, at the time the write returned (soak counts
from then). A write the flag refused, or one the flag does not show, is marked
``failed``; when the flag cannot be read back the intent stays open and the next
pass settles it (``settle_intents``) from the flag as it is then.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.backfill.options import BackfillOptions, Progress
from appointments.backfill.run import run_backfill
from appointments.models import RolloutAction, RolloutAudit, RolloutState
from appointments.rollout import audit
from appointments.rollout.decisions import Decision, Verdict
from appointments.rollout.flag import FlagWriteRefusedError, StageWriter
from appointments.stages import Stage

logger = logging.getLogger("appointments.rollout")
VERIFY_SAMPLE = 20
"""Other clinics evaluated after a move, besides the moved one."""

Clock = Callable[[], datetime]


@dataclass
class MoveOutcomes:
    """What became of each move of a pass (by clinic)."""

    applied: dict[uuid.UUID, Stage] = field(default_factory=dict)
    failed: dict[uuid.UUID, str] = field(default_factory=dict)
    unverified: dict[uuid.UUID, str] = field(default_factory=dict)
    disturbed: list[str] = field(default_factory=list)
    """Other clinics whose stage changed while a move was written (someone else's change)."""


async def apply_move(
    sessions: async_sessionmaker[AsyncSession],
    writer: StageWriter,
    decision: Decision,
    actor: str,
    before: Mapping[uuid.UUID, Stage],
    outcomes: MoveOutcomes,
    now: datetime,
    clock: Clock,
) -> None:
    """Intent, write, verify, record (see the module's docstring)."""
    assert decision.to_stage is not None
    clinic_id, wanted = decision.clinic_id, decision.to_stage
    action = RolloutAction(decision.verdict.value)
    async with sessions() as session, session.begin():
        intent = await audit.record(
            session,
            clinic_id,
            actor,
            action,
            decision.reason,
            decision.stage,
            wanted,
            decision.guards,
            RolloutState.INTENT,
            now,
        )
        intent_id = intent.id
    write_error: str | None = None
    try:
        await asyncio.to_thread(writer.set_stage, clinic_id, wanted)
    except FlagWriteRefusedError as error:
        await _finish(sessions, intent_id, RolloutState.FAILED, clock(), f"refused: {error}")
        outcomes.failed[clinic_id] = f"refused: {error}"
        return
    except Exception as error:
        write_error = _short(error)
        logger.warning("rollout: the flag write failed", extra={"audit_id": intent_id})
    written_at = clock()
    others = [c for c in before if c != clinic_id]
    sample = random.sample(others, min(VERIFY_SAMPLE, len(others)))
    try:
        view = await asyncio.to_thread(writer.read, [clinic_id, *sample])
    except Exception as error:
        problem = f"could not read the flag back ({_short(error)})"
        if write_error is not None:
            problem = f"the write failed ({write_error}) and {problem}"
        outcomes.unverified[clinic_id] = f"{problem}; the next pass settles it"
        return
    for other in sample:
        if view.stages.get(other) is not before[other]:
            outcomes.disturbed.append(
                f"{other}: {before[other]} -> {view.stages.get(other)} during the move of"
                f" {clinic_id} (a change made elsewhere)"
            )
    served = view.stages.get(clinic_id)
    if served is wanted:
        await _finish(sessions, intent_id, RolloutState.APPLIED, written_at, None)
        outcomes.applied[clinic_id] = wanted
        return
    problem = f"after the write the flag gives {served}, not {wanted}"
    if write_error is not None:
        problem = f"the write failed ({write_error}): {problem}"
    await _finish(sessions, intent_id, RolloutState.FAILED, written_at, problem)
    outcomes.failed[clinic_id] = problem


async def _finish(
    sessions: async_sessionmaker[AsyncSession],
    intent_id: int,
    state: RolloutState,
    at: datetime,
    problem: str | None,
) -> None:
    async with sessions() as session, session.begin():
        row = await session.get(RolloutAudit, intent_id)
        assert row is not None
        if problem is not None:
            row.reason = f"{row.reason} [failed: {problem}]"
        await mark(session, row, state, at)


async def mark(session: AsyncSession, row: RolloutAudit, state: RolloutState, at: datetime) -> None:
    """Settle an intent: ``applied`` (a step back then holds the clinic) or not."""
    row.state = state.value
    row.at = at
    await session.flush()
    audit.log(row)
    if state is RolloutState.APPLIED and row.action == RolloutAction.STEP_BACK.value:
        await audit.hold(session, row.clinic_id, row.reason, row.actor, row.guards, at)


async def settle_intents(
    sessions: async_sessionmaker[AsyncSession],
    flag: Mapping[uuid.UUID, Stage],
    repaired: list[str],
) -> None:
    """Intents a killed or cut-off pass left: applied when the flag shows their stage (at
    the intent's own time: the flag changed right after it was written), else abandoned."""
    async with sessions() as session, session.begin():
        for intent in await audit.intents(session):
            actual = flag.get(intent.clinic_id)
            if actual is not None and actual.value == intent.to_stage:
                await mark(session, intent, RolloutState.APPLIED, intent.at)
                repaired.append(f"{intent.clinic_id}: {intent.action} applied")
            else:
                intent.state = RolloutState.ABANDONED.value
                audit.log(intent)
                repaired.append(f"{intent.clinic_id}: {intent.action} abandoned")


async def record_switch(
    sessions: async_sessionmaker[AsyncSession],
    clinic_ids: list[uuid.UUID],
    switched_off: str | None,
    observer: str,
    now: datetime,
) -> None:
    """Audit, once per clinic of the plan, that the autopilot paused (the flag was switched
    off) or resumed (switched on again)."""
    wanted = RolloutAction.PAUSE if switched_off is not None else RolloutAction.RESUME
    async with sessions() as session, session.begin():
        latest = await audit.last_switches(session)
        for clinic_id in clinic_ids:
            last = latest.get(clinic_id)
            if wanted is RolloutAction.PAUSE and last == RolloutAction.PAUSE.value:
                continue
            if wanted is RolloutAction.RESUME and last != RolloutAction.PAUSE.value:
                continue
            reason = (
                f"paused: {switched_off}; nothing is written until it is switched on"
                if switched_off is not None
                else "resumed: the flag is switched on again"
            )
            await audit.record(session, clinic_id, observer, wanted, reason, now=now)


async def backfill_clinic(
    sessions: async_sessionmaker[AsyncSession],
    decision: Decision,
    actor: str,
    clock: Clock,
) -> str | None:
    """Link the clinic's rows booked before ``dual_write`` (the plan said ``backfill =
    true``), auditing its start and end with its progress; the promotion follows on a later
    pass, from fresh evidence. Returns the problem when it failed."""
    assert decision.verdict is Verdict.BACKFILL
    async with sessions() as session, session.begin():
        await audit.record(
            session,
            decision.clinic_id,
            actor,
            RolloutAction.BACKFILL,
            f"backfill started: {decision.reason}",
            decision.stage,
            guards=decision.guards,
            state=RolloutState.INTENT,
            now=clock(),
        )
    try:
        summary = await run_backfill(
            sessions, BackfillOptions(clinic_id=decision.clinic_id), _log_progress
        )
    except Exception as error:
        problem = _short(error)
        await _close_backfill(sessions, decision.clinic_id, RolloutState.FAILED, problem, clock())
        return problem
    linked = ", ".join(f"{count} {side} links" for side, count in summary.linked.items())
    await _close_backfill(
        sessions,
        decision.clinic_id,
        RolloutState.APPLIED,
        f"backfill finished: {linked} in {summary.batches} batches",
        clock(),
    )
    return None


async def _close_backfill(
    sessions: async_sessionmaker[AsyncSession],
    clinic_id: uuid.UUID,
    state: RolloutState,
    outcome: str,
    at: datetime,
) -> None:
    async with sessions() as session, session.begin():
        row = await session.scalar(
            select(RolloutAudit)
            .where(RolloutAudit.clinic_id == clinic_id)
            .where(RolloutAudit.action == RolloutAction.BACKFILL.value)
            .where(RolloutAudit.state == RolloutState.INTENT.value)
            .order_by(RolloutAudit.id.desc())
        )
        if row is None:
            return
        row.reason = f"{row.reason} [{outcome}]"
        row.state = state.value
        row.at = at
        audit.log(row)


def _log_progress(progress: Progress) -> None:
    logger.info(
        "rollout backfill progress",
        extra={"done": progress.done, "total": progress.total, "batches": progress.batches},
    )


def _short(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:300]
