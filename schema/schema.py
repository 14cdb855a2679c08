"""The assembled schema, with the query limits and error masking of the service."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    DisableIntrospection,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)
from strawberry.schema.config import StrawberryConfig

from schema.extensions import MigrationExtension
from schema.mutations import Mutation
from schema.queries import Query
from server.logs import request_id


@dataclass(frozen=True, slots=True)
class QueryLimits:
    max_depth: int = 12
    max_aliases: int = 15
    max_tokens: int = 2000
    introspection: bool = True


class MaskUnexpectedErrors(MaskErrors):
    """Unexpected exceptions become one generic error naming the request id.

    Errors the API raises on purpose (validation, typed query errors) carry no
    original exception and pass unchanged; anything else is logged in full by
    Strawberry and answered without SQL, stack or internal names.
    """

    def __init__(self) -> None:
        super().__init__(should_mask_error=_is_unexpected)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        current = request_id.get()
        return GraphQLError(
            message=f"Internal error; quote request id {current} when reporting it.",
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": "INTERNAL_ERROR", "requestId": current},
        )


def _is_unexpected(error: GraphQLError) -> bool:
    return error.original_error is not None and not isinstance(error.original_error, GraphQLError)


def build_schema(limits: QueryLimits | None = None) -> strawberry.Schema:
    limits = limits or QueryLimits()
    extensions: list[type[SchemaExtension] | Callable[[], SchemaExtension]] = [
        MigrationExtension,
        lambda: QueryDepthLimiter(max_depth=limits.max_depth),
        lambda: MaxAliasesLimiter(max_alias_count=limits.max_aliases),
        lambda: MaxTokensLimiter(max_token_count=limits.max_tokens),
        MaskUnexpectedErrors,
    ]
    if not limits.introspection:
        extensions.append(DisableIntrospection)
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        extensions=extensions,
        config=StrawberryConfig(disable_field_suggestions=True),
    )


schema = build_schema()
