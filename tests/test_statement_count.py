"""The number of SQL statements for a list does not grow with its length."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments import writes
from appointments.events import PendingEvents
from appointments.ledger_sightings import SEEN_AGAIN
from appointments.models import Appointment, UserRole
from appointments.read_model.runner import known_clinics
from appointments.stages import Stage, fixed_stage
from server.auth import mint_token
from server.settings import Settings
from tests.conftest import (
    READ_CLINIC,
    Api,
    Mess,
    World,
    consistent_links,
    insert_appointment,
    ledger_rows,
    open_api,
    set_stages,
)

LIST = """
query List($clinicId: ID!, $first: Int!) {
  appointments(first: $first, filter: {clinicId: $clinicId}) {
    edges {
      node {
        id startsAt status
        clinic { name }
        doctor { name }
        patient { fullName }
        clinicDoctor { active user { name } clinic { name } }
        clinicPatient { patient { fullName } }
      }
    }
  }
}
"""

HISTORY = (Stage.LEGACY, Stage.DUAL_WRITE, Stage.COMPLETE)


async def seed_appointments(
    sessions: async_sessionmaker[AsyncSession], world: World, count: int
) -> None:
    """Rows written in different stages, linked and unlinked, so every read path is exercised."""
    doctors = (world.doctor, world.other_doctor, world.doctor_without_membership)
    patients = (world.patient, world.other_patient, world.patient_without_membership)
    start = datetime(2026, 12, 1, 8, tzinfo=UTC)
    async with sessions() as session, session.begin():
        for number in range(count):
            stage = HISTORY[number % len(HISTORY)]
            doctor = doctors[number % 2] if stage is Stage.COMPLETE else doctors[number % 3]
            patient = patients[number % 2] if stage is Stage.COMPLETE else patients[number % 3]
            await writes.create_appointment(
                session,
                fixed_stage(stage),
                writes.NewAppointment(
                    clinic_id=world.clinic_a.id,
                    starts_at=start + timedelta(hours=number),
                    ends_at=start + timedelta(hours=number, minutes=30),
                    doctor=writes.PersonReference(person_id=doctor.id),
                    patient=writes.PersonReference(person_id=patient.id),
                ),
                PendingEvents(),
            )


async def statements_for(api: Api, world: World, first: int) -> int:
    before = api.statements.count
    data = await api.data(LIST, {"clinicId": str(world.clinic_a.id), "first": first})
    assert len(data["appointments"]["edges"]) == first
    return api.statements.count - before


@pytest.mark.parametrize("stage", list(Stage), ids=[stage.value for stage in Stage])
async def test_statement_count_is_the_same_for_10_and_100_rows(
    api: Api,
    world: World,
    flags_file: Any,
    sessions: async_sessionmaker[AsyncSession],
    stage: Stage,
) -> None:
    await seed_appointments(sessions, world, 100)
    set_stages(flags_file, {world.clinic_a.id: stage})
    await statements_for(api, world, 1)

    for_ten = await statements_for(api, world, 10)
    for_hundred = await statements_for(api, world, 100)

    assert for_ten == for_hundred
    assert for_hundred <= 12


ONE = "query One($id: ID!) { appointment(id: $id) { id doctor { name } } }"


async def test_an_appointment_by_id_is_one_statement_once_its_clinic_is_known(
    api: Api, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Read by id, an appointment first needs a statement to learn its clinic (whose stage
    decides how it is served); one a list has shown needs only its read."""
    await seed_appointments(sessions, world, 4)
    listed = await api.data(LIST, {"clinicId": str(world.clinic_a.id), "first": 2})
    shown = [edge["node"]["id"] for edge in listed["appointments"]["edges"]]
    async with sessions() as session:
        # The last by start: the list read its first two and one more (to learn that a
        # next page follows), not this one.
        never_shown = await session.scalar(
            select(Appointment.id).order_by(Appointment.starts_at.desc()).limit(1)
        )
    assert never_shown is not None

    async def statements(appointment_id: str) -> int:
        before = api.statements.count
        data = await api.data(ONE, {"id": appointment_id})
        assert data["appointment"]["id"] == appointment_id
        return api.statements.count - before

    assert await statements(str(never_shown)) == 2
    assert await statements(str(never_shown)) == 1
    assert await statements(shown[0]) == 1


async def test_a_wrongly_remembered_clinic_is_learnt_again(
    api: Api, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The read checks the remembered clinic in its statement: an appointment not found
    there is looked up again, and served by its own clinic's stage."""
    await seed_appointments(sessions, world, 1)
    async with sessions() as session:
        appointment_id = await session.scalar(select(Appointment.id))
    assert appointment_id is not None
    known_clinics.forget(appointment_id)
    known_clinics.remember(appointment_id, world.clinic_b.id)

    data = await api.data(ONE, {"id": str(appointment_id)})

    assert data["appointment"]["id"] == str(appointment_id)
    assert known_clinics.get(appointment_id) == world.clinic_a.id


async def statements_of(api: Api, query: str, variables: dict[str, Any]) -> list[str]:
    """The SQL statements one request sends (the pool's and the driver's own aside)."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    engine = api.services.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        await api.data(query, variables)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return sent


def kinds(statements: list[str]) -> list[str]:
    return [statement.split(None, 1)[0].upper() for statement in statements]


async def test_a_consistent_shadow_page_is_one_statement(
    api: Api, world: World, flags_file: Any, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with sessions() as session, session.begin():
        for hour in range(9, 14):
            await insert_appointment(session, world, hour, **consistent_links(world))
    set_stages(flags_file, {world.clinic_a.id: Stage.SHADOW})
    read = {"clinicId": str(world.clinic_a.id)}

    assert kinds(await statements_of(api, READ_CLINIC, read)) == ["SELECT"]
    assert kinds(await statements_of(api, READ_CLINIC, read)) == ["SELECT"]
    assert await ledger_rows(sessions) == {}


async def test_a_first_seen_difference_costs_the_read_and_its_write_then_one_statement(
    api: Api, world: World, mess: Mess, flags_file: Any, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A difference seen for the first time is written before the response; seen again
    (its entry open) it is only counted, and the count reaches the ledger when flushed."""
    set_stages(flags_file, {world.clinic_a.id: Stage.SHADOW})
    read = {"clinicId": str(world.clinic_a.id)}

    first = kinds(await statements_of(api, READ_CLINIC, read))
    recorded = await ledger_rows(sessions)
    again = [kinds(await statements_of(api, READ_CLINIC, read)) for _ in range(2)]
    before_flush = await ledger_rows(sessions)
    await SEEN_AGAIN.flush(api.services.sessions)
    after_flush = await ledger_rows(sessions)

    assert first == ["SELECT", "INSERT"]
    assert {row.times_seen for row in recorded.values()} == {1}
    assert len(recorded) == 3
    assert again == [["SELECT"], ["SELECT"]]
    assert {row.times_seen for row in before_flush.values()} == {1}
    assert {key: row.times_seen for key, row in after_flush.items()} == dict.fromkeys(recorded, 3)
    assert all(row.last_seen_at > recorded[key].last_seen_at for key, row in after_flush.items())
    assert {row.status for row in after_flush.values()} == {"open"}


async def test_differences_seen_again_reach_the_ledger_when_the_service_stops(
    database_url: str,
    world: World,
    mess: Mess,
    flags_file: Any,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    set_stages(flags_file, {world.clinic_a.id: Stage.SHADOW})
    read = {"clinicId": str(world.clinic_a.id)}
    await SEEN_AGAIN.flush(sessions)  # what earlier tests counted elsewhere
    async with open_api(database_url, flags_file, health_flush_seconds=3600) as api:
        for _ in range(4):
            await api.data(READ_CLINIC, read)
        while_serving = await ledger_rows(sessions)

    stopped = await ledger_rows(sessions)
    assert {row.times_seen for row in while_serving.values()} == {1}
    assert {row.times_seen for row in stopped.values()} == {4}
    assert SEEN_AGAIN.pending == {}


TOKEN_SECRET = "statement-count-secret-0123456789-012"


async def test_a_token_costs_no_statement_once_its_user_is_known_on_postgresql(
    database_url: str, flags_file: Path, world: World
) -> None:
    """The token's user comes from the process's memory while it listens for changes of
    users (PostgreSQL); SQLite, with no notifications, checks it on every request."""
    token = mint_token(Settings(jwt_secret=TOKEN_SECRET), world.staff.id, UserRole.STAFF, 1)
    headers = {"Authorization": f"Bearer {token}"}
    postgresql = database_url.startswith("postgresql")
    async with open_api(database_url, flags_file, production=True, jwt_secret=TOKEN_SECRET) as api:
        if postgresql:
            await api.services.viewers.wait_listening(True)

        async def statements() -> int:
            before = api.statements.count
            response = await api.client.post(
                "/graphql", json={"query": "{ __typename }"}, headers=headers
            )
            assert response.json()["data"] == {"__typename": "Query"}
            return api.statements.count - before

        assert await statements() == 1
        steady = [await statements() for _ in range(3)]
        assert steady == ([0, 0, 0] if postgresql else [1, 1, 1])
