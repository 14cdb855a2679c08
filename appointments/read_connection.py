"""Pooled connections for a request's read model statements, checked out without an ORM
session.

An ``AsyncSession`` costs a greenlet hop and a transaction's bookkeeping to hand out its
connection, and two more to commit and close: about a fifth of the CPU of a request that
runs one read model statement. A ``ReadConnection`` is the pool's connection in a plain
``Connection`` (what ``before_cursor_execute`` listeners receive, what invalidation goes
through), checked out and in with one greenlet hop each.

On PostgreSQL a read connection of the read session factory runs in autocommit, set on
psycopg's connection for the checkout and unset before it goes back: each statement
sees what was committed before it, and no ``BEGIN``, ``COMMIT`` or ``ROLLBACK`` is sent.
The pool's reset on return calls ``rollback()``, which psycopg answers without a round
trip, and without forgetting its prepared statements, on an idle connection; an
autocommit connection is idle between statements, so what psycopg prepared stays
prepared. A connection whose autocommit cannot be unset (it broke) is invalidated
rather than returned.
"""

from __future__ import annotations

from typing import Any

from psycopg.pq import TransactionStatus
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.util import greenlet_spawn


class ReadConnections:
    """Where a read session factory's read connections come from: ``engine``'s pool
    (the engine without execution options: ``Connection`` would apply them at every
    checkout), in autocommit when ``autocommit`` (PostgreSQL only)."""

    __slots__ = ("autocommit", "engine")

    def __init__(self, engine: AsyncEngine, autocommit: bool) -> None:
        self.engine = engine
        self.autocommit = autocommit

    async def open(self) -> ReadConnection:
        connection = await greenlet_spawn(self.engine.sync_engine.connect)
        read = ReadConnection(self.engine, connection, self.autocommit)
        if self.autocommit:
            try:
                await read.driver.set_autocommit(True)
            except BaseException:
                await greenlet_spawn(connection.close)
                raise
        return read


class ReadConnection:
    """One checked out connection: ``connection`` for SQLAlchemy (listeners, invalidation,
    a session bound to it), ``driver`` the driver's own (psycopg's ``AsyncConnection``,
    aiosqlite's ``Connection``)."""

    __slots__ = ("autocommit", "connection", "driver", "engine")

    def __init__(self, engine: AsyncEngine, connection: Connection, autocommit: bool) -> None:
        self.engine = engine
        self.connection = connection
        self.driver: Any = connection.connection.driver_connection
        self.autocommit = autocommit

    def async_connection(self) -> AsyncConnection:
        """The connection for an ``AsyncSession`` to be bound to. A session that begins a
        transaction on it owns that transaction: ending the session ends it."""
        return AsyncConnection(self.engine, self.connection)

    async def release(self, commit: bool = True) -> None:
        """Give the connection back to the pool. A PostgreSQL transaction the driver holds
        open (a factory not in autocommit) is committed, or rolled back when ``commit`` is
        false; a connection that broke is discarded."""
        connection = self.connection
        if not connection.invalidated and connection.dialect.name == "postgresql":
            driver = self.driver
            try:
                if driver.info.transaction_status == TransactionStatus.INTRANS:
                    await (driver.commit() if commit else driver.rollback())
                if self.autocommit:
                    await driver.set_autocommit(False)
            except Exception as error:
                await greenlet_spawn(connection.invalidate, error)
        await greenlet_spawn(connection.close)
