"""Per-request state: database session, loaders, stage cache, migration events."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import Response

from appointments import health, metrics
from appointments.access import Access, load_access
from appointments.db import SerializedSession
from appointments.events import MigrationEventLog, PendingEvents
from appointments.field_usage import UsageRecorder
from appointments.idempotency import (
    AuthorizeReplay,
    IdempotencyPolicy,
    IdempotentRequest,
    run_once,
)
from appointments.ledger import LedgerWrites, MismatchRecorder, given
from appointments.ledger_sightings import SEEN_AGAIN
from appointments.read_model.runner import ReadModel
from appointments.replicas import READ_AFTER_HEADER, on_replica
from appointments.writes import run_in_transaction
from flags.stages import StageResolver, Viewer
from schema.dataloaders import Loaders

logger = logging.getLogger("schema.context")
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
    reads: ReadModel
    recorder: MismatchRecorder
    viewer: Viewer
    legacy_columns: bool
    replayed: set[int] = field(default_factory=set)
    """The ``id()`` of rows this request replayed from an idempotency key (stored snapshots)."""
    events: MigrationEventLog = field(default_factory=MigrationEventLog)
    idempotency: IdempotencyPolicy = field(default_factory=IdempotencyPolicy)
    layout_changed: Callable[[], Awaitable[bool]] | None = None
    """Called after a statement failed on a missing column: True when the service has
    switched to the contracted layout since (``Services.adopt_contracted_layout``)."""
    usage: UsageRecorder | None = None
    """Where operations selecting deprecated fields are counted (the process's recorder)."""
    _access: Access | None = None

    @classmethod
    def build(
        cls,
        *,
        request: Request,
        response: Response | None,
        sessions: async_sessionmaker[AsyncSession],
        db: SerializedSession,
        stages: StageResolver,
        viewer: Viewer,
        legacy_columns: bool,
        compare_sample_ratio: float,
        idempotency: IdempotencyPolicy,
        layout_changed: Callable[[], Awaitable[bool]] | None,
        usage: UsageRecorder | None,
        access: Access | None,
    ) -> RequestContext:
        """A context with its own loaders, read model, ledger recorder and event log;
        ``RequestContextFactory.for_request`` gives it what the service shares."""
        events = MigrationEventLog()
        recorder = MismatchRecorder()
        return cls(
            request=request,
            response=response,
            sessions=sessions,
            db=db,
            stages=stages,
            loaders=Loaders(db),
            reads=ReadModel(stages, events, recorder, compare_sample_ratio),
            recorder=recorder,
            viewer=viewer,
            legacy_columns=legacy_columns,
            events=events,
            idempotency=idempotency,
            layout_changed=layout_changed,
            usage=usage,
            _access=access,
        )

    async def access(self) -> Access:
        """What the viewer may do; loaded once per request (staff and doctors: their clinics)."""
        if self._access is None:
            viewer = self.viewer
            self._access = await self.db.run(lambda s: load_access(s, viewer.user_id, viewer.role))
        return self._access

    async def write(self, operation: WriteOperation[T]) -> T:
        """Run one write in its own transaction, then drop what this request had cached."""
        try:
            return await run_in_transaction(self.sessions, self.events, operation)
        finally:
            self.loaders.clear_all()

    async def write_once(
        self,
        request: IdempotentRequest,
        operation: WriteOperation[T],
        authorize_replay: AuthorizeReplay[T],
    ) -> T:
        """``write`` under an idempotency key: a replay returns the first result, marked so,
        if ``authorize_replay`` finds the viewer may still be given it (else its error)."""
        try:
            outcome = await run_once(
                self.sessions, self.events, request, operation, self.idempotency, authorize_replay
            )
        finally:
            self.loaders.clear_all()
        if outcome.replayed:
            self.replayed.add(id(outcome.row))
            if self.response is not None:
                self.response.headers["Idempotent-Replayed"] = "true"
        return outcome.row

    def migration_summary(self) -> dict[str, Any]:
        return {
            "stages": {
                str(clinic): stage.value for clinic, stage in sorted(self.stages.used.items())
            },
            "readFallbacks": self.events.counts["read_fallback"],
            "unlinkedWrites": self.events.counts["unlinked_write"],
            "mismatches": self.events.counts["mismatch"],
            "gated": {
                str(clinic): {
                    "requested": gated.requested.value,
                    "served": gated.served.value,
                    "blockers": list(gated.blockers),
                }
                for clinic, gated in sorted(self.stages.gated.items())
            },
        }

    async def close(self) -> None:
        """Write what the request's comparisons changed in the ledger, then release the
        session.

        The reads found what the ledger holds for what they compared: a difference it has
        open (or ignored) already is only counted (``ledger_sightings``, written in
        batches); a first sighting, a reopening or a fix is written here, in a transaction
        of its own, before the response. A comparison that does not know its entries has
        them read through the request's session; should that session be unusable (a
        statement of another root field broke its connection), in that transaction
        instead: what the request compared is recorded whatever else it did. The clinics'
        health counters (read fallbacks, failed writes) are added to in one more
        transaction, when the request saw any. A failure of either is logged (the
        ledger's counted); the response is not failed for it.
        """
        try:
            await self._record_mismatches()
        except Exception:
            metrics.LEDGER_FLUSHES.labels("error").inc()
            logger.exception("could not record mismatches in the ledger")
        try:
            if self.events.by_clinic:
                async with self.sessions() as session, session.begin():
                    await health.add_counts(session, self.events.by_clinic)
        except Exception:
            logger.exception("could not add to the clinic health counters")
        finally:
            await self.db.close()

    async def _record_mismatches(self) -> None:
        recorder = self.recorder
        if not recorder.pending:
            return
        writes: LedgerWrites | None = None
        # A replica may not have the ledger's latest rows: what changes is read on the primary.
        read_apart = on_replica(self.db)
        try:
            if not read_apart:
                writes = await self.db.read(lambda reader: recorder.pending_writes(reader.session))
        except Exception:
            logger.warning(
                "the request's read session failed; reading the ledger in its own transaction",
                exc_info=True,
            )
            read_apart = True
        if read_apart:
            async with self.sessions() as session, session.begin():
                writes = await recorder.pending_writes(given(session))
                if writes is not None and writes.in_request:
                    await recorder.write(session, writes)
        elif writes is not None and writes.in_request:
            async with self.sessions() as session, session.begin():
                await recorder.write(session, writes)
        recorder.clear()
        if writes is None:
            return
        for entry, seen in writes.seen_again.items():
            SEEN_AGAIN.pending.add(entry, seen)
        if writes.in_request:
            metrics.LEDGER_FLUSHES.labels("ok").inc()


class ServedLayout(Protocol):
    """What a request takes from the service as it starts: the sessions, stages and
    layout current then (a contract switches them while the service runs)."""

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]: ...

    @property
    def legacy_columns(self) -> bool: ...

    def stage_resolver(self, viewer: Viewer) -> StageResolver: ...

    def request_session(self, read_after: str | None = None) -> SerializedSession: ...

    async def adopt_contracted_layout(self) -> bool: ...


@dataclass(frozen=True)
class RequestContextFactory:
    """Makes each request's context from what every request shares: the service's
    layout (``served``), the comparison sample, the idempotency policy and the usage
    recorder."""

    served: ServedLayout
    compare_sample_ratio: float = 1.0
    idempotency: IdempotencyPolicy = field(default_factory=IdempotencyPolicy)
    usage: UsageRecorder | None = None

    def for_request(
        self,
        request: Request,
        response: Response | None,
        viewer: Viewer,
        access: Access | None = None,
        db: SerializedSession | None = None,
    ) -> RequestContext:
        """One request's context: its session, loaders, stages, access and ledger.

        ``access`` is the viewer's and ``db`` the request's session, when the viewer was
        checked already (server.viewers); else the context loads the access on first use,
        and reads in a session chosen for the request's ``READ_AFTER_HEADER``.
        """
        served = self.served
        if db is None:
            db = served.request_session(request.headers.get(READ_AFTER_HEADER))
        return RequestContext.build(
            request=request,
            response=response,
            sessions=served.sessions,
            db=db
            if db is not None
            else served.request_session(request.headers.get(READ_AFTER_HEADER)),
            stages=served.stage_resolver(viewer),
            viewer=viewer,
            legacy_columns=served.legacy_columns,
            compare_sample_ratio=self.compare_sample_ratio,
            idempotency=self.idempotency,
            layout_changed=served.adopt_contracted_layout,
            usage=self.usage,
            access=access,
        )
