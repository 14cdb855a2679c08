"""A write that committed never answers a bare error: when its payload cannot be read
(here: PostgreSQL terminates the request's read connection just before, twice: a read
that meets a dead connection runs once more on a fresh one), the answer says the
write succeeded and names the appointment."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from sqlalchemy import event, make_url, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.models import Appointment
from tests.conftest import Api, World
from tests.test_appointment_mutations import CREATE_APPOINTMENT


class PayloadReadKiller:
    """Terminates the backend of the connection about to run a read-model statement (the
    payload's), the first ``times`` times, as a database restart or a pooler would."""

    def __init__(self, database_url: str, times: int) -> None:
        url = make_url(database_url).set(drivername="postgresql")
        self.dsn = url.render_as_string(hide_password=False)
        self.times = times
        self.killed = 0

    def __call__(self, connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if self.killed >= self.times or " AS node" not in statement:
            return
        pid = connection.connection.dbapi_connection.info.backend_pid
        with psycopg.connect(self.dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))
        self.killed += 1


def booking(world: World) -> dict[str, Any]:
    return {
        "input": {
            "clinicId": str(world.clinic_a.id),
            "doctorId": str(world.doctor.id),
            "patientId": str(world.patient.id),
            "startsAt": "2027-05-03T09:00:00Z",
            "endsAt": "2027-05-03T09:30:00Z",
        }
    }


async def create_killing_payload_reads(api: Api, world: World, killer: PayloadReadKiller) -> Any:
    engine = api.services.engine.sync_engine
    event.listen(engine, "before_cursor_execute", killer)
    try:
        return await api.post(CREATE_APPOINTMENT, booking(world))
    finally:
        event.remove(engine, "before_cursor_execute", killer)


async def test_a_committed_create_whose_payload_fails_says_it_committed_and_names_it(
    api: Api, world: World, database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("terminating a backend needs PostgreSQL")
    killer = PayloadReadKiller(database_url, times=2)
    body = await create_killing_payload_reads(api, world, killer)

    async with sessions() as session:
        stored = (await session.scalars(select(Appointment.id))).all()
    assert killer.killed == 2
    assert len(stored) == 1, "the write committed"
    [error] = body["errors"]
    assert error["extensions"]["code"] == "WRITE_COMMITTED"
    assert error["extensions"]["committed"] is True
    assert error["extensions"]["appointmentId"] == str(stored[0])
    assert uuid.UUID(error["extensions"]["appointmentId"]) == stored[0]
    assert "do not repeat it" in error["message"]
    after = await api.data(
        "query($id: ID!) { appointment(id: $id) { id } }", {"id": str(stored[0])}
    )
    assert after["appointment"] == {"id": str(stored[0])}


async def test_a_payload_read_that_meets_a_dead_connection_is_read_again(
    api: Api, world: World, database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("terminating a backend needs PostgreSQL")
    killer = PayloadReadKiller(database_url, times=1)
    body = await create_killing_payload_reads(api, world, killer)

    async with sessions() as session:
        stored = (await session.scalars(select(Appointment.id))).all()
    assert killer.killed == 1
    assert "errors" not in body, body
    assert body["data"]["result"]["appointment"]["id"] == str(stored[0])
