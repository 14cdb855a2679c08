"""Queries on PostgreSQL hot standbys, writes on the primary, and reads after a client's own
write served only where that write has arrived.

A request's reads go to a replica that is reachable, in recovery, no further behind
than the lag limit and, when the client sent the WAL position of its last write
(``Clinic-Read-After``), has replayed past it; else to the primary. A mutation's
request runs wholly on the primary, and answers the position its commits reached.
Everything the read path writes (ledger, health counters, usage, purges) is written
through the primary's sessions whatever served the read. The replicas' state is
checked in the background (``REPLICA_CHECK_SECONDS``) and by ``/readyz``; a request
costs no statement for it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from appointments.db import SerializedSession, create_read_session_factory
from appointments.layout import Layout

READ_AFTER_HEADER = "Clinic-Read-After"
READ_ONLY_SQLSTATE = "25006"
REPLICA_CHECK_SECONDS = 1.0
CHECK_TIMEOUT_SECONDS = 2.0
# now() minus the last replayed commit's time is the lag only while WAL is waiting to be
# replayed; a replica that has replayed all it received is not behind, however idle.
REPLICA_STATE = text(
    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text,"
    " pg_last_wal_receive_lsn()::text,"
    " EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8,"
    " (SELECT status FROM pg_stat_wal_receiver)"
)
# The insert position, not pg_current_wal_lsn() (the write position): with
# synchronous_commit off a commit returns before its record is written, so the write
# position can lie before it, and a replica that reached it would not have the row.
# The insert position is past every record inserted so far, the commit's included.
WRITE_POSITION = text("SELECT pg_current_wal_insert_lsn()::text")
IS_STANDBY = text("SELECT pg_is_in_recovery()")
logger = logging.getLogger("appointments.replicas")


def parse_lsn(value: str) -> int:
    """A WAL position as PostgreSQL prints it (``16/B374D848``), as a number; ValueError if
    it is not one."""
    high, separator, low = value.strip().partition("/")
    if not separator or not 0 < len(high) <= 8 or not 0 < len(low) <= 8:
        raise ValueError(f"not a WAL position: {value!r}")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(position: int) -> str:
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


def is_read_only_error(error: BaseException | None) -> bool:
    """Whether ``error`` (or what it wraps) is PostgreSQL refusing a write because the
    database is read-only: a hot standby, or ``default_transaction_read_only``."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if getattr(error, "sqlstate", None) == READ_ONLY_SQLSTATE:
            return True
        error = getattr(error, "orig", None) or error.__cause__
    return False


async def is_standby(engine: AsyncEngine) -> bool:
    """Whether the PostgreSQL server behind ``engine`` is in recovery (takes no writes)."""
    async with engine.connect() as connection:
        return bool((await connection.execute(IS_STANDBY)).scalar())


@dataclass
class Replica:
    """One standby, and what its last check found."""

    name: str
    engine: AsyncEngine
    state: str = "unchecked"
    lag_seconds: float | None = None
    replayed: int | None = None
    _sessions: dict[Layout, async_sessionmaker[AsyncSession]] = field(default_factory=dict)

    def read_sessions(self, layout: Layout) -> async_sessionmaker[AsyncSession]:
        found = self._sessions.get(layout)
        if found is None:
            found = self._sessions[layout] = create_read_session_factory(self.engine, layout)
        return found

    def describe(self) -> dict[str, Any]:
        replayed = self.replayed
        return {
            "name": self.name,
            "state": self.state,
            "lagSeconds": None if self.lag_seconds is None else round(self.lag_seconds, 3),
            "replayed": None if replayed is None else format_lsn(replayed),
        }


class ReplicaSet:
    """The configured standbys: their state, and which one serves a read."""

    def __init__(self, engines: list[AsyncEngine], max_lag_seconds: float) -> None:
        self.replicas = [
            Replica(f"replica {number}", engine) for number, engine in enumerate(engines, 1)
        ]
        self.max_lag_seconds = max_lag_seconds
        self._turns = itertools.count()

    async def refresh(self) -> None:
        """Check every replica now (each bounded by ``CHECK_TIMEOUT_SECONDS``)."""
        await asyncio.gather(*(self._check(replica) for replica in self.replicas))

    async def _check(self, replica: Replica) -> None:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
                async with replica.engine.connect() as connection:
                    row = (await connection.execute(REPLICA_STATE)).one()
        except Exception as error:
            if replica.state != "unreachable":
                logger.warning(
                    "replica unreachable; its reads go to the primary",
                    extra={"replica": replica.name, "error": repr(error)},
                )
            replica.state, replica.lag_seconds = "unreachable", None
            return
        in_recovery, replayed, received, since_last_replay, receiver = row
        replica.replayed = None if replayed is None else parse_lsn(replayed)
        if not in_recovery:
            replica.state, replica.lag_seconds = "not a standby", None
            return
        caught_up = (
            replica.replayed is not None
            and received is not None
            and replica.replayed >= parse_lsn(received)
        )
        replica.lag_seconds = 0.0 if caught_up else since_last_replay
        if receiver is not None and receiver != "streaming":
            replica.state = "disconnected"
        elif replica.lag_seconds is None or replica.lag_seconds > self.max_lag_seconds:
            replica.state = "lagging"
        else:
            replica.state = "ok"

    async def refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(REPLICA_CHECK_SECONDS)
            await self.refresh()

    def choose(self, read_after: str | None) -> Replica | None:
        """A replica to serve a read, taking turns; None for the primary. With ``read_after``
        (a client's last write), only one known to have replayed past it; a position that
        does not parse is read on the primary."""
        after: int | None = None
        if read_after is not None:
            try:
                after = parse_lsn(read_after)
            except ValueError:
                return None
        usable = [
            replica
            for replica in self.replicas
            if replica.state == "ok"
            and (after is None or (replica.replayed is not None and replica.replayed >= after))
        ]
        if not usable:
            return None
        return usable[next(self._turns) % len(usable)]

    def describe(self) -> list[dict[str, Any]]:
        return [replica.describe() for replica in self.replicas]

    async def dispose(self) -> None:
        for replica in self.replicas:
            await replica.engine.dispose()


def replica_set(urls: tuple[str, ...], max_lag_seconds: float, **engine: Any) -> ReplicaSet:
    """Engines for ``urls`` (PostgreSQL only), made as the primary's are."""
    from appointments.db import create_engine

    for url in urls:
        if make_url(url).get_backend_name() != "postgresql":
            raise ValueError("replicas must be PostgreSQL hot standbys")
    return ReplicaSet([create_engine(url, **engine) for url in urls], max_lag_seconds)


class ReplicaSession(SerializedSession):
    """A request's session where replicas are configured: on ``replica`` (None: the
    primary) until the request turns out to write, then on the primary."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        primary: async_sessionmaker[AsyncSession],
        replica: Replica | None,
    ) -> None:
        super().__init__(sessions)
        self.primary = primary
        self.replica = replica
        self.write_position: str | None = None

    async def use_primary(self) -> None:
        """Read on the primary from now on (what was read on the replica stays read)."""
        if self.replica is None:
            return
        await self.close()
        self._sessions = self.primary
        self.replica = None

    async def note_write_position(self) -> str | None:
        """The primary's WAL position now, past every commit of this request; None (logged)
        when it cannot be read."""
        await self.use_primary()
        try:
            position = await self.run(lambda session: session.scalar(WRITE_POSITION))
        except Exception:
            logger.warning("could not read the primary's WAL position", exc_info=True)
            return None
        self.write_position = None if position is None else str(position)
        return self.write_position


def on_replica(db: SerializedSession) -> bool:
    """Whether a request's session reads on a replica."""
    return isinstance(db, ReplicaSession) and db.replica is not None
