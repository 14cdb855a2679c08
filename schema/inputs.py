"""Mutation and filter inputs, and their translation into domain commands."""

from __future__ import annotations

from datetime import date, datetime

import strawberry

from appointments import models
from appointments.checks import check_moment
from appointments.ledger import MismatchFilter
from appointments.queries import AppointmentFilter
from appointments.writes import NewAppointment, PersonReference
from schema.errors import parse_id, parse_optional_id


def _reference(
    side: str, person_id: strawberry.ID | None, membership_id: strawberry.ID | None
) -> PersonReference:
    """A person (``<side>Id``) and a membership (``clinic<Side>Id``) input, parsed."""
    return PersonReference(
        parse_optional_id(person_id, f"{side}Id"),
        parse_optional_id(membership_id, f"clinic{side.capitalize()}Id"),
    )


def _aware(value: datetime | None, field: str) -> datetime | None:
    return None if value is None else check_moment(value, field)


@strawberry.input(
    description=(
        "Name the doctor and the patient either the legacy way (doctorId, patientId) or the new "
        "way (clinicDoctorId, clinicPatientId); the other side is derived."
    )
)
class CreateAppointmentInput:
    clinic_id: strawberry.ID
    starts_at: datetime
    ends_at: datetime
    reason: str | None = None
    doctor_id: strawberry.ID | None = None
    patient_id: strawberry.ID | None = None
    clinic_doctor_id: strawberry.ID | None = None
    clinic_patient_id: strawberry.ID | None = None

    def to_command(self) -> NewAppointment:
        return NewAppointment(
            clinic_id=parse_id(self.clinic_id, "clinicId"),
            starts_at=self.starts_at,
            ends_at=self.ends_at,
            doctor=_reference("doctor", self.doctor_id, self.clinic_doctor_id),
            patient=_reference("patient", self.patient_id, self.clinic_patient_id),
            reason=self.reason,
        )


@strawberry.input
class RescheduleAppointmentInput:
    appointment_id: strawberry.ID
    starts_at: datetime
    ends_at: datetime


@strawberry.input(description="Name the new doctor by doctorId or clinicDoctorId")
class ReassignDoctorInput:
    appointment_id: strawberry.ID
    doctor_id: strawberry.ID | None = None
    clinic_doctor_id: strawberry.ID | None = None


@strawberry.input(description="Name the new patient by patientId or clinicPatientId")
class ReassignPatientInput:
    appointment_id: strawberry.ID
    patient_id: strawberry.ID | None = None
    clinic_patient_id: strawberry.ID | None = None


def reassigned(input: ReassignDoctorInput | ReassignPatientInput) -> PersonReference:
    """The person or membership a reassignment names, on its input's side."""
    if isinstance(input, ReassignDoctorInput):
        return _reference("doctor", input.doctor_id, input.clinic_doctor_id)
    return _reference("patient", input.patient_id, input.clinic_patient_id)


@strawberry.input
class CreateUserInput:
    name: str
    email: str
    role: models.UserRole


@strawberry.input
class CreatePatientInput:
    full_name: str
    date_of_birth: date | None = None
    clinic_id: strawberry.ID | None = strawberry.field(
        default=None,
        description=(
            "Register the new patient in this clinic. Required for staff, who see only "
            "the patients of their clinics"
        ),
    )


@strawberry.input(
    description=(
        "Filters combine with AND. doctorId/patientId/clinicDoctorId/clinicPatientId match an "
        "appointment when either field set names that person or membership."
    )
)
class AppointmentFilterInput:
    clinic_id: strawberry.ID | None = None
    doctor_id: strawberry.ID | None = None
    patient_id: strawberry.ID | None = None
    clinic_doctor_id: strawberry.ID | None = None
    clinic_patient_id: strawberry.ID | None = None
    starts_from: datetime | None = strawberry.field(default=None, description="Inclusive")
    starts_before: datetime | None = strawberry.field(default=None, description="Exclusive")
    status: models.AppointmentStatus | None = None

    def to_filter(self) -> AppointmentFilter:
        return AppointmentFilter(
            clinic_id=parse_optional_id(self.clinic_id, "clinicId"),
            doctor_id=parse_optional_id(self.doctor_id, "doctorId"),
            patient_id=parse_optional_id(self.patient_id, "patientId"),
            clinic_doctor_id=parse_optional_id(self.clinic_doctor_id, "clinicDoctorId"),
            clinic_patient_id=parse_optional_id(self.clinic_patient_id, "clinicPatientId"),
            starts_from=_aware(self.starts_from, "startsFrom"),
            starts_before=_aware(self.starts_before, "startsBefore"),
            status=self.status,
        )


@strawberry.input
class MismatchFilterInput:
    clinic_id: strawberry.ID | None = None
    field: models.MismatchField | None = None
    status: models.MismatchStatus | None = None

    def to_filter(self) -> MismatchFilter:
        return MismatchFilter(
            parse_optional_id(self.clinic_id, "clinicId"), self.field, self.status
        )


@strawberry.input(description="Triage a ledger entry: who did it is taken from the request")
class SetMismatchStatusInput:
    id: strawberry.ID
    status: models.MismatchStatus
    comment: str | None = None
