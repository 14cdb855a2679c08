"""Each serving process records itself (host, process, flag source) in the database while it
serves, which is what the CLI's flags-file writers look at for other hosts."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.instances import hosts_besides, this_host
from appointments.models import ServiceInstance, utcnow
from tests.conftest import open_api


async def instances(sessions: async_sessionmaker[AsyncSession]) -> list[tuple[str, int, str]]:
    async with sessions() as session:
        rows = await session.scalars(select(ServiceInstance))
        return [(row.host, row.pid, row.flag_source) for row in rows]


async def test_a_serving_process_is_recorded_while_it_serves(
    database_url: str, sessions: async_sessionmaker[AsyncSession], flags_file: Path
) -> None:
    async with open_api(database_url, flags_file):
        serving = await instances(sessions)
        async with sessions() as session:
            others = await hosts_besides(session)
    stopped = await instances(sessions)

    assert serving == [(this_host(), os.getpid(), "file")]
    assert others == []
    assert stopped == []


async def test_only_live_instances_on_other_hosts_count(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = utcnow()
    async with sessions() as session, session.begin():
        for host, seen_at in (
            ("b-host", now),
            ("a-host", now),
            ("gone-host", now.replace(year=2000)),
        ):
            session.add(
                ServiceInstance(
                    host=host, pid=7, flag_source="file", started_at=seen_at, seen_at=seen_at
                )
            )

    async with sessions() as session:
        besides_a = await hosts_besides(session, "a-host")
        besides_elsewhere = await hosts_besides(session, "elsewhere")

    assert besides_a == ["b-host"]
    assert besides_elsewhere == ["a-host", "b-host"]
