"""Schema extension closing the request's session and reporting the stages used."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from graphql import ExecutionResult, GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from appointments import layout
from appointments.replicas import READ_AFTER_HEADER, ReplicaSession
from schema.context import RequestContext

SCHEMA_CHANGED = "SCHEMA_CHANGED"
DATABASE_READ_ONLY = "DATABASE_READ_ONLY"
READ_ONLY_MESSAGE = (
    "The database is read-only (a hot standby, or a primary in recovery): nothing was"
    " written for this field. Retry the request; it succeeds once the service writes to"
    " a primary again."
)


class MigrationExtension(SchemaExtension):
    async def on_execute(self) -> AsyncIterator[None]:
        """With replicas, a mutation's request reads on the primary (it must see its own
        writes) and answers the primary's WAL position after its commits."""
        context = self.execution_context.context
        routed = isinstance(context, RequestContext) and isinstance(context.db, ReplicaSession)
        mutation = routed and self.execution_context.operation_type is OperationType.MUTATION
        if mutation:
            await context.db.use_primary()
        try:
            yield
            if mutation:
                position = await context.db.note_write_position()
                if position is not None and context.response is not None:
                    context.response.headers[READ_AFTER_HEADER] = position
        finally:
            if isinstance(context, RequestContext):
                await context.close()
        result = self.execution_context.result
        if isinstance(context, RequestContext) and isinstance(result, ExecutionResult):
            result.errors = await answer_the_contract(context, result.errors)

    def get_results(self) -> dict[str, Any]:
        context = self.execution_context.context
        if not isinstance(context, RequestContext):
            return {}
        return request_extensions(context)


async def finish_request(context: RequestContext, errors: list[GraphQLError]) -> list[GraphQLError]:
    """What ``MigrationExtension`` does once a query's fields are resolved, for an
    operation run without graphql-core: the context closed, then the errors answered
    as ``answer_the_contract`` says."""
    await context.close()
    return await answer_the_contract(context, errors) or []


def request_extensions(context: RequestContext) -> dict[str, Any]:
    """The response's ``extensions``: the stages served (``migration``), and after a
    write with replicas the position to read after (``readAfter``)."""
    results: dict[str, Any] = {"migration": context.migration_summary()}
    if isinstance(context.db, ReplicaSession) and context.db.write_position is not None:
        results["readAfter"] = context.db.write_position
    return results


async def answer_the_contract(
    context: RequestContext, errors: list[GraphQLError] | None
) -> list[GraphQLError] | None:
    """``errors`` as the response gives them: those the contract caught are retryable,
    and the service switches.

    A request that started on the legacy layout and failed on a missing column asks
    the service to check the schema (``RequestContext.layout_changed``). When the
    contract has dropped the legacy columns, each such error is answered with code
    ``SCHEMA_CHANGED`` and ``retryable: true`` instead of ``INTERNAL_ERROR``: the
    failed field wrote nothing (its transaction rolled back, an idempotency key it
    claimed is released), and the same request sent again runs on the contracted
    layout. It is not retried here, as other fields of a mutation may have written.
    Any other error, or a missing column while the legacy columns exist, is left as it is.
    """
    if not errors or not context.legacy_columns:
        return errors
    caught = [layout.is_missing_column(error.original_error) for error in errors]
    if not any(caught) or context.layout_changed is None or not await context.layout_changed():
        return errors
    return [
        _retryable(error) if is_caught else error
        for error, is_caught in zip(errors, caught, strict=True)
    ]


def _retryable(error: GraphQLError) -> GraphQLError:
    return GraphQLError(
        "The database schema changed under this request: the contract dropped the legacy"
        " columns, and the service now serves without them. Nothing was written for this"
        " field; retry the request.",
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions={"code": SCHEMA_CHANGED, "retryable": True},
    )
