"""What the service's requests share, from start-up to shutdown: the engines and their
sessions, the flag source, the layout served, readiness, replicas, the viewer cache,
the batched counters and the background tasks (server/background.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import Response

import migrations
from appointments import instances
from appointments.activity import RECENT
from appointments.batched import Flusher, flush_all
from appointments.db import (
    SerializedSession,
    create_engine,
    create_read_session_factory,
    create_session_factory,
)
from appointments.field_usage import UsageRecorder
from appointments.layout import Layout, is_missing_column, legacy_columns_present
from appointments.ledger_sightings import SEEN_AGAIN
from appointments.read_tally import READS
from appointments.replicas import ReplicaSession, ReplicaSet, replica_set
from appointments.stages import contracted_stage
from appointments.validation import ReadinessGate
from appointments.viewer_cache import ViewerCache
from flags.source import FlagSource
from flags.stages import StageResolver, Viewer
from schema.context import RequestContext, RequestContextFactory
from server import background
from server.background import IDEMPOTENCY_PURGE_SECONDS, BackgroundTasks, every
from server.flag_sources import open_flag_source
from server.settings import Settings

logger = logging.getLogger("server")


@dataclass
class Services:
    """What requests share. ``legacy_columns``, ``sessions`` (for writes) and
    ``read_sessions`` (for a request's reads) follow the schema's layout: read as a request
    starts, they change only in ``adopt_contracted_layout``."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    flags: FlagSource
    usage: UsageRecorder
    legacy_columns: bool = True
    read_sessions: async_sessionmaker[AsyncSession] | None = None
    gate: ReadinessGate | None = None
    replicas: ReplicaSet | None = None
    """The hot standbys queries go to (``CLINIC_DATABASE_REPLICA_URLS``), if any."""
    viewers: ViewerCache = field(default_factory=lambda: ViewerCache(0))
    contexts: RequestContextFactory = field(init=False)
    """Makes each request's context (``for_request``)."""
    tasks: BackgroundTasks = field(default_factory=BackgroundTasks)
    _inspecting: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.contexts = RequestContextFactory(
            self,
            compare_sample_ratio=self.settings.compare_sample_ratio,
            idempotency=self.settings.idempotency,
            usage=self.usage,
        )

    @classmethod
    async def start(cls, settings: Settings) -> Services:
        if settings.auto_migrate:
            # Schema changes may take longer than a request may: no statement timeout here.
            migrating = create_engine(
                settings.database_url, prepare_threshold=settings.database_prepare_threshold
            )
            try:
                await migrations.upgrade(migrating)
            finally:
                await migrating.dispose()
        engine = create_engine(
            settings.database_url,
            statement_timeout_ms=settings.statement_timeout_ms,
            prepare_threshold=settings.database_prepare_threshold,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
        )
        # The server source registers with Unleash over the network: not on the event loop.
        flags = await asyncio.to_thread(open_flag_source, settings)
        try:
            legacy = await legacy_columns_present(engine)
        except Exception:
            # Start anyway so /readyz can say what is wrong; an unreachable database
            # is far more likely than a contracted one.
            logger.exception("cannot inspect the schema; assuming the legacy columns exist")
            legacy = True
        if not legacy:
            logger.warning("legacy columns are gone (contracted): every clinic is served complete")
        layout = Layout.of(legacy)
        services = cls(
            settings,
            engine,
            create_session_factory(engine, layout),
            flags,
            UsageRecorder(settings.usage_clients),
            legacy,
            create_read_session_factory(engine, layout),
        )
        await services._start_background()
        return services

    async def _start_background(self) -> None:
        settings, tasks = self.settings, self.tasks
        if settings.database_replica_urls:
            self.replicas = replica_set(
                settings.database_replica_urls,
                settings.replica_max_lag_seconds,
                statement_timeout_ms=settings.statement_timeout_ms,
                prepare_threshold=settings.database_prepare_threshold,
                pool_size=settings.database_pool_size,
                max_overflow=settings.database_max_overflow,
            )
            await self.replicas.refresh()
            tasks.start(self.replicas.refresh_forever())
        if settings.readiness_gates:
            self.gate = ReadinessGate()
            await self.refresh_readiness()
            tasks.start(every(settings.readiness_refresh_seconds, self.refresh_readiness))
        await background.announce(self.sessions, self.flag_source_kind)
        tasks.start(instances.heartbeat_forever(lambda: self.sessions, self.flag_source_kind))
        await self._purge_idempotency_keys()
        tasks.start(every(IDEMPOTENCY_PURGE_SECONDS, self._purge_idempotency_keys))
        background.flush_on_timers(tasks, self.flushers(), lambda: self.sessions)
        listened = background.listen_for_user_changes(tasks, settings)
        if listened is not None:
            # Not ``or``: a cache with no user in it yet is empty, hence false.
            self.viewers = listened

    def flushers(self) -> list[tuple[Flusher, float]]:
        """What the process counts in memory and writes in batches, each with its interval:
        the deprecated field usage, the reads tallied for the health counters, the recent
        activity and the ledger's differences seen again."""
        health = self.settings.health_flush_seconds
        return [
            (self.usage, self.settings.usage_flush_seconds),
            (READS, health),
            (RECENT, health),
            (SEEN_AGAIN, health),
        ]

    async def _purge_idempotency_keys(self) -> None:
        await background.purge_idempotency_keys(self.sessions, self.settings.idempotency)

    async def adopt_contracted_layout(self) -> bool:
        """After a missing-column failure: if the contract dropped the legacy columns, serve
        as start-up does on a contracted database (sessions without them, every clinic
        ``complete``, readiness recounted). True when contracted (now or before). Callers
        wait for one inspection. A revert is picked up at restart only; ``complete`` is
        valid on the reverted schema meanwhile."""
        async with self._inspecting:
            if not self.legacy_columns:
                return True
            try:
                present = await legacy_columns_present(self.engine)
            except Exception:
                logger.exception("cannot inspect the schema after a missing column")
                return False
            if present:
                return False
            self.sessions = create_session_factory(self.engine, Layout.CONTRACTED)
            self.read_sessions = create_read_session_factory(self.engine, Layout.CONTRACTED)
            self.legacy_columns = False
            logger.warning(
                "legacy columns dropped while serving (contract): switched to the contracted"
                " layout; every clinic is served complete"
            )
        await self.refresh_readiness()
        return True

    async def refresh_readiness(self) -> None:
        """Recount every clinic's readiness now (also done every few seconds in the background);
        a count failing on the dropped legacy columns switches the layout and counts again."""
        if self.gate is None:
            return
        try:
            async with self.sessions() as session:
                await self.gate.refresh(session)
        except Exception as error:
            contracted = self.legacy_columns and is_missing_column(error)
            if contracted and await self.adopt_contracted_layout():
                return
            logger.exception("readiness refresh failed; keeping the previous counts")

    @property
    def layout(self) -> Layout:
        """The layout the session factories were made for (``legacy_columns`` says the same)."""
        return Layout.of(self.legacy_columns)

    @property
    def flag_source_kind(self) -> str:
        return "file" if self.settings.unleash_url is None else "unleash"

    @property
    def request_context(self) -> Callable[[Request, Response | None, Viewer], RequestContext]:
        """One request's context: ``contexts.for_request``."""
        return self.contexts.for_request

    def request_session(self, read_after: str | None = None) -> SerializedSession:
        """A request's session, for its reads (writes run in transactions of their own): on a
        replica when one may serve it (``read_after``: the client's last write position)."""
        primary = self.read_sessions or self.sessions
        if self.replicas is None:
            return SerializedSession(primary)
        replica = self.replicas.choose(read_after)
        if replica is None:
            return ReplicaSession(primary, primary, None)
        return ReplicaSession(replica.read_sessions(self.layout), primary, replica)

    def stage_resolver(self, viewer: Viewer) -> StageResolver:
        """One request's stages: the flag, then readiness gates; `complete` once contracted."""
        return StageResolver(
            self.flags,
            self.settings.default_stage,
            viewer,
            forced_stage=contracted_stage(self.layout),
            gate=self.gate,
        )

    async def flush_reads(self) -> None:
        """Add this process's tallied reads to the health counters, and its recent activity
        to the fleet's; a failure is logged."""
        await flush_all([READS, RECENT], self.sessions)

    async def stop(self) -> None:
        """Stop the background tasks, write what every flusher counted since its last
        flush, leave the instances table, and close the flag source and the engines."""
        await self.tasks.stop()
        await flush_all([flusher for flusher, _ in self.flushers()], self.sessions)
        await background.leave(self.sessions)
        self.flags.close()
        if self.replicas is not None:
            await self.replicas.dispose()
        await self.engine.dispose()
