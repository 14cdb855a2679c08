"""An idempotent replay answers what a fresh request would: access is checked again, now.

A viewer who lost a clinic (or whose role may no longer do the write) gets the
typed error a first attempt would get today, never the stored result, over
HTTP through the real app with bearer tokens.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest_asyncio
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments import directory
from appointments.models import Appointment, ClinicDoctor, ClinicStaff, User, UserRole
from appointments.stages import Stage
from server.auth import mint_token
from server.settings import Settings
from tests.conftest import Api, World, consistent_links, insert_appointment, open_api, set_stages

SECRET = "idempotency-access-secret-0123456789"
CREATE = """
mutation($input: CreateAppointmentInput!) {
  createAppointment(input: $input) {
    __typename
    ... on UserError { code message field }
    ... on AppointmentSuccess {
      appointment { id clinic { name } patient { fullName dateOfBirth } }
    }
  }
}
"""
RESCHEDULE = """
mutation($id: ID!) {
  rescheduleAppointment(input: {appointmentId: $id, startsAt: "2026-12-22T10:00:00Z",
      endsAt: "2026-12-22T10:30:00Z"}) {
    __typename
    ... on UserError { code message field }
    ... on AppointmentSuccess { appointment { id patient { fullName } } }
  }
}
"""
APPOINTMENT = "query($id: ID!) { appointment(id: $id) { id patient { fullName } } }"


@dataclass(frozen=True, slots=True)
class Answer:
    data: dict[str, Any]
    replayed: bool


@dataclass
class Members:
    api: Api
    world: World
    settings: Settings

    def token(self, user_id: uuid.UUID, role: UserRole) -> str:
        return mint_token(self.settings, user_id, role, hours=1)

    async def send(
        self, token: str, query: str, variables: dict[str, Any], key: str | None = None
    ) -> Answer:
        headers = {"Authorization": f"Bearer {token}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        response = await self.api.client.post(
            "/graphql", json={"query": query, "variables": variables}, headers=headers
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body["errors"]
        return Answer(body["data"], response.headers.get("Idempotent-Replayed") == "true")


@pytest_asyncio.fixture
async def members(
    database_url: str,
    flags_file: Path,
    world: World,
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[Members]:
    async with sessions() as session, session.begin():
        await directory.add_clinic_staff(session, world.clinic_a.id, world.staff.id)
    set_stages(flags_file, {world.clinic_a.id: Stage.DUAL_WRITE})
    async with open_api(database_url, flags_file, production=True, jwt_secret=SECRET) as api:
        yield Members(api, world, Settings(jwt_secret=SECRET))


def booking(world: World) -> dict[str, Any]:
    return {
        "input": {
            "clinicId": str(world.clinic_a.id),
            "startsAt": "2026-12-20T09:00:00Z",
            "endsAt": "2026-12-20T09:30:00Z",
            "doctorId": str(world.doctor.id),
            "patientId": str(world.patient.id),
        }
    }


async def appointment_count(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return await session.scalar(select(func.count()).select_from(Appointment)) or 0


async def test_staff_removed_from_the_clinic_get_not_found_on_replay_not_the_stored_booking(
    members: Members, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = members.world
    staff = members.token(world.staff.id, UserRole.STAFF)
    first = await members.send(staff, CREATE, booking(world), key="harbor-1")
    appointment_id = first.data["createAppointment"]["appointment"]["id"]
    while_member = await members.send(staff, CREATE, booking(world), key="harbor-1")
    async with sessions() as session, session.begin():
        await session.execute(delete(ClinicStaff).where(ClinicStaff.user_id == world.staff.id))
    seen_now = await members.send(staff, APPOINTMENT, {"id": appointment_id})

    replay = await members.send(staff, CREATE, booking(world), key="harbor-1")
    fresh = await members.send(staff, CREATE, booking(world), key="harbor-2")

    assert first.data["createAppointment"]["appointment"]["patient"]["fullName"] == "Patient 0"
    assert (while_member.replayed, while_member.data) == (True, first.data)
    assert seen_now.data == {"appointment": None}
    assert replay.data["createAppointment"] == {
        "__typename": "NotFoundError",
        "code": "NOT_FOUND",
        "message": "no clinic has this id",
        "field": "clinicId",
    }
    assert replay == fresh, "the replay answers exactly what a fresh request answers"
    assert replay.replayed is False
    assert await appointment_count(sessions) == 1


async def test_a_role_that_may_no_longer_book_gets_forbidden_on_replay(
    members: Members, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = members.world
    staff = members.token(world.staff.id, UserRole.STAFF)
    as_qa = members.token(world.staff.id, UserRole.QA)
    await members.send(staff, CREATE, booking(world), key="role-1")
    async with sessions() as session, session.begin():
        await session.execute(
            update(User).where(User.id == world.staff.id).values(role=UserRole.QA.value)
        )

    replay = await members.send(as_qa, CREATE, booking(world), key="role-1")
    fresh = await members.send(as_qa, CREATE, booking(world), key="role-2")

    assert replay.data["createAppointment"]["code"] == "FORBIDDEN"
    assert "appointment" not in replay.data["createAppointment"]
    assert replay == fresh
    assert await appointment_count(sessions) == 1


async def test_a_doctor_whose_appointment_went_to_a_colleague_gets_forbidden_on_replay(
    members: Members, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = members.world
    async with sessions() as session, session.begin():
        own = await insert_appointment(session, world, 9, **consistent_links(world))
    doctor = members.token(world.doctor.id, UserRole.DOCTOR)
    first = await members.send(doctor, RESCHEDULE, {"id": str(own)}, key="move-1")
    async with sessions() as session, session.begin():
        await session.execute(
            update(Appointment)
            .where(Appointment.id == own)
            .values(doctor_id=world.other_doctor.id, clinic_doctor_id=world.other_clinic_doctor.id)
        )

    replay = await members.send(doctor, RESCHEDULE, {"id": str(own)}, key="move-1")
    fresh = await members.send(doctor, RESCHEDULE, {"id": str(own)}, key="move-2")

    assert first.data["rescheduleAppointment"]["__typename"] == "AppointmentSuccess"
    assert replay.data["rescheduleAppointment"]["code"] == "FORBIDDEN"
    assert replay.data["rescheduleAppointment"]["field"] == "appointmentId"
    assert replay == fresh


async def test_a_doctor_no_longer_active_in_the_clinic_gets_not_found_on_replay(
    members: Members, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = members.world
    async with sessions() as session, session.begin():
        own = await insert_appointment(session, world, 9, **consistent_links(world))
    doctor = members.token(world.doctor.id, UserRole.DOCTOR)
    await members.send(doctor, RESCHEDULE, {"id": str(own)}, key="gone-1")
    async with sessions() as session, session.begin():
        await session.execute(
            update(ClinicDoctor)
            .where(ClinicDoctor.id == world.clinic_doctor.id)
            .values(active=False)
        )

    replay = await members.send(doctor, RESCHEDULE, {"id": str(own)}, key="gone-1")
    fresh = await members.send(doctor, RESCHEDULE, {"id": str(own)}, key="gone-2")

    assert replay.data["rescheduleAppointment"] == {
        "__typename": "NotFoundError",
        "code": "NOT_FOUND",
        "message": "no appointment has this id",
        "field": "appointmentId",
    }
    assert replay == fresh


async def test_a_patient_created_in_a_clinic_the_viewer_left_is_not_replayed(
    members: Members, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = members.world
    staff = members.token(world.staff.id, UserRole.STAFF)
    create = """
    mutation($input: CreatePatientInput!) {
      createPatient(input: $input) {
        __typename
        ... on UserError { code message field }
        ... on PatientSuccess { patient { fullName dateOfBirth } }
      }
    }
    """
    walk_in = {"input": {"fullName": "Walk-in", "clinicId": str(world.clinic_a.id)}}
    first = await members.send(staff, create, walk_in, key="walk-in-1")
    async with sessions() as session, session.begin():
        await session.execute(delete(ClinicStaff).where(ClinicStaff.user_id == world.staff.id))

    replay = await members.send(staff, create, walk_in, key="walk-in-1")
    fresh = await members.send(staff, create, walk_in, key="walk-in-2")

    assert first.data["createPatient"]["patient"]["fullName"] == "Walk-in"
    assert replay.data["createPatient"]["code"] == "NOT_FOUND"
    assert replay == fresh
