"""The migration state of an appointment, as QA reads it (``Appointment.migration``).

Served by the read model only: each field declares beside itself what of the stage
rules it shows (``appointments.read_model.sources``).
"""

from __future__ import annotations

import strawberry

from appointments import models
from appointments.read_model.sources import (
    Consistency,
    Differences,
    DifferenceValue,
    Format,
    MigrationSide,
    PolicyValue,
    SideValue,
    reads,
)
from appointments.sides import DOCTOR, PATIENT
from appointments.stages import Origin, Stage

strawberry.enum(Origin, name="Origin", description="Which stored columns a value came from")


@strawberry.type(description="One side (doctor or patient) as served, and as each origin holds it")
class SideOrigins:
    """Served by the read model: each field declares the value of the side it shows."""

    served_origin: Origin = strawberry.field(metadata=reads(SideValue("new_origin", Format.ORIGIN)))
    fell_back: bool = strawberry.field(
        description="Served from the other origin because the authoritative column is empty",
        metadata=reads(SideValue("fell_back", Format.BOOLEAN)),
    )
    legacy_person_id: strawberry.ID | None = strawberry.field(
        description="Legacy origin: the person id stored on the appointment",
        metadata=reads(SideValue("legacy", Format.UUID)),
    )
    new_membership_id: strawberry.ID | None = strawberry.field(
        description="New origin: the membership id stored on the appointment",
        metadata=reads(SideValue("new_membership", Format.UUID, masked=True)),
    )
    new_person_id: strawberry.ID | None = strawberry.field(
        description="That membership's person",
        metadata=reads(SideValue("stored_person", Format.UUID, masked=True)),
    )
    new_clinic_id: strawberry.ID | None = strawberry.field(
        description="That membership's clinic",
        metadata=reads(SideValue("stored_clinic", Format.UUID, masked=True)),
    )
    consistent: bool = strawberry.field(metadata=reads(Consistency()))


@strawberry.type
class MigrationDifference:
    """Served by the read model: each field declares the value of the difference it shows."""

    field: models.MismatchField = strawberry.field(
        metadata=reads(DifferenceValue("field", Format.PLAIN))
    )
    legacy_value: strawberry.ID | None = strawberry.field(
        metadata=reads(DifferenceValue("legacy_value", Format.UUID))
    )
    new_value: strawberry.ID | None = strawberry.field(
        metadata=reads(DifferenceValue("new_value", Format.UUID, masked=True))
    )


@strawberry.type(description="How this appointment was served, and whether both origins agree")
class AppointmentMigration:
    """Served by the read model: each field declares what of the stage rules it shows
    (``appointments.read_model.sources``)."""

    stage: Stage = strawberry.field(
        description="The clinic's stage for this request",
        metadata=reads(PolicyValue("stage", Format.ENUM)),
    )
    authoritative_origin: Origin = strawberry.field(
        metadata=reads(PolicyValue("new_authoritative", Format.ORIGIN))
    )
    compared_stage: bool = strawberry.field(
        description="Reads in this stage are compared and recorded in the mismatch ledger",
        metadata=reads(PolicyValue("compared", Format.BOOLEAN)),
    )
    consistent: bool = strawberry.field(metadata=reads(Consistency()))
    doctor: SideOrigins = strawberry.field(metadata=reads(MigrationSide(DOCTOR)))
    patient: SideOrigins = strawberry.field(metadata=reads(MigrationSide(PATIENT)))
    differences: list[MigrationDifference] = strawberry.field(metadata=reads(Differences()))
