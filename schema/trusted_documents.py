"""Trusted documents: with a manifest set, only the operations the application ships run.

A manifest is the JSON object of hash to document that graphql-codegen's client
preset writes with ``persistedDocuments: true`` (keys ``<sha-256 hex>``, or
``sha256:<hex>``), or a directory of ``.graphql`` files (one operation each,
known by the SHA-256 of its text). Every document must hash to its key, parse
and validate against the schema: a manifest with a bad one is refused whole,
with the document's name and what is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import strawberry
from graphql import GraphQLError, OperationDefinitionNode, parse, validate

from appointments.persisted_documents import PersistedQuery, PersistedQueryError, sha256_of

NOT_TRUSTED = "DOCUMENT_NOT_TRUSTED"


class ManifestError(ValueError):
    """A manifest that cannot be used; ``problems`` says why, one line per document."""

    def __init__(self, source: Path, problems: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(problems))
        self.problems = problems


def read_manifest(path: Path) -> dict[str, str]:
    """Hash to document, from a JSON manifest or a directory of ``.graphql`` files."""
    if path.is_dir():
        return {
            sha256_of(text): text
            for text in (
                file.read_text(encoding="utf-8") for file in sorted(path.glob("**/*.graphql"))
            )
        }
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ManifestError(path, [f"cannot read it: {error.strerror}"]) from error
    except json.JSONDecodeError as error:
        raise ManifestError(path, [f"not JSON: {error}"]) from error
    if not isinstance(loaded, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in loaded.items()
    ):
        raise ManifestError(path, ["expected a JSON object of hash to document text"])
    return {key.removeprefix("sha256:"): value for key, value in loaded.items()}


def check_manifest(schema: strawberry.Schema, documents: Mapping[str, str]) -> list[str]:
    """What is wrong with each document (empty when every one is usable)."""
    problems = []
    for digest, text in documents.items():
        name = _name(text) or digest[:12]
        if sha256_of(text) != digest:
            problems.append(f"{name}: its hash is not the SHA-256 of its text")
            continue
        try:
            errors = validate(schema._schema, parse(text))
        except GraphQLError as error:
            errors = [error]
        if errors:
            problems.append(f"{name}: {errors[0].message}")
    return problems


def load_trusted(path: Path, schema: strawberry.Schema) -> TrustedDocuments:
    """The manifest at ``path``, every document checked (``ManifestError`` otherwise)."""
    documents = read_manifest(path)
    problems = check_manifest(schema, documents)
    if problems:
        raise ManifestError(path, problems)
    return TrustedDocuments(documents)


def _name(text: str) -> str | None:
    try:
        definitions = parse(text).definitions
    except GraphQLError:
        return None
    for definition in definitions:
        if isinstance(definition, OperationDefinitionNode) and definition.name is not None:
            return definition.name.value
    return None


@dataclass(frozen=True, slots=True)
class TrustedDocuments:
    documents: Mapping[str, str]

    def resolve(self, persisted: PersistedQuery | None, query: str | None) -> str:
        """The trusted document a request asks for, by hash or by identical text; anything
        else raises ``PersistedQueryError`` (``DOCUMENT_NOT_TRUSTED``), naming nothing of
        the schema."""
        digest = persisted.sha256 if persisted is not None else None
        if digest is None and query is not None:
            digest = sha256_of(query)
        known = None if digest is None else self.documents.get(digest)
        if known is None or (query is not None and query != known):
            raise PersistedQueryError(
                NOT_TRUSTED, "this operation is not one of the application's trusted documents"
            )
        return known
