"""Parsed and validated documents, kept per process within a bound of entries and of
query text.

Strawberry's ``ParserCache`` and ``ValidationCache`` bound only the number of
documents; a parsed document takes up to about 130 bytes per character of its text,
so 256 documents of the largest size allowed could hold far more than ordinary ones.
Both caches here keep at most ``DOCUMENTS`` documents and ``DOCUMENT_CHARACTERS``
characters of their text (about 26 MB at the densest), least recently used first out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from graphql import ASTValidationRule, DocumentNode, GraphQLError, GraphQLSchema, parse
from strawberry.extensions import SchemaExtension

from appointments.bounded_cache import BoundedCache

DOCUMENTS = 256
DOCUMENT_CHARACTERS = 200_000

ParseKey = tuple[str, tuple[tuple[str, Any], ...]]
ValidationKey = tuple[GraphQLSchema, str, tuple[type[ASTValidationRule], ...], bool]

parsed: BoundedCache[ParseKey, DocumentNode] = BoundedCache(DOCUMENTS, DOCUMENT_CHARACTERS)
validated: BoundedCache[ValidationKey, list[GraphQLError]] = BoundedCache(
    DOCUMENTS, DOCUMENT_CHARACTERS
)


def text_length(document: DocumentNode) -> int:
    return len(document.loc.source.body) if document.loc is not None else 0


class BoundedParserCache(SchemaExtension):
    """Parses the request's document, or takes it from ``parsed`` (keyed by the text and
    the parser options, which carry the token limit)."""

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        context.graphql_document = cached_parse(context.query or "", context.parse_options)
        yield


def cached_parse(query: str, options: Mapping[str, Any]) -> DocumentNode:
    """``query`` parsed with ``options``, from ``parsed`` when it was parsed before (a
    ``GraphQLError`` when it does not parse)."""
    key = (query, tuple(sorted(options.items())))
    document = parsed.get(key)
    if document is None:
        document = parse(query, **options)
        parsed.put(key, document, len(query))
    return document


def cached_validation(
    validate: Callable[
        [GraphQLSchema, DocumentNode, tuple[type[ASTValidationRule], ...], bool],
        list[GraphQLError],
    ],
    schema: GraphQLSchema,
    query: str,
    document: DocumentNode,
    rules: tuple[type[ASTValidationRule], ...],
    hide_suggestions: bool,
) -> list[GraphQLError]:
    """``validate``'s answer for ``document``, parsed from ``query``, from ``validated`` when
    the same text was validated with the same rules before. The key is the text, not the
    document: a document hashes its whole tree on every lookup, a string once."""
    key = (schema, query, rules, hide_suggestions)
    errors = validated.get(key)
    if errors is None:
        errors = validate(schema, document, rules, hide_suggestions)
        validated.put(key, errors, text_length(document))
    return errors
