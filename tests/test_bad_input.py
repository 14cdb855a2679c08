"""Every rejected write answers a typed error and leaves the database exactly as it was."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from _pytest.mark import ParameterSet
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments import writes
from appointments.events import PendingEvents
from appointments.sides import DOCTOR, PATIENT, Side
from appointments.stages import STAGE_POLICIES, Stage, fixed_stage
from tests.conftest import Api, World, set_stages, stored_appointment, table_snapshot

Variables = Callable[[World, str], dict[str, Any]]
Changes = Callable[[World], dict[str, Any]]

ERROR_FIELDS = """
    __typename
    ... on UserError { code message field }
    ... on MembershipError { membershipStage: stage }
    ... on StageForbidsInputError { forbiddingStage: stage }
"""

APPOINTMENT_RESULT = f"""
    ... on AppointmentSuccess {{
      appointment {{
        id
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

ADD_CLINIC_DOCTOR = f"""
mutation AddClinicDoctor($clinicId: ID!, $userId: ID!) {{
  result: addClinicDoctor(clinicId: $clinicId, userId: $userId) {{ {ERROR_FIELDS} }}
}}
"""

SET_CLINIC_DOCTOR_ACTIVE = f"""
mutation SetClinicDoctorActive($clinicDoctorId: ID!, $active: Boolean!) {{
  result: setClinicDoctorActive(clinicDoctorId: $clinicDoctorId, active: $active) {{
    {ERROR_FIELDS}
  }}
}}
"""

ADD_CLINIC_PATIENT = f"""
mutation AddClinicPatient($clinicId: ID!, $patientId: ID!) {{
  result: addClinicPatient(clinicId: $clinicId, patientId: $patientId) {{ {ERROR_FIELDS} }}
}}
"""

CREATE_CLINIC = f"""
mutation CreateClinic($name: String!) {{
  result: createClinic(name: $name) {{ {ERROR_FIELDS} }}
}}
"""

CREATE_USER = f"""
mutation CreateUser($input: CreateUserInput!) {{
  result: createUser(input: $input) {{ {ERROR_FIELDS} }}
}}
"""

READ_APPOINTMENT = "query ReadAppointment($id: ID!) { appointment(id: $id) { id } }"

UNKNOWN = "7a1e3c52-0f4b-4c3e-9d7a-2b6f8e1d4c90"
MALFORMED = "not-a-uuid"
STARTS_AT = "2026-12-01T09:00:00+00:00"
ENDS_AT = "2026-12-01T09:30:00+00:00"


def appointment_input(world: World, changes: dict[str, Any]) -> dict[str, Any]:
    return {
        "clinicId": str(world.clinic_a.id),
        "startsAt": STARTS_AT,
        "endsAt": ENDS_AT,
        "doctorId": str(world.doctor.id),
        "patientId": str(world.patient.id),
        **changes,
    }


def create(changes: Changes) -> Variables:
    return lambda world, _appointment: {"input": appointment_input(world, changes(world))}


def reschedule(changes: Changes) -> Variables:
    return lambda world, appointment: {
        "input": {
            "appointmentId": appointment,
            "startsAt": "2026-12-02T10:00:00+00:00",
            "endsAt": "2026-12-02T10:30:00+00:00",
            **changes(world),
        }
    }


def reassign(changes: Changes) -> Variables:
    return lambda world, appointment: {"input": {"appointmentId": appointment, **changes(world)}}


def cancel(appointment_id: str) -> Variables:
    return lambda _world, _appointment: {"appointmentId": appointment_id}


def membership(person_key: str, person: Callable[[World], str], changes: Changes) -> Variables:
    return lambda world, _appointment: {
        "clinicId": str(world.clinic_a.id),
        person_key: person(world),
        **changes(world),
    }


def new_doctor(world: World) -> str:
    return str(world.doctor_without_membership.id)


def new_patient(world: World) -> str:
    return str(world.patient_without_membership.id)


def rejected(
    case_id: str,
    document: str,
    variables: Variables,
    typename: str,
    code: str,
    field: str,
    **extra: Any,
) -> ParameterSet:
    expected = {"__typename": typename, "code": code, "field": field, **extra}
    return pytest.param(document, variables, expected, id=case_id)


def create_rejected(
    case_id: str, changes: Changes, typename: str, code: str, field: str
) -> ParameterSet:
    return rejected(case_id, CREATE_APPOINTMENT, create(changes), typename, code, field)


CREATE_ID_FIELDS = ["clinicId", "doctorId", "patientId", "clinicDoctorId", "clinicPatientId"]
LEGACY_TWIN = {"clinicDoctorId": "doctorId", "clinicPatientId": "patientId"}


def with_id(field: str, value: str) -> Changes:
    """Put ``value`` in ``field``, dropping the legacy twin of a new-model field."""
    twin = LEGACY_TWIN.get(field)
    return lambda _world: {field: value, **({twin: None} if twin else {})}


BAD_WRITES = [
    *[
        create_rejected(f"create-unknown-{f}", with_id(f, UNKNOWN), "NotFoundError", "NOT_FOUND", f)
        for f in CREATE_ID_FIELDS
    ],
    *[
        create_rejected(
            f"create-malformed-{f}", with_id(f, MALFORMED), "InvalidInputError", "MALFORMED_ID", f
        )
        for f in CREATE_ID_FIELDS
    ],
    create_rejected(
        "create-ends-before-start",
        lambda _w: {"endsAt": "2026-12-01T08:59:00+00:00"},
        "InvalidInputError",
        "INVALID_TIME_RANGE",
        "endsAt",
    ),
    create_rejected(
        "create-ends-at-start",
        lambda _w: {"endsAt": STARTS_AT},
        "InvalidInputError",
        "INVALID_TIME_RANGE",
        "endsAt",
    ),
    create_rejected(
        "create-ends-at-start-in-another-offset",
        lambda _w: {"endsAt": "2026-12-01T11:00:00+02:00"},
        "InvalidInputError",
        "INVALID_TIME_RANGE",
        "endsAt",
    ),
    create_rejected(
        "create-starts-without-offset",
        lambda _w: {"startsAt": "2026-12-01T09:00:00"},
        "InvalidInputError",
        "INVALID_INPUT",
        "startsAt",
    ),
    create_rejected(
        "create-ends-without-offset",
        lambda _w: {"endsAt": "2026-12-01T09:30:00"},
        "InvalidInputError",
        "INVALID_INPUT",
        "endsAt",
    ),
    rejected(
        "create-clinic-doctor-of-another-clinic",
        CREATE_APPOINTMENT,
        create(lambda w: {"doctorId": None, "clinicDoctorId": str(w.clinic_doctor_of_b.id)}),
        "MembershipError",
        "CROSS_CLINIC_REFERENCE",
        "clinicDoctorId",
        membershipStage=None,
    ),
    create_rejected(
        "create-doctor-and-clinic-doctor-disagree",
        lambda w: {"clinicDoctorId": str(w.other_clinic_doctor.id)},
        "InvalidInputError",
        "CONFLICTING_REFERENCES",
        "doctorId",
    ),
    create_rejected(
        "create-patient-and-clinic-patient-disagree",
        lambda w: {"clinicPatientId": str(w.other_clinic_patient.id)},
        "InvalidInputError",
        "CONFLICTING_REFERENCES",
        "patientId",
    ),
    create_rejected(
        "create-without-doctor",
        lambda _w: {"doctorId": None},
        "InvalidInputError",
        "INVALID_INPUT",
        "doctorId",
    ),
    create_rejected(
        "create-without-patient",
        lambda _w: {"patientId": None},
        "InvalidInputError",
        "INVALID_INPUT",
        "patientId",
    ),
    create_rejected(
        "create-reason-too-long",
        lambda _w: {"reason": "x" * 2001},
        "InvalidInputError",
        "INVALID_INPUT",
        "reason",
    ),
    create_rejected(
        "create-staff-as-doctor",
        lambda w: {"doctorId": str(w.staff.id)},
        "InvalidInputError",
        "WRONG_ROLE",
        "doctorId",
    ),
    rejected(
        "reschedule-unknown-appointment",
        RESCHEDULE_APPOINTMENT,
        reschedule(lambda _w: {"appointmentId": UNKNOWN}),
        "NotFoundError",
        "NOT_FOUND",
        "appointmentId",
    ),
    rejected(
        "reschedule-malformed-appointmentId",
        RESCHEDULE_APPOINTMENT,
        reschedule(lambda _w: {"appointmentId": MALFORMED}),
        "InvalidInputError",
        "MALFORMED_ID",
        "appointmentId",
    ),
    rejected(
        "reschedule-ends-before-start",
        RESCHEDULE_APPOINTMENT,
        reschedule(lambda _w: {"endsAt": "2026-12-02T09:00:00+00:00"}),
        "InvalidInputError",
        "INVALID_TIME_RANGE",
        "endsAt",
    ),
    rejected(
        "reschedule-starts-without-offset",
        RESCHEDULE_APPOINTMENT,
        reschedule(lambda _w: {"startsAt": "2026-12-02T10:00:00"}),
        "InvalidInputError",
        "INVALID_INPUT",
        "startsAt",
    ),
    rejected(
        "reassign-doctor-unknown-appointment",
        REASSIGN_DOCTOR,
        reassign(lambda w: {"appointmentId": UNKNOWN, "doctorId": str(w.other_doctor.id)}),
        "NotFoundError",
        "NOT_FOUND",
        "appointmentId",
    ),
    rejected(
        "reassign-doctor-malformed-appointmentId",
        REASSIGN_DOCTOR,
        reassign(lambda w: {"appointmentId": MALFORMED, "doctorId": str(w.other_doctor.id)}),
        "InvalidInputError",
        "MALFORMED_ID",
        "appointmentId",
    ),
    rejected(
        "reassign-doctor-unknown-doctorId",
        REASSIGN_DOCTOR,
        reassign(lambda _w: {"doctorId": UNKNOWN}),
        "NotFoundError",
        "NOT_FOUND",
        "doctorId",
    ),
    rejected(
        "reassign-doctor-unknown-clinicDoctorId",
        REASSIGN_DOCTOR,
        reassign(lambda _w: {"clinicDoctorId": UNKNOWN}),
        "NotFoundError",
        "NOT_FOUND",
        "clinicDoctorId",
    ),
    rejected(
        "reassign-doctor-malformed-doctorId",
        REASSIGN_DOCTOR,
        reassign(lambda _w: {"doctorId": MALFORMED}),
        "InvalidInputError",
        "MALFORMED_ID",
        "doctorId",
    ),
    rejected(
        "reassign-doctor-clinic-doctor-of-another-clinic",
        REASSIGN_DOCTOR,
        reassign(lambda w: {"clinicDoctorId": str(w.clinic_doctor_of_b.id)}),
        "MembershipError",
        "CROSS_CLINIC_REFERENCE",
        "clinicDoctorId",
        membershipStage=None,
    ),
    rejected(
        "reassign-doctor-staff",
        REASSIGN_DOCTOR,
        reassign(lambda w: {"doctorId": str(w.staff.id)}),
        "InvalidInputError",
        "WRONG_ROLE",
        "doctorId",
    ),
    rejected(
        "reassign-doctor-to-nobody",
        REASSIGN_DOCTOR,
        reassign(lambda _w: {}),
        "InvalidInputError",
        "INVALID_INPUT",
        "doctorId",
    ),
    rejected(
        "reassign-patient-unknown-appointment",
        REASSIGN_PATIENT,
        reassign(lambda w: {"appointmentId": UNKNOWN, "patientId": str(w.other_patient.id)}),
        "NotFoundError",
        "NOT_FOUND",
        "appointmentId",
    ),
    rejected(
        "reassign-patient-unknown-patientId",
        REASSIGN_PATIENT,
        reassign(lambda _w: {"patientId": UNKNOWN}),
        "NotFoundError",
        "NOT_FOUND",
        "patientId",
    ),
    rejected(
        "reassign-patient-malformed-clinicPatientId",
        REASSIGN_PATIENT,
        reassign(lambda _w: {"clinicPatientId": MALFORMED}),
        "InvalidInputError",
        "MALFORMED_ID",
        "clinicPatientId",
    ),
    rejected(
        "cancel-unknown-appointment",
        CANCEL_APPOINTMENT,
        cancel(UNKNOWN),
        "NotFoundError",
        "NOT_FOUND",
        "appointmentId",
    ),
    rejected(
        "cancel-malformed-appointmentId",
        CANCEL_APPOINTMENT,
        cancel(MALFORMED),
        "InvalidInputError",
        "MALFORMED_ID",
        "appointmentId",
    ),
    rejected(
        "add-clinic-doctor-unknown-clinicId",
        ADD_CLINIC_DOCTOR,
        membership("userId", new_doctor, lambda _w: {"clinicId": UNKNOWN}),
        "NotFoundError",
        "NOT_FOUND",
        "clinicId",
    ),
    rejected(
        "add-clinic-doctor-unknown-userId",
        ADD_CLINIC_DOCTOR,
        membership("userId", new_doctor, lambda _w: {"userId": UNKNOWN}),
        "NotFoundError",
        "NOT_FOUND",
        "userId",
    ),
    rejected(
        "add-clinic-doctor-malformed-clinicId",
        ADD_CLINIC_DOCTOR,
        membership("userId", new_doctor, lambda _w: {"clinicId": MALFORMED}),
        "InvalidInputError",
        "MALFORMED_ID",
        "clinicId",
    ),
    rejected(
        "add-clinic-doctor-malformed-userId",
        ADD_CLINIC_DOCTOR,
        membership("userId", new_doctor, lambda _w: {"userId": MALFORMED}),
        "InvalidInputError",
        "MALFORMED_ID",
        "userId",
    ),
    rejected(
        "add-clinic-patient-unknown-patientId",
        ADD_CLINIC_PATIENT,
        membership("patientId", new_patient, lambda _w: {"patientId": UNKNOWN}),
        "NotFoundError",
        "NOT_FOUND",
        "patientId",
    ),
    rejected(
        "add-clinic-patient-malformed-clinicId",
        ADD_CLINIC_PATIENT,
        membership("patientId", new_patient, lambda _w: {"clinicId": MALFORMED}),
        "InvalidInputError",
        "MALFORMED_ID",
        "clinicId",
    ),
    rejected(
        "set-clinic-doctor-active-unknown-clinicDoctorId",
        SET_CLINIC_DOCTOR_ACTIVE,
        lambda _w, _a: {"clinicDoctorId": UNKNOWN, "active": False},
        "NotFoundError",
        "NOT_FOUND",
        "clinicDoctorId",
    ),
    rejected(
        "set-clinic-doctor-active-malformed-clinicDoctorId",
        SET_CLINIC_DOCTOR_ACTIVE,
        lambda _w, _a: {"clinicDoctorId": MALFORMED, "active": False},
        "InvalidInputError",
        "MALFORMED_ID",
        "clinicDoctorId",
    ),
    rejected(
        "create-clinic-blank-name",
        CREATE_CLINIC,
        lambda _w, _a: {"name": "   "},
        "InvalidInputError",
        "INVALID_INPUT",
        "name",
    ),
    rejected(
        "create-user-email-without-at",
        CREATE_USER,
        lambda _w, _a: {"input": {"name": "Someone", "email": "nobody", "role": "STAFF"}},
        "InvalidInputError",
        "INVALID_INPUT",
        "email",
    ),
]


@pytest_asyncio.fixture
async def booked(sessions: async_sessionmaker[AsyncSession], world: World) -> str:
    """A scheduled appointment in clinic A with both sides written."""
    starts_at = datetime(2026, 12, 1, 9, tzinfo=UTC)
    async with sessions() as session, session.begin():
        appointment = await writes.create_appointment(
            session,
            fixed_stage(Stage.DUAL_WRITE),
            writes.NewAppointment(
                clinic_id=world.clinic_a.id,
                starts_at=starts_at,
                ends_at=starts_at + timedelta(minutes=30),
                doctor=writes.PersonReference(person_id=world.doctor.id),
                patient=writes.PersonReference(person_id=world.patient.id),
            ),
            PendingEvents(),
        )
    return str(appointment.id)


def without_message(result: dict[str, Any]) -> dict[str, Any]:
    assert isinstance(result.get("message"), str), result
    assert result["message"], result
    return {key: value for key, value in result.items() if key != "message"}


@pytest.mark.parametrize(("document", "variables", "expected"), BAD_WRITES)
async def test_a_rejected_write_answers_a_typed_error_and_changes_nothing(
    api: Api,
    world: World,
    booked: str,
    flags_file: Path,
    sessions: async_sessionmaker[AsyncSession],
    document: str,
    variables: Variables,
    expected: dict[str, Any],
) -> None:
    set_stages(
        flags_file, {world.clinic_a.id: Stage.DUAL_WRITE, world.clinic_b.id: Stage.DUAL_WRITE}
    )
    before = await table_snapshot(sessions)

    data = await api.data(document, variables(world, booked))

    assert without_message(data["result"]) == expected
    assert await table_snapshot(sessions) == before


MISSING_MEMBERSHIP = [
    pytest.param(
        CREATE_APPOINTMENT,
        create(lambda w: {"doctorId": new_doctor(w)}),
        DOCTOR,
        id="create-doctor",
    ),
    pytest.param(
        CREATE_APPOINTMENT,
        create(lambda w: {"patientId": new_patient(w)}),
        PATIENT,
        id="create-patient",
    ),
    pytest.param(
        REASSIGN_DOCTOR,
        reassign(lambda w: {"doctorId": new_doctor(w)}),
        DOCTOR,
        id="reassign-doctor",
    ),
    pytest.param(
        REASSIGN_PATIENT,
        reassign(lambda w: {"patientId": new_patient(w)}),
        PATIENT,
        id="reassign-patient",
    ),
]
NEW_AUTHORITATIVE = [stage for stage in Stage if STAGE_POLICIES[stage].new_authoritative]
LEGACY_AUTHORITATIVE = [stage for stage in Stage if not STAGE_POLICIES[stage].new_authoritative]


def person_without_membership(world: World, side: Side) -> str:
    return new_doctor(world) if side is DOCTOR else new_patient(world)


@pytest.mark.parametrize("stage", NEW_AUTHORITATIVE, ids=[s.value for s in NEW_AUTHORITATIVE])
@pytest.mark.parametrize(("document", "variables", "side"), MISSING_MEMBERSHIP)
async def test_a_person_without_membership_is_refused_where_the_new_model_is_authoritative(
    api: Api,
    world: World,
    booked: str,
    flags_file: Path,
    sessions: async_sessionmaker[AsyncSession],
    document: str,
    variables: Variables,
    side: Side,
    stage: Stage,
) -> None:
    set_stages(flags_file, {world.clinic_a.id: stage})
    before = await table_snapshot(sessions)

    data = await api.data(document, variables(world, booked))

    assert without_message(data["result"]) == {
        "__typename": "MembershipError",
        "code": "MEMBERSHIP_MISSING",
        "field": side.legacy_input,
        "membershipStage": stage.name,
    }
    assert await table_snapshot(sessions) == before


@pytest.mark.parametrize("stage", LEGACY_AUTHORITATIVE, ids=[s.value for s in LEGACY_AUTHORITATIVE])
@pytest.mark.parametrize(("document", "variables", "side"), MISSING_MEMBERSHIP)
async def test_the_same_input_is_written_unlinked_where_legacy_is_authoritative(
    api: Api,
    world: World,
    booked: str,
    flags_file: Path,
    sessions: async_sessionmaker[AsyncSession],
    document: str,
    variables: Variables,
    side: Side,
    stage: Stage,
) -> None:
    set_stages(flags_file, {world.clinic_a.id: stage})
    person = person_without_membership(world, side)

    data = await api.data(document, variables(world, booked))

    result = data["result"]
    assert result["__typename"] == "AppointmentSuccess", result
    appointment = result["appointment"]
    assert appointment[side.name] == {"id": person}
    assert appointment[f"clinic{side.name.title()}"] is None
    stored = await stored_appointment(sessions, appointment["id"])
    assert str(side.legacy_id(stored)) == person
    assert side.membership_id(stored) is None


NEW_INPUT = [
    pytest.param(
        CREATE_APPOINTMENT,
        create(lambda w: {"doctorId": None, "clinicDoctorId": str(w.clinic_doctor.id)}),
        "clinicDoctorId",
        id="create-clinicDoctorId",
    ),
    pytest.param(
        CREATE_APPOINTMENT,
        create(lambda w: {"patientId": None, "clinicPatientId": str(w.clinic_patient.id)}),
        "clinicPatientId",
        id="create-clinicPatientId",
    ),
    pytest.param(
        REASSIGN_DOCTOR,
        reassign(lambda w: {"clinicDoctorId": str(w.other_clinic_doctor.id)}),
        "clinicDoctorId",
        id="reassign-clinicDoctorId",
    ),
    pytest.param(
        REASSIGN_PATIENT,
        reassign(lambda w: {"clinicPatientId": str(w.other_clinic_patient.id)}),
        "clinicPatientId",
        id="reassign-clinicPatientId",
    ),
]


@pytest.mark.parametrize(("document", "variables", "field"), NEW_INPUT)
async def test_new_model_input_is_refused_while_the_clinic_is_legacy(
    api: Api,
    world: World,
    booked: str,
    flags_file: Path,
    sessions: async_sessionmaker[AsyncSession],
    document: str,
    variables: Variables,
    field: str,
) -> None:
    set_stages(flags_file, {world.clinic_a.id: Stage.LEGACY})
    before = await table_snapshot(sessions)

    data = await api.data(document, variables(world, booked))

    assert without_message(data["result"]) == {
        "__typename": "StageForbidsInputError",
        "code": "STAGE_FORBIDS_INPUT",
        "field": field,
        "forbiddingStage": "LEGACY",
    }
    assert await table_snapshot(sessions) == before


async def test_a_query_with_a_malformed_id_answers_malformed_id(api: Api, world: World) -> None:
    body = await api.post(READ_APPOINTMENT, {"id": "x"})

    assert body["data"] == {"appointment": None}
    [error] = body["errors"]
    assert error["path"] == ["appointment"]
    assert error["extensions"]["code"] == "MALFORMED_ID"
    assert error["extensions"]["field"] == "id"
