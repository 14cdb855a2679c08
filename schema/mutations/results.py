"""The result unions of the mutations: a success member, or one of the typed errors."""

from __future__ import annotations

from typing import Annotated

import strawberry

from appointments import models
from schema.errors import AnyUserError
from schema.ledger_types import MismatchSuccess
from schema.types import (
    AppointmentSuccess,
    ClinicDoctor,
    ClinicDoctorSuccess,
    ClinicPatient,
    ClinicPatientSuccess,
    ClinicStaff,
    ClinicStaffSuccess,
    ClinicSuccess,
    PatientSuccess,
    UserSuccess,
)

_Errors = AnyUserError
AppointmentResult = Annotated[AppointmentSuccess | _Errors, strawberry.union("AppointmentResult")]
ClinicResult = Annotated[ClinicSuccess | _Errors, strawberry.union("ClinicResult")]
UserResult = Annotated[UserSuccess | _Errors, strawberry.union("UserResult")]
PatientResult = Annotated[PatientSuccess | _Errors, strawberry.union("PatientResult")]
ClinicDoctorResult = Annotated[
    ClinicDoctorSuccess | _Errors, strawberry.union("ClinicDoctorResult")
]
MismatchResult = Annotated[MismatchSuccess | _Errors, strawberry.union("MismatchResult")]
ClinicPatientResult = Annotated[
    ClinicPatientSuccess | _Errors, strawberry.union("ClinicPatientResult")
]
ClinicStaffResult = Annotated[ClinicStaffSuccess | _Errors, strawberry.union("ClinicStaffResult")]


def appointment_success(row: models.Appointment) -> AppointmentSuccess:
    return AppointmentSuccess(row=row)


def clinic_doctor_success(row: models.ClinicDoctor) -> ClinicDoctorSuccess:
    return ClinicDoctorSuccess(clinic_doctor=ClinicDoctor.from_model(row))


def clinic_patient_success(row: models.ClinicPatient) -> ClinicPatientSuccess:
    return ClinicPatientSuccess(clinic_patient=ClinicPatient.from_model(row))


def clinic_staff_success(row: models.ClinicStaff) -> ClinicStaffSuccess:
    return ClinicStaffSuccess(clinic_staff=ClinicStaff.from_model(row))
