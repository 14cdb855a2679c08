"""A request's read model statements run on a pooled connection checked out without an
ORM session; a request that also reads through the ORM does so on that same connection.
On PostgreSQL the connection reads in autocommit, and what psycopg prepared on it stays
prepared from one request to the next."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import READ_CLINIC, Api, World, consistent_links, insert_appointment, open_api

CLINIC_AND_APPOINTMENTS = """
query Both($clinicId: ID!) {
  clinic(id: $clinicId) { name }
  appointments(first: 5, filter: {clinicId: $clinicId}) { edges { node { id } } }
}
"""


class CountedSessions(async_sessionmaker[AsyncSession]):
    """The service's read session factory, counting the sessions it makes."""

    made = 0

    def __call__(self, **local_kw: Any) -> AsyncSession:
        self.made += 1
        return super().__call__(**local_kw)


def count_sessions(api: Api) -> CountedSessions:
    read_sessions = api.services.read_sessions
    assert read_sessions is not None
    counted = CountedSessions(**read_sessions.kw)
    api.services.read_sessions = counted
    return counted


class Checkouts:
    count = 0

    def __call__(self, *_args: Any) -> None:
        self.count += 1


async def test_a_request_that_only_reads_the_read_model_makes_no_orm_session(
    api: Api, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with sessions() as session, session.begin():
        await insert_appointment(session, world, 9, **consistent_links(world))
    read = {"clinicId": str(world.clinic_a.id)}
    await api.data(READ_CLINIC, read)  # the clinic's stage and the viewer are known
    counted = count_sessions(api)
    statements = api.statements.count

    data = await api.data(READ_CLINIC, read)

    assert len(data["appointments"]["edges"]) == 1
    assert counted.made == 0
    assert api.statements.count > statements, "listeners see the read model's statements"


async def test_a_list_across_clinics_makes_no_orm_session_once_it_knows_the_clinics(
    api: Api, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """An admin's list without a clinic filter sends every clinic's stage; the clinics'
    ids are read once per process, and later lists open no ORM session for them."""
    async with sessions() as session, session.begin():
        await insert_appointment(session, world, 9, **consistent_links(world))
    across = "{ appointments(first: 5) { edges { node { id } } } }"
    await api.data(across)
    counted = count_sessions(api)

    data = await api.data(across)

    assert len(data["appointments"]["edges"]) == 1
    assert counted.made == 0


async def test_a_request_reading_through_the_orm_too_uses_one_connection(
    api: Api, world: World
) -> None:
    read = {"clinicId": str(world.clinic_a.id)}
    await api.data(CLINIC_AND_APPOINTMENTS, read)
    counted = count_sessions(api)
    checkouts = Checkouts()
    event.listen(api.services.engine.sync_engine, "checkout", checkouts)
    try:
        data = await api.data(CLINIC_AND_APPOINTMENTS, read)
    finally:
        event.remove(api.services.engine.sync_engine, "checkout", checkouts)

    assert data["clinic"]["name"] == world.clinic_a.name
    assert counted.made == 1
    assert checkouts.count == 1


async def prepared_reads(api: Api) -> list[tuple[str, Any, int]]:
    """The read model statements prepared on the pool's one connection: their text, when
    they were prepared and how many times they ran. The transaction is committed, so
    looking does not make psycopg forget what it prepared."""
    async with api.services.engine.connect() as connection:
        found = await connection.execute(
            text(
                "SELECT statement, prepare_time, generic_plans + custom_plans"
                " FROM pg_prepared_statements"
            )
        )
        await connection.commit()
        return [(row[0], row[1], row[2]) for row in found if " AS node" in row[0]]


async def test_a_read_model_statement_stays_prepared_across_requests_on_postgresql(
    database_url: str, flags_file: Path, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Prepared by the first request, and the same prepared statement ran for every later
    one: nothing between them (the connection going back to the pool, its reset, the
    next checkout) made psycopg forget it."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no server-side prepared statements")
    async with sessions() as session, session.begin():
        await insert_appointment(session, world, 9, **consistent_links(world))
    read = {"clinicId": str(world.clinic_a.id)}
    settings = {"database_pool_size": 1, "database_prepare_threshold": 0}  # at once
    async with open_api(database_url, flags_file, **settings) as api:
        await api.data(READ_CLINIC, read)
        ((statement, prepared_at, runs),) = await prepared_reads(api)
        for _ in range(10):
            await api.data(READ_CLINIC, read)
        after = await prepared_reads(api)

    assert runs == 1
    assert after == [(statement, prepared_at, 11)]
