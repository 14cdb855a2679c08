"""The generated TypeScript client (clients/typescript/, built by scripts/check-typescript-client):
its operations are the frontend guide's, and its manifest, served as trusted documents, runs
every one of them by hash while an edited document is refused."""

from __future__ import annotations

import json
import re
from pathlib import Path

from appointments.persisted_documents import sha256_of
from appointments.seed import DEMO_ROLLOUT, demo_clinic_stages
from flags.document import build_document, write_document
from tests.conftest import open_api, unavailable
from tests.test_doc_examples import (  # noqa: F401 - the fixtures, used by name
    demo_databases,
    demo_url,
)

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "clients" / "typescript"
MANIFEST = CLIENT / "src" / "gql" / "persisted-documents.json"
GRAPHQL_BLOCK = re.compile(r"```graphql\n(.*?)```", re.DOTALL)


def test_the_clients_operations_are_the_frontend_guides() -> None:
    guide = (ROOT / "docs" / "frontend.md").read_text(encoding="utf-8")
    blocks = GRAPHQL_BLOCK.findall(guide)
    files = sorted((CLIENT / "operations").glob("*.graphql"))

    assert sorted(f.read_text(encoding="utf-8") for f in files) == sorted(blocks)
    names = [f.stem for f in files]
    assert len(set(names)) == len(names) == len(blocks), "every operation name is unique"


async def test_the_generated_manifest_runs_every_operation_by_hash_and_refuses_an_edit(
    demo_url: str,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    if not MANIFEST.exists():
        unavailable("the TypeScript client is not built: run scripts/check-typescript-client")
    documents: dict[str, str] = json.loads(MANIFEST.read_text(encoding="utf-8"))
    flags_file = tmp_path / "flags.json"
    write_document(flags_file, build_document(demo_clinic_stages(), [DEMO_ROLLOUT]))
    edited = next(iter(documents.values())).replace("{", "{ __typename ", 1)

    async with open_api(demo_url, flags_file, trusted_documents=MANIFEST) as api:
        answers = {
            digest: await api.client.post(
                "/graphql",
                json={"extensions": {"persistedQuery": {"version": 1, "sha256Hash": digest}}},
            )
            for digest in documents
        }
        refused = await api.client.post(
            "/graphql",
            json={
                "query": edited,
                "extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha256_of(edited)}},
            },
        )

    assert len(answers) == len(GRAPHQL_BLOCK.findall((ROOT / "docs" / "frontend.md").read_text()))
    for digest, answer in answers.items():
        assert answer.status_code == 200, (documents[digest], answer.text)
        assert "data" in answer.json(), "it ran (TooMany's field error included)"
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["extensions"]["code"] == "DOCUMENT_NOT_TRUSTED"
