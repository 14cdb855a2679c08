"""The contract and its revert, with the service running and from the command line.

Every test here contracts the session's database and reverts it at the end (the
engine fixture is shared by the whole run).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

import migrations
from appointments.backfill import BackfillOptions, run_backfill
from appointments.models import Appointment, MigrationMismatch, MismatchField, utcnow
from appointments.stages import Stage
from tests.conftest import World
from tests.test_backfill import book
from tests.test_full_switch import run_cli

Cli = Callable[..., Awaitable[tuple[int, str, str]]]


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    database_url: str,
    flags_file: Path,
) -> Iterator[Cli]:
    """``clinic ...`` as a person runs it: its own thread and event loop; (code, out, err).

    The command configures logging for the process; the test runner's is put back after.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level

    async def run(*arguments: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = await asyncio.to_thread(run_cli, monkeypatch, database_url, flags_file, *arguments)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    yield run
    root.handlers[:] = handlers
    root.setLevel(level)


async def revert_if_contracted(engine: AsyncEngine) -> None:
    if migrations.CONTRACT_REVISION in await migrations.current_heads(engine):
        await migrations.revert_contract(engine)


@pytest_asyncio.fixture
async def linked(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], world: World
) -> AsyncIterator[int]:
    """Appointments of clinic A, every one linked (the contract accepts them); reverted after.

    The ledger has an entry (a row written in ``complete`` has no legacy doctor), as
    it does once a clinic was compared: the contract and its revert keep it.
    """
    booked = await book(sessions, world, Stage.DUAL_WRITE, 6)
    await run_backfill(sessions, BackfillOptions(create_memberships=True))
    written_in_complete = await book(sessions, world, Stage.COMPLETE, 2, offset=20)
    async with sessions() as session, session.begin():
        now = utcnow()
        session.add(
            MigrationMismatch(
                appointment_id=written_in_complete[0],
                clinic_id=world.clinic_a.id,
                field=MismatchField.DOCTOR.value,
                legacy_value=None,
                new_value=world.doctor.id,
                stage=Stage.SHADOW.value,
                first_seen_at=now,
                last_seen_at=now,
                times_seen=1,
            )
        )
    try:
        yield len(booked) + len(written_in_complete)
    finally:
        await revert_if_contracted(engine)


@pytest_asyncio.fixture
async def contracted(engine: AsyncEngine, linked: int) -> int:
    await migrations.upgrade(engine, migrations.CONTRACT_REVISION)
    return linked


async def test_the_contract_and_its_revert_keep_the_ledger_and_its_references(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], contracted: int
) -> None:
    """SQLite recreates ``appointments`` both ways; ledger rows reference it (foreign keys)."""
    assert await migrations.legacy_columns_present(engine) is False

    await migrations.revert_contract(engine)

    async with sessions() as session:
        (entry,) = (await session.execute(select(MigrationMismatch))).scalars()
        assert await session.get(Appointment, entry.appointment_id) is not None
    async with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            assert (await connection.exec_driver_sql("PRAGMA foreign_keys")).scalar_one() == 1
            assert (await connection.exec_driver_sql("PRAGMA foreign_key_check")).all() == []
