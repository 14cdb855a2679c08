"""The service's executor: Strawberry's, taking the read model's JSON as it is, and letting
go of the request's context once the response is built.
"""

from __future__ import annotations

from typing import Any

import orjson
from graphql import (
    ExecutionResult,
    ExperimentalIncrementalExecutionResults,
    GraphQLOutputType,
    GraphQLResolveInfo,
)
from graphql.execution.collect_fields import FieldDetailsList
from graphql.pyutils import AwaitableOrValue, Path

from schema.suggestions import SuggestionlessExecutor


class ReleasingExecutor(SuggestionlessExecutor):
    """Strawberry's executor, letting go of the request's context once the response is built.

    graphql-core's executor refers to itself (its async helpers are its own bound
    methods), so only Python's cyclic collector frees it, and with it everything
    reachable from the context: its session, loaders, read model and ledger
    recorder. Let go once the response is built, they are freed by
    reference counting when the request ends, and the collector has far less to scan
    (it took about a tenth of a list request's CPU time). An incremental response
    (``@defer``, ``@stream``) still needs the context for its later payloads, so it
    keeps it.
    """

    def build_response(
        self, data: dict[str, Any] | None
    ) -> ExecutionResult | ExperimentalIncrementalExecutionResults:
        response = super().build_response(data)
        if isinstance(response, ExecutionResult):
            self.release()
        return response

    def release(self) -> None:
        self.context_value = None

    def complete_value(
        self,
        return_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo[Any],
        path: Path,
        result: Any,
        position_context: Any,
    ) -> AwaitableOrValue[Any]:
        """A field the read model answered (``orjson.Fragment``, its JSON as the response
        shows it) is taken as it is; every other value is completed as graphql-core does."""
        if type(result) is orjson.Fragment:
            return result
        return super().complete_value(
            return_type, field_details_list, info, path, result, position_context
        )
