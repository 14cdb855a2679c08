"""One pass of the rollout autopilot: observe, reconcile, decide, apply, record.

Nothing is kept between passes: every decision is derived from the database
(audit trail, holds, evidence) and the flag as it is now, so a pass can run from
cron, two runs can be started at once (one pass at a time holds
``lock.pass_lock``; the other skips), and a run killed at any point is
repaired by the next pass:

1. the flag is read for every clinic;
2. intents left by a killed pass are settled: applied when the flag shows their
   stage, abandoned when it does not (the decision is then taken afresh);
3. a stage the flag gives that the audit trail does not know (a change made in
   Unleash or in the file by hand) is recorded as ``observed_change``;
4. each clinic of the plan gets a decision (``decisions.decide``);
5. each move is written as an intent, then the flag, then marked applied (a step
   back also holds the clinic), each step committed;
6. the decisions are stored for the dashboard (``rollout_status``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.models import (
    Clinic,
    RolloutAction,
    RolloutAudit,
    RolloutState,
    RolloutStatus,
)
from appointments.rollout import audit
from appointments.rollout.decisions import ClinicState, Decision, Verdict, decide
from appointments.rollout.evidence import gather
from appointments.rollout.plan import STAGE_ORDER, Plan, stable_rank
from appointments.stages import Stage

logger = logging.getLogger("appointments.rollout")
AUTOPILOT = "autopilot"


class StageWriter(Protocol):
    """Where the flag lives: what it gives each clinic now, and how to pin one clinic."""

    @property
    def observer(self) -> str:
        """The actor of a change seen in the flag but made elsewhere (``unleash``,
        ``flags-file``)."""
        ...

    def stages(self, clinic_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Stage]:
        """The stage the flag gives each clinic now; raises when the flag cannot be read."""
        ...

    def set_stage(self, clinic_id: uuid.UUID, stage: Stage) -> None: ...


@dataclass
class PassReport:
    decisions: list[Decision] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    observed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    names: dict[uuid.UUID, str] = field(default_factory=dict)

    @property
    def moves(self) -> list[Decision]:
        return [d for d in self.decisions if d.verdict in (Verdict.PROMOTE, Verdict.STEP_BACK)]


async def run_pass(
    sessions: async_sessionmaker[AsyncSession],
    plan: Plan,
    writer: StageWriter,
    now: datetime,
    dry_run: bool = False,
    legacy_columns: bool = True,
    actor: str = AUTOPILOT,
) -> PassReport:
    """One pass (the caller holds ``lock.pass_lock`` unless ``dry_run``); with ``dry_run``
    it writes nothing and reports what it would do."""
    report = PassReport()
    async with sessions() as session:
        clinics = (await session.execute(select(Clinic.id, Clinic.name))).all()
    report.names = {row.id: row.name for row in clinics}
    flag = await asyncio.to_thread(writer.stages, list(report.names))
    if not dry_run:
        await _settle_intents(sessions, flag, report, now)
        await _observe(sessions, flag, writer.observer, report, now)
    async with sessions() as session:
        changes = await audit.last_changes(session)
        releases = await audit.last_releases(session)
        holds = await audit.holds(session)
        moves_left = plan.max_moves_per_hour - await audit.promotions_since(
            session, audit.hour_before(now)
        )
    cohorts = plan.assign(list(report.names))
    order = {cohort.name: index for index, cohort in enumerate(plan.cohorts)}
    members = sorted(cohorts, key=lambda c: (order[cohorts[c]], stable_rank(c)))
    windows = {}
    for clinic_id in members:
        change = changes.get(clinic_id)
        entered = now if change is None or change.stage is not flag[clinic_id] else change.at
        released = releases.get(clinic_id)
        windows[clinic_id] = (flag[clinic_id], max(entered, released or entered))
    evidence = await gather(sessions, windows, legacy_columns)
    unfinished = _unfinished_cohort(plan, members, cohorts, flag, holds)
    for clinic_id in members:
        cohort = cohorts[clinic_id]
        hold = holds.get(clinic_id)
        state = ClinicState(
            clinic_id,
            cohort,
            flag[clinic_id],
            None if hold is None else hold.reason,
            unfinished.get(order[cohort]),
        )
        decision = decide(plan, state, evidence[clinic_id], now, moves_left)
        if decision.verdict is Verdict.PROMOTE:
            moves_left -= 1
        report.decisions.append(decision)
    if not dry_run:
        for decision in report.decisions:
            await _apply(sessions, writer, decision, actor, report, now)
        await _store_status(sessions, plan, report, now)
    return report


def _unfinished_cohort(
    plan: Plan,
    members: Sequence[uuid.UUID],
    cohorts: dict[uuid.UUID, str],
    flag: dict[uuid.UUID, Stage],
    holds: Collection[uuid.UUID],
) -> dict[int, str]:
    """For each cohort position, the first earlier cohort with a clinic short of the target
    or held (later cohorts wait for it)."""
    target = STAGE_ORDER.index(plan.target)
    first_unfinished: str | None = None
    waiting: dict[int, str] = {}
    for index, cohort in enumerate(plan.cohorts):
        if first_unfinished is not None:
            waiting[index] = first_unfinished
        done = all(
            STAGE_ORDER.index(flag[c]) >= target and c not in holds
            for c in members
            if cohorts[c] == cohort.name
        )
        if not done and first_unfinished is None:
            first_unfinished = cohort.name
    return waiting


async def _settle_intents(
    sessions: async_sessionmaker[AsyncSession],
    flag: dict[uuid.UUID, Stage],
    report: PassReport,
    now: datetime,
) -> None:
    async with sessions() as session, session.begin():
        for intent in await audit.intents(session):
            actual = flag.get(intent.clinic_id)
            if actual is not None and actual.value == intent.to_stage:
                await _mark_applied(session, intent, now)
                report.repaired.append(f"{intent.clinic_id}: {intent.action} applied")
            else:
                intent.state = RolloutState.ABANDONED.value
                audit.log(intent)
                report.repaired.append(f"{intent.clinic_id}: {intent.action} abandoned")


async def _mark_applied(session: AsyncSession, intent: RolloutAudit, now: datetime) -> None:
    intent.state = RolloutState.APPLIED.value
    intent.at = now
    await session.flush()
    audit.log(intent)
    if intent.action == RolloutAction.STEP_BACK.value:
        await audit.hold(session, intent.clinic_id, intent.reason, intent.actor, intent.guards, now)


async def _observe(
    sessions: async_sessionmaker[AsyncSession],
    flag: dict[uuid.UUID, Stage],
    observer: str,
    report: PassReport,
    now: datetime,
) -> None:
    async with sessions() as session, session.begin():
        changes = await audit.last_changes(session)
        for clinic_id, stage in flag.items():
            change = changes.get(clinic_id)
            if change is not None and change.stage is stage:
                continue
            reason = (
                f"first seen by the autopilot at {stage}"
                if change is None
                else f"the flag gives {stage}; the audit trail had {change.stage}"
            )
            await audit.record(
                session,
                clinic_id,
                observer,
                RolloutAction.OBSERVED_CHANGE,
                reason,
                None if change is None else change.stage,
                stage,
                now=now,
            )
            report.observed.append(f"{clinic_id}: {reason}")


async def _apply(
    sessions: async_sessionmaker[AsyncSession],
    writer: StageWriter,
    decision: Decision,
    actor: str,
    report: PassReport,
    now: datetime,
) -> None:
    if decision.verdict is Verdict.HOLD:
        async with sessions() as session, session.begin():
            await audit.hold(
                session, decision.clinic_id, decision.reason, actor, decision.guards, now
            )
        return
    if decision.to_stage is None:
        return
    action = RolloutAction(decision.verdict.value)
    async with sessions() as session, session.begin():
        intent = await audit.record(
            session,
            decision.clinic_id,
            actor,
            action,
            decision.reason,
            decision.stage,
            decision.to_stage,
            decision.guards,
            RolloutState.INTENT,
            now,
        )
        intent_id = intent.id
    try:
        await asyncio.to_thread(writer.set_stage, decision.clinic_id, decision.to_stage)
    except Exception as error:
        report.errors.append(f"{decision.clinic_id}: writing the flag failed: {error}")
        logger.exception("rollout: writing the flag failed", extra={"audit_id": intent_id})
        return
    async with sessions() as session, session.begin():
        row = await session.get(RolloutAudit, intent_id)
        assert row is not None
        await _mark_applied(session, row, now)


async def _store_status(
    sessions: async_sessionmaker[AsyncSession], plan: Plan, report: PassReport, now: datetime
) -> None:
    async with sessions() as session, session.begin():
        await session.execute(delete(RolloutStatus))
        for decision in report.decisions:
            moved = decision.verdict in (Verdict.PROMOTE, Verdict.STEP_BACK)
            stage = decision.to_stage if moved and decision.to_stage else decision.stage
            session.add(
                RolloutStatus(
                    clinic_id=decision.clinic_id,
                    evaluated_at=now,
                    cohort=decision.cohort,
                    stage=stage.value,
                    target=plan.target.value,
                    next_step=decision.next_step(applied=True),
                    blocking=decision.blocking,
                    held=decision.verdict in (Verdict.HELD, Verdict.HOLD, Verdict.STEP_BACK),
                )
            )
