"""Counts kept in memory by a process and written to the database in batches.

What a request would otherwise write each time (an operation selecting a
deprecated field, a ledger difference seen again) is counted in memory, no SQL;
``flush`` writes what was counted since the last flush in one transaction,
adding to the stored counts, so several processes add up. The service flushes
on a timer and when it stops: a process that dies between two flushes loses at
most one interval's worth.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, Protocol, Self, TypeVar

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


class Pending(Protocol):
    """Counts not yet written."""

    def __len__(self) -> int: ...

    def absorb(self, later: Self) -> None:
        """Add what was counted later (while these were being written) to these counts."""
        ...


P = TypeVar("P", bound=Pending)


class Flusher(Protocol):
    """Something counted in memory and written in batches."""

    async def flush_logged(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        """Write what is pending; a failure is logged and the counts kept."""
        ...


class BatchedCounts(Generic[P]):
    """Counts until flushed: ``pending`` is where to count (a fresh one from ``new``
    after each flush); ``write`` adds it to the database in the caller's transaction
    and says how many rows it wrote. A flush is counted in ``flushes`` by outcome (when
    given), and a failed one logged with ``failure`` to ``logger``. Counting from
    several threads holds ``lock`` while it touches ``pending``; a flush takes it
    to swap the counts."""

    def __init__(
        self,
        new: Callable[[], P],
        write: Callable[[AsyncSession, P], Awaitable[int]],
        flushes: Counter | None,
        logger: logging.Logger,
        failure: str,
    ) -> None:
        self._new = new
        self.pending: P = new()
        self.lock = threading.Lock()
        self._write = write
        self._flushes = flushes
        self._logger = logger
        self._failure = failure

    async def flush(self, sessions: async_sessionmaker[AsyncSession]) -> int:
        """Write what is pending in one transaction and forget it; the rows written.

        When the write fails (or is cancelled) the counts stay pending, added to what
        was counted meanwhile, and the error propagates.
        """
        with self.lock:
            taken, self.pending = self.pending, self._new()
        if not len(taken):
            return 0
        try:
            async with sessions() as session, session.begin():
                return await self._write(session, taken)
        except BaseException:
            with self.lock:
                taken.absorb(self.pending)
                self.pending = taken
            raise

    async def flush_logged(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        """``flush``, a failure logged and counted (the counts are kept for the next one)."""
        try:
            written = await self.flush(sessions)
        except Exception:
            if self._flushes is not None:
                self._flushes.labels("error").inc()
            self._logger.warning(self._failure, exc_info=True)
            return
        if written and self._flushes is not None:
            self._flushes.labels("ok").inc()


async def flush_all(
    flushers: Sequence[Flusher], sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Flush each in turn; one failing (logged) does not keep the others from writing."""
    for flusher in flushers:
        await flusher.flush_logged(sessions)


async def flush_forever(
    flushers: Sequence[Flusher],
    sessions: Callable[[], async_sessionmaker[AsyncSession]],
    seconds: float,
) -> None:
    """Flush every ``seconds``, in the sessions current then (they follow the layout)."""
    while True:
        await asyncio.sleep(seconds)
        await flush_all(flushers, sessions())
