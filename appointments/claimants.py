"""Whether the request holding an idempotency claim is still alive, as the database can tell.

PostgreSQL: a request claims a key on one connection and keeps that
connection for the whole request: the claim, the write and a release all run
on it. With the claim it takes a session-level advisory lock on the key, and
lets go of the lock when the request ends. PostgreSQL drops the lock with the
backend that holds it, whatever ends that backend (a server restart,
``pg_terminate_backend``, the service's process killed), and the write's
transaction, on the same backend, ends with it. So a retry that finds a key
``running`` and can take its lock knows that the first attempt can no longer
commit anything, and takes the claim over at once; while the lock is held the
claimant is alive and the retry is refused as in use. The claim timeout stays
the last resort (a live but stuck claimant). The lock is never left behind on
a pooled connection: if letting go of it fails, the connection is discarded.

SQLite: nothing tells. A claim's holder counts as alive until the claim
timeout. The embedded database may be shared by several worker processes
(``clinic serve --workers N``), so no process can tell from what it knows
itself that another one's claim is dead.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

logger = logging.getLogger("appointments.claimants")

LOCK_SPACE = 0x1DE3
"""First key of the two-key advisory locks this module takes (the second is the claim's)."""

_TAKE = text("SELECT pg_try_advisory_lock(:space, :key), pg_backend_pid()")
_LET_GO = text("SELECT pg_advisory_unlock(:space, :key) WHERE pg_backend_pid() = :backend")


@dataclass
class ClaimHold:
    """This request's hold on one key. ``key`` is None where holds cannot be told (SQLite)."""

    key: int | None
    backend: int | None = None
    """The PostgreSQL backend holding the lock, once taken."""

    async def hold(self, session: AsyncSession) -> bool:
        """Hold the key for a new claim of this request; False if a live connection holds it
        already (a request of the same key is still finishing). True where holds cannot be told.
        """
        return True if self.key is None else await self._take(session)

    async def claimant_gone(self, session: AsyncSession) -> bool:
        """Whether the key's ``running`` claim belongs to no live connection; if so, this
        request holds the key now. False where holds cannot be told."""
        return False if self.key is None else await self._take(session)

    async def _take(self, session: AsyncSession) -> bool:
        if self.backend is not None:
            return True
        taken, backend = (
            await session.execute(_TAKE, {"space": LOCK_SPACE, "key": self.key})
        ).one()
        if taken:
            self.backend = backend
        return bool(taken)


@asynccontextmanager
async def claimant(
    sessions: async_sessionmaker[AsyncSession], *identity: str
) -> AsyncIterator[tuple[async_sessionmaker[AsyncSession], ClaimHold]]:
    """Sessions for one request's claim, write and release, and its hold on the key that
    ``identity`` names. On PostgreSQL they all run on one connection, and the hold is let go
    when the block ends; elsewhere they are ``sessions`` themselves."""
    engine = sessions.kw.get("bind")
    if not isinstance(engine, AsyncEngine) or engine.dialect.name != "postgresql":
        yield sessions, ClaimHold(None)
        return
    hold = ClaimHold(_lock_key(identity))
    async with engine.connect() as connection:
        try:
            yield _bound_to(sessions, connection), hold
        finally:
            await _let_go(connection, hold)


def _lock_key(identity: tuple[str, ...]) -> int:
    """A 32-bit key for the claim; two claims sharing one only wait for each other."""
    digest = hashlib.sha256("\0".join(identity).encode()).digest()
    return int.from_bytes(digest[:4], "big", signed=True)


def _bound_to(
    sessions: async_sessionmaker[AsyncSession], connection: AsyncConnection
) -> async_sessionmaker[AsyncSession]:
    """``sessions`` with every session on ``connection`` (each commits its own transaction)."""
    settings = {**sessions.kw, "bind": connection}
    return async_sessionmaker(class_=sessions.class_, **settings)


async def _let_go(connection: AsyncConnection, hold: ClaimHold) -> None:
    """Release the lock if this backend still holds it; otherwise drop the connection, so a
    lock never goes back to the pool. A connection that was replaced after its backend died
    (the lock died with it) has another backend, and is left alone."""
    if hold.backend is None:
        return
    parameters = {"space": LOCK_SPACE, "key": hold.key, "backend": hold.backend}
    try:
        await connection.execute(_LET_GO, parameters)
        await connection.commit()
    except Exception:
        logger.warning(
            "could not release an idempotency claim's lock; closing its connection", exc_info=True
        )
        await connection.invalidate()
    except BaseException:
        await connection.invalidate()
        raise
