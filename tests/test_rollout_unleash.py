"""`clinic rollout` driving a real Unleash server (the one tests/test_unleash_real.py starts).

The flag is read and written through the Admin API; our service, polling the same
server, serves what the autopilot set, and what its reads see (a mismatch) is what
the next pass steps back for. A change made in Unleash by hand is audited as seen.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.stages import Stage
from flags.stage_writers import UnleashStageWriter
from flags.unleash_admin import Description, UnleashAdmin
from server.cli import main
from tests.rollout_setup import (
    FORWARD,
    READ,
    RolloutClinics,
    audit_rows,
    held,
    moves,
    plan_text,
    rollout_clinics,
)
from tests.test_unleash_real import (  # noqa: F401 - the fixture, used by name
    ADMIN_TOKEN,
    UnleashServer,
    next_fetch,
    service,
    unleash_server,
)

pytestmark = pytest.mark.unleash


@pytest.fixture
def cli_logging() -> Iterator[None]:
    """``main`` configures logging for a process; put the test run's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


async def test_the_autopilot_drives_unleash_from_legacy_to_complete_and_steps_a_mismatch_back(
    unleash_server: UnleashServer,  # noqa: F811 - the imported fixture
    database_url: str,
    sessions: async_sessionmaker[AsyncSession],
    flags_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cli_logging: None,
) -> None:
    clinics = await rollout_clinics(sessions)
    with closing(unleash_server.admin()) as admin:
        await _rollout(
            unleash_server,
            admin,
            clinics,
            database_url,
            sessions,
            flags_file,
            tmp_path,
            monkeypatch,
        )


async def _rollout(
    unleash_server: UnleashServer,  # noqa: F811 - the imported fixture's value
    admin: UnleashAdmin,
    clinics: RolloutClinics,
    database_url: str,
    sessions: async_sessionmaker[AsyncSession],
    flags_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin.apply(Description({str(c): Stage.LEGACY for c in clinics.all}))
    writer = UnleashStageWriter(admin, Stage.DUAL_WRITE)
    plan = tmp_path / "plan.toml"
    plan.write_text(plan_text(clinics), encoding="utf-8")
    monkeypatch.setenv("CLINIC_DATABASE_URL", database_url)
    monkeypatch.setenv("UNLEASH_URL", f"{unleash_server.url}/api")
    monkeypatch.setenv("UNLEASH_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.delenv("UNLEASH_API_TOKEN", raising=False)

    async def steps(count: int) -> None:
        for _ in range(count):
            assert await asyncio.to_thread(main, ["rollout", "step", str(plan)]) == 0

    await steps(7)
    assert writer.read(clinics.all).stages == {
        clinics.clean_one: Stage.COMPLETE,
        clinics.clean_two: Stage.SHADOW,
        clinics.mismatched: Stage.SHADOW,
        clinics.unlinked: Stage.DUAL_WRITE,
    }
    async with service(database_url, flags_file, unleash_server, tmp_path / "cache") as api:
        await next_fetch(api)
        body = await api.post(READ, {"clinicId": str(clinics.mismatched)})
    assert body["extensions"]["migration"]["stages"] == {str(clinics.mismatched): "shadow"}
    assert body["extensions"]["migration"]["mismatches"] == 1

    await steps(5)

    assert writer.read(clinics.all).stages == {
        clinics.clean_one: Stage.COMPLETE,
        clinics.clean_two: Stage.COMPLETE,
        clinics.mismatched: Stage.DUAL_WRITE,
        clinics.unlinked: Stage.DUAL_WRITE,
    }
    assert await moves(sessions, clinics.clean_one) == FORWARD
    assert await moves(sessions, clinics.clean_two) == FORWARD
    assert await moves(sessions, clinics.mismatched) == [
        *FORWARD[:2],
        ("step_back", "shadow", "dual_write"),
    ]
    assert await moves(sessions, clinics.unlinked) == FORWARD[:1], "waits for a backfill"
    assert await held(sessions) == {clinics.mismatched}

    writer.set_stage(clinics.unlinked, Stage.LEGACY)
    await steps(1)

    seen = [
        r for r in await audit_rows(sessions, clinics.unlinked) if r.action == "observed_change"
    ]
    assert [(r.actor, r.from_stage, r.to_stage) for r in seen][-1] == (
        "unleash",
        "dual_write",
        "legacy",
    )
    exported = admin.export()["features"][0]
    assert exported["enabled"] is True
