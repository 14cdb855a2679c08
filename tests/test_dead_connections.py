"""Connections PostgreSQL ended (a restart, a terminated backend) cost no failed read.

The pool does not ping a connection before handing it out; a read that meets a dead
one runs again, once, on a fresh connection. Only the app's own connections are
terminated here: the test database's other users are left alone.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
import pytest
from sqlalchemy import event, literal, make_url, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from appointments.db import SerializedSession
from tests.conftest import Api, Clinics, World

LIST = """
query List($clinicId: ID!) {
  appointments(first: 5, filter: {clinicId: $clinicId}) { edges { node { id doctor { name } } } }
}
"""
RETRIED = "a read met a dead connection; running it again on a fresh one"


class Checkouts:
    """The server process of every connection the engine's pool hands out, in order."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.backends: list[int] = []
        event.listen(engine.sync_engine, "checkout", self._checked_out)

    def _checked_out(self, _dbapi: Any, record: Any, _proxy: Any) -> None:
        self.backends.append(record.driver_connection.info.backend_pid)


def terminate(database_url: str, backends: list[int]) -> None:
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(dsn, autocommit=True) as connection:
        for backend in backends:
            # With a timeout, it returns once the backend has exited.
            connection.execute("SELECT pg_terminate_backend(%s, 10000)", (backend,))


@pytest.fixture
def postgresql(database_url: str) -> str:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no server whose connections can die")
    return database_url


async def test_a_read_after_every_pooled_connection_was_terminated_succeeds(
    api: Api, world: World, postgresql: str, caplog: pytest.LogCaptureFixture
) -> None:
    checkouts = Checkouts(api.services.engine)
    variables = {"clinicId": str(world.clinic_a.id)}
    await api.data(LIST, variables)
    terminated = set(checkouts.backends)
    assert terminated, "the request checked a connection out"
    terminate(postgresql, sorted(terminated))
    checkouts.backends.clear()

    with caplog.at_level(logging.INFO, logger="appointments.db"):
        data = await api.data(LIST, variables)

    assert data["appointments"]["edges"] == []
    assert RETRIED in caplog.text, "the read must have met a terminated connection"
    assert terminated & set(checkouts.backends), "the first attempt met a terminated one"
    assert checkouts.backends[-1] not in terminated, "the retry ran on a fresh connection"


async def test_a_token_checked_on_a_terminated_connection_is_still_accepted(
    clinics: Clinics, postgresql: str, caplog: pytest.LogCaptureFixture
) -> None:
    staff = clinics.callers["staff"]
    checkouts = Checkouts(staff.api.services.engine)
    await staff.data(LIST, clinicId=str(clinics.world.clinic_a.id))
    terminate(postgresql, sorted(set(checkouts.backends)))

    with caplog.at_level(logging.INFO, logger="appointments.db"):
        data = await staff.data(LIST, clinicId=str(clinics.world.clinic_a.id))

    assert [edge["node"]["id"] for edge in data["appointments"]["edges"]] == [
        str(clinics.in_a),
        str(clinics.colleague_in_a),
    ]
    assert RETRIED in caplog.text


async def test_a_read_is_run_again_only_once(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], postgresql: str
) -> None:
    """A second dead connection in a row is the database's answer: it is not hidden."""
    attempts = 0

    async def dies_every_time(session: AsyncSession) -> None:
        nonlocal attempts
        attempts += 1
        connection = await session.connection()
        raw = await connection.get_raw_connection()
        assert raw.driver_connection is not None
        terminate(postgresql, [raw.driver_connection.info.backend_pid])
        await session.execute(select(literal(1)))

    serialized = SerializedSession(sessions)
    with pytest.raises(DBAPIError) as raised:
        await serialized.run(dies_every_time)
    await serialized.close()

    assert raised.value.connection_invalidated
    assert attempts == 2
