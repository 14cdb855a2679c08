"""Alembic environment and revisions, and running them from code.

The service upgrades itself to ``SERVICE_HEAD`` (every expand revision). The
contract revision, which drops the legacy columns, runs only when asked for
(``clinic migrate contract``): it is the point of no easy return. It sits on a
branch of its own (label ``contract``) off 0004, and expand revisions after it
continue the ``service`` branch, so a contracted database still takes them.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import AsyncEngine

SCRIPT_LOCATION = Path(__file__).parent


class ContractRefusedError(RuntimeError):
    """The contract revision would lose data; the message says what to run first."""


SERVICE_HEAD = "0007_users_active"
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


async def upgrade(engine: AsyncEngine, revision: str = SERVICE_HEAD) -> None:
    """Upgrade to ``revision``; the service head leaves a contracted database contracted."""

    def run(connection: Connection) -> None:
        command.upgrade(alembic_config(connection), revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    def run(connection: Connection) -> None:
        command.downgrade(alembic_config(connection), revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)


async def revert_contract(engine: AsyncEngine) -> None:
    """Run the contract's downgrade: restore the legacy columns, filled from the memberships."""
    await downgrade(engine, "contract@-1")


async def legacy_columns_present(engine: AsyncEngine) -> bool:
    """False once the contract revision has dropped ``appointments.doctor_id``/``patient_id``."""

    def read(connection: Connection) -> bool:
        columns = {column["name"] for column in inspect(connection).get_columns("appointments")}
        return "doctor_id" in columns

    async with engine.connect() as connection:
        return await connection.run_sync(read)
