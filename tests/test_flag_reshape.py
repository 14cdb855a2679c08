"""`clinic flags reshape`: a flag of the old shape (clinic lists per stage) becomes one pin
per clinic, with no clinic changing stage at any moment, in the file and in Unleash."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from yggdrasil_engine.engine import UnleashEngine

from appointments.stages import Stage
from flags import FLAG_NAME
from flags.document import Document, build_document, read_document, write_document
from flags.pins import clinic_constraint, pinned_stages, rollout_stage, stage_variant
from flags.reshape import reshape_unleash
from flags.stage_writers import evaluate
from flags.unleash_admin import Description, UnleashAdmin
from server.cli import main
from tests.admin_proxy import (  # noqa: F401 - the fixtures, used by name
    AdminProxy,
    shared_unleash,
    unleash_server,
)
from tests.test_unleash_real import (
    ADMIN_TOKEN,
    UnleashServer,
)

LISTED = {
    Stage.LIVE: [str(uuid.uuid4()) for _ in range(3)],
    Stage.COMPLETE: [str(uuid.uuid4()) for _ in range(2)],
}
OTHERS = [uuid.uuid4() for _ in range(100)]
BY_HAND = {
    "name": "default",
    "title": "a pilot set by hand",
    "parameters": {},
    "constraints": [clinic_constraint([LISTED[Stage.LIVE][0]])],
    "variants": [stage_variant(Stage.RAMPDOWN, "default")],
}


def old_strategies() -> list[dict[str, Any]]:
    """The old shape: one list per stage, an untitled rollout, and one strategy by hand
    first (it decides the first live clinic)."""
    lists = [
        {
            "name": "default",
            "parameters": {},
            "constraints": [clinic_constraint(clinics)],
            "variants": [stage_variant(stage, "default")],
        }
        for stage, clinics in LISTED.items()
    ]
    rollout = {
        "name": "flexibleRollout",
        "parameters": {"rollout": "40", "stickiness": "clinicId", "groupId": FLAG_NAME},
        "constraints": [],
        "variants": [stage_variant(Stage.SHADOW, "clinicId")],
    }
    return [copy.deepcopy(BY_HAND), *lists, rollout]


def everyone() -> list[uuid.UUID]:
    return [uuid.UUID(c) for clinics in LISTED.values() for c in clinics] + OTHERS


@pytest.fixture
def flags_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "flags.json"
    monkeypatch.setenv("CLINIC_FLAGS_FILE", str(path))
    monkeypatch.setenv("CLINIC_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}")
    monkeypatch.delenv("UNLEASH_URL", raising=False)
    return path


def test_the_file_is_reshaped_in_one_write_with_every_clinic_where_it_was(
    flags_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = build_document({})
    document["features"][0]["strategies"] = old_strategies()
    write_document(flags_path, document)
    before = evaluate(document, everyone(), Stage.DUAL_WRITE)
    text = flags_path.read_text(encoding="utf-8")

    assert main(["flags", "reshape", "--dry-run"]) == 0
    assert flags_path.read_text(encoding="utf-8") == text
    out = capsys.readouterr().out
    assert f"would pin {LISTED[Stage.LIVE][1]} to live and take it out of the live list" in out
    assert "6 steps (dry run)" in out

    assert main(["flags", "reshape"]) == 0
    reshaped = read_document(flags_path)
    assert evaluate(reshaped, everyone(), Stage.DUAL_WRITE) == before
    strategies = reshaped["features"][0]["strategies"]
    assert BY_HAND in strategies, "a strategy made by hand is kept as it was"
    pinned = pinned_stages(strategies)
    assert pinned == {c: before[uuid.UUID(c)] for clinics in LISTED.values() for c in clinics}
    assert [rollout_stage(s) for s in strategies if s["name"] == "flexibleRollout"] == [
        Stage.SHADOW
    ]
    capsys.readouterr()

    assert main(["flags", "reshape"]) == 0
    assert "the flag has the pinned shape already" in capsys.readouterr().out


def admin_served(server: UnleashServer, clinic_ids: list[uuid.UUID]) -> dict[str, Any]:
    with closing(server.admin()) as admin:
        document: Document = admin.export()
    engine = UnleashEngine()
    engine.take_state(json.dumps(document))
    stages = {}
    for clinic_id in clinic_ids:
        chosen = engine.get_variant(FLAG_NAME, {"properties": {"clinicId": str(clinic_id)}})
        variant = chosen.variant
        stages[str(clinic_id)] = variant.name if variant.enabled else Stage.DUAL_WRITE.value
    return stages


async def test_unleash_is_reshaped_one_call_at_a_time_and_no_clinic_ever_moves(
    unleash_server: UnleashServer,  # noqa: F811 - the imported fixture
) -> None:
    with closing(unleash_server.admin()) as admin:
        admin.apply(Description())
        for strategy in admin.flag().strategies:  # Unleash's own default, added on switching on
            admin.delete_strategy(strategy["id"])
        strategies = f"{unleash_server.url}/{admin_strategies_path()}"
        async with httpx.AsyncClient(headers={"Authorization": ADMIN_TOKEN}) as client:
            for order, body in enumerate(old_strategies()):
                answer = await client.post(strategies, json={**body, "sortOrder": order})
                answer.raise_for_status()
            # Unleash switched the flag off with its last strategy gone: on again, by hand.
            switched_on = await client.post(strategies.removesuffix("/strategies") + "/on")
            switched_on.raise_for_status()
    clinics = everyone()
    before = admin_served(unleash_server, clinics)
    assert {before[c] for c in LISTED[Stage.COMPLETE]} == {"complete"}
    assert set(before.values()) >= {"shadow", "dual_write", "rampdown", "live", "complete"}
    proxy = AdminProxy(unleash_server.url, lambda: admin_served(unleash_server, clinics)).start()
    try:
        with closing(UnleashAdmin(proxy.url, ADMIN_TOKEN)) as proxied:
            said: list[str] = []
            steps = await asyncio.to_thread(
                reshape_unleash, proxied, Stage.DUAL_WRITE, False, said.append
            )
    finally:
        proxy.stop()

    assert steps == 6
    writes = [call for call in proxy.calls if not call.startswith("GET")]
    assert len(writes) >= 2 * 4, "each clinic: a pin, then its removal from the old list"
    for label, snapshot in proxy.snapshots:
        assert snapshot == before, label
    with closing(unleash_server.admin()) as admin:
        now = admin.flag().active
    listed = [c for stage_clinics in LISTED.values() for c in stage_clinics]
    assert pinned_stages(now) == {c: Stage(before[c]) for c in listed}
    assert any(s.get("title") == BY_HAND["title"] for s in now)


def admin_strategies_path() -> str:
    return f"api/admin/projects/default/features/{FLAG_NAME}/environments/development/strategies"
