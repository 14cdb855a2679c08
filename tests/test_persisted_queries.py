"""Automatic persisted queries (Apollo's protocol) over HTTP, on both databases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.models import PersistedDocument
from appointments.persisted_documents import sha256_of
from tests.conftest import Api, World, open_api

CLINICS = "query Clinics { clinics(first: 5) { edges { node { id name } } } }"
CREATE_CLINIC = 'mutation Open { createClinic(name: "By hash") { __typename } }'


def by_hash(document: str, digest: str | None = None) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": digest or sha256_of(document)}}


async def stored(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(PersistedDocument)) or 0)


async def test_an_unknown_hash_asks_for_the_text_then_every_instance_runs_it_by_hash(
    api: Api,
    world: World,
    database_url: str,
    flags_file: Path,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    unknown = await api.client.post("/graphql", json={"extensions": by_hash(CLINICS)})
    assert unknown.status_code == 200
    assert unknown.json()["errors"] == [
        {
            "message": "PersistedQueryNotFound",
            "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"},
        }
    ]
    assert await stored(sessions) == 0

    registered = await api.client.post(
        "/graphql", json={"query": CLINICS, "extensions": by_hash(CLINICS)}
    )
    assert registered.status_code == 200
    expected = registered.json()["data"]
    assert expected["clinics"]["edges"]
    assert await stored(sessions) == 1

    again = await api.client.post("/graphql", json={"extensions": by_hash(CLINICS)})
    assert again.json()["data"] == expected
    async with open_api(database_url, flags_file) as other_instance:
        elsewhere = await other_instance.client.post(
            "/graphql", json={"extensions": by_hash(CLINICS)}
        )
    assert elsewhere.json()["data"] == expected, "known from the database, not the process"


async def test_a_hash_that_does_not_match_its_text_is_refused_and_not_stored(
    api: Api, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    answer = await api.client.post(
        "/graphql", json={"query": CLINICS, "extensions": by_hash(CLINICS, "0" * 64)}
    )

    assert answer.status_code == 400
    assert answer.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_HASH_MISMATCH"
    assert await stored(sessions) == 0


async def test_a_malformed_extension_is_refused(api: Api, world: World) -> None:
    for extension in (
        {"persistedQuery": {"version": 2, "sha256Hash": sha256_of(CLINICS)}},
        {"persistedQuery": {"version": 1, "sha256Hash": "ABC"}},
        {"persistedQuery": "yes"},
    ):
        answer = await api.client.post("/graphql", json={"extensions": extension})
        assert answer.status_code == 400, extension
        assert answer.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_INVALID"


async def test_get_runs_a_query_by_hash_and_never_a_mutation(api: Api, world: World) -> None:
    await api.client.post("/graphql", json={"query": CLINICS, "extensions": by_hash(CLINICS)})
    await api.client.post(
        "/graphql", json={"query": CREATE_CLINIC, "extensions": by_hash(CREATE_CLINIC)}
    )

    query = await api.client.get("/graphql", params={"extensions": json.dumps(by_hash(CLINICS))})
    assert query.status_code == 200
    assert query.json()["data"]["clinics"]["edges"]

    mutation = await api.client.get(
        "/graphql", params={"extensions": json.dumps(by_hash(CREATE_CLINIC))}
    )
    assert mutation.status_code in (400, 405)
    assert "data" not in mutation.json() or mutation.json()["data"] is None

    plain = await api.client.get("/graphql", params={"query": CLINICS})
    assert plain.status_code == 400
    assert "not allowed when using GET" in plain.json()["errors"][0]["message"]


async def test_the_table_keeps_the_newest_documents_up_to_its_bound(
    world: World,
    database_url: str,
    flags_file: Path,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    documents = [f"query Q{n} {{ __typename }}" for n in range(4)]
    async with open_api(database_url, flags_file, persisted_documents_max=2) as api:
        for document in documents:
            answer = await api.client.post(
                "/graphql", json={"query": document, "extensions": by_hash(document)}
            )
            assert answer.status_code == 200

    async with sessions() as session:
        kept = set(await session.scalars(select(PersistedDocument.document)))
    assert len(kept) == 2
    assert documents[-1] in kept
