"""One autopilot pass at a time, per database, released if its process dies.

PostgreSQL: a session-level advisory lock on a connection held for the pass
(the server releases it when the connection closes, ``kill -9`` included).
SQLite: an exclusive ``flock`` on a file beside the database file (the kernel
releases it when the process exits); an in-memory database has one process.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

LOCK_SPACE = 0x524F4C4C
"""First key of the autopilot's two-key advisory lock ("ROLL")."""
LOCK_KEY = 1


@asynccontextmanager
async def pass_lock(engine: AsyncEngine) -> AsyncIterator[bool]:
    """Try to take the lock; yields whether it was taken (never waits)."""
    if engine.dialect.name == "postgresql":
        async with engine.connect() as connection:
            taken = bool(
                await connection.scalar(
                    text("SELECT pg_try_advisory_lock(:space, :key)"),
                    {"space": LOCK_SPACE, "key": LOCK_KEY},
                )
            )
            await connection.commit()
            try:
                yield taken
            finally:
                if taken:
                    await connection.scalar(
                        text("SELECT pg_advisory_unlock(:space, :key)"),
                        {"space": LOCK_SPACE, "key": LOCK_KEY},
                    )
                    await connection.commit()
        return
    database = engine.url.database
    if not database or database == ":memory:":
        yield True
        return
    descriptor = os.open(f"{database}.rollout-lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)
