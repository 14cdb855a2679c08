"""The flag memo: exact against the Unleash SDK's own evaluation, revisions, exposure, bound.

Every comparison is with a second, memo-less ``UnleashClient`` bootstrapped from the
same document: the memo's answers and the metrics the client would send must be
what direct evaluation gives for the same calls.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from UnleashClient import UnleashClient
from UnleashClient.utils import InstanceAllowType

from appointments.stages import Stage
from flags import FLAG_NAME
from flags.document import Document, write_document
from flags.memo import FlagMemo, plan_for
from flags.source import LocalFileFlagSource, MemoryCache, bootstrapped_client
from flags.unleash_admin import Description
from flags.unleash_source import UnleashServerFlagSource
from tests.test_unleash_real import (  # noqa: F401 - the fixture, used by name
    CLIENT_TOKEN,
    UnleashServer,
    unleash_server,
)

STAGES = [stage.value for stage in Stage]
CLINICS = [str(uuid.UUID(int=n)) for n in range(1, 7)]
USERS = ["u-1", "u-2", "u-3"]
ROLES = ["admin", "staff", "doctor"]


def pin(clinic: str, stage: str) -> dict[str, Any]:
    """A pinned clinic's own strategy, in the shape the flag writers use."""
    return {
        "name": "default",
        "title": f"clinic-pin {clinic}",
        "parameters": {},
        "constraints": [
            {"contextName": "clinicId", "operator": "IN", "values": [clinic], "inverted": False}
        ],
        "variants": [
            {"name": stage, "weight": 1000, "weightType": "variable", "stickiness": "default"}
        ],
    }


def rollout(stage: str, percentage: int, stickiness: str = "clinicId") -> dict[str, Any]:
    return {
        "name": "flexibleRollout",
        "parameters": {"rollout": str(percentage), "stickiness": stickiness, "groupId": FLAG_NAME},
        "constraints": [],
        "variants": [
            {"name": stage, "weight": 1000, "weightType": "variable", "stickiness": stickiness}
        ],
    }


def document(strategies: list[dict[str, Any]], **feature: Any) -> Document:
    flag = {"name": FLAG_NAME, "enabled": True, "strategies": strategies, "variants": []}
    flag.update(feature)
    return {"version": 2, "features": [flag]}


def pinned(count: int, rollouts: tuple[tuple[str, int], ...] = ()) -> Document:
    strategies = [pin(str(uuid.UUID(int=n + 1)), STAGES[n % len(STAGES)]) for n in range(count)]
    return document(strategies + [rollout(stage, p) for stage, p in rollouts])


def direct(client: UnleashClient, context: dict[str, Any]) -> str | None:
    result = client.get_variant(FLAG_NAME, context)
    return str(result["name"]) if result.get("enabled") else None


def clients(doc: Document) -> tuple[FlagMemo, UnleashClient]:
    text = json.dumps(doc)
    memo = FlagMemo(bootstrapped_client("memo-tests", text))
    memo.settle()
    return memo, bootstrapped_client("memo-tests", text)


def sent_metrics(client: UnleashClient) -> dict[str, Any]:
    """The toggle counts the client's next metrics report carries (its engine's bucket)."""
    bucket = client._engine.get_metrics()
    return {} if bucket is None else dict(bucket["toggles"])


# Documents: the strategies and fields a product owner could set in Unleash, memoizable
# or not, but deterministic for contexts with a user id (no "random" stickiness), so
# direct evaluation is a reproducible oracle.
fields = st.sampled_from(["clinicId", "role", "userId", "appName", "tenant", "currentTime"])
stickiness = st.sampled_from(["clinicId", "userId", "default", None])
operators = st.sampled_from(["IN", "NOT_IN", "STR_STARTS_WITH", "DATE_AFTER", "SOMETHING_NEW"])


@st.composite
def constraints(draw: st.DrawFn) -> dict[str, Any]:
    operator = draw(operators)
    name = draw(fields)
    if operator == "DATE_AFTER":
        return {"contextName": "currentTime", "operator": operator, "value": "2001-01-01T00:00Z"}
    values = {
        "clinicId": CLINICS,
        "role": ROLES,
        "userId": USERS,
        "appName": ["memo-tests", "other"],
        "tenant": ["t"],
        "currentTime": ["2001"],
    }[name]
    chosen = draw(st.lists(st.sampled_from(values), min_size=1, max_size=3))
    if operator == "STR_STARTS_WITH":
        chosen = [value[:2] for value in chosen]
    return {
        "contextName": name,
        "operator": operator,
        "values": chosen,
        "inverted": draw(st.booleans()),
    }


@st.composite
def variants(draw: st.DrawFn) -> list[dict[str, Any]]:
    names = draw(st.lists(st.sampled_from(STAGES), min_size=0, max_size=3, unique=True))
    chosen_stickiness = draw(stickiness)
    result: list[dict[str, Any]] = []
    for name in names:
        variant: dict[str, Any] = {"name": name, "weight": draw(st.integers(1, 1000))}
        if chosen_stickiness is not None:
            variant["stickiness"] = chosen_stickiness
        if draw(st.booleans()):
            variant["overrides"] = [
                {"contextName": "role", "values": [draw(st.sampled_from(ROLES))]}
            ]
        result.append(variant)
    return result


@st.composite
def strategies(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["default", "default", "flexibleRollout", "userWithId"]))
    parameters: dict[str, str] = {}
    if kind == "flexibleRollout":
        parameters["rollout"] = draw(st.sampled_from(["0", "30", "50", "100", "x"]))
        chosen = draw(stickiness)
        if chosen is not None:
            parameters["stickiness"] = chosen
    elif kind == "userWithId":
        parameters["userIds"] = ",".join(draw(st.lists(st.sampled_from(USERS), max_size=2)))
    elif draw(st.booleans()):
        parameters["stickiness"] = draw(st.sampled_from(["clinicId", "userId"]))
    strategy: dict[str, Any] = {
        "name": kind,
        "parameters": parameters,
        "constraints": draw(st.lists(constraints(), max_size=2)),
        "variants": [
            {k: v for k, v in variant.items() if k != "overrides"} for variant in draw(variants())
        ],
    }
    if draw(st.integers(0, 9)) == 0:
        strategy["segments"] = [1]
    return strategy


@st.composite
def documents(draw: st.DrawFn) -> Document:
    pins = [
        pin(clinic, draw(st.sampled_from(STAGES))) for clinic in CLINICS[: draw(st.integers(0, 4))]
    ]
    doc = document(
        pins + draw(st.lists(strategies(), max_size=3)),
        enabled=draw(st.booleans()) or draw(st.booleans()),
        impressionData=draw(st.integers(0, 9)) == 0,
        variants=draw(variants()),
    )
    doc["segments"] = [{"id": 1, "constraints": [draw(constraints())]}]
    return doc


@st.composite
def contexts(draw: st.DrawFn) -> dict[str, Any]:
    properties = {"clinicId": draw(st.sampled_from(CLINICS))}
    if draw(st.booleans()):
        properties["role"] = draw(st.sampled_from(ROLES))
    context: dict[str, Any] = {"properties": properties, "userId": draw(st.sampled_from(USERS))}
    if draw(st.booleans()):
        context["sessionId"] = "s-1"
    return context


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=documents(), calls=st.lists(contexts(), min_size=1, max_size=30))
@example(
    doc=pinned(4, (("shadow", 50), ("complete", 100))),
    calls=[{"properties": {"clinicId": c}} for c in CLINICS],
)
def test_memo_answers_and_counts_equal_direct_evaluation(
    doc: Document, calls: list[dict[str, Any]]
) -> None:
    memo, reference = clients(doc)
    plan = plan_for(doc)
    for context in calls + calls:
        assert memo.variant(context) == direct(reference, context), (plan, context)
    assert sent_metrics(memo._client) == sent_metrics(reference)
    if plan.memoizable:
        assert 0 < len(memo) <= len(calls)
    else:
        assert len(memo) == 0, "a flag that is not memoizable is evaluated every time"


def test_the_pinned_shape_keys_on_the_clinic_alone_and_costs_one_evaluation_per_clinic() -> None:
    doc = pinned(2000, (("shadow", 30), ("live", 100)))
    memo, reference = clients(doc)
    assert memo.plan is not None
    assert memo.plan.fields == ("clinicId",)
    viewers = [{"userId": user, "role": role} for user in USERS for role in ROLES]
    for n in range(0, 2500, 50):
        clinic = str(uuid.UUID(int=n + 1))
        for viewer in viewers:
            context = {
                "properties": {"clinicId": clinic, "role": viewer["role"]},
                "userId": viewer["userId"],
            }
            assert memo.variant(context) == direct(reference, context)
    assert len(memo) == 50
    assert sent_metrics(memo._client) == sent_metrics(reference)


@pytest.mark.parametrize(
    ("strategy", "refusal"),
    [
        (
            {
                "name": "default",
                "constraints": [{"contextName": "currentTime", "operator": "IN", "values": ["x"]}],
            },
            "currentTime",
        ),
        (
            {
                "name": "default",
                "constraints": [
                    {
                        "contextName": "clinicId",
                        "operator": "DATE_AFTER",
                        "value": "2001-01-01T00:00Z",
                    }
                ],
            },
            "DATE_AFTER",
        ),
        (
            {
                "name": "default",
                "constraints": [{"contextName": "clinicId", "operator": "NEW_OP", "values": ["x"]}],
            },
            "not deterministic",
        ),
        ({"name": "default", "segments": [1]}, "segments"),
        ({"name": "userWithId", "parameters": {"userIds": "a"}}, "userWithId"),
        (rollout("shadow", 50, "default"), "random"),
        (rollout("shadow", 50, "random"), "random"),
        (
            {
                "name": "default",
                "variants": [{"name": "shadow", "weight": 500}, {"name": "live", "weight": 500}],
            },
            "random",
        ),
        (
            {
                "name": "default",
                "constraints": [{"contextName": "tenant", "operator": "IN", "values": ["x"]}],
            },
            "tenant",
        ),
    ],
)
def test_what_is_not_memoizable_says_why(strategy: dict[str, Any], refusal: str) -> None:
    doc = document([pin(CLINICS[0], "live"), strategy])
    doc["segments"] = [{"id": 1, "constraints": []}]
    plan = plan_for(doc)
    assert plan.refusal is not None
    assert refusal in plan.refusal
    # What the engine holds is what the memo plans from: the same refusal.
    memo, _ = clients(doc)
    assert memo.plan is None


@pytest.mark.parametrize(
    ("strategy", "fields"),
    [
        (rollout("shadow", 100, "random"), ("clinicId",)),
        (rollout("shadow", 0, "default"), ("clinicId",)),
        (rollout("shadow", 50, "userId"), ("clinicId", "userId")),
        (
            {
                "name": "default",
                "constraints": [{"contextName": "role", "operator": "IN", "values": ["admin"]}],
            },
            ("clinicId", "role"),
        ),
        (
            {
                "name": "default",
                "parameters": {"stickiness": "clinicId"},
                "variants": [{"name": "shadow", "weight": 1}, {"name": "live", "weight": 1}],
            },
            ("clinicId",),
        ),
    ],
)
def test_the_key_holds_every_field_the_flag_refers_to(
    strategy: dict[str, Any], fields: tuple[str, ...]
) -> None:
    plan = plan_for(document([pin(CLINICS[0], "live"), strategy]))
    assert plan.refusal is None
    assert plan.fields == fields


def test_feature_variants_with_overrides_key_on_the_override_field() -> None:
    doc = document(
        [],
        variants=[
            {"name": "shadow", "weight": 500, "stickiness": "clinicId"},
            {
                "name": "live",
                "weight": 500,
                "stickiness": "clinicId",
                "overrides": [{"contextName": "role", "values": ["admin"]}],
            },
        ],
    )
    plan = plan_for(doc)
    assert (plan.fields, plan.seeded) == (("clinicId", "role"), ("clinicId",))
    memo, reference = clients(doc)
    for clinic in CLINICS:
        for role in ROLES:
            context = {"properties": {"clinicId": clinic, "role": role}}
            assert memo.variant(context) == memo.variant(context) == direct(reference, context)
    assert memo.variant({"properties": {"clinicId": CLINICS[0], "role": "admin"}}) == "live"


def test_a_context_without_its_hash_seed_is_evaluated_directly() -> None:
    memo, _ = clients(document([rollout("shadow", 50, "userId")]))
    memo.variant({"properties": {"clinicId": CLINICS[0]}})
    assert len(memo) == 0
    memo.variant({"properties": {"clinicId": CLINICS[0]}, "userId": USERS[0]})
    assert len(memo) == 1


def test_absent_and_disabled_flags_are_memoized_and_counted_as_direct_evaluation_would() -> None:
    for doc in (
        {"version": 2, "features": []},
        document([pin(CLINICS[0], "live")], enabled=False),
    ):
        memo, reference = clients(doc)
        for context in [{"properties": {"clinicId": c}} for c in CLINICS] * 3:
            assert memo.variant(context) is direct(reference, context) is None
        assert len(memo) == len(CLINICS)
        assert sent_metrics(memo._client) == sent_metrics(reference)


def test_the_memo_is_bounded_and_stays_exact_when_emptied() -> None:
    doc = pinned(40, (("shadow", 50),))
    text = json.dumps(doc)
    memo = FlagMemo(bootstrapped_client("memo-tests", text), max_entries=10)
    memo.settle()
    reference = bootstrapped_client("memo-tests", text)
    sizes = []
    for round_ in range(3):
        for n in range(60):
            context = {"properties": {"clinicId": str(uuid.UUID(int=n + 1))}}
            assert memo.variant(context) == direct(reference, context), round_
            sizes.append(len(memo))
    assert max(sizes) == 10
    assert sent_metrics(memo._client) == sent_metrics(reference)


class PausingClient(UnleashClient):
    """The real SDK client, stopping before or after one evaluation until told to go on."""

    def __init__(self, features_json: str) -> None:
        super().__init__(
            url="http://127.0.0.1:9/unused",
            app_name="memo-tests",
            disable_metrics=True,
            disable_registration=True,
            cache=MemoryCache(features_json),
            multiple_instance_mode=InstanceAllowType.SILENTLY_ALLOW,
        )
        self.pause_at: str | None = None
        self.paused = threading.Event()
        self.resume = threading.Event()

    def get_variant(self, feature_name: str, context: dict[str, Any] | None = None) -> Any:
        self._maybe_pause("before")
        result = super().get_variant(feature_name, context)
        self._maybe_pause("after")
        return result

    def _maybe_pause(self, moment: str) -> None:
        if self.pause_at == moment:
            self.paused.set()
            assert self.resume.wait(10)


@pytest.mark.parametrize("pause_at", ["after", "before"])
def test_an_answer_computed_across_a_new_revision_is_never_stored_under_it(pause_at: str) -> None:
    """``after``: evaluated with the old features, back after the poll. ``before``: the
    revision was read before the poll, the evaluation runs after the engine took the
    new features. Neither answer may be stored under the new revision."""
    old, new = document([pin(CLINICS[0], "live")]), document([pin(CLINICS[0], "complete")])
    client = PausingClient(json.dumps(old))
    memo = FlagMemo(client)
    memo.settle()
    context = {"properties": {"clinicId": CLINICS[0]}}
    client.pause_at = pause_at
    answers: list[str | None] = []
    lookup = threading.Thread(target=lambda: answers.append(memo.variant(context)))
    lookup.start()
    assert client.paused.wait(10)
    revision = memo.revision
    memo.unsettle()  # what the poll does on writing new features to the cache
    client._engine.take_state(json.dumps(new))
    memo.settle()  # and once the poll job has returned
    client.resume.set()
    lookup.join(10)
    client.pause_at = None
    assert answers == ["live" if pause_at == "after" else "complete"]
    assert memo.revision > revision
    assert len(memo) == 0
    assert memo.variant(context) == "complete"
    assert memo.variant(context) == "complete"
    client.destroy()


def test_a_rewritten_flags_file_is_served_from_the_next_evaluation(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    write_document(path, pinned(30))
    source = LocalFileFlagSource(path, "memo-tests")
    clinic = str(uuid.UUID(int=3))
    context = {"properties": {"clinicId": clinic}, "userId": USERS[0]}
    try:
        for stage in STAGES * 3:
            doc = pinned(30)
            doc["features"][0]["strategies"][2] = pin(clinic, stage)
            write_document(path, doc)
            assert source.variant(context) == stage
            assert source.variant(context) == stage
    finally:
        source.close()


@dataclass
class EtagServer:
    """A stand-in for Unleash's client API that answers 304 when nothing changed."""

    document: Document
    statuses: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def etag_handler(server: EtagServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with server.lock:
                body = json.dumps(server.document).encode()
            etag = f'"{uuid.uuid5(uuid.NAMESPACE_OID, body.decode())}"'
            if self.headers.get("If-None-Match") == etag:
                server.statuses.append(304)
                self.send_response(304)
                self.send_header("ETag", etag)
                self.end_headers()
                return
            server.statuses.append(200)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("ETag", etag)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@pytest.fixture
def etag_server() -> Iterator[tuple[EtagServer, str]]:
    state = EtagServer(pinned(200, (("shadow", 50),)))
    http = ThreadingHTTPServer(("127.0.0.1", 0), etag_handler(state))
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{http.server_address[1]}/api"
    finally:
        http.shutdown()
        http.server_close()
        thread.join()


def fetch_after_now(source: UnleashServerFlagSource) -> None:
    """Wait for a poll that began after now (the one under way may predate a change)."""
    source.wait_for_fetch(0)
    for _ in range(2):
        assert source.wait_for_fetch(20)


def test_the_server_source_keeps_its_revision_on_304_and_serves_a_change_after_the_fetch(
    etag_server: tuple[EtagServer, str], tmp_path: Path
) -> None:
    state, url = etag_server
    source = UnleashServerFlagSource(url, "token", "memo-tests", 1, tmp_path / "cache")
    clinic = str(uuid.UUID(int=7))
    context = {"properties": {"clinicId": clinic}, "userId": USERS[0]}
    stop = threading.Event()
    phase = [0]
    seen: list[tuple[int, str | None]] = []
    counted = threading.Condition()

    def evaluate() -> None:
        while not stop.is_set():
            current = phase[0]
            answer = source.variant(context)
            with counted:
                seen.append((current, answer))
                counted.notify_all()

    try:
        assert source.wait_for_fetch(20)
        expected = {0: source.variant(context)}
        revision = source._memo.revision
        fetch_after_now(source)
        assert 304 in state.statuses
        assert source._memo.revision == revision, "a 304 keeps the revision"
        assert len(source._memo) == 1

        thread = threading.Thread(target=evaluate)
        thread.start()
        for number, stage in enumerate(["complete", "rampdown", "live", "shadow"], start=1):
            doc = pinned(200, (("shadow", 50),))
            doc["features"][0]["strategies"][6] = pin(clinic, stage)
            phase[0] = -number  # under way: either stage may be served
            with state.lock:
                state.document = doc
            fetch_after_now(source)
            assert source._memo.revision > revision
            revision = source._memo.revision
            expected[number] = stage
            phase[0] = number
            with counted:
                assert counted.wait_for(lambda: sum(p == phase[0] for p, _ in seen) >= 200, 20)
        stop.set()
        thread.join(10)
    finally:
        stop.set()
        source.close()
    for number, answer in seen:
        if number < 0:
            assert answer in (expected[-number - 1], expected[-number])
        else:
            assert answer == expected[number], f"an evaluation begun after fetch {number}"
    assert {number for number, _ in seen} >= {1, 2, 3, 4}


@pytest.mark.unleash
def test_against_unleash_a_move_is_served_after_the_next_fetch_with_the_memo(
    unleash_server: UnleashServer,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    """The pinned shape (one strategy per clinic) written to a real Unleash server."""
    admin = unleash_server.admin()
    try:
        admin.apply(
            Description(
                {str(uuid.UUID(int=n + 1)): Stage(STAGES[n % len(STAGES)]) for n in range(12)},
                ((Stage.SHADOW, 40),),
            )
        )
        source = UnleashServerFlagSource(
            f"{unleash_server.url}/api", CLIENT_TOKEN, "memo-tests", 1, tmp_path
        )
        try:
            assert source.wait_for_fetch(20)
            memo = source._memo
            assert memo.plan is not None, "the flag as Unleash serves it is memoizable"
            reference = bootstrapped_client("memo-tests", memo._engine.get_state())
            for n in range(300):
                context = {"properties": {"clinicId": str(uuid.UUID(int=n + 1))}}
                assert source.variant(context) == direct(reference, context)
                assert source.variant(context) == direct(reference, context)
            moved = str(uuid.UUID(int=3))
            revision = memo.revision
            admin.pin(moved, Stage.COMPLETE)
            fetch_after_now(source)
            assert memo.revision > revision
            assert source.variant({"properties": {"clinicId": moved}}) == "complete"
        finally:
            source.close()
    finally:
        admin.close()
