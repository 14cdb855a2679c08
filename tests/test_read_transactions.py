"""How a request's read transaction ends: committed when it only read, so that the
statements psycopg prepared on the connection stay prepared (a rollback makes psycopg
forget them all), and rolled back when anything in it changed. And the session a
PostgreSQL connection starts with: in UTC, whatever the server's own zone."""

from __future__ import annotations

import uuid
from datetime import UTC
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.db import SerializedSession
from appointments.models import Clinic, UserRole
from server.auth import mint_token
from server.settings import Settings
from tests.conftest import Api, World, add_user, open_api

LIST = """
query List($clinicId: ID) {
  appointments(first: 5, filter: {clinicId: $clinicId}) {
    edges { node { id doctor { name } clinicPatient { id } } }
  }
}
"""


async def test_a_list_read_again_and_again_stays_prepared_on_postgresql(
    api: Api, world: World, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no server-side prepared statements")
    for _ in range(12):  # psycopg prepares on the 5th execution on one connection
        await api.data(LIST, {"clinicId": str(world.clinic_a.id)})

    # One request at a time: the pool has handed out one connection all along.
    async with api.services.engine.connect() as connection:
        prepared = (
            (await connection.execute(text("SELECT statement FROM pg_prepared_statements")))
            .scalars()
            .all()
        )

    assert any("appointments" in statement for statement in prepared), prepared


async def test_requests_with_tokens_keep_their_statements_prepared_on_postgresql(
    database_url: str,
    flags_file: Path,
    sessions: async_sessionmaker[AsyncSession],
    world: World,
) -> None:
    """The token's user is checked in the request's own session: nothing in the request
    rolls back, so what psycopg prepared on the connection stays prepared."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no server-side prepared statements")
    secret = "prepared-statements-secret-0123456789"
    admin = await add_user(sessions, UserRole.ADMIN)
    token = mint_token(Settings(jwt_secret=secret), admin, UserRole.ADMIN, hours=1)
    headers = {"Authorization": f"Bearer {token}"}
    # No token-user cache: the user's statement runs on every request, as when the
    # process does not listen for changes of users.
    async with open_api(
        database_url, flags_file, production=True, jwt_secret=secret, viewer_cache_size=0
    ) as api:
        variables = {"clinicId": str(world.clinic_a.id)}
        for _ in range(12):  # psycopg prepares on the 5th execution on one connection
            response = await api.client.post(
                "/graphql", json={"query": LIST, "variables": variables}, headers=headers
            )
            assert "errors" not in response.json()
        async with api.services.engine.connect() as connection:
            prepared = (
                (await connection.execute(text("SELECT statement FROM pg_prepared_statements")))
                .scalars()
                .all()
            )

    assert any(" AS node" in statement for statement in prepared), prepared
    assert any("FROM users" in statement for statement in prepared), prepared


async def test_postgresql_sessions_run_in_utc_so_moments_come_with_the_fixed_utc_zone(
    api: Api, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no session time zone")
    async with api.services.engine.connect() as connection:
        zone = (await connection.execute(text("SHOW TimeZone"))).scalar_one()
        moment = (await connection.execute(text("SELECT now()"))).scalar_one()

    assert zone == "UTC"
    assert moment.tzinfo is UTC


async def test_a_request_session_with_changes_is_rolled_back_not_committed(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    name = f"never stored {uuid.uuid4()}"
    serialized = SerializedSession(sessions)

    async def add_a_clinic(session: AsyncSession) -> None:
        session.add(Clinic(name=name))
        await session.flush()

    await serialized.run(add_a_clinic)
    await serialized.close()

    async with sessions() as session:
        stored = (await session.execute(select(Clinic).where(Clinic.name == name))).first()
    assert stored is None
