"""The read model's statements run on the driver's own connection, and the connection's
settings still hold for them: psycopg's prepare threshold (prepared at once, never when
off) and the statement timeout (a read cut off fails cleanly, the next one is
served)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import psycopg
import pytest
from sqlalchemy import Integer, Select, bindparam, literal_column, make_url, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from appointments.read_model.driver import DriverStatement
from tests.conftest import READ_CLINIC, World, consistent_links, insert_appointment, open_api


def plain_dsn(database_url: str) -> str:
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


@pytest.fixture
def postgres_url(database_url: str) -> str:
    if not database_url.startswith("postgresql"):
        pytest.skip("prepared statements and statement timeouts are PostgreSQL's")
    return database_url


async def prepared_reads(services: Any) -> list[str]:
    """The read model statements prepared on the pool's one connection."""
    async with services.engine.connect() as connection:
        found = await connection.execute(text("SELECT statement FROM pg_prepared_statements"))
        return [row[0] for row in found if "appointments" in row[0] and "clinic_id" in row[0]]


@pytest.mark.parametrize(("threshold", "reads", "prepared"), [(5, 1, True), (None, 6, False)])
async def test_read_statements_are_prepared_at_once_unless_preparing_is_off(
    postgres_url: str,
    flags_file: Path,
    world: World,
    sessions: async_sessionmaker[AsyncSession],
    threshold: int | None,
    reads: int,
    prepared: bool,
) -> None:
    """A read model statement is prepared on its first execution, whatever the threshold
    (psycopg's default is 5) says for other statements; with preparing off (a threshold
    of None, for poolers that do not keep prepared statements), never."""
    async with sessions() as session, session.begin():
        await insert_appointment(session, world, 9, **consistent_links(world))
    settings = {"database_prepare_threshold": threshold, "database_pool_size": 1}
    async with open_api(postgres_url, flags_file, **settings) as api:
        answers = [
            await api.data(READ_CLINIC, {"clinicId": str(world.clinic_a.id)}) for _ in range(reads)
        ]
        statements = await prepared_reads(api.services)

    assert all(len(answer["appointments"]["edges"]) == 1 for answer in answers)
    assert bool(statements) is prepared


async def test_a_read_cut_off_by_the_statement_timeout_fails_cleanly_and_the_next_is_served(
    postgres_url: str, flags_file: Path, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with sessions() as session, session.begin():
        await insert_appointment(session, world, 9, **consistent_links(world))
    read = {"clinicId": str(world.clinic_a.id)}
    async with open_api(postgres_url, flags_file, statement_timeout_ms=300) as api:
        await api.data(READ_CLINIC, read)  # the token's user and the clinic's stage are known
        async with await psycopg.AsyncConnection.connect(plain_dsn(postgres_url)) as locker:
            await locker.execute("LOCK TABLE appointments IN ACCESS EXCLUSIVE MODE")
            blocked = await api.post(READ_CLINIC, read)
            await locker.rollback()
        after = await api.data(READ_CLINIC, read)

    (error,) = blocked["errors"]
    assert error["extensions"]["code"] == "INTERNAL_ERROR"
    assert "statement timeout" not in str(blocked)
    assert len(after["appointments"]["edges"]) == 1


async def test_named_placeholders_become_postgresql_numbers_once_per_name(
    postgres_url: str,
) -> None:
    """On PostgreSQL the statement is sent with ``$n`` placeholders (psycopg's raw cursor
    converts nothing per execution): a name used twice is one number, ``%%`` is ``%``,
    and the values bind in number order."""
    engine = create_async_engine(postgres_url)
    try:
        first = bindparam("first", type_=Integer)
        second = bindparam("second", type_=Integer)
        statement = cast(
            "Select[Any]",
            select(
                (first + second + first).label("total"), literal_column("'50%'").label("percent")
            ),
        )
        compiled = DriverStatement.of(statement, engine.dialect)
        assert "%(" not in compiled.sql
        assert "$1" in compiled.sql
        assert "$2" in compiled.sql
        assert "$3" not in compiled.sql
        async with engine.connect() as connection:
            sync = connection.sync_connection
            assert sync is not None
            rows = await compiled.run(sync, {"first": 2, "second": 5})
        assert [tuple(row) for row in rows] == [(9, "50%")]
    finally:
        await engine.dispose()
