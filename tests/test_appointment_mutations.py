"""Mutations through the GraphQL API: appointments, clinics, people and memberships."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments import directory
from appointments.models import ClinicDoctor, ClinicPatient, Patient, User
from appointments.stages import STAGE_POLICIES, Stage
from tests.conftest import Api, World, set_stages, stored_appointment, table_snapshot

ERROR_FIELDS = """
    ... on UserError { code message field }
    ... on MembershipError { membershipStage: stage }
"""

APPOINTMENT_RESULT = f"""
    __typename
    ... on AppointmentSuccess {{
      appointment {{
        id
        startsAt
        endsAt
        status
        doctor {{ id }}
        patient {{ id }}
        clinicDoctor {{ id }}
        clinicPatient {{ id }}
      }}
    }}
    {ERROR_FIELDS}
"""

CREATE_APPOINTMENT = f"""
mutation CreateAppointment($input: CreateAppointmentInput!) {{
  result: createAppointment(input: $input) {{ {APPOINTMENT_RESULT} }}
}}
"""

RESCHEDULE_APPOINTMENT = f"""
mutation RescheduleAppointment($input: RescheduleAppointmentInput!) {{
  result: rescheduleAppointment(input: $input) {{ {APPOINTMENT_RESULT} }}
}}
"""

REASSIGN_DOCTOR = f"""
mutation ReassignDoctor($input: ReassignDoctorInput!) {{
  result: reassignDoctor(input: $input) {{ {APPOINTMENT_RESULT} }}
}}
"""

REASSIGN_PATIENT = f"""
mutation ReassignPatient($input: ReassignPatientInput!) {{
  result: reassignPatient(input: $input) {{ {APPOINTMENT_RESULT} }}
}}
"""

CANCEL_APPOINTMENT = f"""
mutation CancelAppointment($appointmentId: ID!) {{
  result: cancelAppointment(appointmentId: $appointmentId) {{ {APPOINTMENT_RESULT} }}
}}
"""

CREATE_CLINIC = f"""
mutation CreateClinic($name: String!) {{
  result: createClinic(name: $name) {{
    __typename
    ... on ClinicSuccess {{ clinic {{ id name }} }}
    {ERROR_FIELDS}
  }}
}}
"""

READ_CLINIC = "query ReadClinic($id: ID!) { clinic(id: $id) { id name } }"

CREATE_USER = f"""
mutation CreateUser($input: CreateUserInput!) {{
  result: createUser(input: $input) {{
    __typename
    ... on UserSuccess {{ user {{ id name email role }} }}
    {ERROR_FIELDS}
  }}
}}
"""

CREATE_PATIENT = f"""
mutation CreatePatient($input: CreatePatientInput!) {{
  result: createPatient(input: $input) {{
    __typename
    ... on PatientSuccess {{ patient {{ id fullName dateOfBirth }} }}
    {ERROR_FIELDS}
  }}
}}
"""

CLINIC_DOCTOR_RESULT = f"""
    __typename
    ... on ClinicDoctorSuccess {{ clinicDoctor {{ id active clinic {{ id }} user {{ id }} }} }}
    {ERROR_FIELDS}
"""

ADD_CLINIC_DOCTOR = f"""
mutation AddClinicDoctor($clinicId: ID!, $userId: ID!) {{
  result: addClinicDoctor(clinicId: $clinicId, userId: $userId) {{ {CLINIC_DOCTOR_RESULT} }}
}}
"""

SET_CLINIC_DOCTOR_ACTIVE = f"""
mutation SetClinicDoctorActive($clinicDoctorId: ID!, $active: Boolean!) {{
  result: setClinicDoctorActive(clinicDoctorId: $clinicDoctorId, active: $active) {{
    {CLINIC_DOCTOR_RESULT}
  }}
}}
"""

ADD_CLINIC_PATIENT = f"""
mutation AddClinicPatient($clinicId: ID!, $patientId: ID!) {{
  result: addClinicPatient(clinicId: $clinicId, patientId: $patientId) {{
    __typename
    ... on ClinicPatientSuccess {{ clinicPatient {{ id clinic {{ id }} patient {{ id }} }} }}
    {ERROR_FIELDS}
  }}
}}
"""

STARTS_AT = "2026-12-01T09:00:00+00:00"
ENDS_AT = "2026-12-01T09:30:00+00:00"


def appointment_input(world: World, changes: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "clinicId": str(world.clinic_a.id),
        "startsAt": STARTS_AT,
        "endsAt": ENDS_AT,
        "doctorId": str(world.doctor.id),
        "patientId": str(world.patient.id),
        **(changes or {}),
    }


async def book(api: Api, world: World) -> str:
    data = await api.data(CREATE_APPOINTMENT, {"input": appointment_input(world)})
    assert data["result"]["__typename"] == "AppointmentSuccess", data
    appointment_id: str = data["result"]["appointment"]["id"]
    return appointment_id


def error_of(result: dict[str, Any]) -> tuple[str, str, str | None]:
    assert result["message"], result
    return result["__typename"], result["code"], result["field"]


def instant(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


async def test_reschedule_stores_and_returns_the_new_times(
    api: Api, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    appointment_id = await book(api, world)
    new_times = {"startsAt": "2026-12-03T11:00:00+02:00", "endsAt": "2026-12-03T09:45:00Z"}

    data = await api.data(
        RESCHEDULE_APPOINTMENT, {"input": {"appointmentId": appointment_id, **new_times}}
    )

    appointment = data["result"]["appointment"]
    assert appointment["id"] == appointment_id
    assert instant(appointment["startsAt"]) == datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    assert instant(appointment["endsAt"]) == datetime(2026, 12, 3, 9, 45, tzinfo=UTC)
    assert appointment["status"] == "SCHEDULED"
    stored = await stored_appointment(sessions, appointment_id)
    assert stored.starts_at == datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    assert stored.ends_at == datetime(2026, 12, 3, 9, 45, tzinfo=UTC)
    assert (stored.doctor_id, stored.patient_id) == (world.doctor.id, world.patient.id)


WRITABLE = [
    (stage, style)
    for stage in Stage
    for style in ("legacy", "new")
    if style == "legacy" or STAGE_POLICIES[stage].accepts_new_input
]
WRITABLE_IDS = [f"{stage.value}-{style}" for stage, style in WRITABLE]


@pytest.mark.parametrize(("stage", "style"), WRITABLE, ids=WRITABLE_IDS)
async def test_reassign_doctor_writes_the_sides_the_stage_writes(
    api: Api,
    world: World,
    flags_file: Path,
    sessions: async_sessionmaker[AsyncSession],
    stage: Stage,
    style: str,
) -> None:
    appointment_id = await book(api, world)
    set_stages(flags_file, {world.clinic_a.id: stage})
    policy = STAGE_POLICIES[stage]
    reference = (
        {"doctorId": str(world.other_doctor.id)}
        if style == "legacy"
        else {"clinicDoctorId": str(world.other_clinic_doctor.id)}
    )

    data = await api.data(
        REASSIGN_DOCTOR, {"input": {"appointmentId": appointment_id, **reference}}
    )

    appointment = data["result"]["appointment"]
    assert appointment["doctor"] == {"id": str(world.other_doctor.id)}
    assert appointment["clinicDoctor"] == {"id": str(world.other_clinic_doctor.id)}
    stored = await stored_appointment(sessions, appointment_id)
    assert stored.doctor_id == (world.other_doctor.id if policy.writes_legacy else None)
    assert stored.clinic_doctor_id == (world.other_clinic_doctor.id if policy.writes_new else None)
    assert (stored.patient_id, stored.clinic_patient_id) == (
        world.patient.id,
        world.clinic_patient.id,
    )


@pytest.mark.parametrize(("stage", "style"), WRITABLE, ids=WRITABLE_IDS)
async def test_reassign_patient_writes_the_sides_the_stage_writes(
    api: Api,
    world: World,
    flags_file: Path,
    sessions: async_sessionmaker[AsyncSession],
    stage: Stage,
    style: str,
) -> None:
    appointment_id = await book(api, world)
    set_stages(flags_file, {world.clinic_a.id: stage})
    policy = STAGE_POLICIES[stage]
    reference = (
        {"patientId": str(world.other_patient.id)}
        if style == "legacy"
        else {"clinicPatientId": str(world.other_clinic_patient.id)}
    )

    data = await api.data(
        REASSIGN_PATIENT, {"input": {"appointmentId": appointment_id, **reference}}
    )

    appointment = data["result"]["appointment"]
    assert appointment["patient"] == {"id": str(world.other_patient.id)}
    assert appointment["clinicPatient"] == {"id": str(world.other_clinic_patient.id)}
    stored = await stored_appointment(sessions, appointment_id)
    assert stored.patient_id == (world.other_patient.id if policy.writes_legacy else None)
    assert stored.clinic_patient_id == (
        world.other_clinic_patient.id if policy.writes_new else None
    )
    assert (stored.doctor_id, stored.clinic_doctor_id) == (world.doctor.id, world.clinic_doctor.id)


async def test_reassigning_to_a_doctor_without_membership_clears_the_stale_membership(
    api: Api, world: World, flags_file: Path, sessions: async_sessionmaker[AsyncSession]
) -> None:
    set_stages(flags_file, {world.clinic_a.id: Stage.DUAL_WRITE})
    appointment_id = await book(api, world)
    doctor = world.doctor_without_membership

    body = await api.post(
        REASSIGN_DOCTOR, {"input": {"appointmentId": appointment_id, "doctorId": str(doctor.id)}}
    )

    appointment = body["data"]["result"]["appointment"]
    assert appointment["doctor"] == {"id": str(doctor.id)}
    assert appointment["clinicDoctor"] is None
    assert body["extensions"]["migration"]["unlinkedWrites"] == 1
    stored = await stored_appointment(sessions, appointment_id)
    assert (stored.doctor_id, stored.clinic_doctor_id) == (doctor.id, None)


async def test_cancel_sets_status_cancelled(
    api: Api, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    appointment_id = await book(api, world)

    data = await api.data(CANCEL_APPOINTMENT, {"appointmentId": appointment_id})

    assert data["result"]["__typename"] == "AppointmentSuccess"
    assert data["result"]["appointment"]["status"] == "CANCELLED"
    assert (await stored_appointment(sessions, appointment_id)).status == "cancelled"


FOLLOW_UPS_OF_A_CANCELLATION: list[tuple[str, Callable[[World, str], dict[str, Any]]]] = [
    (CANCEL_APPOINTMENT, lambda _world, id_: {"appointmentId": id_}),
    (
        RESCHEDULE_APPOINTMENT,
        lambda _world, id_: {
            "input": {"appointmentId": id_, "startsAt": STARTS_AT, "endsAt": ENDS_AT}
        },
    ),
    (
        REASSIGN_DOCTOR,
        lambda world, id_: {
            "input": {"appointmentId": id_, "doctorId": str(world.other_doctor.id)}
        },
    ),
    (
        REASSIGN_PATIENT,
        lambda world, id_: {
            "input": {"appointmentId": id_, "patientId": str(world.other_patient.id)}
        },
    ),
]


@pytest.mark.parametrize(
    ("document", "variables"),
    FOLLOW_UPS_OF_A_CANCELLATION,
    ids=["cancel-again", "reschedule", "reassign-doctor", "reassign-patient"],
)
async def test_a_cancelled_appointment_cannot_change_any_more(
    api: Api,
    world: World,
    sessions: async_sessionmaker[AsyncSession],
    document: str,
    variables: Callable[[World, str], dict[str, Any]],
) -> None:
    appointment_id = await book(api, world)
    await api.data(CANCEL_APPOINTMENT, {"appointmentId": appointment_id})
    before = await table_snapshot(sessions)

    data = await api.data(document, variables(world, appointment_id))

    assert error_of(data["result"]) == (
        "InvalidStatusTransitionError",
        "INVALID_STATUS_TRANSITION",
        "appointmentId",
    )
    assert await table_snapshot(sessions) == before


async def test_create_clinic_stores_the_trimmed_name(api: Api, world: World) -> None:
    data = await api.data(CREATE_CLINIC, {"name": "  Clinic C  "})

    clinic = data["result"]["clinic"]
    assert clinic["name"] == "Clinic C"
    read = await api.data(READ_CLINIC, {"id": clinic["id"]})
    assert read["clinic"] == {"id": clinic["id"], "name": "Clinic C"}


async def test_create_user_stores_a_lowercased_email(
    api: Api, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    user_input = {"name": "Dr. New", "email": "  Dr.New@Example.ORG ", "role": "DOCTOR"}

    data = await api.data(CREATE_USER, {"input": user_input})

    user = data["result"]["user"]
    assert user["name"] == "Dr. New"
    assert user["email"] == "dr.new@example.org"
    assert user["role"] == "DOCTOR"
    async with sessions() as session:
        stored = await session.get(User, uuid.UUID(user["id"]))
    assert stored is not None
    assert (stored.email, stored.role) == ("dr.new@example.org", "doctor")


async def test_create_patient_stores_name_and_date_of_birth(
    api: Api, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    patient_input = {"fullName": "Ada Lovelace", "dateOfBirth": "1915-12-10"}

    data = await api.data(CREATE_PATIENT, {"input": patient_input})

    patient = data["result"]["patient"]
    assert (patient["fullName"], patient["dateOfBirth"]) == ("Ada Lovelace", "1915-12-10")
    async with sessions() as session:
        stored = await session.get(Patient, uuid.UUID(patient["id"]))
    assert stored is not None
    assert stored.full_name == "Ada Lovelace"
    assert stored.date_of_birth is not None
    assert stored.date_of_birth.isoformat() == "1915-12-10"


async def test_add_clinic_doctor_creates_an_active_membership(
    api: Api, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    doctor = world.doctor_without_membership

    data = await api.data(
        ADD_CLINIC_DOCTOR, {"clinicId": str(world.clinic_a.id), "userId": str(doctor.id)}
    )

    membership = data["result"]["clinicDoctor"]
    assert membership["active"] is True
    assert membership["clinic"] == {"id": str(world.clinic_a.id)}
    assert membership["user"] == {"id": str(doctor.id)}
    async with sessions() as session:
        stored = await session.get(ClinicDoctor, uuid.UUID(membership["id"]))
    assert stored is not None
    assert (stored.clinic_id, stored.user_id, stored.active) == (
        world.clinic_a.id,
        doctor.id,
        True,
    )


async def test_add_clinic_patient_creates_a_membership(
    api: Api, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    patient = world.patient_without_membership

    data = await api.data(
        ADD_CLINIC_PATIENT, {"clinicId": str(world.clinic_b.id), "patientId": str(patient.id)}
    )

    membership = data["result"]["clinicPatient"]
    assert membership["clinic"] == {"id": str(world.clinic_b.id)}
    assert membership["patient"] == {"id": str(patient.id)}
    async with sessions() as session:
        stored = await session.get(ClinicPatient, uuid.UUID(membership["id"]))
    assert stored is not None
    assert (stored.clinic_id, stored.patient_id) == (world.clinic_b.id, patient.id)


@pytest.mark.parametrize("active", [False, True], ids=["deactivate", "reactivate"])
async def test_set_clinic_doctor_active_stores_the_flag(
    api: Api, world: World, sessions: async_sessionmaker[AsyncSession], active: bool
) -> None:
    membership_id = str(world.clinic_doctor.id)
    await api.data(
        SET_CLINIC_DOCTOR_ACTIVE, {"clinicDoctorId": membership_id, "active": not active}
    )

    data = await api.data(
        SET_CLINIC_DOCTOR_ACTIVE, {"clinicDoctorId": membership_id, "active": active}
    )

    assert data["result"]["clinicDoctor"]["id"] == membership_id
    assert data["result"]["clinicDoctor"]["active"] is active
    async with sessions() as session:
        stored = await session.get(ClinicDoctor, world.clinic_doctor.id)
    assert stored is not None
    assert stored.active is active


DUPLICATES: list[tuple[str, Callable[[World], dict[str, Any]], str]] = [
    (CREATE_CLINIC, lambda _world: {"name": " Clinic A "}, "name"),
    (
        CREATE_USER,
        lambda _world: {
            "input": {"name": "Someone", "email": "DOCTOR0@example.org", "role": "STAFF"}
        },
        "email",
    ),
    (
        ADD_CLINIC_DOCTOR,
        lambda world: {"clinicId": str(world.clinic_a.id), "userId": str(world.doctor.id)},
        "userId",
    ),
    (
        ADD_CLINIC_PATIENT,
        lambda world: {"clinicId": str(world.clinic_a.id), "patientId": str(world.patient.id)},
        "patientId",
    ),
]


@pytest.mark.parametrize(
    ("document", "variables", "field"),
    DUPLICATES,
    ids=["clinic-name", "user-email", "clinic-doctor", "clinic-patient"],
)
async def test_a_duplicate_is_refused_as_already_existing(
    api: Api,
    world: World,
    sessions: async_sessionmaker[AsyncSession],
    document: str,
    variables: Callable[[World], dict[str, Any]],
    field: str,
) -> None:
    before = await table_snapshot(sessions)

    data = await api.data(document, variables(world))

    assert error_of(data["result"]) == ("AlreadyExistsError", "ALREADY_EXISTS", field)
    assert await table_snapshot(sessions) == before


async def test_adding_a_membership_twice_through_the_api_is_refused(
    api: Api, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    variables = {"clinicId": str(world.clinic_b.id), "userId": str(world.doctor.id)}
    first = await api.data(ADD_CLINIC_DOCTOR, variables)
    before = await table_snapshot(sessions)

    second = await api.data(ADD_CLINIC_DOCTOR, variables)

    assert first["result"]["__typename"] == "ClinicDoctorSuccess"
    assert error_of(second["result"]) == ("AlreadyExistsError", "ALREADY_EXISTS", "userId")
    assert await table_snapshot(sessions) == before


async def test_a_user_who_is_not_a_doctor_cannot_join_a_clinic_as_doctor(
    api: Api, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    before = await table_snapshot(sessions)

    data = await api.data(
        ADD_CLINIC_DOCTOR, {"clinicId": str(world.clinic_a.id), "userId": str(world.staff.id)}
    )

    assert error_of(data["result"]) == ("InvalidInputError", "WRONG_ROLE", "userId")
    assert await table_snapshot(sessions) == before


@pytest.mark.parametrize("style", ["legacy", "new"])
async def test_an_inactive_membership_cannot_be_booked(
    api: Api,
    world: World,
    flags_file: Path,
    sessions: async_sessionmaker[AsyncSession],
    style: str,
) -> None:
    set_stages(flags_file, {world.clinic_a.id: Stage.DUAL_WRITE})
    await api.data(
        SET_CLINIC_DOCTOR_ACTIVE, {"clinicDoctorId": str(world.clinic_doctor.id), "active": False}
    )
    field = "doctorId" if style == "legacy" else "clinicDoctorId"
    changes = {} if style == "legacy" else {"doctorId": None, field: str(world.clinic_doctor.id)}
    before = await table_snapshot(sessions)

    data = await api.data(CREATE_APPOINTMENT, {"input": appointment_input(world, changes)})

    assert error_of(data["result"]) == ("MembershipError", "MEMBERSHIP_INACTIVE", field)
    assert data["result"]["membershipStage"] is None
    assert await table_snapshot(sessions) == before


async def test_a_booking_checks_its_clinic_without_a_statement_once_the_clinics_are_known(
    api: Api, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The clinics' ids are read once per process (``appointments.clinic_directory``): a
    later booking in a known clinic reads no clinic; one in a clinic created since (by
    another process) is found in the database; an unknown id is still NOT_FOUND."""
    await book(api, world)
    seen: list[str] = []
    engine = api.services.engine.sync_engine
    listener = lambda _c, _cur, sql, *_rest: seen.append(sql)  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        await book(api, world)
        async with sessions() as session, session.begin():
            clinic = await directory.create_clinic(session, "Opened since")
            await directory.add_clinic_doctor(session, clinic.id, world.doctor.id)
            await directory.add_clinic_patient(session, clinic.id, world.patient.id)
        created = await api.data(
            CREATE_APPOINTMENT, {"input": appointment_input(world, {"clinicId": str(clinic.id)})}
        )
        missing = await api.data(
            CREATE_APPOINTMENT, {"input": appointment_input(world, {"clinicId": str(uuid.uuid4())})}
        )
    finally:
        event.remove(engine, "before_cursor_execute", listener)

    reads_of_clinics = [sql for sql in seen if "FROM clinics" in sql]
    assert len(reads_of_clinics) == 2, "only the two bookings in clinics it did not know"
    assert created["result"]["__typename"] == "AppointmentSuccess", created
    assert error_of(missing["result"]) == ("NotFoundError", "NOT_FOUND", "clinicId")
