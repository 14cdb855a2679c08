"""Authorization: every role against another clinic's data, denied without leaking existence."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import (
    Clinics,
    insert_appointment,
    table_snapshot,
)

APPOINTMENT = "query($id: ID!) { appointment(id: $id) { id clinic { id } } }"
LISTS = """
query($clinicId: ID!) {
  appointments(first: 100) { edges { node { id clinic { id } } } }
  filtered: appointments(first: 100, filter: {clinicId: $clinicId}) { edges { node { id } } }
  clinic(id: $clinicId) { id }
  clinics { edges { node { id } } }
  clinicDoctors(clinicId: $clinicId) { edges { node { id } } }
  clinicPatients(clinicId: $clinicId) { edges { node { id } } }
  patients(first: 100) { edges { node { id } } }
  users(first: 100) { edges { node { id } } }
}
"""
CREATE = """
mutation($clinicId: ID!, $doctorId: ID!, $patientId: ID!) {
  createAppointment(input: {clinicId: $clinicId, startsAt: "2026-12-20T09:00:00Z",
      endsAt: "2026-12-20T09:30:00Z", doctorId: $doctorId, patientId: $patientId}) {
    __typename
    ... on UserError { code message field }
    ... on AppointmentSuccess { appointment { id } }
  }
}
"""
CANCEL = """
mutation($id: ID!) {
  cancelAppointment(appointmentId: $id) {
    __typename
    ... on UserError { code message field }
    ... on AppointmentSuccess { appointment { id status } }
  }
}
"""
RESCHEDULE = """
mutation($id: ID!) {
  rescheduleAppointment(input: {appointmentId: $id, startsAt: "2026-12-21T09:00:00Z",
      endsAt: "2026-12-21T09:30:00Z"}) {
    __typename
    ... on UserError { code message field }
  }
}
"""
REASSIGN = """
mutation($id: ID!, $doctorId: ID!) {
  reassignDoctor(input: {appointmentId: $id, doctorId: $doctorId}) {
    __typename
    ... on UserError { code message field }
  }
}
"""
SET_ACTIVE = """
mutation($id: ID!) {
  setClinicDoctorActive(clinicDoctorId: $id, active: false) {
    __typename
    ... on UserError { code message field }
  }
}
"""
ADD_PATIENT = """
mutation($clinicId: ID!, $patientId: ID!) {
  addClinicPatient(clinicId: $clinicId, patientId: $patientId) {
    __typename
    ... on UserError { code message field }
  }
}
"""
CREATE_CLINIC = """
mutation { createClinic(name: "Intruder Clinic") { __typename ... on UserError { code field } } }
"""
REPORT = "query { migrationReport { clinic { id } } }"
LEDGER = "query { migrationMismatches { edges { node { id } } } }"


def ids(connection: dict[str, Any]) -> set[str]:
    return {edge["node"]["id"] for edge in connection["edges"]}


@pytest.mark.parametrize("role", ["staff", "doctor"])
async def test_clinic_members_see_nothing_of_another_clinic(clinics: Clinics, role: str) -> None:
    caller, world = clinics.callers[role], clinics.world

    other = await caller.data(APPOINTMENT, id=str(clinics.in_b))
    unknown = await caller.data(APPOINTMENT, id=str(uuid.uuid4()))
    lists_b = await caller.data(LISTS, clinicId=str(world.clinic_b.id))
    lists_a = await caller.data(LISTS, clinicId=str(world.clinic_a.id))

    assert other == unknown == {"appointment": None}
    assert ids(lists_b["appointments"]) == {str(clinics.in_a), str(clinics.colleague_in_a)}
    assert lists_b["filtered"]["edges"] == []
    assert lists_b["clinic"] is None
    assert ids(lists_b["clinics"]) == {str(world.clinic_a.id)}
    assert lists_b["clinicDoctors"]["edges"] == lists_b["clinicPatients"]["edges"] == []
    assert str(clinics.patient_of_b) not in ids(lists_b["patients"])
    assert ids(lists_a["patients"]) == {str(world.patient.id), str(world.other_patient.id)}
    assert str(world.doctor_of_b.id) not in ids(lists_b["users"])
    assert str(world.doctor.id) in ids(lists_a["users"])
    assert lists_a["clinic"] == {"id": str(world.clinic_a.id)}


@pytest.mark.parametrize("role", ["staff", "doctor", "qa"])
async def test_writes_to_another_clinic_are_refused_as_not_found_and_change_nothing(
    clinics: Clinics, role: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    caller, world = clinics.callers[role], clinics.world
    before = await table_snapshot(sessions)
    refused: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for name, query, variables, field in (
        ("cancel", CANCEL, {}, "id"),
        ("reschedule", RESCHEDULE, {}, "id"),
        ("reassign", REASSIGN, {"doctorId": str(world.doctor_of_b.id)}, "id"),
    ):
        against_b = await caller.data(query, **variables, **{field: str(clinics.in_b)})
        against_nothing = await caller.data(query, **variables, **{field: str(uuid.uuid4())})
        refused[name] = (against_b, against_nothing)
    create_b = await caller.data(
        CREATE,
        clinicId=str(world.clinic_b.id),
        doctorId=str(world.doctor_of_b.id),
        patientId=str(clinics.patient_of_b),
    )
    create_nowhere = await caller.data(
        CREATE,
        clinicId=str(uuid.uuid4()),
        doctorId=str(world.doctor_of_b.id),
        patientId=str(clinics.patient_of_b),
    )
    membership_b = await caller.data(SET_ACTIVE, id=str(world.clinic_doctor_of_b.id))
    membership_nowhere = await caller.data(SET_ACTIVE, id=str(uuid.uuid4()))

    expected = "FORBIDDEN" if role == "qa" else "NOT_FOUND"
    for name, (against_b, against_nothing) in refused.items():
        if role == "qa":
            assert next(iter(against_b.values()))["code"] == "FORBIDDEN", name
        else:
            assert against_b == against_nothing, name
            assert next(iter(against_b.values()))["code"] == "NOT_FOUND", name
    assert create_b["createAppointment"]["code"] == expected
    assert membership_b["setClinicDoctorActive"]["code"] == expected
    if role != "qa":
        assert create_b == create_nowhere
        assert membership_b == membership_nowhere
    assert await table_snapshot(sessions) == before


async def test_staff_book_and_manage_memberships_in_their_clinic_only(
    clinics: Clinics, sessions: async_sessionmaker[AsyncSession]
) -> None:
    staff, world = clinics.callers["staff"], clinics.world
    async with sessions() as session, session.begin():
        # A legacy appointment in clinic A makes its unregistered patient visible to A's staff.
        await insert_appointment(
            session,
            world,
            12,
            doctor_id=world.doctor.id,
            patient_id=world.patient_without_membership.id,
        )

    booked = await staff.data(
        CREATE,
        clinicId=str(world.clinic_a.id),
        doctorId=str(world.doctor.id),
        patientId=str(world.patient.id),
    )
    registered = await staff.data(
        ADD_PATIENT,
        clinicId=str(world.clinic_a.id),
        patientId=str(world.patient_without_membership.id),
    )
    of_b = await staff.data(
        ADD_PATIENT, clinicId=str(world.clinic_a.id), patientId=str(clinics.patient_of_b)
    )
    elsewhere = await staff.data(
        ADD_PATIENT, clinicId=str(world.clinic_b.id), patientId=str(world.patient.id)
    )
    new_clinic = await staff.data(CREATE_CLINIC)

    assert booked["createAppointment"]["__typename"] == "AppointmentSuccess"
    assert registered["addClinicPatient"]["__typename"] == "ClinicPatientSuccess"
    assert of_b["addClinicPatient"]["code"] == "NOT_FOUND"
    assert elsewhere["addClinicPatient"]["code"] == "NOT_FOUND"
    assert new_clinic["createClinic"] == {
        "__typename": "ForbiddenError",
        "code": "FORBIDDEN",
        "field": None,
    }


async def test_doctors_change_their_own_appointments_and_book_nothing(clinics: Clinics) -> None:
    doctor, world = clinics.callers["doctor"], clinics.world

    booking = await doctor.data(
        CREATE,
        clinicId=str(world.clinic_a.id),
        doctorId=str(world.doctor.id),
        patientId=str(world.patient.id),
    )
    colleague = await doctor.data(CANCEL, id=str(clinics.colleague_in_a))
    reassign_own = await doctor.data(REASSIGN, id=str(clinics.in_a), doctorId=str(world.doctor.id))
    own = await doctor.data(CANCEL, id=str(clinics.in_a))
    seen = await doctor.data(APPOINTMENT, id=str(clinics.colleague_in_a))

    assert booking["createAppointment"]["__typename"] == "ForbiddenError"
    assert colleague["cancelAppointment"]["__typename"] == "ForbiddenError"
    assert reassign_own["reassignDoctor"]["__typename"] == "ForbiddenError"
    assert own["cancelAppointment"]["appointment"] == {
        "id": str(clinics.in_a),
        "status": "CANCELLED",
    }
    assert seen["appointment"]["id"] == str(clinics.colleague_in_a)


@pytest.mark.parametrize("role", ["staff", "doctor"])
async def test_migration_tools_are_for_admin_and_qa(clinics: Clinics, role: str) -> None:
    member, qa = clinics.callers[role], clinics.callers["qa"]

    answers = [await member.post(query) for query in (REPORT, LEDGER)]
    dashboard = await member.api.client.get(
        "/migration", headers={"Authorization": f"Bearer {member.token}"}
    )
    qa_report = await qa.data(REPORT)
    qa_dashboard = await qa.api.client.get(
        "/migration", headers={"Authorization": f"Bearer {qa.token}"}
    )

    for answer in answers:
        assert answer["data"] is None
        assert answer["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert dashboard.status_code == 403
    assert {row["clinic"]["id"] for row in qa_report["migrationReport"]} == {
        str(clinics.world.clinic_a.id),
        str(clinics.world.clinic_b.id),
    }
    assert qa_dashboard.status_code == 200


@pytest.mark.parametrize("role", ["admin", "qa"])
async def test_admin_and_qa_read_every_clinic(clinics: Clinics, role: str) -> None:
    caller = clinics.callers[role]

    other = await caller.data(APPOINTMENT, id=str(clinics.in_b))
    lists = await caller.data(LISTS, clinicId=str(clinics.world.clinic_b.id))

    assert other["appointment"]["clinic"] == {"id": str(clinics.world.clinic_b.id)}
    assert ids(lists["filtered"]) == {str(clinics.in_b)}
    assert ids(lists["clinics"]) == {str(clinics.world.clinic_a.id), str(clinics.world.clinic_b.id)}
