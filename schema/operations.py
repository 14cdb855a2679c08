"""Which operation of a document runs: the named one, or the only one.

Strawberry, given no ``operationName``, takes the first operation's name and passes
it on, so a document with several operations ran its first one. The GraphQL spec
(GetOperation) requires an error instead, which graphql-core would give had it been
asked. ``OneOperationSchema`` makes each request's execution context a
``OneOperationContext``, which refuses such a document with
``OperationNameMissingError``: the view answers it like Strawberry's other
operation-selection error (an unknown operation name), HTTP 400.

This overrides ``Schema._create_execution_context``, a private method of Strawberry
(0.341); tests/test_bad_input.py checks the behaviour over HTTP, so a Strawberry
upgrade that changes it fails there.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import strawberry
from graphql import DocumentNode, OperationDefinitionNode
from strawberry.schema.exceptions import CannotGetOperationTypeError
from strawberry.types import ExecutionContext
from strawberry.types.graphql import OperationType


class OperationNameMissingError(CannotGetOperationTypeError):
    """Several operations and no ``operationName``."""

    def __init__(self) -> None:
        super().__init__(None)

    def as_http_error_reason(self) -> str:
        return "Must provide operation name if query contains multiple operations."


class OneOperationContext(ExecutionContext):
    """Strawberry's execution context, refusing to pick one of several operations itself."""

    @property
    def operation_type(self) -> OperationType:
        document = self.graphql_document
        named = self._provided_operation_name is not None
        if not named and document is not None and _operation_count(document) > 1:
            raise OperationNameMissingError
        return super().operation_type


def _operation_count(document: DocumentNode) -> int:
    return sum(isinstance(node, OperationDefinitionNode) for node in document.definitions)


class OneOperationSchema(strawberry.Schema):
    """A Strawberry schema whose requests run a named operation or the only one."""

    def _create_execution_context(
        self,
        query: str | None,
        allowed_operation_types: Iterable[OperationType],
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionContext:
        return OneOperationContext(
            query=query,
            schema=self,
            allowed_operations=allowed_operation_types,
            context=context_value,
            root_value=root_value,
            variables=variable_values,
            provided_operation_name=operation_name,
            operation_extensions=operation_extensions,
        )
