"""What the CLI commands share: one database transaction on an engine of its own, and who
a command acts as."""

from __future__ import annotations

import argparse
import asyncio
import getpass
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from appointments.db import create_engine, create_session_factory
from server.settings import Settings

T = TypeVar("T")


@asynccontextmanager
async def command_engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine on the configured database for one command, disposed of after."""
    engine = create_engine(
        settings.database_url, prepare_threshold=settings.database_prepare_threshold
    )
    try:
        yield engine
    finally:
        await engine.dispose()


@asynccontextmanager
async def command_transaction(settings: Settings) -> AsyncIterator[AsyncSession]:
    """One transaction on an engine of the command's own (committed when the block
    ends, rolled back when it raises), the engine disposed of after."""
    async with (
        command_engine(settings) as engine,
        create_session_factory(engine)() as session,
        session.begin(),
    ):
        yield session


def in_transaction(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in ``command_transaction``, from synchronous code."""

    async def run() -> T:
        async with command_transaction(settings) as session:
            return await work(session)

    return asyncio.run(run())


def cli_actor(arguments: argparse.Namespace) -> str:
    """Who a command records as acting: ``--actor``, else ``cli:<login name>``."""
    actor: str | None = arguments.actor
    return actor or f"cli:{getpass.getuser()}"
