"""Compiled operations (schema/plans.py) answer exactly what graphql-core answers.

Each document is sent to two instances of the app on the same database, one running
compiled operations (the default) and one with ``compiled_operations`` off, where
graphql-core executes every operation; their response bodies must be equal, byte
for byte, in every stage, errors and extensions included. Each document is sent once
before, so that both answers see the ledger in the same state.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from appointments.stages import Stage
from schema.execution import ReleasingExecutor
from tests.conftest import Api, Mess, World, open_api, set_stages

APPOINTMENT_FIELDS = """
  id startsAt endsAt status reason createdAt __typename
  doctor { id name email role active __typename }
  patient { id fullName dateOfBirth }
  clinicDoctor { id active createdAt user { id name } clinic { id name } }
  clinicPatient { id patient { id fullName } clinic { name } }
  clinic { id name }
  migration { stage authoritativeOrigin consistent differences { field legacyValue newValue } }
"""

ONE = f"query One($id: ID!) {{ appointment(id: $id) {{ {APPOINTMENT_FIELDS} }} }}"
FRAGMENTS = """
query WithFragments($id: ID!) {
  first: appointment(id: $id) { ...Sides ... on Appointment { startsAt } }
  again: appointment(id: $id) { id, doctorName: doctor { name } }
}
fragment Sides on Appointment { id doctor { ...Person } clinicDoctor { user { ...Person } } }
fragment Person on User { name }
"""
CONDITIONS = """
query Conditions($id: ID!, $legacy: Boolean!) {
  appointment(id: $id) {
    id
    doctor @include(if: $legacy) { name }
    clinicDoctor @skip(if: $legacy) { user { name } }
    patient @skip(if: false) { fullName }
  }
}
"""
LIST = f"""
query List($clinicId: ID, $first: Int, $after: String) {{
  appointments(filter: {{clinicId: $clinicId}}, first: $first, after: $after) {{
    __typename
    pageInfo {{ hasNextPage endCursor __typename }}
    edges {{ cursor __typename node {{ {APPOINTMENT_FIELDS} }} }}
    other: edges {{ node {{ id status }} }}
  }}
}}
"""
MIXED = """
query Mixed($id: ID!) { __typename appointment(id: $id) { id } clinics { edges { node { name } } } }
"""
SEVERAL = """
query A($id: ID!) { appointment(id: $id) { id status } }
query B { __typename }
"""


@dataclass
class Twins:
    compiled: Api
    interpreted: Api

    async def same(
        self, query: str, variables: dict[str, Any] | None = None, operation: str | None = None
    ) -> dict[str, Any]:
        """Both answers to the request (after one request to warm the ledger), which must be
        equal, and the compiled instance's parsed."""
        payload: dict[str, Any] = {"query": query, "variables": variables or {}}
        if operation is not None:
            payload["operationName"] = operation
        await self.compiled.client.post("/graphql", json=payload)
        interpreted = await self.interpreted.client.post("/graphql", json=payload)
        compiled = await self.compiled.client.post("/graphql", json=payload)
        assert compiled.status_code == interpreted.status_code
        assert compiled.headers["content-type"] == interpreted.headers["content-type"]
        assert _without_request_ids(compiled.text) == _without_request_ids(interpreted.text)
        body: dict[str, Any] = compiled.json()
        return body


def _without_request_ids(text: str) -> str:
    return re.sub(r"[0-9a-f]{32}", "<request id>", text)


@asynccontextmanager
async def twins(database_url: str, flags_file: Path) -> AsyncIterator[Twins]:
    async with AsyncExitStack() as stack:
        compiled = await stack.enter_async_context(open_api(database_url, flags_file))
        interpreted = await stack.enter_async_context(
            open_api(database_url, flags_file, compiled_operations=False)
        )
        yield Twins(compiled, interpreted)


@pytest.fixture
def graphql_core_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many operations graphql-core's executor was built for (one entry each)."""
    built: list[int] = []
    build = ReleasingExecutor.build.__func__  # type: ignore[attr-defined]

    def counting(cls: type[ReleasingExecutor], *args: Any, **kwargs: Any) -> Any:
        built.append(1)
        return build(cls, *args, **kwargs)

    monkeypatch.setattr(ReleasingExecutor, "build", classmethod(counting))
    return built


@pytest.mark.parametrize(
    "stage", [Stage.LEGACY, Stage.DUAL_WRITE, Stage.SHADOW, Stage.LIVE, Stage.COMPLETE]
)
async def test_compiled_reads_answer_as_graphql_core(
    database_url: str,
    world: World,
    mess: Mess,
    flags_file: Path,
    stage: Stage,
    graphql_core_runs: list[int],
) -> None:
    set_stages(flags_file, {world.clinic_a.id: stage})
    clinic = str(world.clinic_a.id)
    async with twins(database_url, flags_file) as both:
        for appointment in (mess.wrong_person, mess.missing_new, mess.other_clinic):
            body = await both.same(ONE, {"id": str(appointment)})
            assert body["data"]["appointment"]["id"] == str(appointment)
        await both.same(FRAGMENTS, {"id": str(mess.consistent)})
        for legacy in (True, False):
            await both.same(CONDITIONS, {"id": str(mess.wrong_person), "legacy": legacy})
        page = await both.same(LIST, {"clinicId": clinic, "first": 2})
        after = page["data"]["appointments"]["pageInfo"]["endCursor"]
        await both.same(LIST, {"clinicId": clinic, "first": 2, "after": after})
        await both.same(LIST, {})
        served = page["extensions"]["migration"]["stages"]
        assert served == {clinic: stage.value}
        await both.same("{ __typename }")
        await both.same(SEVERAL, {"id": str(mess.consistent)}, "A")
        await both.same(SEVERAL, {}, "B")
        graphql_core_runs.clear()
        await both.compiled.client.post("/graphql", json={"query": LIST, "variables": {}})
        assert graphql_core_runs == [], "the list ran through graphql-core"


async def test_errors_and_fallbacks_answer_as_graphql_core(
    database_url: str,
    world: World,
    mess: Mess,
    flags_file: Path,
    graphql_core_runs: list[int],
) -> None:
    """A bad argument is the field's error (a null root for a nullable field, a null
    ``data`` for a non-null one); variables that do not coerce, and operations the plan
    does not compile, run through graphql-core."""
    set_stages(flags_file, {world.clinic_a.id: Stage.SHADOW})
    async with twins(database_url, flags_file) as both:
        malformed = await both.same(ONE, {"id": "not-an-id"})
        assert malformed["data"] == {"appointment": None}
        assert malformed["errors"][0]["extensions"]["code"] == "MALFORMED_ID"
        missing = await both.same(ONE, {"id": str(uuid.uuid4())})
        assert missing["data"] == {"appointment": None}
        too_many = await both.same(LIST, {"first": 1000})
        assert too_many["data"] is None
        both_fail = await both.same(
            'query Two { a: appointment(id: "x") { id } b: appointments(first: -1) { edges'
            " { cursor } } }"
        )
        assert both_fail["data"] is None
        assert [error["path"] for error in both_fail["errors"]] == [["a"], ["b"]]
        uncoerced = await both.same(ONE, {"id": 12.5})
        assert "data" not in uncoerced or uncoerced["data"] is None

        graphql_core_runs.clear()
        await both.same(MIXED, {"id": str(mess.consistent)})
        assert graphql_core_runs, "an operation with a field the read model does not answer"
        graphql_core_runs.clear()
        await both.same(ONE, {"id": str(mess.consistent)})
        assert len(graphql_core_runs) == 1, "only the instance with compiling off"
