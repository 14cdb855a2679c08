"""Schema extension closing the request's session and reporting the stages used."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from strawberry.extensions import SchemaExtension

from server.context import RequestContext


class MigrationExtension(SchemaExtension):
    async def on_execute(self) -> AsyncIterator[None]:
        try:
            yield
        finally:
            context = self.execution_context.context
            if isinstance(context, RequestContext):
                await context.close()

    def get_results(self) -> dict[str, Any]:
        context = self.execution_context.context
        if not isinstance(context, RequestContext):
            return {}
        return {"migration": context.migration_summary()}
