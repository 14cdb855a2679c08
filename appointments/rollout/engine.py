"""One pass of the rollout autopilot: observe, reconcile, decide, apply, record.

Nothing is kept between passes: every decision is derived from the database
(audit trail, holds, evidence) and the flag as it is now, so a pass can run from
cron, two runs can be started at once (one pass at a time holds
``lock.pass_lock``; the other skips), and a run killed at any point is
repaired by the next pass:

1. the flag is read for every clinic (stages, the kill switch, strategies made by
   hand that claim clinics);
2. intents left by a killed pass are settled: applied when the flag shows their
   stage, abandoned when it does not (the decision is then taken afresh);
3. a stage the flag gives that the audit trail does not know (a change made in
   Unleash or in the file by hand) is recorded as ``observed_change``; the kill
   switch being thrown or released is recorded once as ``pause`` or ``resume``;
4. each clinic of the plan gets a decision (``decisions.decide``);
5. unless the flag is switched off, each move is carried out by ``moves.apply_move``
   (intent, one atomic write, read back, then applied or failed), each backfill by
   ``moves.backfill_clinic``;
6. the decisions and their outcomes are stored for the dashboard (``rollout_status``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.models import (
    Clinic,
    RolloutAction,
    RolloutStatus,
    utcnow,
)
from appointments.rollout import audit
from appointments.rollout.decisions import ClinicState, Decision, Verdict, decide
from appointments.rollout.evidence import gather
from appointments.rollout.flag import StageWriter
from appointments.rollout.moves import (
    Clock,
    MoveOutcomes,
    apply_move,
    backfill_clinic,
    record_switch,
    settle_intents,
)
from appointments.rollout.plan import Plan, stable_rank
from appointments.stages import STAGE_ORDER, Stage

logger = logging.getLogger("appointments.rollout")
AUTOPILOT = "autopilot"
MOVES = (Verdict.PROMOTE, Verdict.STEP_BACK)


@dataclass
class PassReport:
    decisions: list[Decision] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    observed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    names: dict[uuid.UUID, str] = field(default_factory=dict)
    paused: str | None = None
    """Why nothing was written this pass (the flag is switched off), or None."""
    outcomes: MoveOutcomes = field(default_factory=MoveOutcomes)
    backfilled: list[uuid.UUID] = field(default_factory=list)

    @property
    def moves(self) -> list[Decision]:
        """The moves decided (applied or not: see ``outcomes``)."""
        return [d for d in self.decisions if d.verdict in MOVES]

    @property
    def complete(self) -> bool:
        """Every clinic of the plan is at the target and none is held or failing."""
        return (
            bool(self.decisions)
            and all(d.verdict is Verdict.DONE for d in self.decisions)
            and not self.errors
        )


async def run_pass(
    sessions: async_sessionmaker[AsyncSession],
    plan: Plan,
    writer: StageWriter,
    now: datetime,
    dry_run: bool = False,
    actor: str = AUTOPILOT,
    clock: Clock = utcnow,
) -> PassReport:
    """One pass (the caller holds ``lock.pass_lock`` unless ``dry_run``); with ``dry_run``
    it writes nothing and reports what it would do."""
    report = PassReport()
    async with sessions() as session:
        clinics = (await session.execute(select(Clinic.id, Clinic.name))).all()
    report.names = {row.id: row.name for row in clinics}
    view = await asyncio.to_thread(writer.read, list(report.names))
    flag = dict(view.stages)
    report.paused = view.switched_off
    cohorts = plan.assign(list(report.names))
    if not dry_run:
        await settle_intents(sessions, flag, report.repaired)
        await _observe(sessions, flag, writer.observer, report, now)
        await record_switch(sessions, list(cohorts), view.switched_off, writer.observer, now)
    async with sessions() as session:
        changes = await audit.last_changes(session)
        releases = await audit.last_releases(session)
        holds = await audit.holds(session)
        moves_left = plan.max_moves_per_hour - await audit.promotions_since(
            session, audit.hour_before(now)
        )
    order = {cohort.name: index for index, cohort in enumerate(plan.cohorts)}
    members = sorted(cohorts, key=lambda c: (order[cohorts[c]], stable_rank(c)))
    windows = {}
    for clinic_id in members:
        change = changes.get(clinic_id)
        entered = now if change is None or change.stage is not flag[clinic_id] else change.at
        released = releases.get(clinic_id)
        windows[clinic_id] = (flag[clinic_id], max(entered, released or entered))
    evidence = await gather(sessions, windows)
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
            view.claims.get(clinic_id),
            view.switched_off,
        )
        decision = decide(plan, state, evidence[clinic_id], now, moves_left)
        if decision.verdict is Verdict.PROMOTE:
            moves_left -= 1
        report.decisions.append(decision)
    if not dry_run:
        for decision in report.decisions:
            await _carry_out(sessions, writer, decision, actor, flag, report, now, clock)
        report.observed += report.outcomes.disturbed
        await _store_status(sessions, plan, report, now)
    return report


async def _carry_out(
    sessions: async_sessionmaker[AsyncSession],
    writer: StageWriter,
    decision: Decision,
    actor: str,
    flag: dict[uuid.UUID, Stage],
    report: PassReport,
    now: datetime,
    clock: Clock,
) -> None:
    if decision.verdict is Verdict.HOLD:
        async with sessions() as session, session.begin():
            await audit.hold(
                session, decision.clinic_id, decision.reason, actor, decision.guards, now
            )
    elif decision.verdict is Verdict.BACKFILL:
        problem = await backfill_clinic(sessions, decision, actor, clock)
        if problem is None:
            report.backfilled.append(decision.clinic_id)
        else:
            report.errors.append(f"{decision.clinic_id}: the backfill failed: {problem}")
    elif decision.verdict in MOVES and decision.to_stage is not None:
        outcomes = report.outcomes
        await apply_move(sessions, writer, decision, actor, flag, outcomes, now, clock)
        for problems, label in ((outcomes.failed, "failed"), (outcomes.unverified, "unverified")):
            if decision.clinic_id in problems:
                report.errors.append(
                    f"{decision.clinic_id}: {decision.verdict.value} to {decision.to_stage}"
                    f" {label}: {problems[decision.clinic_id]}"
                )


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


async def _store_status(
    sessions: async_sessionmaker[AsyncSession], plan: Plan, report: PassReport, now: datetime
) -> None:
    outcomes = report.outcomes
    async with sessions() as session, session.begin():
        await session.execute(
            delete(RolloutStatus).where(
                RolloutStatus.clinic_id.in_([d.clinic_id for d in report.decisions])
            )
        )
        for decision in report.decisions:
            clinic_id = decision.clinic_id
            applied = clinic_id in outcomes.applied
            stage = outcomes.applied.get(clinic_id, decision.stage)
            blocking = decision.blocking
            next_step = decision.next_step(applied=applied)
            problem = outcomes.failed.get(clinic_id) or outcomes.unverified.get(clinic_id)
            if problem is not None:
                verb = "failed" if clinic_id in outcomes.failed else "is not verified"
                blocking = f"the move to {decision.to_stage} {verb}: {problem}"
                next_step = f"{decision.verdict.value} to {decision.to_stage} (retried next pass)"
            held = decision.verdict in (Verdict.HELD, Verdict.HOLD, Verdict.CLAIMED) or (
                decision.verdict is Verdict.STEP_BACK and applied
            )
            session.add(
                RolloutStatus(
                    clinic_id=clinic_id,
                    evaluated_at=now,
                    cohort=decision.cohort,
                    stage=stage.value,
                    target=plan.target.value,
                    next_step=next_step,
                    blocking=blocking,
                    held=held,
                )
            )
