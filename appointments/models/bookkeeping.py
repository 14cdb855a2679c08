"""What the writes and the migration keep beside the data: idempotency keys, the mismatch
ledger and the backfill checkpoints."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from appointments.models.base import Base, sql_in


class MismatchField(enum.StrEnum):
    """What a ledger entry compares: a person, or a membership's clinic."""

    DOCTOR = "doctor"
    PATIENT = "patient"
    DOCTOR_CLINIC = "doctor_clinic"
    PATIENT_CLINIC = "patient_clinic"


class MismatchStatus(enum.StrEnum):
    OPEN = "open"
    IGNORED = "ignored"
    FIXED = "fixed"


class IdempotencyState(enum.StrEnum):
    RUNNING = "running"
    DONE = "done"


class IdempotencyKey(Base):
    """A client's retry key for one write, and the outcome to replay for it.

    The row is claimed (``running``) in a short transaction of its own, then
    marked ``done`` with the result in the write's own transaction.
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        CheckConstraint(sql_in("state", IdempotencyState), name="state_known"),
        Index(None, "created_at"),
    )

    actor: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    operation: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    claim: Mapped[uuid.UUID]
    claimed_at: Mapped[datetime]
    created_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]
    result: Mapped[str | None] = mapped_column(Text)


class MigrationMismatch(Base):
    """One difference between the legacy and the new side of an appointment.

    One row per appointment and field, whatever the number of reads that saw it;
    values are ids only, never personal data.
    """

    __tablename__ = "migration_mismatches"
    __table_args__ = (
        UniqueConstraint("appointment_id", "field"),
        CheckConstraint(sql_in("field", MismatchField), name="field_known"),
        CheckConstraint(sql_in("status", MismatchStatus), name="status_known"),
        CheckConstraint("times_seen > 0", name="seen_at_least_once"),
        Index(None, "clinic_id", "status", "last_seen_at"),
        Index(None, "status", "last_seen_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    appointment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("appointments.id"))
    clinic_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clinics.id"))
    field: Mapped[str] = mapped_column(String(32))
    legacy_value: Mapped[uuid.UUID | None]
    new_value: Mapped[uuid.UUID | None]
    stage: Mapped[str] = mapped_column(String(16))
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    times_seen: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default=MismatchStatus.OPEN.value)
    status_changed_by: Mapped[str | None] = mapped_column(String(200))
    status_changed_at: Mapped[datetime | None]
    status_comment: Mapped[str | None] = mapped_column(Text)


class BackfillCheckpoint(Base):
    """Progress of a backfill run, committed with each batch so a crashed run resumes."""

    __tablename__ = "backfill_checkpoints"

    direction: Mapped[str] = mapped_column(String(16), primary_key=True)
    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_created_at: Mapped[datetime | None]
    last_appointment_id: Mapped[uuid.UUID | None]
    batches: Mapped[int]
    linked_doctors: Mapped[int]
    linked_patients: Mapped[int]
    created_doctor_memberships: Mapped[int]
    created_patient_memberships: Mapped[int]
    started_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
