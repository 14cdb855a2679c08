"""Mutation resolvers: parse input, run one domain write in one transaction, return a result union.

Expected failures come back as typed error members of the union; the write's
transaction is rolled back, so the database is unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from appointments import ledger, models, writes
from appointments.errors import DomainError
from appointments.events import PendingEvents
from appointments.sides import DOCTOR, PATIENT, Side
from schema.errors import (
    AnyUserError,
    parse_id,
    user_error,
)
from schema.inputs import (
    CreateAppointmentInput,
    CreatePatientInput,
    CreateUserInput,
    ReassignDoctorInput,
    ReassignPatientInput,
    RescheduleAppointmentInput,
    SetMismatchStatusInput,
)
from schema.types import (
    Appointment,
    AppointmentSuccess,
    Clinic,
    ClinicDoctor,
    ClinicDoctorSuccess,
    ClinicPatient,
    ClinicPatientSuccess,
    ClinicSuccess,
    ContextInfo,
    MigrationMismatch,
    MismatchSuccess,
    Patient,
    PatientSuccess,
    User,
    UserSuccess,
)
from server.context import WriteOperation

ANONYMOUS_ACTOR = "anonymous"
RowT = TypeVar("RowT")
SuccessT = TypeVar("SuccessT")

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


async def _mutate(
    info: ContextInfo,
    prepare: Callable[[], WriteOperation[RowT]],
    success: Callable[[RowT], SuccessT],
) -> SuccessT | AnyUserError:
    """Parse the input (``prepare``), run the write, and wrap the row or the error."""
    try:
        row = await info.context.write(prepare())
    except DomainError as error:
        return user_error(error)
    return success(row)


def _appointment_success(row: models.Appointment) -> AppointmentSuccess:
    return AppointmentSuccess(appointment=Appointment.from_model(row))


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Book an appointment; the clinic's stage decides what is written"
    )
    async def create_appointment(
        self, info: ContextInfo, input: CreateAppointmentInput
    ) -> AppointmentResult:
        def prepare() -> WriteOperation[models.Appointment]:
            command = input.to_command()
            stages = info.context.stages
            return lambda s, events: writes.create_appointment(s, stages, command, events)

        return await _mutate(info, prepare, _appointment_success)

    @strawberry.mutation
    async def reschedule_appointment(
        self, info: ContextInfo, input: RescheduleAppointmentInput
    ) -> AppointmentResult:
        def prepare() -> WriteOperation[models.Appointment]:
            appointment_id = parse_id(input.appointment_id, "appointmentId")
            return lambda s, _events: writes.reschedule_appointment(
                s, appointment_id, input.starts_at, input.ends_at
            )

        return await _mutate(info, prepare, _appointment_success)

    @strawberry.mutation
    async def reassign_doctor(
        self, info: ContextInfo, input: ReassignDoctorInput
    ) -> AppointmentResult:
        return await _reassign(info, DOCTOR, input)

    @strawberry.mutation
    async def reassign_patient(
        self, info: ContextInfo, input: ReassignPatientInput
    ) -> AppointmentResult:
        return await _reassign(info, PATIENT, input)

    @strawberry.mutation
    async def cancel_appointment(
        self, info: ContextInfo, appointment_id: strawberry.ID
    ) -> AppointmentResult:
        def prepare() -> WriteOperation[models.Appointment]:
            parsed = parse_id(appointment_id, "appointmentId")
            return lambda s, _events: writes.cancel_appointment(s, parsed)

        return await _mutate(info, prepare, _appointment_success)

    @strawberry.mutation
    async def create_clinic(self, info: ContextInfo, name: str) -> ClinicResult:
        return await _mutate(
            info,
            lambda: _without_events(lambda s: writes.create_clinic(s, name)),
            lambda row: ClinicSuccess(clinic=Clinic.from_model(row)),
        )

    @strawberry.mutation
    async def create_user(self, info: ContextInfo, input: CreateUserInput) -> UserResult:
        return await _mutate(
            info,
            lambda: _without_events(
                lambda s: writes.create_user(s, input.name, input.email, input.role)
            ),
            lambda row: UserSuccess(user=User.from_model(row)),
        )

    @strawberry.mutation
    async def create_patient(self, info: ContextInfo, input: CreatePatientInput) -> PatientResult:
        return await _mutate(
            info,
            lambda: _without_events(
                lambda s: writes.create_patient(s, input.full_name, input.date_of_birth)
            ),
            lambda row: PatientSuccess(patient=Patient.from_model(row)),
        )

    @strawberry.mutation(description="Make a doctor (a user with role doctor) a member of a clinic")
    async def add_clinic_doctor(
        self, info: ContextInfo, clinic_id: strawberry.ID, user_id: strawberry.ID
    ) -> ClinicDoctorResult:
        def prepare() -> WriteOperation[models.ClinicDoctor]:
            clinic, user = parse_id(clinic_id, "clinicId"), parse_id(user_id, "userId")
            return _without_events(lambda s: writes.add_clinic_doctor(s, clinic, user))

        return await _mutate(
            info,
            prepare,
            lambda row: ClinicDoctorSuccess(clinic_doctor=ClinicDoctor.from_model(row)),
        )

    @strawberry.mutation(description="Mark a doctor's membership active or inactive")
    async def set_clinic_doctor_active(
        self, info: ContextInfo, clinic_doctor_id: strawberry.ID, active: bool
    ) -> ClinicDoctorResult:
        def prepare() -> WriteOperation[models.ClinicDoctor]:
            membership = parse_id(clinic_doctor_id, "clinicDoctorId")
            return _without_events(lambda s: writes.set_clinic_doctor_active(s, membership, active))

        return await _mutate(
            info,
            prepare,
            lambda row: ClinicDoctorSuccess(clinic_doctor=ClinicDoctor.from_model(row)),
        )

    @strawberry.mutation(description="Register a patient in a clinic")
    async def add_clinic_patient(
        self, info: ContextInfo, clinic_id: strawberry.ID, patient_id: strawberry.ID
    ) -> ClinicPatientResult:
        def prepare() -> WriteOperation[models.ClinicPatient]:
            clinic, patient = parse_id(clinic_id, "clinicId"), parse_id(patient_id, "patientId")
            return _without_events(lambda s: writes.add_clinic_patient(s, clinic, patient))

        return await _mutate(
            info,
            prepare,
            lambda row: ClinicPatientSuccess(clinic_patient=ClinicPatient.from_model(row)),
        )

    @strawberry.mutation(description="Triage a mismatch-ledger entry (open, ignored, fixed)")
    async def set_mismatch_status(
        self, info: ContextInfo, input: SetMismatchStatusInput
    ) -> MismatchResult:
        def prepare() -> WriteOperation[models.MigrationMismatch]:
            mismatch_id = parse_id(input.id, "id")
            actor = info.context.viewer.user_id or ANONYMOUS_ACTOR
            return _without_events(
                lambda s: ledger.set_mismatch_status(
                    s, mismatch_id, input.status, actor, input.comment
                )
            )

        return await _mutate(
            info, prepare, lambda row: MismatchSuccess(mismatch=MigrationMismatch.from_model(row))
        )


async def _reassign(
    info: ContextInfo, side: Side, input: ReassignDoctorInput | ReassignPatientInput
) -> AppointmentSuccess | AnyUserError:
    def prepare() -> WriteOperation[models.Appointment]:
        appointment_id = parse_id(input.appointment_id, "appointmentId")
        reference = input.reference()
        stages = info.context.stages
        return lambda s, events: writes.reassign_appointment(
            s, stages, side, appointment_id, reference, events
        )

    return await _mutate(info, prepare, _appointment_success)


def _without_events(
    operation: Callable[[AsyncSession], Awaitable[RowT]],
) -> WriteOperation[RowT]:
    def run(session: AsyncSession, _events: PendingEvents) -> Awaitable[RowT]:
        return operation(session)

    return run
