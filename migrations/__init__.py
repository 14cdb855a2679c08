"""Alembic environment and revisions, and running them from code.

The service upgrades itself to ``SERVICE_HEAD`` (every expand revision). The
contract revision, which drops the legacy columns, runs only when asked for
(``clinic migrate contract``): it is the point of no easy return. It sits on a
branch of its own (label ``contract``) off 0004, and expand revisions after it
continue the ``service`` branch, so a contracted database still takes them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from appointments.layout import is_missing_column as is_missing_column
from appointments.layout import legacy_columns_present as legacy_columns_present

SCRIPT_LOCATION = Path(__file__).parent


class ContractRefusedError(RuntimeError):
    """The contract revision would lose data; the message says what to run first."""


SERVICE_HEAD = "0015_user_notify"
CONTRACT_REVISION = "0005_contract_legacy_columns"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


async def current_heads(engine: AsyncEngine) -> set[str]:
    """The revisions applied at the tip of each branch (two once the contract ran)."""

    def read(connection: Connection) -> set[str]:
        return set(MigrationContext.configure(connection).get_current_heads())

    async with engine.connect() as connection:
        return await connection.run_sync(read)


@asynccontextmanager
async def migration_connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection in a transaction to run revisions on.

    On SQLite foreign keys are off while the revisions run, as Alembic's batch mode
    needs: it recreates a table (copy, drop, rename), and dropping ``appointments``
    while ledger rows reference it fails with foreign keys on. The rows keep their
    ids, so every reference holds again afterwards. Foreign keys are turned back on
    before the connection returns to the pool (it is discarded if that fails).
    """
    async with engine.connect() as connection:
        if connection.dialect.name != "sqlite":
            async with connection.begin():
                yield connection
            return
        try:
            await _sqlite_foreign_keys(connection, on=False)
            async with connection.begin():
                yield connection
        finally:
            try:
                await _sqlite_foreign_keys(connection, on=True)
            except Exception:
                await connection.invalidate()


async def _sqlite_foreign_keys(connection: AsyncConnection, on: bool) -> None:
    """Set and check SQLite's foreign keys (pysqlite opens no transaction for a PRAGMA,
    inside which SQLite would ignore it)."""
    await connection.exec_driver_sql(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
    state = (await connection.exec_driver_sql("PRAGMA foreign_keys")).scalar_one()
    await connection.commit()
    if bool(state) is not on:
        raise RuntimeError(f"could not turn SQLite's foreign keys {'on' if on else 'off'}")


async def upgrade(engine: AsyncEngine, revision: str = SERVICE_HEAD) -> None:
    """Upgrade to ``revision``; the service head leaves a contracted database contracted."""

    def run(connection: Connection) -> None:
        command.upgrade(alembic_config(connection), revision)

    async with migration_connection(engine) as connection:
        await connection.run_sync(run)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    def run(connection: Connection) -> None:
        command.downgrade(alembic_config(connection), revision)

    async with migration_connection(engine) as connection:
        await connection.run_sync(run)


async def revert_contract(engine: AsyncEngine) -> bool:
    """Undo the contract: restore the legacy columns, filled from the memberships.

    Downgrades the ``contract`` branch by one revision (``contract@-1``) and nothing
    else: the ``service`` branch (0006 and later) stays. A plain ``downgrade
    0005_contract_legacy_columns-1`` would take 0006 down too, as 0004 is below both.
    False, changing nothing, when the contract has not been applied.
    """
    if CONTRACT_REVISION not in await current_heads(engine):
        return False
    await downgrade(engine, "contract@-1")
    return True
