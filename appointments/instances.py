"""The serving instances of a fleet, as the database knows them: each process records its
host, process id and flag source when it starts and every ``HEARTBEAT_SECONDS``, and
removes itself when it stops. An instance not seen for ``LIVE_SECONDS`` (killed, or
its host gone) no longer counts.

What it is for: a flags file is one host's file. With instances on several hosts,
each host's file would be a flag source of its own, and two rollout passes would
each move clinics by their own copy; the CLI's flags-file writers refuse then
(``hosts_besides``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.models import ServiceInstance, utcnow

HEARTBEAT_SECONDS = 30
LIVE_SECONDS = 90
FORGOTTEN_AFTER = timedelta(days=1)
logger = logging.getLogger("appointments.instances")


def this_host() -> str:
    return socket.gethostname()


async def heartbeat(
    sessions: async_sessionmaker[AsyncSession],
    flag_source: str,
    host: str | None = None,
    pid: int | None = None,
) -> None:
    """Record this process as serving now (its first heartbeat records its start), and
    forget instances not seen for a day."""
    now = utcnow()
    row = {
        "host": host or this_host(),
        "pid": pid or os.getpid(),
        "flag_source": flag_source,
        "started_at": now,
        "seen_at": now,
    }
    async with sessions() as session, session.begin():
        dialect = session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(ServiceInstance).values(row)
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=[ServiceInstance.host, ServiceInstance.pid],
                set_={"seen_at": now, "flag_source": flag_source},
            )
        )
        await session.execute(
            delete(ServiceInstance).where(ServiceInstance.seen_at < now - FORGOTTEN_AFTER)
        )


async def heartbeat_forever(
    sessions: Callable[[], async_sessionmaker[AsyncSession]], flag_source: str
) -> None:
    while True:
        await asyncio.sleep(HEARTBEAT_SECONDS)
        try:
            await heartbeat(sessions(), flag_source)
        except Exception:
            logger.warning("could not record this instance's heartbeat", exc_info=True)


async def leave(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Remove this process's row (it stops serving)."""
    async with sessions() as session, session.begin():
        await session.execute(
            delete(ServiceInstance).where(
                ServiceInstance.host == this_host(), ServiceInstance.pid == os.getpid()
            )
        )


async def live_instances(
    session: AsyncSession, now: datetime | None = None
) -> list[ServiceInstance]:
    """Instances seen in the last ``LIVE_SECONDS``, by host and process id."""
    since = (now or utcnow()) - timedelta(seconds=LIVE_SECONDS)
    rows = await session.scalars(
        select(ServiceInstance)
        .where(ServiceInstance.seen_at >= since)
        .order_by(ServiceInstance.host, ServiceInstance.pid)
    )
    return list(rows)


async def hosts_besides(session: AsyncSession, host: str | None = None) -> list[str]:
    """The hosts other than ``host`` (default: this one) with live instances."""
    mine = host or this_host()
    return sorted({row.host for row in await live_instances(session) if row.host != mine})
