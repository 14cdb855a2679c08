"""Flag sources with the real Unleash client, the stage resolver, the API and the flags CLI."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from UnleashClient import UnleashClient
from UnleashClient.utils import InstanceAllowType

from appointments.rollout.flag import ClinicClaimedError, FlagSwitchedOffError
from appointments.stages import Stage
from flags import FLAG_NAME
from flags.document import (
    Document,
    FlagsFileError,
    build_document,
    parse_document,
    read_document,
    set_clinic_stage,
    set_rollout,
    write_document,
)
from flags.pins import (
    claims,
    clinic_constraint,
    pin_strategy,
    pinned_clinic,
    pinned_stages,
    stage_variant,
)
from flags.source import UNREACHABLE_URL, Evaluator, LocalFileFlagSource, MemoryCache
from flags.stages import StageResolver, Viewer
from server.cli import main
from tests.conftest import Api, World, set_stages, stored_appointment

CREATE = """
mutation Create($input: CreateAppointmentInput!) {
  createAppointment(input: $input) {
    __typename
    ... on AppointmentSuccess { appointment { id } }
    ... on UserError { code message }
  }
}
"""

LIST = """
query List($first: Int) {
  appointments(first: $first) {
    edges { node { id doctor { id } clinicDoctor { id } } }
  }
}
"""

CLINIC_A = str(uuid.UUID("00000000-0000-4000-8000-00000000000a"))
CLINIC_B = str(uuid.UUID("00000000-0000-4000-8000-00000000000b"))
CLINIC_C = str(uuid.UUID("00000000-0000-4000-8000-00000000000c"))
CLINIC_D = str(uuid.UUID("00000000-0000-4000-8000-00000000000d"))


def random_clinic_ids(count: int, seed: int = 20260301) -> list[str]:
    generator = random.Random(seed)
    return [str(uuid.UUID(int=generator.getrandbits(128), version=4)) for _ in range(count)]


def context_of(clinic_id: str) -> dict[str, Any]:
    return {"properties": {"clinicId": clinic_id}}


def write_raw(path: Path, text: str) -> None:
    """Write unvalidated text (write_document refuses bad documents), as an editor would."""
    temporary = path.with_name(f".{path.name}.raw")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def with_variant_name(document: Document, name: str) -> Document:
    changed = copy.deepcopy(document)
    changed["features"][0]["strategies"][0]["variants"][0]["name"] = name
    return changed


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "flags.json"


@pytest.fixture
def open_source(path: Path) -> Iterator[Callable[[], LocalFileFlagSource]]:
    sources: list[LocalFileFlagSource] = []

    def open_one() -> LocalFileFlagSource:
        sources.append(LocalFileFlagSource(path, "clinic-tests"))
        return sources[-1]

    yield open_one
    for source in sources:
        source.close()


class ServedDocumentSource:
    """What an Unleash server may serve: the real client on a document nobody validated."""

    def __init__(self, document: Document) -> None:
        self._client = UnleashClient(
            url=UNREACHABLE_URL,
            app_name="clinic-tests",
            disable_metrics=True,
            disable_registration=True,
            cache=MemoryCache(json.dumps(document)),
            multiple_instance_mode=InstanceAllowType.SILENTLY_ALLOW,
        )

    def variant(self, context: dict[str, Any]) -> str | None:
        result = self._client.get_variant(FLAG_NAME, context)
        return str(result["name"]) if result.get("enabled") else None

    def evaluator(self) -> Evaluator:
        return self.variant

    def describe(self) -> dict[str, Any]:
        return {"source": "served document"}

    def close(self) -> None:
        self._client.destroy()


def test_pinned_clinics_get_their_stage_and_unlisted_clinics_none(
    path: Path, open_source: Callable[[], LocalFileFlagSource]
) -> None:
    write_document(path, build_document({CLINIC_A: Stage.LIVE, CLINIC_B: Stage.COMPLETE}))

    source = open_source()

    assert source.variant(context_of(CLINIC_A)) == "live"
    assert source.variant(context_of(CLINIC_B)) == "complete"
    assert source.variant(context_of(CLINIC_C)) is None
    assert source.describe()["loaded"] is True
    assert source.describe()["problem"] is None


def test_a_percentage_rollout_is_sticky_per_clinic_and_covers_about_its_share(
    path: Path, open_source: Callable[[], LocalFileFlagSource]
) -> None:
    write_document(path, build_document({}, [(Stage.SHADOW, 50)]))
    clinic_ids = random_clinic_ids(1000)
    source = open_source()

    first = [source.variant(context_of(clinic_id)) for clinic_id in clinic_ids]
    again = [source.variant(context_of(clinic_id)) for clinic_id in clinic_ids]
    other_viewers = [
        source.variant({**context_of(clinic_id), "userId": user_id})
        for clinic_id, user_id in zip(clinic_ids, random_clinic_ids(1000, seed=7), strict=True)
    ]
    restarted = open_source()
    after_restart = [restarted.variant(context_of(clinic_id)) for clinic_id in clinic_ids]

    assert set(first) == {"shadow", None}
    assert 400 <= first.count("shadow") <= 600
    assert again == first
    assert other_viewers == first
    assert after_restart == first


def test_pinned_clinics_keep_their_stage_whatever_the_rollout_says(
    path: Path, open_source: Callable[[], LocalFileFlagSource]
) -> None:
    write_document(path, build_document({CLINIC_A: Stage.LEGACY}, [(Stage.SHADOW, 100)]))

    source = open_source()

    assert source.variant(context_of(CLINIC_A)) == "legacy"
    assert {source.variant(context_of(c)) for c in random_clinic_ids(100)} == {"shadow"}


def test_a_rewritten_file_is_picked_up_on_the_next_evaluation(
    path: Path, open_source: Callable[[], LocalFileFlagSource]
) -> None:
    write_document(path, build_document({CLINIC_A: Stage.DUAL_WRITE}))
    source = open_source()
    assert source.variant(context_of(CLINIC_A)) == "dual_write"

    write_document(path, build_document({CLINIC_A: Stage.RAMPDOWN, CLINIC_B: Stage.LIVE}))

    assert source.variant(context_of(CLINIC_A)) == "rampdown"
    assert source.variant(context_of(CLINIC_B)) == "live"


MALFORMED = {
    "invalid JSON": (lambda good: '{"version": 2, "features": [', "not valid JSON"),
    "variant not a stage": (
        lambda good: json.dumps(with_variant_name(good, "turbo")),
        "unknown migration stage 'turbo'",
    ),
}


@pytest.mark.parametrize(("make_text", "reason"), MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_file_is_rejected_and_the_last_good_document_keeps_answering(
    path: Path,
    open_source: Callable[[], LocalFileFlagSource],
    make_text: Callable[[Document], str],
    reason: str,
) -> None:
    good = build_document({CLINIC_A: Stage.LIVE})
    write_document(path, good)
    source = open_source()
    assert source.variant(context_of(CLINIC_A)) == "live"

    write_raw(path, make_text(good))

    assert source.variant(context_of(CLINIC_A)) == "live"
    description = source.describe()
    assert description["loaded"] is True
    assert reason in description["problem"]

    write_document(path, build_document({CLINIC_A: Stage.COMPLETE}))

    assert source.variant(context_of(CLINIC_A)) == "complete"
    assert source.describe()["problem"] is None


def test_a_missing_file_gives_no_variant_and_a_problem_until_it_appears(
    path: Path, open_source: Callable[[], LocalFileFlagSource]
) -> None:
    source = open_source()

    assert source.variant(context_of(CLINIC_A)) is None
    description = source.describe()
    assert description["loaded"] is False
    assert "does not exist" in description["problem"]

    write_document(path, build_document({CLINIC_A: Stage.SHADOW}))

    assert source.variant(context_of(CLINIC_A)) == "shadow"
    assert source.describe()["problem"] is None


def test_a_deleted_file_keeps_its_last_stages_and_says_so(
    path: Path, open_source: Callable[[], LocalFileFlagSource], caplog: pytest.LogCaptureFixture
) -> None:
    write_document(path, build_document({CLINIC_A: Stage.LIVE}))
    source = open_source()
    assert source.variant(context_of(CLINIC_A)) == "live"

    path.unlink()
    with caplog.at_level(logging.ERROR, logger="flags"):
        served = source.variant(context_of(CLINIC_A))

    assert served == "live"
    description = source.describe()
    assert (description["loaded"], description["reachable"]) == (True, False)
    assert "serving the stages last loaded from it" in description["problem"]
    assert "default stage" not in description["problem"]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [description["problem"]]


def test_set_clinic_stage_moves_one_clinic_and_leaves_the_others_alone(
    path: Path, open_source: Callable[[], LocalFileFlagSource]
) -> None:
    document = build_document(
        {CLINIC_A: Stage.LIVE, CLINIC_B: Stage.LIVE, CLINIC_C: Stage.SHADOW},
        [(Stage.RAMPDOWN, 30)],
    )
    others = random_clinic_ids(200)
    write_document(path, document)
    original = open_source()
    before = [original.variant(context_of(c)) for c in others]
    assert set(before) == {"rampdown", None}
    untouched = [s for s in strategies_of(document) if pinned_clinic(s) != CLINIC_A]

    write_document(path, set_clinic_stage(copy.deepcopy(document), CLINIC_A, Stage.SHADOW))

    source = open_source()
    assert source.variant(context_of(CLINIC_A)) == "shadow"
    assert source.variant(context_of(CLINIC_B)) == "live"
    assert source.variant(context_of(CLINIC_C)) == "shadow"
    assert [source.variant(context_of(c)) for c in others] == before
    written = read_document(path)
    assert pinned_stages(strategies_of(written)) == {
        CLINIC_A: Stage.SHADOW,
        CLINIC_B: Stage.LIVE,
        CLINIC_C: Stage.SHADOW,
    }
    assert [s for s in strategies_of(written) if pinned_clinic(s) != CLINIC_A] == untouched


def test_a_new_pin_comes_first_and_each_clinic_has_a_strategy_of_its_own(
    path: Path, open_source: Callable[[], LocalFileFlagSource]
) -> None:
    document = build_document({CLINIC_A: Stage.LIVE}, [(Stage.SHADOW, 100)])

    document = set_clinic_stage(document, CLINIC_A, Stage.COMPLETE)
    document = set_clinic_stage(document, CLINIC_B, Stage.LEGACY)
    write_document(path, document)

    strategies = strategies_of(document)
    assert [s["title"] for s in strategies] == [
        f"clinic-pin {CLINIC_B}",
        f"clinic-pin {CLINIC_A}",
        "clinic-rollout shadow",
    ]
    assert pinned_stages(strategies) == {CLINIC_A: Stage.COMPLETE, CLINIC_B: Stage.LEGACY}
    source = open_source()
    assert source.variant(context_of(CLINIC_A)) == "complete"
    assert source.variant(context_of(CLINIC_B)) == "legacy"
    assert source.variant(context_of(CLINIC_C)) == "shadow"


def test_set_clinic_stage_adds_the_flag_to_a_document_without_it() -> None:
    document: Document = {"version": 2, "features": []}

    document = set_clinic_stage(document, CLINIC_A, Stage.LIVE)

    assert [feature["name"] for feature in document["features"]] == [FLAG_NAME]
    assert pinned_stages(strategies_of(document)) == {CLINIC_A: Stage.LIVE}


def test_a_switched_off_flag_is_never_switched_on_by_a_move() -> None:
    document = build_document({CLINIC_A: Stage.LIVE}, [(Stage.SHADOW, 50)])
    document["features"][0]["enabled"] = False
    before = copy.deepcopy(document)

    with pytest.raises(FlagSwitchedOffError, match="switched off"):
        set_clinic_stage(document, CLINIC_B, Stage.COMPLETE)
    with pytest.raises(FlagSwitchedOffError, match="switched off"):
        set_rollout(document, Stage.LIVE, 10)

    assert document == before


def test_a_strategy_made_by_hand_claims_its_clinics_and_is_never_edited() -> None:
    document = build_document({CLINIC_A: Stage.LIVE})
    by_hand = {
        "name": "default",
        "title": "pilot by hand",
        "parameters": {},
        "constraints": [clinic_constraint([CLINIC_B])],
        "variants": [stage_variant(Stage.RAMPDOWN, "default")],
    }
    edited_pin = pin_strategy(CLINIC_C, Stage.SHADOW)
    edited_pin["constraints"][0]["values"].append(CLINIC_D)
    strategies_of(document)[:0] = [by_hand, edited_pin]
    before = copy.deepcopy(document)

    assert claims(strategies_of(document), [CLINIC_A, CLINIC_B, CLINIC_C, CLINIC_D]) == {
        CLINIC_B: '"pilot by hand" (gives rampdown)',
        CLINIC_C: f'"clinic-pin {CLINIC_C}" (gives shadow)',
        CLINIC_D: f'"clinic-pin {CLINIC_C}" (gives shadow)',
    }
    for clinic in (CLINIC_B, CLINIC_C, CLINIC_D):
        with pytest.raises(ClinicClaimedError, match="our tools did not make"):
            set_clinic_stage(document, clinic, Stage.COMPLETE)
    assert document == before

    set_clinic_stage(document, CLINIC_A, Stage.COMPLETE)
    assert strategies_of(document)[:2] == strategies_of(before)[:2]


def strategies_of(document: Document) -> list[dict[str, Any]]:
    feature = next(f for f in document["features"] if f["name"] == FLAG_NAME)
    strategies: list[dict[str, Any]] = feature["strategies"]
    return strategies


def feature_variants(stage_name: str, with_strategy: bool) -> Document:
    document = build_document({CLINIC_A: Stage.LIVE} if with_strategy else {})
    document["features"][0]["variants"] = [
        {"name": stage_name, "weight": 1000, "weightType": "variable", "stickiness": "default"}
    ]
    return document


NOT_STAGES = {
    "strategy variant": with_variant_name(build_document({CLINIC_A: Stage.LIVE}), "turbo"),
    "stage name in capitals": with_variant_name(build_document({CLINIC_A: Stage.LIVE}), "LIVE"),
    "rollout variant": with_variant_name(build_document({}, [(Stage.SHADOW, 10)]), "shadowy"),
    "feature variant": feature_variants("turbo", with_strategy=True),
    "feature variant, no strategies": feature_variants("turbo", with_strategy=False),
}


@pytest.mark.parametrize("document", NOT_STAGES.values(), ids=NOT_STAGES.keys())
def test_parse_document_rejects_variant_names_that_are_not_stages(document: Document) -> None:
    with pytest.raises(FlagsFileError, match="unknown migration stage"):
        parse_document(json.dumps(document))


def test_parse_document_accepts_what_build_document_builds() -> None:
    document = build_document({CLINIC_A: Stage.LIVE}, [(Stage.SHADOW, 50), (Stage.LEGACY, 100)])

    assert parse_document(json.dumps(document)) == document


def test_resolver_serves_the_configured_default_when_the_flag_gives_no_variant(
    path: Path, open_source: Callable[[], LocalFileFlagSource]
) -> None:
    write_document(path, build_document({CLINIC_A: Stage.LIVE}))
    resolver = StageResolver(open_source(), Stage.LEGACY, Viewer())

    assert resolver(uuid.UUID(CLINIC_B)) is Stage.LEGACY
    assert resolver(uuid.UUID(CLINIC_A)) is Stage.LIVE


def test_resolver_serves_the_default_while_the_flags_file_is_missing(
    open_source: Callable[[], LocalFileFlagSource],
) -> None:
    resolver = StageResolver(open_source(), Stage.RAMPDOWN, Viewer())

    assert resolver(uuid.UUID(CLINIC_A)) is Stage.RAMPDOWN


def test_resolver_serves_the_default_when_the_variant_is_not_a_stage() -> None:
    source = ServedDocumentSource(
        with_variant_name(build_document({CLINIC_A: Stage.LIVE, CLINIC_B: Stage.SHADOW}), "turbo")
    )
    try:
        assert source.variant(context_of(CLINIC_A)) == "turbo"
        resolver = StageResolver(source, Stage.DUAL_WRITE, Viewer())

        assert resolver(uuid.UUID(CLINIC_A)) is Stage.DUAL_WRITE
        assert resolver(uuid.UUID(CLINIC_B)) is Stage.SHADOW
    finally:
        source.close()


def test_resolver_caches_each_clinic_for_its_lifetime_and_a_new_resolver_sees_changes(
    path: Path, open_source: Callable[[], LocalFileFlagSource]
) -> None:
    write_document(path, build_document({CLINIC_A: Stage.LIVE}))
    source = open_source()
    resolver = StageResolver(source, Stage.DUAL_WRITE, Viewer())
    assert resolver(uuid.UUID(CLINIC_A)) is Stage.LIVE

    write_document(path, build_document({CLINIC_A: Stage.COMPLETE, CLINIC_B: Stage.LEGACY}))

    assert resolver(uuid.UUID(CLINIC_A)) is Stage.LIVE
    assert resolver(uuid.UUID(CLINIC_B)) is Stage.LEGACY
    assert resolver.used == {uuid.UUID(CLINIC_A): Stage.LIVE, uuid.UUID(CLINIC_B): Stage.LEGACY}
    fresh = StageResolver(source, Stage.DUAL_WRITE, Viewer())
    assert fresh(uuid.UUID(CLINIC_A)) is Stage.COMPLETE


def appointment_input(clinic_id: uuid.UUID, doctor_id: uuid.UUID, world: World) -> dict[str, Any]:
    starts_at = datetime(2026, 11, 2, 9, tzinfo=UTC)
    return {
        "clinicId": str(clinic_id),
        "doctorId": str(doctor_id),
        "patientId": str(world.patient.id),
        "startsAt": starts_at.isoformat(),
        "endsAt": (starts_at + timedelta(minutes=30)).isoformat(),
    }


async def create(api: Api, clinic_id: uuid.UUID, doctor_id: uuid.UUID, world: World) -> Any:
    body = await api.post(CREATE, {"input": appointment_input(clinic_id, doctor_id, world)})
    result = body["data"]["createAppointment"]
    assert result["__typename"] == "AppointmentSuccess", result
    return body


async def test_the_response_reports_the_stage_of_each_clinic_it_used(
    api: Api, world: World, flags_file: Path
) -> None:
    set_stages(flags_file, {world.clinic_a.id: Stage.SHADOW})
    await create(api, world.clinic_a.id, world.doctor.id, world)
    await create(api, world.clinic_b.id, world.doctor_of_b.id, world)

    body = await api.post(LIST, {"first": 10})

    assert "errors" not in body, body["errors"]
    assert len(body["data"]["appointments"]["edges"]) == 2
    assert body["extensions"]["migration"]["stages"] == {
        str(world.clinic_a.id): "shadow",
        str(world.clinic_b.id): "dual_write",
    }


async def test_moving_a_clinic_in_the_flags_file_changes_the_next_write_without_a_restart(
    api: Api, world: World, flags_file: Path, sessions: async_sessionmaker[AsyncSession]
) -> None:
    set_stages(flags_file, {world.clinic_a.id: Stage.DUAL_WRITE})
    before = await create(api, world.clinic_a.id, world.doctor.id, world)

    set_stages(flags_file, {world.clinic_a.id: Stage.COMPLETE})
    after = await create(api, world.clinic_a.id, world.doctor.id, world)
    in_b = await create(api, world.clinic_b.id, world.doctor_of_b.id, world)

    assert before["extensions"]["migration"]["stages"] == {str(world.clinic_a.id): "dual_write"}
    assert after["extensions"]["migration"]["stages"] == {str(world.clinic_a.id): "complete"}
    assert in_b["extensions"]["migration"]["stages"] == {str(world.clinic_b.id): "dual_write"}
    stored_before = await stored_appointment(sessions, appointment_id(before))
    assert (stored_before.doctor_id, stored_before.clinic_doctor_id) == (
        world.doctor.id,
        world.clinic_doctor.id,
    )
    stored_after = await stored_appointment(sessions, appointment_id(after))
    assert (stored_after.doctor_id, stored_after.clinic_doctor_id) == (
        None,
        world.clinic_doctor.id,
    )
    stored_in_b = await stored_appointment(sessions, appointment_id(in_b))
    assert (stored_in_b.doctor_id, stored_in_b.clinic_doctor_id) == (
        world.doctor_of_b.id,
        world.clinic_doctor_of_b.id,
    )


def appointment_id(body: dict[str, Any]) -> str:
    value: str = body["data"]["createAppointment"]["appointment"]["id"]
    return value


@dataclass
class Cli:
    path: Path

    def run(self, *arguments: str) -> int:
        return main(list(arguments))

    def stage_of(self, clinic_id: str) -> str | None:
        source = LocalFileFlagSource(self.path, "clinic-tests")
        try:
            return source.variant(context_of(clinic_id))
        finally:
            source.close()


@pytest.fixture
def cli(path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    monkeypatch.setenv("CLINIC_FLAGS_FILE", str(path))
    monkeypatch.setenv("CLINIC_DATABASE_URL", f"sqlite+aiosqlite:///{path.parent / 'db.sqlite3'}")
    root = logging.getLogger()
    unleash = logging.getLogger("UnleashClient")
    handlers, level, unleash_level = root.handlers[:], root.level, unleash.level
    yield Cli(path)
    root.handlers[:] = handlers
    root.setLevel(level)
    unleash.setLevel(unleash_level)


def test_cli_set_stage_creates_the_file_and_moves_a_clinic(cli: Cli) -> None:
    assert cli.run("flags", "set-stage", CLINIC_A, "live") == 0
    assert cli.stage_of(CLINIC_A) == "live"

    assert cli.run("flags", "set-stage", CLINIC_A, "complete") == 0

    assert cli.stage_of(CLINIC_A) == "complete"
    assert pinned_stages(strategies_of(read_document(cli.path))) == {CLINIC_A: Stage.COMPLETE}


def test_cli_set_stage_leaves_other_clinics_and_rollouts_as_they_were(cli: Cli) -> None:
    write_document(cli.path, build_document({CLINIC_B: Stage.LEGACY}, [(Stage.SHADOW, 100)]))

    assert cli.run("flags", "set-stage", CLINIC_A, "rampdown") == 0

    assert cli.stage_of(CLINIC_A) == "rampdown"
    assert cli.stage_of(CLINIC_B) == "legacy"
    assert cli.stage_of(CLINIC_C) == "shadow"


def test_cli_set_stage_refuses_a_malformed_file_and_leaves_it_alone(cli: Cli) -> None:
    write_raw(cli.path, "{not json")

    assert cli.run("flags", "set-stage", CLINIC_A, "live") == 1

    assert cli.path.read_text(encoding="utf-8") == "{not json"


def test_cli_set_stage_refuses_an_unknown_stage(cli: Cli) -> None:
    write_document(cli.path, build_document({CLINIC_A: Stage.LIVE}))

    with pytest.raises(SystemExit) as exit_info:
        cli.run("flags", "set-stage", CLINIC_A, "turbo")

    assert exit_info.value.code == 2
    assert cli.stage_of(CLINIC_A) == "live"


def test_cli_validate_accepts_a_good_file(cli: Cli) -> None:
    write_document(cli.path, build_document({CLINIC_A: Stage.LIVE}, [(Stage.SHADOW, 20)]))

    assert cli.run("flags", "validate") == 0


BAD_FILES = {
    "invalid JSON": '{"version": 2, "features": [',
    "variant not a stage": json.dumps(
        with_variant_name(build_document({CLINIC_A: Stage.LIVE}), "turbo")
    ),
    "not client-features": json.dumps({"flags": []}),
}


@pytest.mark.parametrize("text", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_cli_validate_fails_on_a_malformed_file(cli: Cli, text: str) -> None:
    write_raw(cli.path, text)

    assert cli.run("flags", "validate") == 1


def test_cli_validate_fails_when_the_file_is_missing(cli: Cli) -> None:
    assert cli.run("flags", "validate") == 1


def test_cli_set_rollout_adds_changes_and_removes_a_percentage_rollout(cli: Cli) -> None:
    write_document(cli.path, build_document({CLINIC_A: Stage.LIVE}))

    assert cli.run("flags", "set-rollout", "shadow", "100") == 0
    assert (cli.stage_of(CLINIC_A), cli.stage_of(CLINIC_C)) == ("live", "shadow")

    assert cli.run("flags", "set-rollout", "shadow", "0") == 0
    assert (cli.stage_of(CLINIC_A), cli.stage_of(CLINIC_C)) == ("live", None)

    assert cli.run("flags", "set-rollout", "shadow", "101") == 1


async def test_cli_show_lists_the_stage_every_clinic_gets(
    cli: Cli,
    world: World,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_document(cli.path, build_document({str(world.clinic_a.id): Stage.COMPLETE}))
    monkeypatch.setenv("CLINIC_DATABASE_URL", database_url)
    capsys.readouterr()

    code = await asyncio.to_thread(cli.run, "flags", "show", "--json")

    assert code == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == {
        str(world.clinic_a.id): {"name": "Clinic A", "stage": "complete"},
        str(world.clinic_b.id): {"name": "Clinic B", "stage": "dual_write"},
    }
