"""The dashboard's day per clinic (appointments/history.py) from what the service writes:
the health counters (reads tallied per process, fallbacks, failed writes), the ledger
and the rollout audit trail; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.db import create_engine, create_session_factory
from appointments.events import PendingEvents
from appointments.history import BUCKETS, SERIES, WINDOW, clinic_histories
from appointments.models import utcnow
from appointments.read_tally import READS, ReadTally
from appointments.seed import DEMO_CLINICS, demo_id, seed_demo
from appointments.stages import Stage
from tests.conftest import READ_CLINIC, Api, World, set_stages
from tests.dashboard_history import MOVES, seed_history
from tests.test_backfill import book
from tests.test_serve import free_port


async def test_a_seeded_day_is_drawn_bucket_by_bucket(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = utcnow()
    async with sessions() as session, session.begin():
        await seed_demo(session, PendingEvents())
        seeded = await seed_history(session, now)
    clinics = [demo_id("clinic", number) for number in range(len(DEMO_CLINICS))]

    async with sessions() as session:
        histories = await clinic_histories(session, clinics, now)

    for number, (name, _) in enumerate(DEMO_CLINICS):
        history = histories[clinics[number]]
        assert {series: history.total(series) for series in SERIES} == {
            series: seeded.totals[series][clinics[number]] for series in SERIES
        }
        assert all(len(values) == BUCKETS for values in history.series.values())
        moves = MOVES.get(name, [])
        assert [(c.from_stage, c.to_stage) for c in history.changes] == [
            (m.from_stage, m.to_stage) for m in moves
        ]
        assert history.stage_before is None
    hillcrest = histories[demo_id("clinic", 3)]
    live = hillcrest.bucket_of(hillcrest.changes[1].at)
    assert live == int(BUCKETS * ((WINDOW - timedelta(hours=6)) / WINDOW))
    assert sum(hillcrest.series["read_fallbacks"][:live]) == 0
    assert sum(hillcrest.series["reads_new"][:live]) == 0
    assert sum(hillcrest.series["reads_legacy"][live + 1 :]) == 0
    assert hillcrest.series["new_mismatches"][live] > 0


async def test_a_change_before_the_window_is_the_stage_it_starts_in(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = utcnow()
    async with sessions() as session, session.begin():
        await seed_demo(session, PendingEvents())
        await seed_history(session, now - timedelta(hours=30))
    hillcrest = demo_id("clinic", 3)

    async with sessions() as session:
        history = (await clinic_histories(session, [hillcrest], now))[hillcrest]

    assert history.stage_before is Stage.LIVE
    assert history.changes == []
    assert all(history.total(series) == 0 for series in SERIES)


async def test_reads_are_tallied_per_minute_and_kept_when_a_flush_fails(
    sessions: async_sessionmaker[AsyncSession], world: World
) -> None:
    moment = datetime(2026, 12, 7, 10, 30, 45, tzinfo=UTC)
    tally = ReadTally(clock=moment.timestamp)
    clinic = world.clinic_a.id
    tally.add(Counter({(clinic, "legacy"): 3, (clinic, "new"): 2}))
    unreachable = create_engine(f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none")
    try:
        failed = True
        try:
            await tally.flush(create_session_factory(unreachable))
            failed = False
        except Exception:
            pass
    finally:
        await unreachable.dispose()
    tally.add(Counter({(clinic, "new"): 1}))

    assert failed
    assert await tally.flush(sessions) == 2
    assert await tally.flush(sessions) == 0
    async with sessions() as session:
        history = (await clinic_histories(session, [clinic], moment + timedelta(minutes=1)))[clinic]
    assert (history.total("reads_legacy"), history.total("reads_new")) == (3, 3)
    assert history.series["reads_new"][-1] == 3


async def test_the_service_tallies_each_read_by_clinic_and_origin(
    api: Api, sessions: async_sessionmaker[AsyncSession], world: World, flags_file: Path
) -> None:
    await book(sessions, world, Stage.DUAL_WRITE, 6)
    await READS.flush(sessions)  # what earlier tests read elsewhere
    set_stages(flags_file, {world.clinic_a.id: Stage.LIVE})

    await api.data(READ_CLINIC, {"clinicId": str(world.clinic_a.id)})
    await api.services.flush_reads()

    async with sessions() as session:
        history = (await clinic_histories(session, [world.clinic_a.id]))[world.clinic_a.id]
    # Six appointments, two sides each, served from the new side in live unless it is
    # empty: then from the legacy side, a fallback.
    assert history.total("reads_legacy") + history.total("reads_new") == 12
    assert history.total("reads_legacy") == history.total("read_fallbacks") > 0
