"""The service's background work: what runs on a timer until the service stops.

The readiness refresher, the idempotency key purge, the instance heartbeat, the
replica checker, the batched flushers and the viewer cache's listener are each a
task of the service's ``BackgroundTasks``; ``Services.stop`` cancels them all before
it flushes for the last time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments import idempotency, instances
from appointments.batched import Flusher, flush_forever
from appointments.user_changes import listen_forever, listen_url
from appointments.viewer_cache import ViewerCache
from server.settings import Settings

logger = logging.getLogger("server")
IDEMPOTENCY_PURGE_SECONDS = 3600

Sessions = async_sessionmaker[AsyncSession]


class BackgroundTasks:
    """Tasks started one by one, stopped together."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, work: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(asyncio.create_task(work))

    async def stop(self) -> None:
        """Cancel every task and wait for each to end."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def every(seconds: float, action: Callable[[], Awaitable[None]]) -> None:
    """Run ``action`` every ``seconds`` (after the first wait), until cancelled."""
    while True:
        await asyncio.sleep(seconds)
        await action()


def flush_on_timers(
    tasks: BackgroundTasks,
    flushers: Sequence[tuple[Flusher, float]],
    sessions: Callable[[], Sessions],
) -> None:
    """One task per interval, flushing in turn the flushers of that interval (each given
    with its seconds) in the sessions current at each flush."""
    by_interval: dict[float, list[Flusher]] = {}
    for flusher, seconds in flushers:
        by_interval.setdefault(seconds, []).append(flusher)
    for seconds, due in by_interval.items():
        tasks.start(flush_forever(due, sessions, seconds))


async def purge_idempotency_keys(sessions: Sessions, policy: idempotency.IdempotencyPolicy) -> None:
    """Delete idempotency keys past their retention (at start, then every hour); a failure
    is logged."""
    try:
        purged = await idempotency.purge(sessions, policy)
    except Exception:
        logger.warning("could not purge expired idempotency keys", exc_info=True)
        return
    if purged:
        logger.info("purged expired idempotency keys", extra={"count": purged})


async def announce(sessions: Sessions, flag_source: str) -> None:
    """Record this instance (host, process, flag source) in the database; a failure is
    logged (the CLI's check for other hosts then does not see it)."""
    try:
        await instances.heartbeat(sessions, flag_source)
    except Exception:
        logger.warning("could not record this instance in the database", exc_info=True)


async def leave(sessions: Sessions) -> None:
    """Remove this instance from the database; a failure is logged."""
    try:
        await instances.leave(sessions)
    except Exception:
        logger.warning("could not remove this instance from the database", exc_info=True)


def listen_for_user_changes(tasks: BackgroundTasks, settings: Settings) -> ViewerCache | None:
    """A cache of token users, kept while a listener hears their changes (PostgreSQL, a
    cache size above 0); None when there is nothing to listen to."""
    conninfo = listen_url(settings.viewer_listener_url)
    if conninfo is None or settings.viewer_cache_size == 0:
        return None
    viewers = ViewerCache(settings.viewer_cache_size)
    tasks.start(listen_forever(conninfo, viewers, settings.viewer_listener_check_seconds))
    return viewers
