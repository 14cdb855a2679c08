"""Hearing, per process, that a user or a user's membership changed (PostgreSQL only).

Revision ``0015_user_notify`` makes every change of ``users``, ``clinic_staff`` and
``clinic_doctors`` notify channel ``clinic_users`` with the user's id when its
transaction commits. ``listen_forever`` keeps one connection of its own listening
and tells the ``ViewerCache`` what it hears, and when it connects and drops. Every
``check_seconds`` without a notification it runs ``SELECT 1`` to learn that the
connection still works (a connection cut without a word from the server says
nothing otherwise); after a failure it connects again ``check_seconds`` later.
"""

from __future__ import annotations

import asyncio
import logging

import psycopg
from sqlalchemy import make_url

from appointments.viewer_cache import ViewerCache

CHANNEL = "clinic_users"
APPLICATION_NAME = "clinic-user-changes"
logger = logging.getLogger("appointments.user_changes")


def listen_url(database_url: str) -> str | None:
    """libpq's URL for a SQLAlchemy PostgreSQL URL; None for any other database."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        return None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def listen_forever(conninfo: str, cache: ViewerCache, check_seconds: float) -> None:
    """Listen until cancelled, reconnecting after each failure; the cache is trusted only
    while a connection listens."""
    while True:
        try:
            await _listen(conninfo, cache, check_seconds)
        except asyncio.CancelledError:
            await cache.disconnected()
            raise
        except Exception as error:
            await cache.disconnected()
            logger.warning(
                "not listening for changes of users: every token's user is checked with a"
                " statement until the listener connects again",
                extra={"error": str(error)},
            )
        await asyncio.sleep(check_seconds)


async def _listen(conninfo: str, cache: ViewerCache, check_seconds: float) -> None:
    async with await psycopg.AsyncConnection.connect(
        conninfo, autocommit=True, application_name=APPLICATION_NAME, connect_timeout=10
    ) as connection:
        await connection.execute(f"LISTEN {CHANNEL}")
        await cache.connected(connection.fileno())
        logger.info("listening for changes of users", extra={"channel": CHANNEL})
        while True:
            async for notification in connection.notifies(timeout=check_seconds):
                cache.forget(notification.payload)
            cache.checking(True)
            try:
                await asyncio.wait_for(connection.execute("SELECT 1"), check_seconds)
            finally:
                cache.checking(False)
