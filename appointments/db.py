"""Engine and session factories for SQLite (embedded) and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Select, event, make_url
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import ORMExecuteState, Session, defer

from appointments.layout import Layout
from appointments.models import Appointment
from appointments.policies import DEFAULT_DATABASE_URL, PSYCOPG_PREPARE_THRESHOLD
from appointments.read_connection import ReadConnection, ReadConnections

T = TypeVar("T")
A = TypeVar("A")
logger = logging.getLogger("appointments.db")

__all__ = ["DEFAULT_DATABASE_URL", "PSYCOPG_PREPARE_THRESHOLD"]


def create_engine(
    database_url: str,
    *,
    echo: bool = False,
    statement_timeout_ms: int | None = None,
    prepare_threshold: int | None = PSYCOPG_PREPARE_THRESHOLD,
    pool_size: int = 5,
    max_overflow: int = 10,
) -> AsyncEngine:
    """An engine; with ``statement_timeout_ms`` (PostgreSQL) every statement is cut off after
    that long, failing its transaction cleanly and leaving the connection usable.

    ``prepare_threshold`` (psycopg): executions of a query on one connection before psycopg
    makes it a server-side prepared statement; ``None`` never prepares, which a pooler in
    transaction mode that does not track prepared statements (PgBouncer before 1.21) needs.
    ``pool_size`` connections are kept open, up to ``max_overflow`` more under load
    (PostgreSQL; SQLite's pool is SQLAlchemy's default).
    """
    connect_args: dict[str, Any] = {}
    if database_url.startswith("postgresql"):
        connect_args["options"] = _session_options(statement_timeout_ms)
    if make_url(database_url).get_driver_name() == "psycopg":
        connect_args["prepare_threshold"] = prepare_threshold
    pool: dict[str, int] = {}
    if database_url.startswith("postgresql"):
        pool = {"pool_size": pool_size, "max_overflow": max_overflow}
    # No pre-ping (a round trip per checkout): a read that meets a dead connection is
    # retried once on a fresh one (SerializedSession); the first such failure also marks
    # every older connection of the pool to be replaced at its next checkout.
    engine = create_async_engine(database_url, echo=echo, connect_args=connect_args, **pool)
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        _configure_sqlite(engine)
    return engine


def _session_options(statement_timeout_ms: int | None) -> str:
    """Settings sent when a PostgreSQL connection starts.

    ``TimeZone=UTC``: the service stores and serves instants in UTC. With the
    session in UTC psycopg returns moments with the fixed ``datetime.timezone.utc``;
    in a named zone (Debian's default is ``Etc/UTC``) it attaches a ``ZoneInfo``
    whose offset Python looks up for every value, which took about 5 % of a list
    request (a page has about 900 moments). Where a pooler drops the option (see
    README, Running at scale), moments are still right, converted in Python.
    """
    options = ["-c TimeZone=UTC"]
    if statement_timeout_ms is not None:
        options.append(f"-c statement_timeout={int(statement_timeout_ms)}")
    return " ".join(options)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # SQLite ignores foreign keys unless asked; WAL lets readers run beside a writer.
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()
        # PostgreSQL's name and meaning, so set-based SQL that creates rows runs on both;
        # a Uuid column stores the 32 hex digits on SQLite.
        dbapi_connection.create_function("gen_random_uuid", 0, _random_uuid_hex)


def _random_uuid_hex() -> str:
    return uuid.uuid4().hex


def create_session_factory(
    engine: AsyncEngine, layout: Layout = Layout.EXPANDED
) -> async_sessionmaker[AsyncSession]:
    """Sessions for the service, each knowing the database's ``layout`` (``layout_of``).
    Contracted (after the contract revision), every ORM query of appointments leaves the
    legacy columns out, and reading them raises instead of loading."""
    info = {_LAYOUT: layout}
    if layout.legacy_columns:
        return async_sessionmaker(engine, expire_on_commit=False, info=info)
    return async_sessionmaker(
        engine, expire_on_commit=False, info=info, sync_session_class=ContractedSession
    )


def create_read_session_factory(
    engine: AsyncEngine, layout: Layout = Layout.EXPANDED
) -> async_sessionmaker[AsyncSession]:
    """Sessions for a request's reads: on PostgreSQL in autocommit, so a read costs no
    ``BEGIN`` and ``COMMIT`` round trips (each statement sees what was committed before
    it; writes always run in sessions of ``create_session_factory``, in transactions of
    their own). SQLite starts no transaction for a read anyway. The factory also holds
    where the read model's connections come from (``read_connections_of``), in
    autocommit as well on PostgreSQL."""
    postgres = engine.dialect.name == "postgresql"
    connections = ReadConnections(engine, autocommit=postgres)
    if postgres:
        engine = engine.execution_options(isolation_level="AUTOCOMMIT")
    sessions = create_session_factory(engine, layout)
    sessions.kw["info"][_READ_CONNECTIONS] = connections
    return sessions


_READ_CONNECTIONS = "read connections"


def read_connections_of(sessions: async_sessionmaker[AsyncSession]) -> ReadConnections:
    """Where the read model's connections come from for a request reading with
    ``sessions``: the read session factory's (autocommit on PostgreSQL); for another
    factory, its engine's pool, in transactions as its sessions are."""
    found: ReadConnections | None = sessions.kw.get("info", {}).get(_READ_CONNECTIONS)
    return found or ReadConnections(sessions.kw["bind"], autocommit=False)


_LAYOUT = "layout"


def layout_of_factory(sessions: async_sessionmaker[AsyncSession]) -> Layout:
    """The layout the sessions of ``sessions`` see (``layout_of``)."""
    layout: Layout = sessions.kw.get("info", {}).get(_LAYOUT, Layout.EXPANDED)
    return layout


def layout_of(session: AsyncSession) -> Layout:
    """The layout of the database the session reads: its factory's; a session made
    elsewhere (not by ``create_session_factory``) is taken to see the legacy columns."""
    layout: Layout = session.info.get(_LAYOUT, Layout.EXPANDED)
    return layout


class ContractedSession(Session):
    """A session for a database whose appointments have no legacy columns."""


@event.listens_for(ContractedSession, "do_orm_execute")
def _leave_out_legacy_columns(state: ORMExecuteState) -> None:
    statement = state.statement
    if isinstance(statement, Select) and any(
        description.get("expr") is Appointment for description in statement.column_descriptions
    ):
        state.statement = state.statement.options(
            defer(Appointment.doctor_id, raiseload=True),
            defer(Appointment.patient_id, raiseload=True),
        )


def dialect_of(sessions: async_sessionmaker[AsyncSession]) -> str:
    bind = sessions.kw["bind"]
    name: str = bind.dialect.name
    return name


_WROTE = "wrote"


@event.listens_for(Session, "after_flush")
def _note_flush(session: Session, _context: Any) -> None:
    session.info[_WROTE] = True


@event.listens_for(Session, "do_orm_execute")
def _note_write_statement(state: ORMExecuteState) -> None:
    if not state.is_select:
        state.session.info[_WROTE] = True


@dataclass(frozen=True, slots=True)
class Reader:
    """What a read model operation runs with: the request's pooled ``connection``, checked
    out without an ORM session, the ``layout`` of the database it reads, and ``session``,
    the request's ORM session on that same connection, opened on first call (for the
    rare statement the read model does not run on the driver)."""

    connection: Connection
    layout: Layout
    session: Callable[[], Awaitable[AsyncSession]]


class SerializedSession:
    """A request's reads: one pooled connection, checked out on first use and used by one
    operation at a time, and an ORM session on it, opened only when an operation needs
    one (``run``); the read model's operations (``read``) run on the connection itself.

    DataLoaders of different relations dispatch in the same event-loop tick; a
    connection must not run two statements at once, so operations take turns.

    Each operation runs in a task of its own that the caller's cancellation does not
    reach: graphql-core cancels the other root fields when one fails in a way that
    nulls ``data``, and a statement cancelled halfway invalidates the connection, which
    made the request's ledger flush and the end of its read transaction fail. The
    cancelled caller stops waiting; the statement finishes, and ``close`` waits for it.

    Operations are reads (writes run in transactions of their own): one that meets a
    dead connection (a restarted server, a terminated backend) runs once more on a
    fresh connection (and session), so the request does not fail for it. Not when the
    session wrote, and not twice: a second dead connection is the database's answer.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._connection: ReadConnection | None = None
        self._session: AsyncSession | None = None
        self._reader: Reader | None = None
        self._lock = asyncio.Lock()
        self._running: set[asyncio.Task[Any]] = set()

    async def run(self, operation: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """``operation``'s result, run with the request's ORM session."""
        return await self._shielded(self._serialized(operation, self._open_session))

    async def read(self, operation: Callable[[Reader], Awaitable[T]]) -> T:
        """``operation``'s result, run on the request's connection (no ORM session unless
        it asks for one)."""
        return await self._shielded(self._serialized(operation, self._open_reader))

    async def _shielded(self, work: Coroutine[Any, Any, T]) -> T:
        task = asyncio.create_task(work)
        self._running.add(task)
        task.add_done_callback(self._finished)
        return await asyncio.shield(task)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a caller cancelled meanwhile no longer will

    async def _serialized(
        self, operation: Callable[[A], Awaitable[T]], opened: Callable[[], Awaitable[A]]
    ) -> T:
        async with self._lock:
            try:
                return await operation(await opened())
            except DBAPIError as error:
                session = self._session
                wrote = session is not None and session.info.get(_WROTE)
                if not error.connection_invalidated or wrote:
                    raise
                logger.info("a read met a dead connection; running it again on a fresh one")
            await self._release(end_reads=False)
            return await operation(await opened())

    async def _open_connection(self) -> ReadConnection:
        if self._connection is None:
            self._connection = await read_connections_of(self._sessions).open()
        return self._connection

    async def _open_reader(self) -> Reader:
        reader = self._reader
        if reader is None:
            connection = await self._open_connection()
            layout = layout_of_factory(self._sessions)
            reader = self._reader = Reader(connection.connection, layout, self._open_session)
        return reader

    async def _open_session(self) -> AsyncSession:
        if self._session is None:
            connection = await self._open_connection()
            self._session = self._sessions(bind=connection.async_connection())
        return self._session

    async def close(self) -> None:
        """End the request's reads and release the connection.

        A transaction that only read is committed, not rolled back: psycopg forgets
        every statement it prepared on a connection when that connection rolls back
        (it cannot tell what a rollback undid), so with rollbacks no statement of the
        service would ever stay prepared, and PostgreSQL would plan each one on every
        request. One that flushed or executed a write statement through the session,
        has changes pending, or failed, is rolled back as before. In autocommit (the
        read session factory's, on PostgreSQL) there is no transaction to end.
        """
        if self._running:
            await asyncio.wait(set(self._running))
        async with self._lock:
            await self._release(end_reads=True)

    async def _release(self, end_reads: bool) -> None:
        """Drop the session and the connection; with ``end_reads``, commit what only read
        (``close``), else (a dead connection met) just let them go."""
        session, connection = self._session, self._connection
        self._session = self._connection = self._reader = None
        wrote = False
        try:
            if session is not None:
                wrote = bool(session.info.get(_WROTE)) or bool(
                    session.new or session.dirty or session.deleted
                )
                transaction = session.get_transaction()
                try:
                    active = transaction is not None and transaction.is_active
                    if end_reads and active and not wrote:
                        await session.commit()
                except Exception:
                    logger.warning("ending a read transaction failed; rolled back", exc_info=True)
                finally:
                    await session.close()
        finally:
            if connection is not None:
                await connection.release(commit=end_reads and not wrote)
