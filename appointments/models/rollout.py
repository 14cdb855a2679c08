"""The rollout autopilot's audit trail, holds and per-clinic status."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from appointments.models.base import Base, sql_in


class RolloutAction(enum.StrEnum):
    PROMOTE = "promote"
    STEP_BACK = "step_back"
    HOLD = "hold"
    RELEASE = "release"
    SET_STAGE = "set_stage"
    OBSERVED_CHANGE = "observed_change"
    PAUSE = "pause"
    RESUME = "resume"
    BACKFILL = "backfill"


class RolloutState(enum.StrEnum):
    """A stage change is written as an intent first, then applied once the flag, read back,
    says so; failed when the flag refused it or does not show it; abandoned when a pass
    that died before its write is settled by the next one."""

    INTENT = "intent"
    APPLIED = "applied"
    ABANDONED = "abandoned"
    FAILED = "failed"


class RolloutAudit(Base):
    """Every stage change, hold and release of a clinic: who, when, why, on what evidence."""

    __tablename__ = "rollout_audit"
    __table_args__ = (
        CheckConstraint(sql_in("action", RolloutAction), name="action_known"),
        CheckConstraint(sql_in("state", RolloutState), name="state_known"),
        Index(None, "clinic_id", "id"),
        Index(None, "action", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    clinic_id: Mapped[uuid.UUID]
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    from_stage: Mapped[str | None] = mapped_column(String(16))
    to_stage: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    guards: Mapped[dict[str, Any]] = mapped_column(JSON)


class RolloutHold(Base):
    """A clinic the autopilot stepped back: it moves no further until a person releases it."""

    __tablename__ = "rollout_holds"

    clinic_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    held_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text)
    audit_id: Mapped[int] = mapped_column(Integer)


class RolloutStatus(Base):
    """What the autopilot's last pass decided for a clinic (the dashboard's rollout panel)."""

    __tablename__ = "rollout_status"

    clinic_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    evaluated_at: Mapped[datetime]
    cohort: Mapped[str] = mapped_column(String(100))
    stage: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(16))
    next_step: Mapped[str] = mapped_column(Text)
    blocking: Mapped[str | None] = mapped_column(Text)
    held: Mapped[bool]
