"""Query limits and production hardening (the OWASP GraphQL checklist), and error masking."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schema.types import Clinic
from tests.conftest import Api, World, open_api

CLINICS = "{ clinics { edges { node { id name } } } }"


def error_messages(body: dict[str, Any]) -> list[str]:
    return [error["message"] for error in body.get("errors", [])]


class TestLimits:
    @pytest.fixture
    def app_settings(self) -> dict[str, Any]:
        return {
            "max_query_depth": 4,
            "max_aliases": 3,
            "max_tokens": 120,
            "max_body_bytes": 2000,
            "introspection": False,
        }

    async def test_a_query_deeper_than_the_limit_is_refused(self, api: Api, world: World) -> None:
        deep = "{ appointments { edges { node { clinicDoctor { clinic { name } } } } } }"

        body = await api.post(deep)

        assert body.get("data") is None
        assert any("exceeds maximum operation depth" in m for m in error_messages(body))

    async def test_too_many_aliases_are_refused(self, api: Api) -> None:
        aliased = (
            "{ "
            + " ".join(f"c{n}: clinics {{ pageInfo {{ hasNextPage }} }}" for n in range(4))
            + " }"
        )

        body = await api.post(aliased)

        assert any("aliases" in m.lower() for m in error_messages(body))

    async def test_too_many_tokens_are_refused(self, api: Api) -> None:
        long_query = "{ clinics { edges { node { " + "id " * 150 + "} } } }"

        body = await api.post(long_query)

        assert any("token" in m.lower() for m in error_messages(body))

    async def test_a_body_over_the_size_limit_gets_413(self, api: Api) -> None:
        response = await api.client.post(
            "/graphql", json={"query": CLINICS, "variables": {"padding": "x" * 3000}}
        )

        assert response.status_code == 413

    async def test_introspection_can_be_switched_off(self, api: Api) -> None:
        body = await api.post("{ __schema { types { name } } }")

        assert body.get("data") is None
        assert any("introspection" in m.lower() for m in error_messages(body))

    async def test_limits_still_apply_when_the_document_is_cached(self, api: Api) -> None:
        # Parsed documents and validation results are cached across requests: the
        # second identical request must be refused like the first, and a cached
        # accepted document must not be accepted by an app with stricter limits.
        refused = [
            "{ appointments { edges { node { clinicDoctor { clinic { name } } } } } }",
            "{ "
            + " ".join(f"c{n}: clinics {{ pageInfo {{ hasNextPage }} }}" for n in range(4))
            + " }",
            "{ clinics { edges { node { " + "id " * 150 + "} } } }",
            "{ __schema { types { name } } }",
        ]
        for document in refused:
            first = await api.post(document)
            second = await api.post(document)

            assert first.get("data") is None, document
            assert second == first


async def test_a_document_cached_under_looser_limits_is_refused_under_stricter_ones(
    api: Api, database_url: str, flags_file: Path
) -> None:
    deep = "{ appointments { edges { node { clinicDoctor { clinic { name } } } } } }"
    assert "errors" not in await api.post(deep)

    async with open_api(database_url, flags_file, max_query_depth=4) as strict:
        body = await strict.post(deep)

    assert any("exceeds maximum operation depth" in m for m in error_messages(body))


EDGES = "{ edges { cursor } }"
# Each misspelling, what the error must still say, and the name graphql-core would suggest.
MISSPELT = [
    pytest.param("{ clinicz { edges { node { id } } } }", {}, "Cannot query field", id="field"),
    pytest.param(f"{{ appointments(frist: 1) {EDGES} }}", {}, "Unknown argument", id="argument"),
    pytest.param(
        "fragment F on Appointmnt { id } { appointments { edges { node { ...F } } } }",
        {},
        "Unknown type",
        id="type-of-a-fragment",
    ),
    pytest.param(
        f"query($f: AppointmentFiltrInput) {{ appointments(filter: $f) {EDGES} }}",
        {},
        "Unknown type",
        id="type-of-a-variable",
    ),
    pytest.param(
        f"{{ appointments(filter: {{status: SCHEDULD}}) {EDGES} }}",
        {},
        "SCHEDULD",
        id="enum-value",
    ),
    pytest.param(
        f'{{ appointments(filter: {{clinicID: "x"}}) {EDGES} }}',
        {},
        "clinicID",
        id="input-field",
    ),
    pytest.param(
        f"{{ clinics @include(iff: true) {EDGES} }}",
        {},
        "Unknown argument",
        id="directive-argument",
    ),
    pytest.param(
        f"query($f: AppointmentFilterInput) {{ appointments(filter: $f) {EDGES} }}",
        {"f": {"clinicID": "x"}},
        "clinicID",
        id="input-field-of-a-variable",
    ),
    pytest.param(
        f"query($s: AppointmentStatus) {{ appointments(filter: {{status: $s}}) {EDGES} }}",
        {"s": "SCHEDULD"},
        "SCHEDULD",
        id="enum-value-of-a-variable",
    ),
]


class TestSuggestions:
    """With introspection off, no error may hint at what the schema holds."""

    @pytest.fixture
    def app_settings(self) -> dict[str, Any]:
        return {"introspection": False}

    @pytest.mark.parametrize(("document", "variables", "said"), MISSPELT)
    async def test_a_misspelt_name_gets_no_suggestion(
        self, api: Api, document: str, variables: dict[str, Any], said: str
    ) -> None:
        body = await api.post(document, variables)

        assert body.get("data") is None
        assert any(said in m for m in error_messages(body)), error_messages(body)
        assert "Did you mean" not in str(body)
        for suggestion in ("'first'", "'Appointment'", "SCHEDULED", "clinicId", "'if'"):
            assert suggestion not in str(body)

    async def test_the_answer_is_the_same_when_the_document_is_cached(self, api: Api) -> None:
        document = f"{{ appointments(frist: 1) {EDGES} }}"

        assert await api.post(document) == await api.post(document)


async def test_an_unexpected_database_error_is_masked_and_names_the_request_id(
    api: Api, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: Any) -> Any:
        raise OperationalError("SELECT secret_column FROM clinics", {}, Exception("db down"))

    # The clinics' resolver turns each row into its GraphQL type: make that fail as a
    # database failure would (the listing itself is bound when the schema is built).
    monkeypatch.setattr(Clinic, "from_model", broken)

    response = await api.client.post(
        "/graphql", json={"query": CLINICS}, headers={"X-Request-ID": "trace-7"}
    )

    assert response.status_code == 200
    (error,) = response.json()["errors"]
    assert error["extensions"] == {"code": "INTERNAL_ERROR", "requestId": "trace-7"}
    assert "trace-7" in error["message"]
    for leak in ("SELECT", "secret_column", "OperationalError", "db down", "Traceback"):
        assert leak not in response.text


class TestStatementTimeout:
    @pytest.fixture
    def app_settings(self) -> dict[str, Any]:
        return {"statement_timeout_ms": 200}

    async def test_a_slow_statement_fails_cleanly_and_the_connection_stays_usable(
        self, api: Api, world: World, database_url: str, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        if database_url.startswith("sqlite"):
            pytest.skip("SQLite has no statement timeout")
        # Another transaction holds the clinics table: the listing waits past the timeout.
        async with sessions() as holder, holder.begin():
            await holder.execute(text("LOCK TABLE clinics IN ACCESS EXCLUSIVE MODE"))
            timed_out = await api.post(CLINICS)
        after = await api.post(CLINICS)

        (error,) = timed_out["errors"]
        assert error["extensions"]["code"] == "INTERNAL_ERROR"
        assert "statement timeout" not in str(timed_out)
        assert [edge["node"]["name"] for edge in after["data"]["clinics"]["edges"]] == [
            "Clinic A",
            "Clinic B",
        ]
