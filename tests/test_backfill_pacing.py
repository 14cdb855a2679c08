"""Backfill pacing: batch sizes that follow a time target, the throttle, and what the
command shows; driven by an injected clock, sleep and load probe, never by wall time."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.backfill import (
    BackfillOptions,
    BatchSizer,
    Load,
    Pacing,
    Progress,
    ThrottleLimits,
    run_backfill,
)
from appointments.backfill.pacing import database_probe
from appointments.db import dialect_of
from appointments.models import ClinicDoctor, ClinicPatient
from appointments.stages import Stage
from server.cli import main
from tests.conftest import World
from tests.test_backfill import book, report_of
from tests.test_full_switch import run_cli

UNTHROTTLED = ThrottleLimits(max_active_backends=None, max_replica_lag_seconds=None)


class SteppingClock:
    """Advances ``step`` seconds each time it is read: each batch then takes ``step``."""

    def __init__(self, step: float) -> None:
        self.step = step
        self.now = 0.0

    def __call__(self) -> float:
        self.now += self.step
        return self.now


class Sleeps:
    """An injected sleep: notes what it was asked and returns at once."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)


def test_the_batch_size_grows_at_most_twofold_to_the_target_and_never_past_the_maximum() -> None:
    sizer = BatchSizer(maximum=10_000, target_seconds=0.2)
    assert sizer.size == 1000

    sizes = [sizer.record(sizer.size, 0.02) for _ in range(5)]

    assert sizes == [2000, 4000, 8000, 10_000, 10_000]


def test_a_slow_batch_shrinks_the_next_and_the_rate_is_smoothed() -> None:
    sizer = BatchSizer(maximum=10_000, target_seconds=0.2)
    sizer.record(1000, 0.1)  # 10,000 rows/s: 2000 rows take 0.2 s

    assert sizer.record(2000, 0.8) == 1250  # 2,500 rows/s, smoothed to 6,250
    assert sizer.record(1250, 0.125) == 1625  # 10,000 rows/s, smoothed to 8,125


def test_without_a_target_every_batch_is_the_maximum() -> None:
    sizer = BatchSizer(maximum=500, target_seconds=None)

    assert [sizer.size, sizer.record(500, 9.0), sizer.record(10, 0.001)] == [500, 500, 500]


def test_the_throttle_names_what_is_over_its_limit() -> None:
    limits = ThrottleLimits(max_active_backends=8, max_replica_lag_seconds=1.0)

    assert limits.exceeded(Load(8, 1.0)) is None
    assert limits.exceeded(Load(9)) == "9 active backends (limit 8)"
    assert limits.exceeded(Load(0, 2.5)) == "replica lag 2.5 s (limit 1 s)"
    assert ThrottleLimits(None, None).exceeded(Load(500, 60.0)) is None


async def test_slow_batches_shrink_and_the_run_still_links_everything(
    sessions: async_sessionmaker[AsyncSession], world: World
) -> None:
    await book(sessions, world, Stage.LEGACY, 30)
    seen: list[Progress] = []

    summary = await run_backfill(
        sessions,
        BackfillOptions(batch_size=10, batch_seconds=0.2, throttle=UNTHROTTLED),
        seen.append,
        Pacing(clock=SteppingClock(1.0)),
    )

    # 10 rows in 1 s is 10 rows/s: 2 rows make 0.2 s; then 2 rows/s, smoothed to 6.
    assert [progress.batch_size for progress in seen[:3]] == [2, 1, 1]
    assert all(progress.batch_seconds == 1.0 for progress in seen)
    assert seen[-1].done == seen[-1].total == 30
    assert summary.linked == {"doctor": 20, "patient": 15}
    assert (await report_of(sessions, world)).doctor.linkable == 0


async def test_fast_batches_stay_at_the_maximum(
    sessions: async_sessionmaker[AsyncSession], world: World
) -> None:
    await book(sessions, world, Stage.LEGACY, 30)
    seen: list[Progress] = []

    summary = await run_backfill(
        sessions,
        BackfillOptions(batch_size=7, throttle=UNTHROTTLED),
        seen.append,
        Pacing(clock=SteppingClock(0.001)),
    )

    assert [progress.batch_size for progress in seen] == [7] * 5
    assert [progress.done for progress in seen] == [7, 14, 21, 28, 30]
    assert seen[-1].rows_per_second == pytest.approx(30 / (2 * 5 * 0.001))
    assert summary.batches == 5


async def test_the_run_pauses_while_the_probe_finds_the_database_busy(
    sessions: async_sessionmaker[AsyncSession], world: World, caplog: pytest.LogCaptureFixture
) -> None:
    await book(sessions, world, Stage.LEGACY, 12)
    loads = iter([Load(12), Load(12), Load(0, 4.0), Load(0)])

    async def probe(_session: AsyncSession) -> Load:
        return next(loads, Load(0))

    sleeps = Sleeps()
    seen: list[Progress] = []
    options = BackfillOptions(throttle=ThrottleLimits(recheck_seconds=2.5))

    with caplog.at_level(logging.INFO, logger="appointments.backfill"):
        summary = await run_backfill(
            sessions, options, seen.append, Pacing(sleep=sleeps, probe=probe)
        )

    assert sleeps.asked == [2.5, 2.5, 2.5]
    assert [progress.paused for progress in seen] == [
        "12 active backends (limit 8)",
        "replica lag 4.0 s (limit 1 s)",
        None,
    ]
    assert summary.paused_seconds == 7.5
    assert summary.linked == {"doctor": 8, "patient": 6}
    messages = [record.getMessage() for record in caplog.records]
    assert "backfill paused: 12 active backends (limit 8)" in messages
    assert "backfill paused: replica lag 4.0 s (limit 1 s)" in messages
    assert "backfill resumed after 7.5 s" in messages


async def test_postgresql_is_probed_and_sqlite_has_no_probe(
    sessions: async_sessionmaker[AsyncSession], world: World, caplog: pytest.LogCaptureFixture
) -> None:
    await book(sessions, world, Stage.LEGACY, 3)
    dialect = dialect_of(sessions)
    probe = database_probe(dialect)

    with caplog.at_level(logging.INFO, logger="appointments.backfill"):
        await run_backfill(sessions, BackfillOptions())

    messages = [record.getMessage() for record in caplog.records]
    if dialect == "sqlite":
        assert probe is None
        assert "backfill throttle: none, sqlite has no load probe; batches run back to back" in (
            messages
        )
        return
    assert probe is not None
    async with sessions() as session:
        load = await probe(session)
    assert load.active_backends >= 0
    assert load.replica_lag_seconds is None  # the test server has no replica
    assert "backfill throttle: pause above 8 active backends or 1.0 s of replica lag" in messages


async def test_created_memberships_get_random_uuids_on_both_databases(
    sessions: async_sessionmaker[AsyncSession], world: World
) -> None:
    await book(sessions, world, Stage.LEGACY, 6)

    await run_backfill(sessions, BackfillOptions(create_memberships=True))

    async with sessions() as session:
        created = [
            *(
                await session.scalars(
                    select(ClinicDoctor.id).where(
                        ClinicDoctor.user_id == world.doctor_without_membership.id
                    )
                )
            ),
            *(
                await session.scalars(
                    select(ClinicPatient.id).where(
                        ClinicPatient.patient_id == world.patient_without_membership.id
                    )
                )
            ),
        ]
    assert len(created) == 2
    assert all(isinstance(id_, uuid.UUID) and id_.version == 4 for id_ in created)


@pytest.fixture
def keep_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("keep_logging")
async def test_the_command_shows_rows_per_second_and_the_batch_size(
    sessions: async_sessionmaker[AsyncSession],
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    database_url: str,
    flags_file: Path,
) -> None:
    await book(sessions, world, Stage.LEGACY, 9)
    arguments = ("--batch-size", "4", "--batch-seconds", "0", "--max-active-backends", "0")

    code = await asyncio.to_thread(
        run_cli, monkeypatch, database_url, flags_file, "migrate", "backfill", *arguments
    )

    err = capsys.readouterr().err
    assert code == 0
    assert "batch 3: 9 of 9 appointments, " in err
    assert " rows/s, batch 4" in err


@pytest.mark.parametrize(
    "option", [("--batch-size", "0"), ("--batch-seconds", "-1"), ("--max-replica-lag", "x")]
)
def test_the_command_refuses_nonsense_pacing(
    option: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["migrate", "backfill", *option])

    assert exit_.value.code == 2
    assert option[0] in capsys.readouterr().err
