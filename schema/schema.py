"""The assembled schema, with the query limits and error masking of the service."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from graphql import (
    ASTValidationRule,
    GraphQLError,
    NoSchemaIntrospectionCustomRule,
    specified_rules,
)
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import DEFAULT_ALLOWED_OPERATION_TYPES
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.graphql import OperationType
from strawberry.utils.logging import StrawberryLogger

from appointments.replicas import is_read_only_error
from schema.context import RequestContext
from schema.deprecated_fields import DeprecatedFieldUsage, DeprecatedSelections
from schema.documents import DOCUMENT_CHARACTERS, DOCUMENTS, BoundedParserCache
from schema.execution import ReleasingExecutor
from schema.extensions import DATABASE_READ_ONLY, READ_ONLY_MESSAGE, MigrationExtension
from schema.mutations import Mutation
from schema.operations import OneOperationSchema
from schema.planned_execution import coerce_variables, run_plan
from schema.plans import OperationPlans
from schema.queries import Query
from schema.request_id import request_id
from schema.scalars import SCALAR_OVERRIDES
from schema.suggestions import SuggestionlessValidation


@dataclass(frozen=True, slots=True)
class QueryLimits:
    max_depth: int = 12
    max_aliases: int = 15
    max_tokens: int = 2000
    introspection: bool = True
    compiled_operations: bool = True
    """Whether operations the read model answers whole run without graphql-core
    (schema/plans.py); off, graphql-core executes every operation."""


class MaskUnexpectedErrors(MaskErrors):
    """Unexpected exceptions become one generic error naming the request id.

    Errors the API raises on purpose (validation, typed query errors) carry no
    original exception and pass unchanged; anything else is logged in full by
    Strawberry and answered without SQL, stack or internal names.
    """

    def __init__(self) -> None:
        super().__init__(should_mask_error=_is_unexpected)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        return anonymised(error)


def masked(error: GraphQLError) -> GraphQLError:
    """The error as the response gives it: unchanged, or anonymised when unexpected."""
    return anonymised(error) if _is_unexpected(error) else error


def anonymised(error: GraphQLError) -> GraphQLError:
    """An unexpected error as the client sees it: read-only, or one generic message
    naming the request id."""
    current = request_id.get()
    if is_read_only_error(error.original_error):
        return GraphQLError(
            message=READ_ONLY_MESSAGE,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": DATABASE_READ_ONLY, "retryable": True, "requestId": current},
        )
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


class ClinicSchema(OneOperationSchema):
    """Logs an unexpected error at ERROR with its traceback, as Strawberry does, and an
    error the client caused (a document that does not parse or validate, a bad variable,
    a typed query error) at INFO: those are answered and need no operator.

    ``parse_options`` and ``validation_rules`` are what the limits' extensions give every
    request, so that ``prepare`` fills the same cache entries a request would use.
    """

    parse_options: Mapping[str, Any] = MappingProxyType({})
    validation_rules: tuple[type[ASTValidationRule], ...] = tuple(specified_rules)
    plans: OperationPlans

    def prepare(self, documents: Iterable[str]) -> None:
        """Plan ``documents``' operations (parsed, validated, compiled: schema/plans.py),
        so that their first request costs what later ones do. Documents that do not parse
        or validate are skipped (their requests are answered with the errors)."""
        self.plans.prepare(documents)

    async def execute(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        """The request's result: a compiled operation's from its plan
        (schema/planned_execution.py), any other from Strawberry and graphql-core."""
        plan = self.plans.plan(query, operation_name) if query else None
        allowed = allowed_operation_types or DEFAULT_ALLOWED_OPERATION_TYPES
        if (
            plan is not None
            and plan.reads is not None
            and isinstance(context_value, RequestContext)
            and OperationType.QUERY in allowed
        ):
            variables = coerce_variables(self, plan, variable_values)
            if variables is not None:
                return await run_plan(self, plan, plan.reads, variables, context_value)
        return await super().execute(
            query,
            variable_values,
            context_value,
            root_value,
            operation_name,
            allowed_operation_types,
            operation_extensions,
        )

    def mask_error(self, error: GraphQLError) -> GraphQLError:
        return masked(error)

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        for error in errors:
            if _is_unexpected(error):
                StrawberryLogger.error(error, execution_context)
            else:
                StrawberryLogger.logger.info("client error: %s", error.message)


def build_schema(limits: QueryLimits | None = None) -> ClinicSchema:
    """The service's schema.

    The executor (schema/execution.py) takes an appointment's JSON from the read model
    as it is, and releases the request's context once the response is built.

    Parsed documents and validation results are cached across requests. The
    validation cache is keyed by document and rule classes, and the limits are rule
    classes: they are built here once, so that every request validates with the same
    classes (a fresh ``QueryDepthLimiter`` per request would make new classes and
    never hit the cache), and a cached result is the result of the limits too. The
    token limit is a parser option, part of the parser cache's key.

    Suggestions ("Did you mean ...?") are off everywhere (schema/suggestions.py), and
    a document with several operations needs an operation name (schema/operations.py).

    Each executed operation selecting a deprecated field is counted for its client
    (schema/deprecated_fields.py), the fields found once per document and operation.
    """
    limits = limits or QueryLimits()
    selections = DeprecatedSelections(DOCUMENTS, DOCUMENT_CHARACTERS)
    depth_rules = QueryDepthLimiter(max_depth=limits.max_depth).validation_rules
    alias_rules = MaxAliasesLimiter(max_alias_count=limits.max_aliases).validation_rules
    extensions: list[type[SchemaExtension] | Callable[[], SchemaExtension]] = [
        MigrationExtension,
        lambda: DeprecatedFieldUsage(selections),
        lambda: AddValidationRules(depth_rules),
        lambda: AddValidationRules(alias_rules),
        lambda: MaxTokensLimiter(max_token_count=limits.max_tokens),
        MaskUnexpectedErrors,
    ]
    rules = (*specified_rules, *depth_rules, *alias_rules)
    if not limits.introspection:
        extensions.append(DisableIntrospection)
        rules = (*rules, NoSchemaIntrospectionCustomRule)
    extensions += [
        BoundedParserCache,
        SuggestionlessValidation,
    ]
    built = ClinicSchema(
        query=Query,
        mutation=Mutation,
        extensions=extensions,
        execution_context_class=ReleasingExecutor,
        config=StrawberryConfig(disable_field_suggestions=True),
        scalar_overrides=SCALAR_OVERRIDES,
    )
    built.parse_options = MappingProxyType({"max_tokens": limits.max_tokens})
    built.validation_rules = rules
    built.plans = OperationPlans(
        built._schema,
        built.parse_options,
        rules,
        selections,
        compile_reads=limits.compiled_operations,
        max_entries=DOCUMENTS,
        max_characters=DOCUMENT_CHARACTERS,
    )
    return built


schema = build_schema()
