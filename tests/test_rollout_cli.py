"""`clinic rollout` as cron and systemd run it: real processes, on both databases.

Two runs at once move each clinic once; a pass skips while another holds the lock;
a run killed with SIGKILL between passes is resumed by the next one.
"""

from __future__ import annotations

import asyncio
import collections
import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from appointments.instances import LIVE_SECONDS, this_host
from appointments.models import ServiceInstance, utcnow
from appointments.rollout.lock import pass_lock
from appointments.stages import Stage
from flags.stage_writers import FlagsFileStageWriter
from tests.conftest import set_stages
from tests.rollout_setup import (
    FORWARD,
    RolloutClinics,
    audit_rows,
    moves,
    plan_text,
    rollout_clinics,
)

CLINIC = Path(sys.executable).with_name("clinic")


@pytest.fixture
async def clinics(sessions: async_sessionmaker[AsyncSession], flags_file: Path) -> RolloutClinics:
    created = await rollout_clinics(sessions)
    set_stages(flags_file, dict.fromkeys(created.all, Stage.LEGACY))
    return created


@pytest.fixture
def environment(database_url: str, flags_file: Path) -> dict[str, str]:
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CLINIC_", "UNLEASH_"))
    }
    return inherited | {
        "CLINIC_DATABASE_URL": database_url,
        "CLINIC_FLAGS_FILE": str(flags_file),
        "CLINIC_LOG_FORMAT": "json",
        "CLINIC_LOG_LEVEL": "WARNING",
    }


@pytest.fixture
def plan(tmp_path: Path, clinics: RolloutClinics) -> Path:
    path = tmp_path / "plan.toml"
    text = "backfill = true\n" + plan_text(clinics).replace('"complete"', '"shadow"', 1)
    path.write_text(text, encoding="utf-8")
    return path


def start(environment: dict[str, str], *arguments: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(CLINIC), "rollout", *arguments],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def clinic(environment: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLINIC), *arguments], env=environment, capture_output=True, text=True, timeout=120
    )


def finish(process: subprocess.Popen[str]) -> tuple[str, str]:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return out, err


async def test_two_runs_at_once_move_each_clinic_once(
    environment: dict[str, str],
    plan: Path,
    clinics: RolloutClinics,
    sessions: async_sessionmaker[AsyncSession],
    flags_file: Path,
) -> None:
    runs = [
        start(environment, "run", str(plan), "--interval", "0", "--passes", "12") for _ in range(2)
    ]
    for run in runs:
        finish(run)
    # How many passes each run got depends on how the two interleaved (a pass that finds
    # the lock taken skips): one more run alone finishes the plan, so the end state does
    # not depend on that timing; a clinic moved twice by the concurrent runs still shows.
    finish(start(environment, "run", str(plan), "--interval", "0", "--passes", "6"))

    stages = FlagsFileStageWriter(flags_file, Stage.DUAL_WRITE).read(clinics.all).stages
    assert set(stages.values()) == {Stage.SHADOW}
    for clinic_id in clinics.all:
        assert await moves(sessions, clinic_id) == FORWARD[:2]
    changes = collections.Counter(
        (row.clinic_id, row.action, row.to_stage) for row in await audit_rows(sessions)
    )
    assert max(changes.values()) == 1, changes


async def test_a_pass_skips_while_another_holds_the_lock(
    environment: dict[str, str],
    plan: Path,
    clinics: RolloutClinics,
    sessions: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    async with pass_lock(engine) as taken:
        assert taken
        _, err = finish(start(environment, "step", str(plan)))
        assert "another rollout pass holds the lock; this one skipped" in err
        assert await audit_rows(sessions) == []

    out, _ = finish(start(environment, "step", str(plan)))

    assert "1 moved, 0 failed, 3 not" in out
    assert await moves(sessions, clinics.clean_one) == FORWARD[:1]


async def test_a_run_killed_between_passes_is_resumed_by_the_next(
    environment: dict[str, str],
    plan: Path,
    clinics: RolloutClinics,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    run = start(environment, "run", str(plan), "--interval", "3600")
    watchdog = threading.Timer(120, run.kill)
    watchdog.start()
    try:
        assert run.stdout is not None
        said = next(line for line in iter(run.stdout.readline, "") if "moved" in line)
        assert said == "1 moved, 0 failed, 3 not\n"
    finally:
        watchdog.cancel()
        run.kill()
        run.communicate(timeout=30)
    assert run.returncode == -9
    assert await moves(sessions, clinics.clean_one) == FORWARD[:1]

    out, _ = finish(start(environment, "run", str(plan), "--passes", "1", "--interval", "0"))

    assert "1 moved, 0 failed, 3 not" in out
    assert await moves(sessions, clinics.clean_one) == FORWARD[:2]


async def test_status_and_a_dry_run_say_what_would_happen_and_change_nothing(
    environment: dict[str, str],
    plan: Path,
    clinics: RolloutClinics,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    out, _ = finish(start(environment, "step", str(plan), "--dry-run"))
    assert f"would promote Clean One ({clinics.clean_one}): legacy -> dual_write" in out
    status, _ = finish(start(environment, "status", str(plan)))
    assert "Clean One" in status
    assert "next step: promote to dual_write now" in status
    assert 'blocking: cohort "pilot" is not at the target yet' in status
    assert await audit_rows(sessions) == []


async def test_a_clinic_held_by_hand_stays_and_status_survives_a_closed_pipe(
    environment: dict[str, str],
    plan: Path,
    clinics: RolloutClinics,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    _, err = finish(
        start(environment, "hold", str(clinics.clean_one), "--reason", "clinic asked to wait")
    )
    refused = start(environment, "hold", str(clinics.clean_one), "--reason", "again")
    _, err = refused.communicate(timeout=120)
    assert refused.returncode == 1
    assert "is held already: held by hand: clinic asked to wait" in err

    out, _ = finish(start(environment, "step", str(plan)))
    assert "0 moved, 0 failed, 4 not" in out
    assert await moves(sessions, clinics.clean_one) == []

    out, err = await asyncio.to_thread(read_first_line, environment, plan)
    assert "HELD" in out
    assert "Traceback" not in err


def read_first_line(environment: dict[str, str], plan: Path) -> tuple[str, str]:
    reader = subprocess.Popen(
        f"{CLINIC} rollout status {plan} | head -n 1",
        shell=True,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return reader.communicate(timeout=120)


async def test_run_stops_once_the_plan_is_complete_and_backfills_on_the_way(
    environment: dict[str, str],
    plan: Path,
    clinics: RolloutClinics,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    out, _ = finish(start(environment, "run", str(plan), "--interval", "0", "--passes", "50"))

    assert out.rstrip().endswith("the plan is complete: every clinic is at the target")
    passes = out.count(" not\n")
    assert passes < 50, "it stopped on its own"
    assert f"backfilled Unlinked ({clinics.unlinked})" in out
    backfills = [r for r in await audit_rows(sessions, clinics.unlinked) if r.action == "backfill"]
    assert [r.state for r in backfills] == ["applied"]
    assert "backfill finished: 1 doctor links" in backfills[0].reason
    assert await moves(sessions, clinics.unlinked) == FORWARD[:2]


async def test_a_hosts_flags_file_is_not_written_while_another_host_serves(
    environment: dict[str, str],
    plan: Path,
    clinics: RolloutClinics,
    sessions: async_sessionmaker[AsyncSession],
    flags_file: Path,
) -> None:
    """Two hosts, each with a flags file of its own, would each move clinics by its copy and
    audit the other's moves as moves by hand: with another host's instance live in the
    database, the file writers refuse, and nothing is written or audited."""
    now = utcnow()
    async with sessions() as session, session.begin():
        session.add_all(
            [
                ServiceInstance(
                    host="clinic-host-2", pid=4242, flag_source="file", started_at=now, seen_at=now
                ),
                ServiceInstance(
                    host=this_host(), pid=1, flag_source="file", started_at=now, seen_at=now
                ),
            ]
        )
    before = await asyncio.to_thread(flags_file.read_bytes)

    stepped = await asyncio.to_thread(clinic, environment, "rollout", "step", str(plan))
    pinned = await asyncio.to_thread(
        clinic, environment, "flags", "set-stage", str(clinics.all[0]), "shadow"
    )
    status = await asyncio.to_thread(clinic, environment, "rollout", "status", str(plan))

    for refused in (stepped, pinned):
        assert refused.returncode == 2, refused.stderr
        assert "instances on other hosts (clinic-host-2)" in refused.stderr
        assert "Unleash" in refused.stderr
        assert this_host() not in refused.stderr.split("hosts (")[1].split(")")[0]
    assert status.returncode == 0, status.stderr
    assert await asyncio.to_thread(flags_file.read_bytes) == before
    assert await audit_rows(sessions) == []

    async with sessions() as session, session.begin():
        gone = await session.get(ServiceInstance, ("clinic-host-2", 4242))
        assert gone is not None
        gone.seen_at = now - timedelta(seconds=LIVE_SECONDS + 30)
    finish(start(environment, "step", str(plan)))
    after = await asyncio.to_thread(flags_file.read_bytes)
    assert after != before, "a host no longer seen does not count"
