"""A write that committed never answers a bare error: when its payload cannot be read
(here: PostgreSQL terminates the request's read connection just before), the answer
says the write succeeded and names the appointment."""

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
    """Terminates the backend of the connection about to run the first read-model
    statement (the payload's), as a database restart or a pooler would."""

    def __init__(self, database_url: str) -> None:
        url = make_url(database_url).set(drivername="postgresql")
        self.dsn = url.render_as_string(hide_password=False)
        self.killed = 0

    def __call__(self, connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if self.killed or "json_build_object" not in statement:
            return
        pid = connection.connection.dbapi_connection.info.backend_pid
        with psycopg.connect(self.dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        self.killed += 1


async def test_a_committed_create_whose_payload_fails_says_it_committed_and_names_it(
    api: Api, world: World, database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("terminating a backend needs PostgreSQL")
    variables = {
        "input": {
            "clinicId": str(world.clinic_a.id),
            "doctorId": str(world.doctor.id),
            "patientId": str(world.patient.id),
            "startsAt": "2027-05-03T09:00:00Z",
            "endsAt": "2027-05-03T09:30:00Z",
        }
    }
    killer = PayloadReadKiller(database_url)
    engine = api.services.engine.sync_engine
    event.listen(engine, "before_cursor_execute", killer)
    try:
        body = await api.post(CREATE_APPOINTMENT, variables)
    finally:
        event.remove(engine, "before_cursor_execute", killer)

    async with sessions() as session:
        stored = (await session.scalars(select(Appointment.id))).all()
    assert killer.killed == 1
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
