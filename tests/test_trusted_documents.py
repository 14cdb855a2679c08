"""Trusted documents: with CLINIC_TRUSTED_DOCUMENTS only the manifest's operations run,
by hash or by identical text; a bad manifest stops the start and fails `documents check`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appointments.persisted_documents import sha256_of
from schema import documents
from server.cli import main
from server.settings import SettingsError
from tests.conftest import World, open_api

CLINICS = "query TrustedClinics { clinics(first: 5) { edges { node { id name } } } }"
OPEN = 'mutation TrustedOpen { createClinic(name: "Trusted") { __typename } }'
UNTRUSTED = "query Sneaky { clinics(first: 5) { edges { node { id } } } }"


def manifest(tmp_path: Path, *documents: str) -> Path:
    path = tmp_path / "persisted-documents.json"
    path.write_text(json.dumps({sha256_of(d): d for d in documents}), encoding="utf-8")
    return path


def persisted(document: str) -> dict[str, object]:
    return {"persistedQuery": {"version": 1, "sha256Hash": sha256_of(document)}}


async def test_only_the_manifests_documents_run_by_hash_or_by_identical_text(
    world: World, database_url: str, flags_file: Path, tmp_path: Path
) -> None:
    trusted = manifest(tmp_path, CLINICS, OPEN)
    async with open_api(database_url, flags_file, trusted_documents=trusted) as api:
        by_hash = await api.client.post("/graphql", json={"extensions": persisted(CLINICS)})
        by_text = await api.client.post("/graphql", json={"query": CLINICS})
        by_get = await api.client.get(
            "/graphql", params={"extensions": json.dumps(persisted(CLINICS))}
        )
        mutation = await api.client.post("/graphql", json={"extensions": persisted(OPEN)})
        refused = [
            await api.client.post("/graphql", json={"query": UNTRUSTED}),
            await api.client.post("/graphql", json={"extensions": persisted(UNTRUSTED)}),
            await api.client.post(
                "/graphql", json={"query": CLINICS + " ", "extensions": persisted(CLINICS)}
            ),
        ]

    assert by_hash.status_code == by_text.status_code == by_get.status_code == 200
    assert by_hash.json()["data"] == by_text.json()["data"] == by_get.json()["data"]
    assert by_hash.json()["data"]["clinics"]["edges"]
    assert mutation.json()["data"]["createClinic"]["__typename"]
    for answer in refused:
        assert answer.status_code == 400
        error = answer.json()["errors"][0]
        assert error["extensions"]["code"] == "DOCUMENT_NOT_TRUSTED"
        assert "clinics" not in error["message"], "the refusal names nothing of the schema"


@pytest.mark.parametrize("introspection", [True, False])
async def test_trusted_documents_are_parsed_and_validated_before_their_first_request(
    world: World, database_url: str, flags_file: Path, tmp_path: Path, introspection: bool
) -> None:
    documents.parsed.clear()
    documents.validated.clear()
    trusted = manifest(tmp_path, CLINICS, OPEN)
    async with open_api(
        database_url, flags_file, trusted_documents=trusted, introspection=introspection
    ) as api:
        prepared = (len(documents.parsed), len(documents.validated))
        answers = [
            await api.client.post("/graphql", json={"extensions": persisted(CLINICS)}),
            await api.client.post("/graphql", json={"query": OPEN}),
        ]
        after = (len(documents.parsed), len(documents.validated))

    assert prepared == (2, 2)
    assert after == prepared, "the requests used the entries made at start"
    assert [answer.status_code for answer in answers] == [200, 200]
    assert all("errors" not in answer.json() for answer in answers)


async def test_a_directory_of_graphql_files_is_a_manifest(
    world: World, database_url: str, flags_file: Path, tmp_path: Path
) -> None:
    directory = tmp_path / "operations"
    directory.mkdir()
    (directory / "clinics.graphql").write_text(CLINICS, encoding="utf-8")
    async with open_api(database_url, flags_file, trusted_documents=directory) as api:
        allowed = await api.client.post("/graphql", json={"query": CLINICS})
        refused = await api.client.post("/graphql", json={"query": UNTRUSTED})

    assert allowed.json()["data"]["clinics"]["edges"]
    assert refused.json()["errors"][0]["extensions"]["code"] == "DOCUMENT_NOT_TRUSTED"


async def test_a_manifest_with_a_bad_document_stops_the_start_naming_it(
    database_url: str, flags_file: Path, tmp_path: Path
) -> None:
    bad = manifest(tmp_path, CLINICS, "query Broken { clinics { nonsense } }")

    with pytest.raises(SettingsError, match=r"Broken: Cannot query field 'nonsense'"):
        async with open_api(database_url, flags_file, trusted_documents=bad):
            pass


def test_documents_check_validates_a_manifest_for_the_frontends_ci(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = manifest(tmp_path, CLINICS, OPEN)
    assert main(["documents", "check", str(good)]) == 0
    assert "2 documents, every one valid" in capsys.readouterr().out

    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps({sha256_of(CLINICS): CLINICS + " "}), encoding="utf-8")
    assert main(["documents", "check", str(edited)]) == 1
    assert "TrustedClinics: its hash is not the SHA-256 of its text" in capsys.readouterr().err
