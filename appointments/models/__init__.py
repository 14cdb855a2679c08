"""ORM models. Alembic owns the schema; these must match the migrations (a test checks).

Every table's model is imported here, so that ``Base.metadata`` holds them all.
"""

from appointments.models.base import (
    NAMING_CONVENTION,
    Base,
    UtcDateTime,
    as_utc,
    sql_in,
    utcnow,
)
from appointments.models.bookkeeping import (
    BackfillCheckpoint,
    IdempotencyKey,
    IdempotencyState,
    MigrationMismatch,
    MismatchField,
    MismatchStatus,
)
from appointments.models.entities import (
    Appointment,
    AppointmentStatus,
    Clinic,
    ClinicDoctor,
    ClinicPatient,
    ClinicStaff,
    Patient,
    User,
    UserRole,
)
from appointments.models.rollout import (
    RolloutAction,
    RolloutAudit,
    RolloutHold,
    RolloutState,
    RolloutStatus,
)
from appointments.models.telemetry import (
    ClinicHealthCounter,
    FieldUsageDaily,
    FieldUsageOperation,
    PersistedDocument,
    ServiceInstance,
    StageActivity,
)

__all__ = [
    "NAMING_CONVENTION",
    "Appointment",
    "AppointmentStatus",
    "BackfillCheckpoint",
    "Base",
    "Clinic",
    "ClinicDoctor",
    "ClinicHealthCounter",
    "ClinicPatient",
    "ClinicStaff",
    "FieldUsageDaily",
    "FieldUsageOperation",
    "IdempotencyKey",
    "IdempotencyState",
    "MigrationMismatch",
    "MismatchField",
    "MismatchStatus",
    "Patient",
    "PersistedDocument",
    "RolloutAction",
    "RolloutAudit",
    "RolloutHold",
    "RolloutState",
    "RolloutStatus",
    "ServiceInstance",
    "StageActivity",
    "User",
    "UserRole",
    "UtcDateTime",
    "as_utc",
    "sql_in",
    "utcnow",
]
