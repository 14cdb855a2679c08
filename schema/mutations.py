"""Mutation resolvers: parse input, run one domain write in one transaction, return a result union.

Expected failures come back as typed error members of the union; the write's
transaction is rolled back, so the database is unchanged.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from appointments import directory, ledger, models, relink, replays, writes
from appointments.access import Access, Permission
from appointments.errors import DomainError
from appointments.events import PendingEvents
from appointments.idempotency import KEY_FIELD, IdempotentRequest
from appointments.replays import ReplayCheck
from appointments.sides import DOCTOR, PATIENT, Side
from schema.context import WriteOperation
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
from schema.ledger_types import MigrationMismatch, MismatchSuccess
from schema.types import (
    AppointmentSuccess,
    Clinic,
    ClinicDoctor,
    ClinicDoctorSuccess,
    ClinicPatient,
    ClinicPatientSuccess,
    ClinicStaff,
    ClinicStaffSuccess,
    ClinicSuccess,
    ContextInfo,
    Patient,
    PatientSuccess,
    User,
    UserSuccess,
)

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
ClinicStaffResult = Annotated[ClinicStaffSuccess | _Errors, strawberry.union("ClinicStaffResult")]

Prepare = Callable[[Access], WriteOperation[RowT]]


async def _mutate(
    info: ContextInfo,
    arguments: dict[str, object],
    prepare: Prepare[RowT],
    success: Callable[[RowT], SuccessT],
    replay: ReplayCheck[RowT],
) -> SuccessT | AnyUserError:
    """Parse the input (``prepare``), run the write once, and wrap the row or the error.

    With an ``Idempotency-Key`` header the write is keyed by the viewer, the
    key, and the mutation's response key (its alias or name); ``arguments``
    fingerprint the input so a reused key with other input is refused. A retry
    gets the stored row only if ``replay`` (the write's authorization step, see
    ``appointments.replays``) passes for the viewer's access now; otherwise it
    gets the error a fresh request would.
    """
    context = info.context
    try:
        access = await context.access()
        operation = prepare(access)
        key = context.request.headers.get(KEY_FIELD)
        if key is None:
            row = await context.write(operation)
        else:
            request = IdempotentRequest.build(
                actor=context.viewer.user_id or ANONYMOUS_ACTOR,
                key=key,
                operation=str(info.path.key),
                arguments={"mutation": info.field_name, **arguments},
            )
            row = await context.write_once(
                request, operation, lambda session, stored: replay(session, access, stored)
            )
    except DomainError as error:
        return user_error(error)
    return success(row)


def _appointment_success(row: models.Appointment) -> AppointmentSuccess:
    return AppointmentSuccess(row=row)


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Book an appointment; the clinic's stage decides what is written"
    )
    async def create_appointment(
        self, info: ContextInfo, input: CreateAppointmentInput
    ) -> AppointmentResult:
        def prepare(access: Access) -> WriteOperation[models.Appointment]:
            command = input.to_command()
            stages = info.context.stages
            return lambda s, events: writes.create_appointment(s, stages, command, events, access)

        return await _mutate(
            info,
            {"input": input},
            prepare,
            _appointment_success,
            replays.in_clinic(Permission.BOOK, "clinicId", "clinic"),
        )

    @strawberry.mutation
    async def reschedule_appointment(
        self, info: ContextInfo, input: RescheduleAppointmentInput
    ) -> AppointmentResult:
        def prepare(access: Access) -> WriteOperation[models.Appointment]:
            appointment_id = parse_id(input.appointment_id, "appointmentId")
            return lambda s, _events: writes.reschedule_appointment(
                s, appointment_id, input.starts_at, input.ends_at, access=access
            )

        return await _mutate(
            info, {"input": input}, prepare, _appointment_success, replays.appointment_change(True)
        )

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
        def prepare(access: Access) -> WriteOperation[models.Appointment]:
            parsed = parse_id(appointment_id, "appointmentId")
            return lambda s, _events: writes.cancel_appointment(s, parsed, access=access)

        return await _mutate(
            info,
            {"appointmentId": appointment_id},
            prepare,
            _appointment_success,
            replays.appointment_change(True),
        )

    @strawberry.mutation
    async def create_clinic(self, info: ContextInfo, name: str) -> ClinicResult:
        return await _mutate(
            info,
            {"name": name},
            lambda access: _without_events(lambda s: directory.create_clinic(s, name, access)),
            lambda row: ClinicSuccess(clinic=Clinic.from_model(row)),
            replays.anywhere(Permission.MANAGE_DIRECTORY),
        )

    @strawberry.mutation
    async def create_user(self, info: ContextInfo, input: CreateUserInput) -> UserResult:
        return await _mutate(
            info,
            {"input": input},
            lambda access: _without_events(
                lambda s: directory.create_user(s, input.name, input.email, input.role, access)
            ),
            lambda row: UserSuccess(user=User.from_model(row)),
            replays.anywhere(Permission.MANAGE_DIRECTORY),
        )

    @strawberry.mutation(
        description="Deactivate or reactivate a user; an inactive user's tokens are refused"
    )
    async def set_user_active(
        self, info: ContextInfo, user_id: strawberry.ID, active: bool
    ) -> UserResult:
        def prepare(access: Access) -> WriteOperation[models.User]:
            user = parse_id(user_id, "userId")
            return _without_events(lambda s: directory.set_user_active(s, user, active, access))

        return await _mutate(
            info,
            {"userId": user_id, "active": active},
            prepare,
            lambda row: UserSuccess(user=User.from_model(row)),
            replays.anywhere(Permission.MANAGE_DIRECTORY),
        )

    @strawberry.mutation
    async def create_patient(self, info: ContextInfo, input: CreatePatientInput) -> PatientResult:
        clinic: uuid.UUID | None = None

        def prepare(access: Access) -> WriteOperation[models.Patient]:
            nonlocal clinic
            clinic = None if input.clinic_id is None else parse_id(input.clinic_id, "clinicId")
            return _without_events(
                lambda s: directory.create_patient(
                    s, input.full_name, input.date_of_birth, access, clinic
                )
            )

        async def replay(_session: AsyncSession, access: Access, _row: models.Patient) -> None:
            directory.authorize_patient_creation(access, clinic)

        return await _mutate(
            info,
            {"input": input},
            prepare,
            lambda row: PatientSuccess(patient=Patient.from_model(row)),
            replay,
        )

    @strawberry.mutation(description="Make a doctor (a user with role doctor) a member of a clinic")
    async def add_clinic_doctor(
        self, info: ContextInfo, clinic_id: strawberry.ID, user_id: strawberry.ID
    ) -> ClinicDoctorResult:
        def prepare(access: Access) -> WriteOperation[models.ClinicDoctor]:
            clinic, user = parse_id(clinic_id, "clinicId"), parse_id(user_id, "userId")
            return _without_events(lambda s: directory.add_clinic_doctor(s, clinic, user, access))

        return await _mutate(
            info,
            {"clinicId": clinic_id, "userId": user_id},
            prepare,
            lambda row: ClinicDoctorSuccess(clinic_doctor=ClinicDoctor.from_model(row)),
            replays.in_clinic(Permission.MANAGE_MEMBERSHIPS, "clinicId", "clinic"),
        )

    @strawberry.mutation(description="Mark a doctor's membership active or inactive")
    async def set_clinic_doctor_active(
        self, info: ContextInfo, clinic_doctor_id: strawberry.ID, active: bool
    ) -> ClinicDoctorResult:
        def prepare(access: Access) -> WriteOperation[models.ClinicDoctor]:
            membership = parse_id(clinic_doctor_id, "clinicDoctorId")
            return _without_events(
                lambda s: directory.set_clinic_doctor_active(s, membership, active, access)
            )

        return await _mutate(
            info,
            {"clinicDoctorId": clinic_doctor_id, "active": active},
            prepare,
            lambda row: ClinicDoctorSuccess(clinic_doctor=ClinicDoctor.from_model(row)),
            replays.in_clinic(Permission.MANAGE_MEMBERSHIPS, "clinicDoctorId", "clinic doctor"),
        )

    @strawberry.mutation(description="Register a patient in a clinic")
    async def add_clinic_patient(
        self, info: ContextInfo, clinic_id: strawberry.ID, patient_id: strawberry.ID
    ) -> ClinicPatientResult:
        def prepare(access: Access) -> WriteOperation[models.ClinicPatient]:
            clinic, patient = parse_id(clinic_id, "clinicId"), parse_id(patient_id, "patientId")
            return _without_events(
                lambda s: directory.add_clinic_patient(s, clinic, patient, access)
            )

        return await _mutate(
            info,
            {"clinicId": clinic_id, "patientId": patient_id},
            prepare,
            lambda row: ClinicPatientSuccess(clinic_patient=ClinicPatient.from_model(row)),
            replays.in_clinic(Permission.MANAGE_MEMBERSHIPS, "clinicId", "clinic"),
        )

    @strawberry.mutation(description="Make a staff user a member of a clinic's staff")
    async def add_clinic_staff(
        self, info: ContextInfo, clinic_id: strawberry.ID, user_id: strawberry.ID
    ) -> ClinicStaffResult:
        def prepare(access: Access) -> WriteOperation[models.ClinicStaff]:
            clinic, user = parse_id(clinic_id, "clinicId"), parse_id(user_id, "userId")
            return _without_events(lambda s: directory.add_clinic_staff(s, clinic, user, access))

        return await _mutate(
            info,
            {"clinicId": clinic_id, "userId": user_id},
            prepare,
            lambda row: ClinicStaffSuccess(clinic_staff=ClinicStaff.from_model(row)),
            replays.in_clinic(Permission.MANAGE_MEMBERSHIPS, "clinicId", "clinic"),
        )

    @strawberry.mutation(description="Triage a mismatch-ledger entry (open, ignored, fixed)")
    async def set_mismatch_status(
        self, info: ContextInfo, input: SetMismatchStatusInput
    ) -> MismatchResult:
        def prepare(access: Access) -> WriteOperation[models.MigrationMismatch]:
            mismatch_id = parse_id(input.id, "id")
            actor = info.context.viewer.user_id or ANONYMOUS_ACTOR
            return _without_events(
                lambda s: ledger.set_mismatch_status(
                    s, mismatch_id, input.status, actor, input.comment, access
                )
            )

        return await _mutate(
            info,
            {"input": input},
            prepare,
            lambda row: MismatchSuccess(mismatch=MigrationMismatch.from_model(row)),
            replays.anywhere(Permission.TRIAGE_LEDGER),
        )

    @strawberry.mutation(
        description=(
            "Rewrite an appointment's derived side from its authoritative side, as the"
            " clinic's stage says, with the checks of a write (qa, admin); its ledger entries"
            " that are consistent again are marked fixed, by the viewer, with the comment"
        )
    )
    async def relink_appointment(
        self, info: ContextInfo, appointment_id: strawberry.ID, comment: str | None = None
    ) -> AppointmentResult:
        def prepare(access: Access) -> WriteOperation[models.Appointment]:
            parsed = parse_id(appointment_id, "appointmentId")
            actor = info.context.viewer.user_id or ANONYMOUS_ACTOR
            stages = info.context.stages
            return lambda s, events: relink.relink_appointment(
                s, stages, parsed, actor, comment, events, access
            )

        return await _mutate(
            info,
            {"appointmentId": appointment_id, "comment": comment},
            prepare,
            _appointment_success,
            replays.in_clinic(Permission.RELINK, "appointmentId", "appointment"),
        )


async def _reassign(
    info: ContextInfo, side: Side, input: ReassignDoctorInput | ReassignPatientInput
) -> AppointmentSuccess | AnyUserError:
    def prepare(access: Access) -> WriteOperation[models.Appointment]:
        appointment_id = parse_id(input.appointment_id, "appointmentId")
        reference = input.reference()
        stages = info.context.stages
        return lambda s, events: writes.reassign_appointment(
            s, stages, side, appointment_id, reference, events, access
        )

    return await _mutate(
        info, {"input": input}, prepare, _appointment_success, replays.appointment_change(False)
    )


def _without_events(
    operation: Callable[[AsyncSession], Awaitable[RowT]],
) -> WriteOperation[RowT]:
    def run(session: AsyncSession, _events: PendingEvents) -> Awaitable[RowT]:
        return operation(session)

    return run
