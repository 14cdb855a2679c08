"""Running a compiled operation (schema/plans.py) without graphql-core's executor.

The result is the one graphql-core and the service's extensions would give for the
same request (tests/test_compiled_operations.py compares the two on both databases):
the root fields in document order, a field's error located at its field with its
path, a failed non-null field nulling ``data``; then, as the extensions do, the
request's deprecated fields counted before the reads, the context closed after
them (ledger, health counters, session), a dropped legacy column's error made
retryable, unexpected errors logged and masked, and the ``migration`` summary in
``extensions``. Variables that do not coerce are not handled here: the caller
runs such a request through graphql-core, which answers the coercion errors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from graphql import GraphQLError, located_error
from graphql.execution.values import VariableValues, get_argument_values, get_variable_values
from strawberry.types.arguments import convert_arguments
from strawberry.types.execution import ExecutionResult

from schema.context import RequestContext
from schema.deprecated_fields import record_deprecated_usage
from schema.extensions import finish_request, request_extensions
from schema.plans import OperationPlan, RootRead

if TYPE_CHECKING:
    from schema.schema import ClinicSchema

MAX_VARIABLE_ERRORS = 50
"""As graphql-core's executor: coercion stops after this many errors."""


def coerce_variables(
    schema: ClinicSchema, plan: OperationPlan, variables: dict[str, Any] | None
) -> VariableValues | None:
    """The request's variables coerced for the operation; None when they do not coerce."""
    coerced = get_variable_values(
        schema._schema,
        plan.operation.variable_definitions or (),
        variables or {},
        max_errors=MAX_VARIABLE_ERRORS,
        hide_suggestions=schema.config.disable_field_suggestions,
    )
    return None if isinstance(coerced, list) else coerced


async def run_plan(
    schema: ClinicSchema,
    plan: OperationPlan,
    reads: tuple[RootRead, ...],
    variables: VariableValues,
    context: RequestContext,
) -> ExecutionResult:
    """The operation's result (see the module's docstring)."""
    record_deprecated_usage(context, plan.deprecated)
    values: dict[str, Any] = {}
    data: dict[str, Any] | None = values
    errors: list[GraphQLError] = []
    try:
        for read in reads:
            try:
                values[read.key] = await _resolve(schema, plan, read, variables, context)
            except Exception as raised:
                errors.append(located_error(raised, list(read.nodes), [read.key]))
                if not read.nullable:
                    data = None
                    break
                values[read.key] = None
        if errors:
            schema.process_errors(errors)
    finally:
        errors = await finish_request(context, errors)
    return ExecutionResult(
        data=data,
        errors=[schema.mask_error(error) for error in errors] or None,
        extensions=request_extensions(context),
    )


async def _resolve(
    schema: ClinicSchema,
    plan: OperationPlan,
    read: RootRead,
    variables: VariableValues,
    context: RequestContext,
) -> Any:
    if read.read is None:
        return read.type_name
    assert read.definition is not None
    arguments = convert_arguments(
        get_argument_values(read.definition, read.nodes[0], variables),
        list(read.arguments),
        scalar_registry=schema.schema_converter.scalar_registry,
        config=schema.config,
    )
    coerced = variables.coerced
    return await read.read(
        context, lambda: read.selection_for(coerced, plan.fragments), **arguments
    )
