"""No "Did you mean ...?" in any error when the schema's config disables suggestions.

graphql-core suggests names close to a misspelt one (fields, arguments, directive
arguments, input fields, types, enum values), which tells a client without
introspection what the schema holds. Strawberry's ``disable_field_suggestions``
only strips field suggestions, after the fact. graphql-core has the supported
switch, ``hide_suggestions``, for validation and for execution (coercing variables):
Strawberry passes it to neither, so with ``disable_field_suggestions`` set:

- ``SuggestionlessValidation`` validates the document itself with ``hide_suggestions``
  (with Strawberry's two extra rules, and cached as Strawberry's ``ValidationCache``
  caches: keyed by schema, document text and rule classes, within the bounds of
  schema/documents.py; it replaces that extension);
- ``SuggestionlessExecutor`` is the executor's base class and builds every execution
  with ``hide_suggestions``, so coercing variables suggests nothing either.

With the setting off, both behave as Strawberry and graphql-core do by default.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import ASTValidationRule, DocumentNode, GraphQLError, GraphQLSchema, validate
from graphql.execution import Executor
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

from schema.documents import cached_validation


def suggestions_hidden(schema: GraphQLSchema) -> bool:
    """Whether the Strawberry schema behind ``schema`` disables suggestions."""
    strawberry_schema = getattr(schema, "_strawberry_schema", None)
    if strawberry_schema is None:
        return False
    return bool(strawberry_schema.config.disable_field_suggestions)


def validate_document(
    schema: GraphQLSchema,
    document: DocumentNode,
    rules: tuple[type[ASTValidationRule], ...],
    hide_suggestions: bool,
) -> list[GraphQLError]:
    """graphql-core's validation with Strawberry's two extra rules."""
    every_rule = (*rules, MaybeNullValidationRule, OneOfInputValidationRule)
    return validate(schema, document, every_rule, hide_suggestions=hide_suggestions)


class SuggestionlessValidation(SchemaExtension):
    """Validates the request's document, cached (schema/documents.py), hiding suggestions
    per the schema's config."""

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        assert context.graphql_document is not None, "validation follows parsing"
        graphql_schema = context.schema._schema
        context.pre_execution_errors = cached_validation(
            validate_document,
            graphql_schema,
            context.query or "",
            context.graphql_document,
            context.validation_rules,
            suggestions_hidden(graphql_schema),
        )
        yield


class SuggestionlessExecutor(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's executor, built with ``hide_suggestions`` when the schema disables them."""

    @classmethod
    def build(
        cls, schema: GraphQLSchema, *args: Any, **kwargs: Any
    ) -> list[GraphQLError] | Executor[Any]:
        if suggestions_hidden(schema):
            kwargs["hide_suggestions"] = True
        return super().build(schema, *args, **kwargs)
