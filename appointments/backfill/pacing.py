"""How fast a backfill goes: the size of each batch, and when to pause between batches.

The batch size follows a time target, as pt-online-schema-change's ``--chunk-time``
does: the rows per second of the batches so far, times the target, bounded by
the largest size allowed. The throttle pauses between batches while the database
is busy, as its ``--max-load`` and gh-ost's lag throttling do: too many other
backends running a statement, or a replica too far behind. A pause re-checks
every ``recheck_seconds``; a batch never stops half way.

Only PostgreSQL has a probe. SQLite is one embedded file with one writer at a
time: there is nothing to ask, and batches run back to back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

logger = logging.getLogger("appointments.backfill")

FIRST_BATCH = 1000
SMOOTHING = 0.5


class BatchSizer:
    """The size of the next batch: about ``target_seconds`` of work, from 1 to ``maximum``.

    ``record`` takes each batch's rows and seconds. The rate is smoothed over
    batches (half the last batch, half those before), so one batch slowed by a
    lock wait does not halve the next; a batch grows at most to twice the last
    size, so a fast small batch does not jump straight to the maximum. Without a
    target every batch is ``maximum``.
    """

    def __init__(self, maximum: int, target_seconds: float | None) -> None:
        self.maximum = maximum
        self.target_seconds = target_seconds
        self.size = maximum if target_seconds is None else min(maximum, FIRST_BATCH)
        self._rate: float | None = None

    def record(self, rows: int, seconds: float) -> int:
        """Note a batch of ``rows`` that took ``seconds``; the next batch's size."""
        if self.target_seconds is None or rows == 0:
            return self.size
        rate = rows / max(seconds, 1e-6)
        self._rate = rate if self._rate is None else SMOOTHING * rate + (1 - SMOOTHING) * self._rate
        wanted = int(self._rate * self.target_seconds)
        self.size = max(1, min(self.maximum, wanted, 2 * max(rows, self.size)))
        return self.size


@dataclass(frozen=True, slots=True)
class Load:
    """What the probe saw: client backends running a statement (not counting the probe's
    own), and the largest replication lag in seconds (None without a lagging replica)."""

    active_backends: int
    replica_lag_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class ThrottleLimits:
    """When to pause: more than ``max_active_backends`` other client backends active, or a
    replica more than ``max_replica_lag_seconds`` behind; ``None`` leaves a check out."""

    max_active_backends: int | None = 8
    max_replica_lag_seconds: float | None = 1.0
    recheck_seconds: float = 1.0

    def exceeded(self, load: Load) -> str | None:
        """Why ``load`` is too high to start a batch; None when it is not."""
        limit = self.max_active_backends
        if limit is not None and load.active_backends > limit:
            return f"{load.active_backends} active backends (limit {limit})"
        lag, most = load.replica_lag_seconds, self.max_replica_lag_seconds
        if most is not None and lag is not None and lag > most:
            return f"replica lag {lag:.1f} s (limit {most:g} s)"
        return None


LoadProbe = Callable[[AsyncSession], Awaitable[Load]]

LOAD_QUERY = text(
    """
    SELECT
      (SELECT count(*) FROM pg_stat_activity
        WHERE state = 'active' AND backend_type = 'client backend'
          AND pid <> pg_backend_pid()) AS active_backends,
      (SELECT max(extract(epoch FROM greatest(write_lag, flush_lag, replay_lag)))
         FROM pg_stat_replication) AS replica_lag_seconds
    """
)


async def postgres_load(session: AsyncSession) -> Load:
    """The load of the PostgreSQL server ``session`` is on, from ``pg_stat_activity`` and
    ``pg_stat_replication``. Other roles' backends and the lag columns are visible only
    to a role with ``pg_monitor`` (or a superuser); without it they count as idle."""
    row = (await session.execute(LOAD_QUERY)).one()
    lag = row.replica_lag_seconds
    return Load(int(row.active_backends), None if lag is None else float(lag))


def database_probe(dialect: str) -> LoadProbe | None:
    """The probe for a database: PostgreSQL's, or None (SQLite has nothing to ask)."""
    return postgres_load if dialect == "postgresql" else None


@dataclass(frozen=True, slots=True)
class Pacing:
    """The run's clock, sleep and load probe; tests pass their own.

    ``clock`` is read when a run starts, and once before and once after each
    batch. ``probe`` None means the database's own (``database_probe``).
    """

    clock: Callable[[], float] = time.perf_counter
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep
    probe: LoadProbe | None = None


class Throttle:
    """Holds a run back between batches while the probe finds the database too busy.

    ``on_pause`` is told the reason each time it changes while paused. Pauses
    and resumptions are logged (logger ``appointments.backfill``) with the reason.
    """

    def __init__(
        self,
        limits: ThrottleLimits,
        probe: LoadProbe | None,
        sleep: Callable[[float], Awaitable[object]],
        on_pause: Callable[[str], None],
    ) -> None:
        checks = (limits.max_active_backends, limits.max_replica_lag_seconds)
        self._probe = None if all(check is None for check in checks) else probe
        self._limits = limits
        self._sleep = sleep
        self._on_pause = on_pause

    @property
    def probing(self) -> bool:
        return self._probe is not None

    async def wait(self, sessions: async_sessionmaker[AsyncSession]) -> float:
        """Return once the load allows a batch; the seconds spent paused."""
        if self._probe is None:
            return 0.0
        paused = 0.0
        shown: str | None = None
        while True:
            async with sessions() as session, session.begin():
                load = await self._probe(session)
            reason = self._limits.exceeded(load)
            if reason is None:
                if shown is not None:
                    logger.info(
                        "backfill resumed after %.1f s", paused, extra={"paused_seconds": paused}
                    )
                return paused
            if reason != shown:
                logger.warning("backfill paused: %s", reason, extra={"reason": reason})
                self._on_pause(reason)
                shown = reason
            await self._sleep(self._limits.recheck_seconds)
            paused += self._limits.recheck_seconds
