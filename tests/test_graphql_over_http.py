"""GraphQL over HTTP: ``application/graphql-response+json`` as the spec says, and the
graphql-http reference audit against the served demo with no warning and no error."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from server.graphql_view import accepts_graphql_response
from tests.conftest import Api, World, unavailable
from tests.test_serve import running_demo

ROOT = Path(__file__).resolve().parent.parent
AUDIT = ROOT / "tests" / "http_audit" / "audit.mjs"
INSTALLED = ROOT / ".graphql-http"
RESPONSE_TYPE = "application/graphql-response+json"


async def ask(api: Api, body: dict[str, object], accept: str) -> tuple[int, str, dict[str, object]]:
    response = await api.client.post("/graphql", json=body, headers={"Accept": accept})
    return response.status_code, response.headers["content-type"], response.json()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"query": "{ clinics(first: 1) { edges { node { id } }"}, "does not parse"),
        ({"query": "{ clinics(first: 1) { nonsense } }"}, "does not validate"),
        (
            {
                "query": "query($n: Int) { clinics(first: $n) { edges { node { id } } } }",
                "variables": {"n": "ten"},
            },
            "variables do not coerce",
        ),
    ],
)
async def test_a_request_error_is_a_400_without_data_under_the_graphql_response_type(
    api: Api, world: World, body: dict[str, object], reason: str
) -> None:
    status, kind, answer = await ask(api, body, RESPONSE_TYPE)
    assert (status, kind) == (400, f"{RESPONSE_TYPE}; charset=utf-8"), reason
    assert "data" not in answer
    assert answer["errors"]

    status, kind, answer = await ask(api, body, "application/json")
    assert (status, kind) == (200, "application/json"), "application/json answers as before"
    assert answer["data"] is None


async def test_a_field_error_is_a_200_with_data_under_the_graphql_response_type(
    api: Api, world: World
) -> None:
    body: dict[str, object] = {"query": '{ appointment(id: "not-an-id") { id } }'}

    status, kind, answer = await ask(api, body, f"{RESPONSE_TYPE}, application/json;q=0.9")

    assert (status, kind) == (200, f"{RESPONSE_TYPE}; charset=utf-8")
    assert "data" in answer


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, False),
        ("application/json", False),
        (RESPONSE_TYPE, True),
        (f"{RESPONSE_TYPE}; charset=utf-8, application/json; charset=utf-8", True),
        (f"application/json, {RESPONSE_TYPE}", False),
        (f"application/json;q=0.5, {RESPONSE_TYPE}", True),
        (f"{RESPONSE_TYPE};q=0, application/json", False),
        ("*/*", False),
    ],
)
def test_the_preferred_media_type_wins(accept: str | None, chosen: bool) -> None:
    assert accepts_graphql_response(accept) is chosen


def test_the_graphql_http_audit_finds_no_warning_and_no_error(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None or not (INSTALLED / "node_modules" / "graphql-http").exists():
        unavailable("the graphql-http audit is not installed: run scripts/install-graphql-http")
    script = INSTALLED / "audit.mjs"
    shutil.copyfile(AUDIT, script)
    with running_demo(tmp_path) as url:
        audit = subprocess.run(
            [node, str(script), f"{url}/graphql"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    *findings, summary = audit.stdout.strip().splitlines()
    counts = json.loads(summary)
    assert (counts["warn"], counts["error"]) == (0, 0), findings
    assert counts["ok"] >= 50
