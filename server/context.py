"""Per-request state: database session, loaders, stage cache, migration events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import Response

from appointments.db import SerializedSession
from appointments.events import MigrationEventLog, PendingEvents
from appointments.reads import LinkResolver
from appointments.writes import run_in_transaction
from flags.stages import StageResolver
from schema.dataloaders import Loaders

T = TypeVar("T")
WriteOperation = Callable[[AsyncSession, PendingEvents], Awaitable[T]]


@dataclass
class RequestContext:
    request: Request
    response: Response | None
    sessions: async_sessionmaker[AsyncSession]
    db: SerializedSession
    stages: StageResolver
    loaders: Loaders
    links: LinkResolver
    events: MigrationEventLog = field(default_factory=MigrationEventLog)

    @classmethod
    def build(
        cls,
        request: Request,
        response: Response | None,
        sessions: async_sessionmaker[AsyncSession],
        stages: StageResolver,
    ) -> RequestContext:
        db = SerializedSession(sessions)
        loaders = Loaders(db)
        events = MigrationEventLog()
        return cls(
            request=request,
            response=response,
            sessions=sessions,
            db=db,
            stages=stages,
            loaders=loaders,
            links=LinkResolver(stages, loaders, events),
            events=events,
        )

    async def write(self, operation: WriteOperation[T]) -> T:
        """Run one write in its own transaction, then drop what this request had cached."""
        try:
            return await run_in_transaction(self.sessions, self.events, operation)
        finally:
            self.loaders.clear_all()
            self.links.forget()

    def migration_summary(self) -> dict[str, Any]:
        return {
            "stages": {
                str(clinic): stage.value for clinic, stage in sorted(self.stages.used.items())
            },
            "readFallbacks": self.events.counts["read_fallback"],
            "unlinkedWrites": self.events.counts["unlinked_write"],
        }

    async def close(self) -> None:
        await self.db.close()
