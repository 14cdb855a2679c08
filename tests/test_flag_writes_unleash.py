"""The autopilot's and set-stage's flag writes against a real Unleash server, under faults.

A proxy in front of the Admin API (``tests.admin_proxy``) fails each call of a
move in turn, or kills the writing process at it; at every call, before and
after it reaches the server, every clinic's stage is evaluated with the Unleash
SDK against the server's state. No clinic but the moved one ever changes. Also:
the kill switch pauses the autopilot, strategies made by hand survive untouched,
and set-stage under Unleash reaches the service.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import closing, suppress
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from yggdrasil_engine.engine import UnleashEngine

from appointments.models import RolloutStatus, utcnow
from appointments.rollout.decisions import Verdict
from appointments.rollout.engine import run_pass
from appointments.stages import Stage
from flags import FLAG_NAME
from flags.stage_writers import UnleashStageWriter
from flags.unleash_admin import Description, UnleashAdmin, UnleashAdminError
from tests.admin_proxy import (  # noqa: F401 - the fixtures, used by name
    AdminProxy,
    Fault,
    shared_unleash,
    unleash_server,
)
from tests.rollout_setup import RolloutClinics, audit_rows, rollout_clinics, rollout_plan
from tests.test_unleash_real import (
    ADMIN_TOKEN,
    UnleashServer,
    next_fetch,
    service,
)

pytestmark = pytest.mark.unleash

CLINIC = Path(sys.executable).with_name("clinic")
BYSTANDERS = [uuid.uuid4() for _ in range(50)]
"""Clinics in no plan and no pin: the rollout decides them."""


def served(server: UnleashServer, clinic_ids: list[uuid.UUID]) -> dict[str, Any]:
    """What the server's flag gives each clinic now, evaluated by the Unleash engine (the
    Admin API's view: the client API may answer from a cache a moment old)."""
    with closing(server.admin()) as admin:
        document = admin.export()
    engine = UnleashEngine()
    engine.take_state(json.dumps(document))
    stages = {}
    for clinic_id in clinic_ids:
        variant = engine.get_variant(FLAG_NAME, {"properties": {"clinicId": str(clinic_id)}})
        chosen = variant.variant
        stages[str(clinic_id)] = Stage(chosen.name) if chosen.enabled else Stage.DUAL_WRITE
    return stages


@pytest.fixture
def flag_setup(
    unleash_server: UnleashServer,  # noqa: F811 - the imported fixture
) -> Iterator[tuple[UnleashAdmin, AdminProxy]]:
    with closing(unleash_server.admin()) as admin:
        proxy = AdminProxy(unleash_server.url, lambda: {}).start()
        try:
            yield admin, proxy
        finally:
            proxy.stop()


def assert_only_moved(
    proxy: AdminProxy, before: dict[str, Any], moved: uuid.UUID, allowed: set[Stage]
) -> None:
    assert proxy.snapshots, "the proxy saw no call"
    for label, snapshot in proxy.snapshots:
        others = {c: s for c, s in snapshot.items() if c != str(moved)}
        assert others == {c: s for c, s in before.items() if c != str(moved)}, label
        assert snapshot[str(moved)] in allowed, label


async def test_a_move_failed_at_any_admin_call_changes_no_other_clinic(
    unleash_server: UnleashServer,  # noqa: F811 - the imported fixture
    flag_setup: tuple[UnleashAdmin, AdminProxy],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    admin, proxy = flag_setup
    clinics = await rollout_clinics(sessions)
    everyone = [*clinics.all, *BYSTANDERS]
    admin.apply(
        Description(
            {str(clinics.clean_one): Stage.LEGACY, str(clinics.clean_two): Stage.COMPLETE},
            ((Stage.SHADOW, 50),),
        )
    )
    proxy.snapshot = lambda: served(unleash_server, everyone)
    plan = rollout_plan(clinics)
    with closing(UnleashAdmin(proxy.url, ADMIN_TOKEN)) as proxied:
        writer = UnleashStageWriter(proxied, Stage.DUAL_WRITE)
        proxy.reset(None)
        report = await run_pass(sessions, plan, writer, utcnow(), dry_run=True)
        assert [(d.clinic_id, d.to_stage) for d in report.moves] == [
            (clinics.clean_one, Stage.DUAL_WRITE)
        ]
        calls = len(proxy.calls)
        proxy.reset(None)
        await asyncio.to_thread(writer.set_stage, clinics.clean_one, Stage.DUAL_WRITE)
        write_calls = len(proxy.calls)
        await asyncio.to_thread(writer.set_stage, clinics.clean_one, Stage.LEGACY)
        assert write_calls >= 1
        assert calls >= 1

        faults = [Fault(n, "fail") for n in range(1, calls + write_calls + calls)]
        # A failure after the server took the call differs from one before only for a write.
        faults.append(Fault(calls + write_calls, "fail_after"))
        for fault in faults:
            mode, number = fault.mode, fault.call
            before = served(unleash_server, everyone)
            assert before[str(clinics.clean_one)] is Stage.LEGACY
            proxy.reset(fault)
            with suppress(UnleashAdminError):  # the pass's first read failed: nothing done
                report = await run_pass(sessions, plan, writer, utcnow())
                if number == calls + write_calls and mode == "fail":
                    assert report.errors, "the write was refused: the pass says it failed"
                    assert clinics.clean_one in report.outcomes.failed
                    status = await stored_status(sessions, clinics.clean_one)
                    assert status.stage == "legacy"
                    assert (status.blocking or "").startswith("the move to dual_write failed")
            assert_only_moved(proxy, before, clinics.clean_one, {Stage.LEGACY, Stage.DUAL_WRITE})
            now = served(unleash_server, everyone)[str(clinics.clean_one)]
            rows = [r for r in await audit_rows(sessions, clinics.clean_one) if r.to_stage]
            if rows and rows[-1].action == "promote":
                state = rows[-1].state
                # An intent stays open when the flag could not be read back; the next
                # pass settles it from the flag.
                expected = {
                    "applied": {Stage.DUAL_WRITE},
                    "failed": {Stage.LEGACY},
                    "intent": {Stage.LEGACY, Stage.DUAL_WRITE},
                }
                assert now in expected[state], (mode, number, state, now)
            admin.pin(str(clinics.clean_one), Stage.LEGACY)
            proxy.reset(None)
            await run_pass(sessions, plan, writer, utcnow(), dry_run=True)


async def stored_status(
    sessions: async_sessionmaker[AsyncSession], clinic_id: uuid.UUID
) -> RolloutStatus:
    async with sessions() as session:
        row = await session.get(RolloutStatus, clinic_id)
    assert row is not None
    return row


def run_writer(environment: dict[str, str], *arguments: str, proxy: AdminProxy) -> int:
    process = subprocess.Popen(
        [str(CLINIC), *arguments],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    proxy.victim = process.pid
    _, _ = process.communicate(timeout=120)
    return process.returncode


async def test_set_stage_killed_at_any_admin_call_changes_no_other_clinic(
    unleash_server: UnleashServer,  # noqa: F811 - the imported fixture
    flag_setup: tuple[UnleashAdmin, AdminProxy],
    tmp_path: Path,
) -> None:
    """The writer is the `clinic` command itself, killed at each call; only the flag is
    under test here, so it runs once, against a database it cannot reach (set-stage then
    warns that the audit row waits for the next rollout pass)."""
    admin, proxy = flag_setup
    clinics = RolloutClinics(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4())
    everyone = [*clinics.all, *BYSTANDERS]
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'none.db'}"
    admin.apply(
        Description(
            {str(c): Stage.SHADOW for c in clinics.all[1:]} | {str(clinics.clean_one): Stage.LIVE},
            ((Stage.RAMPDOWN, 30),),
        )
    )
    proxy.snapshot = lambda: served(unleash_server, everyone)
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CLINIC_", "UNLEASH_"))
    } | {
        "CLINIC_DATABASE_URL": database_url,
        "UNLEASH_URL": f"{proxy.url}/api",
        "UNLEASH_ADMIN_TOKEN": ADMIN_TOKEN,
        "CLINIC_LOG_LEVEL": "WARNING",
    }
    move = ("flags", "set-stage", str(clinics.clean_one))
    proxy.reset(None)
    assert await asyncio.to_thread(run_writer, environment, *move, "rampdown", proxy=proxy) == 0
    calls = len(proxy.calls)
    assert served(unleash_server, everyone)[str(clinics.clean_one)] is Stage.RAMPDOWN
    writes = [n for n, call in enumerate(proxy.calls, 1) if not call.startswith("GET")]
    assert len(writes) == 1, proxy.calls

    faults = [Fault(n, "kill") for n in range(1, calls + 1)] + [Fault(writes[0], "kill_after")]
    for fault in faults:
        admin.pin(str(clinics.clean_one), Stage.LIVE)
        before = served(unleash_server, everyone)
        proxy.reset(fault)
        status = await asyncio.to_thread(run_writer, environment, *move, "rampdown", proxy=proxy)
        assert status == -9, fault
        assert_only_moved(proxy, before, clinics.clean_one, {Stage.LIVE, Stage.RAMPDOWN})
        after = served(unleash_server, everyone)[str(clinics.clean_one)]
        written = fault.call > writes[0] or fault.mode == "kill_after"
        assert after is (Stage.RAMPDOWN if written else Stage.LIVE), (fault, proxy.calls)


async def test_the_kill_switch_pauses_the_autopilot_and_is_never_switched_back_on(
    unleash_server: UnleashServer,  # noqa: F811 - the imported fixture
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    clinics = await rollout_clinics(sessions)
    with closing(unleash_server.admin()) as admin:
        admin.apply(Description({str(c): Stage.LEGACY for c in clinics.all}))
        off = f"api/admin/projects/default/features/{FLAG_NAME}/environments/development/off"
        await switch(unleash_server, off)
        writer = UnleashStageWriter(admin, Stage.DUAL_WRITE)
        plan = rollout_plan(clinics)

        for _ in range(2):
            report = await run_pass(sessions, plan, writer, utcnow())
            assert (
                report.paused
                == "the flag appointments.clinic-model-migration is switched off in Unleash"
            )
            assert {d.verdict for d in report.decisions} == {Verdict.PAUSED}
            assert not report.outcomes.applied

        assert admin.flag().enabled is False
        pauses = [r for r in await audit_rows(sessions) if r.action == "pause"]
        assert sorted(r.clinic_id for r in pauses) == sorted(clinics.all), "once per clinic"

        on = off.removesuffix("/off") + "/on"
        await switch(unleash_server, on)
        report = await run_pass(sessions, plan, writer, utcnow())
        assert report.paused is None
        assert [(d.clinic_id, d.to_stage) for d in report.moves] == [
            (clinics.clean_one, Stage.DUAL_WRITE)
        ]
        resumes = [r for r in await audit_rows(sessions) if r.action == "resume"]
        assert len(resumes) == len(clinics.all)


async def switch(server: UnleashServer, path: str) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"{server.url}/{path}", headers={"Authorization": ADMIN_TOKEN})
    answer.raise_for_status()


async def test_strategies_made_by_hand_survive_a_rollout_and_hold_their_clinic(
    unleash_server: UnleashServer,  # noqa: F811 - the imported fixture
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    clinics = await rollout_clinics(sessions)
    with closing(unleash_server.admin()) as admin:
        admin.apply(Description({str(c): Stage.LEGACY for c in clinics.all}, ((Stage.SHADOW, 10),)))
        strategies = (
            f"{unleash_server.url}/api/admin/projects/default/features/{FLAG_NAME}"
            "/environments/development/strategies"
        )
        headers = {"Authorization": ADMIN_TOKEN}
        by_hand = {
            "name": "default",
            "title": "pilot by the product owner",
            "constraints": [
                {"contextName": "clinicId", "operator": "IN", "values": [str(clinics.clean_two)]}
            ],
            "parameters": {},
            "variants": [
                {"name": "live", "weight": 1000, "weightType": "variable", "stickiness": "default"}
            ],
            "sortOrder": -100,
        }
        parked = {
            "name": "flexibleRollout",
            "title": "parked",
            "constraints": [],
            "parameters": {"rollout": "100", "stickiness": "clinicId", "groupId": "parked"},
            "variants": [],
            "disabled": True,
            "sortOrder": 50,
        }
        async with httpx.AsyncClient() as client:
            made = [
                (await client.post(strategies, json=body, headers=headers)).json()
                for body in (by_hand, parked)
            ]
        kept = {s["id"]: s for s in made}
        writer = UnleashStageWriter(admin, Stage.DUAL_WRITE)
        plan = rollout_plan(clinics)

        report = None
        for _ in range(8):
            report = await run_pass(sessions, plan, writer, utcnow())
        assert report is not None
        claimed = next(d for d in report.decisions if d.clinic_id == clinics.clean_two)
        assert claimed.verdict is Verdict.CLAIMED
        assert '"pilot by the product owner"' in (claimed.blocking or "")
        now = {s["id"]: s for s in admin.flag().strategies}
        for strategy_id, strategy in kept.items():
            for key in ("title", "constraints", "variants", "parameters", "disabled", "sortOrder"):
                assert now[strategy_id].get(key) == strategy.get(key), key
        assert writer.read([clinics.clean_two]).stages[clinics.clean_two] is Stage.LIVE
        assert writer.read([clinics.clean_one]).stages[clinics.clean_one] is Stage.COMPLETE


async def test_set_stage_under_unleash_reaches_the_service_and_audits_what_was_served(
    unleash_server: UnleashServer,  # noqa: F811 - the imported fixture
    sessions: async_sessionmaker[AsyncSession],
    database_url: str,
    flags_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from server.cli import main

    clinics = await rollout_clinics(sessions)
    with closing(unleash_server.admin()) as admin:
        admin.apply(Description({}, ((Stage.SHADOW, 100),)))
    monkeypatch.setenv("CLINIC_DATABASE_URL", database_url)
    monkeypatch.setenv("UNLEASH_URL", f"{unleash_server.url}/api")
    monkeypatch.delenv("UNLEASH_ADMIN_TOKEN", raising=False)
    clinic = str(clinics.clean_one)

    assert await asyncio.to_thread(main, ["flags", "set-stage", clinic, "live"]) == 2
    assert "needs UNLEASH_ADMIN_TOKEN" in capsys.readouterr().err

    monkeypatch.setenv("UNLEASH_ADMIN_TOKEN", ADMIN_TOKEN)
    assert await asyncio.to_thread(main, ["flags", "set-stage", clinic, "live"]) == 0
    assert "is now in stage live (unleash)" in capsys.readouterr().out
    assert await asyncio.to_thread(main, ["flags", "set-stage", clinic, "live"]) == 0
    assert "already in stage live; nothing written" in capsys.readouterr().out
    rows = [r for r in await audit_rows(sessions, clinics.clean_one) if r.action == "set_stage"]
    assert [(r.from_stage, r.to_stage) for r in rows] == [("shadow", "live")]

    async with service(database_url, flags_file, unleash_server, tmp_path / "cache") as api:
        await next_fetch(api)
        body = await api.post(
            "query($id: ID!) { appointments(first: 1, filter: {clinicId: $id})"
            " { edges { node { id } } } }",
            {"id": clinic},
        )
    assert body["extensions"]["migration"]["stages"] == {clinic: "live"}
