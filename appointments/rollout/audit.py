"""The rollout audit trail: every stage change, hold and release of a clinic.

Each row says when, who (the actor), what (action, from and to stage), why (the
reason) and on what evidence (the guard values), and is also logged as one
structured line (``event=rollout``). A stage change the autopilot makes is
written first as an ``intent``, then marked ``applied`` once the flag was
written, so a run killed in between is repaired by the next pass
(``engine.reconcile``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from appointments.errors import DomainError, ErrorCode
from appointments.models import (
    Clinic,
    RolloutAction,
    RolloutAudit,
    RolloutHold,
    RolloutState,
    utcnow,
)
from appointments.stages import Stage

logger = logging.getLogger("appointments.rollout")
MAX_AUDIT_PAGE = 500
STAGE_CHANGES = (
    RolloutAction.PROMOTE.value,
    RolloutAction.STEP_BACK.value,
    RolloutAction.SET_STAGE.value,
    RolloutAction.OBSERVED_CHANGE.value,
)


@dataclass(frozen=True, slots=True)
class LastChange:
    """A clinic's latest applied stage change: the stage it was left in, and since when."""

    stage: Stage
    at: datetime


async def record(
    session: AsyncSession,
    clinic_id: uuid.UUID,
    actor: str,
    action: RolloutAction,
    reason: str,
    from_stage: Stage | None = None,
    to_stage: Stage | None = None,
    guards: dict[str, Any] | None = None,
    state: RolloutState = RolloutState.APPLIED,
    now: datetime | None = None,
) -> RolloutAudit:
    """Add one audit row in ``session``'s transaction (the caller commits) and log it."""
    row = RolloutAudit(
        at=now or utcnow(),
        clinic_id=clinic_id,
        actor=actor,
        action=action.value,
        state=state.value,
        from_stage=None if from_stage is None else from_stage.value,
        to_stage=None if to_stage is None else to_stage.value,
        reason=reason,
        guards=guards or {},
    )
    session.add(row)
    await session.flush()
    log(row)
    return row


def log(row: RolloutAudit) -> None:
    """The audit row as a log line (``event=rollout``): the fields ``as_dict`` gives."""
    fields = {k: v for k, v in as_dict(row).items() if k not in ("id", "at", "clinic_name")}
    logger.info(
        f"rollout {row.action} ({row.state})",
        extra={"event": "rollout", "audit_id": row.id, **fields},
    )


async def last_changes(session: AsyncSession) -> dict[uuid.UUID, LastChange]:
    """Per clinic, its latest applied stage change."""
    latest = (
        select(func.max(RolloutAudit.id))
        .where(RolloutAudit.action.in_(STAGE_CHANGES))
        .where(RolloutAudit.state == RolloutState.APPLIED.value)
        .group_by(RolloutAudit.clinic_id)
    )
    rows = await session.execute(
        select(RolloutAudit.clinic_id, RolloutAudit.to_stage, RolloutAudit.at).where(
            RolloutAudit.id.in_(latest)
        )
    )
    return {
        clinic_id: LastChange(Stage(to_stage), at)
        for clinic_id, to_stage, at in rows
        if to_stage is not None
    }


async def last_releases(session: AsyncSession) -> dict[uuid.UUID, datetime]:
    rows = await session.execute(
        select(RolloutAudit.clinic_id, func.max(RolloutAudit.at))
        .where(RolloutAudit.action == RolloutAction.RELEASE.value)
        .group_by(RolloutAudit.clinic_id)
    )
    return {clinic_id: at for clinic_id, at in rows}  # noqa: C416 - rows, not pairs


async def last_switches(session: AsyncSession) -> dict[uuid.UUID, str]:
    """Per clinic, its latest pause or resume action (what the kill switch did last)."""
    latest = (
        select(func.max(RolloutAudit.id))
        .where(RolloutAudit.action.in_((RolloutAction.PAUSE.value, RolloutAction.RESUME.value)))
        .group_by(RolloutAudit.clinic_id)
    )
    rows = await session.execute(
        select(RolloutAudit.clinic_id, RolloutAudit.action).where(RolloutAudit.id.in_(latest))
    )
    return {clinic_id: action for clinic_id, action in rows}  # noqa: C416 - rows, not pairs


async def intents(session: AsyncSession) -> list[RolloutAudit]:
    """Stage changes written as intents and neither applied nor abandoned yet."""
    rows = await session.scalars(
        select(RolloutAudit)
        .where(RolloutAudit.state == RolloutState.INTENT.value)
        .order_by(RolloutAudit.id)
    )
    return list(rows)


async def promotions_since(session: AsyncSession, since: datetime) -> int:
    """Promotions applied or under way since ``since`` (what the rate limit counts)."""
    count = await session.scalar(
        select(func.count())
        .select_from(RolloutAudit)
        .where(RolloutAudit.action == RolloutAction.PROMOTE.value)
        .where(RolloutAudit.state.in_((RolloutState.INTENT.value, RolloutState.APPLIED.value)))
        .where(RolloutAudit.at > since)
    )
    return int(count or 0)


async def holds(session: AsyncSession) -> dict[uuid.UUID, RolloutHold]:
    return {hold.clinic_id: hold for hold in await session.scalars(select(RolloutHold))}


async def hold(
    session: AsyncSession,
    clinic_id: uuid.UUID,
    reason: str,
    actor: str,
    guards: dict[str, Any],
    now: datetime,
) -> None:
    """Mark a clinic held (it moves no further until released) and audit it; a clinic
    already held stays as it was."""
    if await session.get(RolloutHold, clinic_id) is None:
        held = await record(
            session, clinic_id, actor, RolloutAction.HOLD, reason, guards=guards, now=now
        )
        session.add(RolloutHold(clinic_id=clinic_id, held_at=now, reason=reason, audit_id=held.id))
        await session.flush()


async def hold_by_hand(
    session: AsyncSession, clinic_id: uuid.UUID, actor: str, reason: str
) -> None:
    """A person holds a clinic where it is (``clinic rollout hold``): the autopilot moves it
    no further until released. Raises ``DomainError`` when the reason is empty, the clinic
    does not exist or it is held already."""
    if not reason.strip():
        raise DomainError(ErrorCode.INVALID_INPUT, "a hold needs a reason", "reason")
    if await session.get(Clinic, clinic_id) is None:
        raise DomainError(ErrorCode.NOT_FOUND, f"no clinic has the id {clinic_id}", "clinicId")
    held = await session.get(RolloutHold, clinic_id)
    if held is not None:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"clinic {clinic_id} is held already: {held.reason}",
            "clinicId",
        )
    await hold(session, clinic_id, f"held by hand: {reason}", actor, {}, utcnow())


async def release(
    session: AsyncSession, clinic_id: uuid.UUID, actor: str, reason: str
) -> RolloutAudit:
    """Release a held clinic: the autopilot may move it again, its guards' window starting
    now. Raises ``DomainError`` (NOT_FOUND) when the clinic is not held."""
    if not reason.strip():
        raise DomainError(ErrorCode.INVALID_INPUT, "a release needs a reason", "reason")
    held = await session.get(RolloutHold, clinic_id)
    if held is None:
        raise DomainError(ErrorCode.NOT_FOUND, f"clinic {clinic_id} is not held", "clinicId")
    await session.execute(delete(RolloutHold).where(RolloutHold.clinic_id == clinic_id))
    return await record(
        session,
        clinic_id,
        actor,
        RolloutAction.RELEASE,
        reason,
        guards={"held_since": held.held_at.isoformat(), "held_for": held.reason},
    )


async def entries(
    session: AsyncSession, clinic_id: uuid.UUID | None = None, first: int = 50
) -> Sequence[tuple[RolloutAudit, str | None]]:
    """The latest ``first`` audit rows (of one clinic, or all), newest first, with the
    clinic's name."""
    if not 1 <= first <= MAX_AUDIT_PAGE:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"first must be between 1 and {MAX_AUDIT_PAGE}", "first"
        )
    statement = (
        select(RolloutAudit, Clinic.name)
        .outerjoin(Clinic, Clinic.id == RolloutAudit.clinic_id)
        .order_by(RolloutAudit.id.desc())
        .limit(first)
    )
    if clinic_id is not None:
        statement = statement.where(RolloutAudit.clinic_id == clinic_id)
    return [(row, name) for row, name in (await session.execute(statement)).all()]


def as_dict(row: RolloutAudit, clinic_name: str | None = None) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": row.at.isoformat(),
        "clinic_id": str(row.clinic_id),
        "clinic_name": clinic_name,
        "actor": row.actor,
        "action": row.action,
        "state": row.state,
        "from_stage": row.from_stage,
        "to_stage": row.to_stage,
        "reason": row.reason,
        "guards": row.guards,
    }


def hour_before(now: datetime) -> datetime:
    return now - timedelta(hours=1)
