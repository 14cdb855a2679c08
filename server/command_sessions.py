"""One database transaction for a CLI command, on an engine of its own."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from appointments.db import create_engine, create_session_factory
from server.settings import Settings

T = TypeVar("T")


def in_transaction(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one transaction on the configured database (committed when it
    returns, rolled back when it raises), and dispose of the engine after."""

    async def run() -> T:
        engine = create_engine(
            settings.database_url, prepare_threshold=settings.database_prepare_threshold
        )
        try:
            async with create_session_factory(engine)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(run())
