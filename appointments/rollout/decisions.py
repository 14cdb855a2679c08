"""One clinic's decision in one pass, from its state and evidence alone (no I/O).

In order: a held clinic stays; missing evidence holds it where it is; a breach
(a guard over its limit, or data not ready for the stage it is in) steps it
one stage back and holds it; a clinic at or past the target stays; otherwise it
moves one stage forward once its cohort's turn came, its soak time passed with
every guard holding, its data is ready for the next stage and the hourly rate
limit allows.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from appointments.rollout.evidence import Evidence
from appointments.rollout.plan import Plan, format_duration
from appointments.stages import STAGE_ORDER, Stage, next_stage, previous_stage


class Verdict(enum.StrEnum):
    PROMOTE = "promote"
    STEP_BACK = "step_back"
    HOLD = "hold"
    WAIT = "wait"
    HELD = "held"
    DONE = "done"
    CLAIMED = "claimed"
    """A strategy our tools did not make decides the clinic's stage: left alone."""
    PAUSED = "paused"
    """The flag is switched off (the kill switch): nothing is written."""
    BACKFILL = "backfill"
    """Rows booked before dual_write are linked first (the plan says ``backfill = true``)."""


@dataclass(frozen=True, slots=True)
class ClinicState:
    clinic_id: uuid.UUID
    cohort: str
    stage: Stage
    held: str | None
    """Why the clinic is held, or None."""
    waiting_for_cohort: str | None
    """An earlier cohort not at the target yet, or None when this cohort's turn came."""
    claimed: str | None = None
    """The strategy our tools did not make that decides the clinic's stage, or None."""
    paused: str | None = None
    """Why the flag is switched off, or None."""


@dataclass(frozen=True, slots=True)
class Decision:
    clinic_id: uuid.UUID
    cohort: str
    verdict: Verdict
    stage: Stage
    target: Stage
    to_stage: Stage | None
    reason: str
    blocking: str | None
    guards: dict[str, Any]

    def next_step(self, applied: bool) -> str:
        """What the autopilot does next for the clinic: this decision, or once ``applied``,
        the step after it."""
        moving = self.verdict in (Verdict.PROMOTE, Verdict.STEP_BACK)
        if moving and not applied:
            return f"{self.verdict.value} to {self.to_stage} now"
        if self.verdict in (Verdict.STEP_BACK, Verdict.HELD, Verdict.HOLD):
            return "none: held until released"
        if self.verdict is Verdict.CLAIMED:
            return "none: until the strategy made by hand is removed"
        if self.verdict is Verdict.PAUSED:
            return "none: until the flag is switched on again"
        if self.verdict is Verdict.BACKFILL and not applied:
            return "backfill now, then promote"
        stage = self.to_stage if moving and self.to_stage is not None else self.stage
        if STAGE_ORDER.index(stage) >= STAGE_ORDER.index(self.target):
            return "none: at the target"
        return f"promote to {next_stage(stage)}"


def breaches(plan: Plan, evidence: Evidence) -> list[str]:
    """The guards over their limit in the clinic's window (evidence present only)."""
    found = []
    limits = plan.guards
    for name, value, limit, cause in (
        (
            "mismatches",
            evidence.mismatches,
            limits.max_mismatches,
            "the legacy and new fields disagree: a real disagreement, see the mismatch ledger",
        ),
        (
            "read fallbacks",
            evidence.read_fallbacks,
            limits.max_read_fallbacks,
            "reads found the authoritative side empty and served the other one",
        ),
        (
            "write failures",
            evidence.write_failures,
            limits.max_write_failures,
            "bookings and changes were refused or failed",
        ),
    ):
        if value is not None and value > limit:
            found.append(f"{name}: {value} in the window (at most {limit}): {cause}")
    if evidence.current_blockers:
        found.append("readiness of the current stage: " + "; ".join(evidence.current_blockers))
    return found


def decide(
    plan: Plan, state: ClinicState, evidence: Evidence, now: datetime, moves_left: int
) -> Decision:
    guards = {**evidence.as_dict(), "limits": _limits(plan)}

    def decision(
        verdict: Verdict, reason: str, blocking: str | None = None, to: Stage | None = None
    ) -> Decision:
        return Decision(
            state.clinic_id,
            state.cohort,
            verdict,
            state.stage,
            plan.target,
            to,
            reason,
            blocking,
            guards,
        )

    if state.paused is not None:
        return decision(Verdict.PAUSED, f"paused: {state.paused}", f"paused: {state.paused}")
    if state.held is not None:
        return decision(Verdict.HELD, f"held: {state.held}", f"held: {state.held}")
    if state.claimed is not None:
        blocking = (
            f"held by {state.claimed}, a strategy our tools did not make: the autopilot leaves"
            " this clinic alone until it is removed"
        )
        return decision(Verdict.CLAIMED, "decided by a strategy made by hand", blocking)
    if evidence.missing:
        return decision(Verdict.WAIT, "evidence missing", "; ".join(evidence.missing))
    breached = breaches(plan, evidence)
    if breached:
        back = previous_stage(state.stage)
        reason = "breach: " + "; ".join(breached)
        if back is None:
            return decision(Verdict.HOLD, reason, f"held: {reason}")
        return decision(Verdict.STEP_BACK, reason, f"held: {reason}", back)
    if STAGE_ORDER.index(state.stage) >= STAGE_ORDER.index(plan.target):
        return decision(Verdict.DONE, f"at or past the target {plan.target}")
    if state.waiting_for_cohort is not None:
        blocking = f'cohort "{state.waiting_for_cohort}" is not at the target yet'
        return decision(Verdict.WAIT, "waiting for an earlier cohort", blocking)
    soak = plan.soak_for(state.stage)
    eligible_at = evidence.since + soak
    if now < eligible_at:
        left = format_duration(eligible_at - now)
        return decision(Verdict.WAIT, f"soaking {format_duration(soak)}", f"eligible in {left}")
    following = next_stage(state.stage)
    assert following is not None
    if evidence.next_blockers:
        blocking = f"readiness for {following}: " + "; ".join(evidence.next_blockers)
        if plan.backfill and evidence.linkable:
            reason = f"{evidence.linkable} appointments to link before {following}"
            return decision(Verdict.BACKFILL, reason, blocking)
        return decision(Verdict.WAIT, "data not ready for the next stage", blocking)
    if moves_left <= 0:
        blocking = f"rate limit: {plan.max_moves_per_hour} moves in the last hour"
        return decision(Verdict.WAIT, "rate limit reached", blocking)
    reason = (
        f"soaked {format_duration(now - evidence.since)} at {state.stage} (needs"
        f" {format_duration(soak)}), every guard held, ready for {following}"
    )
    return decision(Verdict.PROMOTE, reason, to=following)


def _limits(plan: Plan) -> dict[str, Any]:
    return {
        "target": plan.target.value,
        "max_mismatches": plan.guards.max_mismatches,
        "max_read_fallbacks": plan.guards.max_read_fallbacks,
        "max_write_failures": plan.guards.max_write_failures,
        "soak": {stage.value: format_duration(value) for stage, value in plan.soak.items()},
        "max_moves_per_hour": plan.max_moves_per_hour,
    }
