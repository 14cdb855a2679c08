"""ORM models. Alembic owns the schema; these must match the migrations (a test checks)."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type[datetime]:
        return datetime

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass a timezone-aware value")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return as_utc(value)


def as_utc(value: datetime) -> datetime:
    """A stored moment in UTC: SQLite returns it naive (stored in UTC), PostgreSQL in the
    session's time zone."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UtcDateTime(), uuid.UUID: Uuid()}


class UserRole(enum.StrEnum):
    ADMIN = "admin"
    STAFF = "staff"
    DOCTOR = "doctor"
    QA = "qa"


class AppointmentStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    CANCELLED = "cancelled"
    COMPLETED = "completed"


def _sql_in(column: str, values: type[enum.StrEnum]) -> str:
    listed = ", ".join(f"'{member.value}'" for member in values)
    return f"{column} IN ({listed})"


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


class Clinic(Base):
    __tablename__ = "clinics"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_sql_in("role", UserRole), name="role_known"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Patient(Base):
    __tablename__ = "patients"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    full_name: Mapped[str] = mapped_column(String(200))
    date_of_birth: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ClinicDoctor(Base):
    """A doctor (a User) working in a clinic."""

    __tablename__ = "clinic_doctors"
    __table_args__ = (UniqueConstraint("clinic_id", "user_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    clinic_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clinics.id"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ClinicPatient(Base):
    """A patient registered in a clinic."""

    __tablename__ = "clinic_patients"
    __table_args__ = (UniqueConstraint("clinic_id", "patient_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    clinic_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clinics.id"))
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Appointment(Base):
    __tablename__ = "appointments"
    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        CheckConstraint(_sql_in("status", AppointmentStatus), name="status_known"),
        CheckConstraint(
            "doctor_id IS NOT NULL OR clinic_doctor_id IS NOT NULL", name="doctor_named"
        ),
        CheckConstraint(
            "patient_id IS NOT NULL OR clinic_patient_id IS NOT NULL", name="patient_named"
        ),
        Index(None, "clinic_id", "starts_at", "id"),
        Index(None, "starts_at", "id"),
        Index(None, "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    clinic_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clinics.id"))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default=AppointmentStatus.SCHEDULED.value)
    reason: Mapped[str | None] = mapped_column(Text)
    doctor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), index=True)
    patient_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("patients.id"), index=True)
    clinic_doctor_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("clinic_doctors.id"), index=True
    )
    clinic_patient_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("clinic_patients.id"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ClinicStaff(Base):
    """A staff user who acts for a clinic (books, reschedules, manages its memberships)."""

    __tablename__ = "clinic_staff"
    __table_args__ = (UniqueConstraint("clinic_id", "user_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    clinic_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clinics.id"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


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
        CheckConstraint(_sql_in("state", IdempotencyState), name="state_known"),
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
        CheckConstraint(_sql_in("field", MismatchField), name="field_known"),
        CheckConstraint(_sql_in("status", MismatchStatus), name="status_known"),
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


class FieldUsageDaily(Base):
    """Operations that selected a deprecated field, per UTC day, client and field.

    Written in batches by ``appointments.field_usage`` (an upsert adding each
    process's buffered counts); read by `clinic usage` and the dashboard.
    """

    __tablename__ = "field_usage_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    client_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    field: Mapped[str] = mapped_column(String(128), primary_key=True)
    operations: Mapped[int] = mapped_column(BigInteger)
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]


class FieldUsageOperation(Base):
    """Operations that selected a deprecated field, per UTC day, client and operation: its
    name (empty when anonymous, ``other`` beyond the per-client limit) and the SHA-256 of
    its document text (the hash persisted and trusted documents are known by)."""

    __tablename__ = "field_usage_operations"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    client_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    operation_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    document_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    field: Mapped[str] = mapped_column(String(128), primary_key=True)
    operations: Mapped[int] = mapped_column(BigInteger)
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]


class PersistedDocument(Base):
    """A GraphQL document known by its SHA-256 (automatic persisted queries), so that every
    instance can run it by hash once any instance has seen its text. Bounded: the oldest
    rows beyond ``CLINIC_PERSISTED_DOCUMENTS_MAX`` are removed when one is added."""

    __tablename__ = "persisted_documents"

    __table_args__ = (Index(None, "created_at"),)

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    document: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class ClinicHealthCounter(Base):
    """Per clinic and minute: reads that fell back and writes that failed, from every process,
    and the appointment sides read from each origin (for the dashboard's charts).

    The rollout autopilot's guards read these; Prometheus counters carry no clinic id.
    """

    __tablename__ = "clinic_health_counters"

    clinic_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    minute: Mapped[datetime] = mapped_column(primary_key=True)
    read_fallbacks: Mapped[int] = mapped_column(default=0)
    write_failures: Mapped[int] = mapped_column(default=0)
    reads_legacy: Mapped[int] = mapped_column(default=0, server_default="0")
    reads_new: Mapped[int] = mapped_column(default=0, server_default="0")


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
        CheckConstraint(_sql_in("action", RolloutAction), name="action_known"),
        CheckConstraint(_sql_in("state", RolloutState), name="state_known"),
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


class StageActivity(Base):
    """Reads and writes served per minute, kind and stage, added by every process
    (``appointments.activity``): the dashboard's fleet-wide recent activity."""

    __tablename__ = "stage_activity"

    minute: Mapped[datetime] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    stage: Mapped[str] = mapped_column(String(16), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


class ServiceInstance(Base):
    """A serving process: where it runs, and where it reads stages from; ``seen_at`` is
    its last heartbeat (``appointments.instances``). The CLI's flags-file writers look
    here for instances on other hosts."""

    __tablename__ = "service_instances"

    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    pid: Mapped[int] = mapped_column(Integer, primary_key=True)
    flag_source: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    seen_at: Mapped[datetime] = mapped_column(index=True)
