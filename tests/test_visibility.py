"""One visibility rule for reads and write inputs: what a viewer cannot read, no input reveals.

People of another clinic named in a write answer exactly like unknown ids, and a
link stored into another clinic is never shown to a viewer outside that clinic.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments import directory
from appointments.models import Appointment, MismatchField, UserRole
from appointments.stages import Stage
from tests.conftest import Clinics, ledger_rows, set_stages, table_snapshot

BOOK = """
mutation($input: CreateAppointmentInput!) {
  createAppointment(input: $input) {
    __typename
    ... on UserError { code message field }
    ... on AppointmentSuccess {
      appointment { doctor { name email } patient { fullName dateOfBirth } }
    }
  }
}
"""
ADD_DOCTOR = """
mutation($clinicId: ID!, $userId: ID!) {
  addClinicDoctor(clinicId: $clinicId, userId: $userId) {
    __typename
    ... on UserError { code message field }
    ... on ClinicDoctorSuccess { clinicDoctor { user { name email } } }
  }
}
"""
LINK_FIELDS = """
  id
  doctor { id name }
  clinicDoctor { id clinic { id name } user { id email } }
"""
SINGLE = f"""
query($id: ID!) {{
  appointment(id: $id) {{
    {LINK_FIELDS}
    migration {{
      doctor {{ newMembershipId newPersonId newClinicId consistent }}
      differences {{ field legacyValue newValue }}
    }}
  }}
}}
"""
LIST_SIMPLE = """
query { appointments(first: 50) { edges { node { id doctor { id } clinicDoctor { id } } } } }
"""
LIST_NESTED = f"query {{ appointments(first: 50) {{ edges {{ node {{ {LINK_FIELDS} }} }} }} }}"
RESCHEDULE = f"""
mutation($id: ID!) {{
  rescheduleAppointment(input: {{appointmentId: $id, startsAt: "2026-12-22T09:00:00Z",
      endsAt: "2026-12-22T09:30:00Z"}}) {{
    __typename
    ... on AppointmentSuccess {{ appointment {{ {LINK_FIELDS} }} }}
  }}
}}
"""


def booking(clinic_id: uuid.UUID, **people: str) -> dict[str, Any]:
    return {
        "input": {
            "clinicId": str(clinic_id),
            "startsAt": "2027-02-05T09:00:00Z",
            "endsAt": "2027-02-05T09:30:00Z",
            **people,
        }
    }


@pytest.mark.parametrize("stage", [Stage.LEGACY, Stage.DUAL_WRITE, Stage.LIVE, Stage.COMPLETE])
async def test_people_of_another_clinic_in_a_booking_answer_like_unknown_ids(
    clinics: Clinics,
    stage: Stage,
    flags_file: Path,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    world, staff = clinics.world, clinics.callers["staff"]
    set_stages(flags_file, {world.clinic_a.id: stage, world.clinic_b.id: stage})
    async with sessions() as session, session.begin():
        staff_of_b = await directory.create_user(
            session, "Staff of B", "staff-b@example.org", UserRole.STAFF
        )
        await directory.add_clinic_staff(session, world.clinic_b.id, staff_of_b.id)
    own_doctor: dict[str, str | None] = {"doctorId": str(world.doctor.id)}
    own_patient: dict[str, str | None] = {"patientId": str(world.patient.id)}
    of_b_and_unknown: dict[str, tuple[str, dict[str, str | None]]] = {
        "doctorId": (str(world.doctor_of_b.id), own_patient),
        "doctorId as staff": (str(staff_of_b.id), own_patient),
        "patientId": (str(clinics.patient_of_b), own_doctor),
        "clinicDoctorId": (str(world.clinic_doctor_of_b.id), own_patient),
    }
    before = await table_snapshot(sessions)

    answers: dict[str, tuple[Any, Any]] = {}
    for name, (of_b, others) in of_b_and_unknown.items():
        field = name.split()[0]
        people = {k: v for k, v in others.items() if v is not None}
        answers[name] = (
            await staff.data(BOOK, **booking(world.clinic_a.id, **people, **{field: of_b})),
            await staff.data(
                BOOK, **booking(world.clinic_a.id, **people, **{field: str(uuid.uuid4())})
            ),
        )

    for name, (of_b, unknown) in answers.items():
        assert of_b == unknown, name
        assert of_b["createAppointment"]["__typename"] != "AppointmentSuccess", name
    assert await table_snapshot(sessions) == before


async def test_a_doctor_of_another_clinic_cannot_be_added_or_read_through_a_membership(
    clinics: Clinics, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world, staff, admin = clinics.world, clinics.callers["staff"], clinics.callers["admin"]
    before = await table_snapshot(sessions)

    of_b = await staff.data(
        ADD_DOCTOR, clinicId=str(world.clinic_a.id), userId=str(world.doctor_of_b.id)
    )
    unknown = await staff.data(
        ADD_DOCTOR, clinicId=str(world.clinic_a.id), userId=str(uuid.uuid4())
    )
    assert of_b == unknown
    assert of_b["addClinicDoctor"]["code"] == "NOT_FOUND"
    assert await table_snapshot(sessions) == before

    by_admin = await admin.data(
        ADD_DOCTOR, clinicId=str(world.clinic_a.id), userId=str(world.doctor_of_b.id)
    )
    assert by_admin["addClinicDoctor"]["__typename"] == "ClinicDoctorSuccess"


async def test_staff_register_the_patients_they_create_in_their_clinic(clinics: Clinics) -> None:
    world, staff = clinics.world, clinics.callers["staff"]
    create = """
    mutation($input: CreatePatientInput!) {
      createPatient(input: $input) {
        __typename
        ... on UserError { code field }
        ... on PatientSuccess { patient { id } }
      }
    }
    """
    nowhere = await staff.data(create, input={"fullName": "Nowhere"})
    registered = await staff.data(
        create, input={"fullName": "Walk-in", "clinicId": str(world.clinic_a.id)}
    )
    in_b = await staff.data(
        create, input={"fullName": "Elsewhere", "clinicId": str(world.clinic_b.id)}
    )
    patients = await staff.data("query { patients(first: 100) { edges { node { id } } } }")

    assert nowhere["createPatient"] == {
        "__typename": "InvalidInputError",
        "code": "INVALID_INPUT",
        "field": "clinicId",
    }
    assert in_b["createPatient"]["code"] == "NOT_FOUND"
    patient_id = registered["createPatient"]["patient"]["id"]
    assert patient_id in {edge["node"]["id"] for edge in patients["patients"]["edges"]}


@pytest.mark.parametrize("stage", [Stage.SHADOW, Stage.LIVE, Stage.RAMPDOWN])
async def test_a_link_into_another_clinic_is_shown_only_to_who_sees_that_clinic(
    clinics: Clinics,
    stage: Stage,
    flags_file: Path,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    world = clinics.world
    set_stages(flags_file, {world.clinic_a.id: stage, world.clinic_b.id: stage})
    async with sessions() as session, session.begin():
        await session.execute(
            update(Appointment)
            .where(Appointment.id == clinics.in_a)
            .values(clinic_doctor_id=world.clinic_doctor_of_b.id)
        )
    new_origin = stage in {Stage.LIVE, Stage.RAMPDOWN}
    of_b = {str(world.clinic_b.id), str(world.clinic_doctor_of_b.id), str(world.doctor_of_b.id)}
    of_b |= {world.clinic_b.name, world.doctor_of_b.email}

    for role in ("staff", "doctor", "qa"):
        caller = clinics.callers[role]
        single = (await caller.data(SINGLE, id=str(clinics.in_a)))["appointment"]
        nodes = [
            next(
                edge["node"]
                for edge in (await caller.data(query))["appointments"]["edges"]
                if edge["node"]["id"] == str(clinics.in_a)
            )
            for query in (LIST_SIMPLE, LIST_NESTED)
        ]
        shown = {
            value
            for answer in (single, *nodes)
            for value in _leaves(answer)
            if isinstance(value, str)
        }
        if role == "qa":
            if new_origin:
                assert single["clinicDoctor"]["clinic"]["id"] == str(world.clinic_b.id)
            assert single["migration"]["doctor"]["newClinicId"] == str(world.clinic_b.id)
            continue
        assert not shown & of_b, (role, shown & of_b)
        assert single["migration"]["doctor"] == {
            "newMembershipId": None,
            "newPersonId": None,
            "newClinicId": None,
            "consistent": False,
        }
        if new_origin:
            assert single["clinicDoctor"] is None
            assert single["doctor"] is None
            assert all(node["clinicDoctor"] is None for node in nodes)

    staff = clinics.callers["staff"]
    payload = await staff.data(RESCHEDULE, id=str(clinics.in_a))
    assert not set(_leaves(payload)) & of_b
    recorded = await ledger_rows(sessions)
    compared = stage in {Stage.SHADOW, Stage.LIVE}
    assert ((clinics.in_a, MismatchField.DOCTOR_CLINIC.value) in recorded) == compared


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]
