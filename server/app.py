"""The ASGI application: GraphQL (and GraphiQL) at /graphql, /healthz, /readyz, /metrics,
and the migration dashboard at /migration."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, request_response

import migrations
from appointments import idempotency, instances, read_tally
from appointments.access import Access
from appointments.activity import RECENT
from appointments.db import (
    SerializedSession,
    create_engine,
    create_read_session_factory,
    create_session_factory,
)
from appointments.field_usage import UsageRecorder
from appointments.layout import Layout
from appointments.ledger_sightings import SEEN_AGAIN
from appointments.replicas import READ_AFTER_HEADER, ReplicaSession, ReplicaSet, replica_set
from appointments.stages import contracted_stage
from appointments.user_changes import listen_forever, listen_url
from appointments.validation import ReadinessGate
from appointments.viewer_cache import ViewerCache
from flags.source import FlagSource
from flags.stages import StageResolver, Viewer
from schema.context import RequestContext
from schema.schema import QueryLimits, build_schema
from server import graphiql
from server.auth import Authenticator, RequireViewer
from server.dashboard import migration_dashboard
from server.endpoints import PrometheusMetrics, Readiness, healthz, home
from server.flag_sources import open_flag_source
from server.graphql_view import ClinicGraphQL
from server.logs import configure_logging_once
from server.middleware import (
    BodySizeLimitMiddleware,
    ContainErrorsMiddleware,
    HeaderLimitMiddleware,
    RequestIdMiddleware,
)
from server.settings import Settings
from server.viewers import RequireKnownUser

logger = logging.getLogger("server")
IDEMPOTENCY_PURGE_SECONDS = 3600


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
    _listener: asyncio.Task[None] | None = None
    _refresher: asyncio.Task[None] | None = None
    _purger: asyncio.Task[None] | None = None
    _usage_flusher: asyncio.Task[None] | None = None
    _reads_flusher: asyncio.Task[None] | None = None
    _sightings_flusher: asyncio.Task[None] | None = None
    _replica_checker: asyncio.Task[None] | None = None
    _activity_flusher: asyncio.Task[None] | None = None
    _heartbeat: asyncio.Task[None] | None = None
    _inspecting: asyncio.Lock = field(default_factory=asyncio.Lock)

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
            legacy = await migrations.legacy_columns_present(engine)
        except Exception:
            # Start anyway so /readyz can say what is wrong; an unreachable database
            # is far more likely than a contracted one.
            logger.exception("cannot inspect the schema; assuming the legacy columns exist")
            legacy = True
        if not legacy:
            logger.warning("legacy columns are gone (contracted): every clinic is served complete")
        layout = Layout.of(legacy)
        sessions = create_session_factory(engine, layout)
        usage = UsageRecorder(settings.usage_clients)
        services = cls(
            settings,
            engine,
            sessions,
            flags,
            usage,
            legacy,
            create_read_session_factory(engine, layout),
        )
        if settings.database_replica_urls:
            services.replicas = replica_set(
                settings.database_replica_urls,
                settings.replica_max_lag_seconds,
                statement_timeout_ms=settings.statement_timeout_ms,
                prepare_threshold=settings.database_prepare_threshold,
                pool_size=settings.database_pool_size,
                max_overflow=settings.database_max_overflow,
            )
            await services.replicas.refresh()
            services._replica_checker = asyncio.create_task(services.replicas.refresh_forever())
        if settings.readiness_gates:
            services.gate = ReadinessGate()
            await services.refresh_readiness()
            services._refresher = asyncio.create_task(services._refresh_readiness_forever())
        await services.announce()
        services._heartbeat = asyncio.create_task(
            instances.heartbeat_forever(lambda: services.sessions, services.flag_source_kind)
        )
        await services.purge_idempotency_keys()
        services._purger = asyncio.create_task(services._purge_idempotency_keys_forever())
        services._usage_flusher = asyncio.create_task(
            usage.flush_forever(lambda: services.sessions, settings.usage_flush_seconds)
        )
        services._reads_flusher = asyncio.create_task(
            read_tally.READS.flush_forever(lambda: services.sessions, settings.health_flush_seconds)
        )
        services._sightings_flusher = asyncio.create_task(
            SEEN_AGAIN.flush_forever(lambda: services.sessions, settings.health_flush_seconds)
        )
        services._activity_flusher = asyncio.create_task(
            RECENT.flush_forever(lambda: services.sessions, settings.health_flush_seconds)
        )
        services._listen_for_user_changes()
        return services

    def _listen_for_user_changes(self) -> None:
        """Keep token users in memory while a listener hears their changes (PostgreSQL)."""
        conninfo = listen_url(self.settings.viewer_listener_url)
        if conninfo is None or self.settings.viewer_cache_size == 0:
            return
        self.viewers = ViewerCache(self.settings.viewer_cache_size)
        self._listener = asyncio.create_task(
            listen_forever(conninfo, self.viewers, self.settings.viewer_listener_check_seconds)
        )

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
                present = await migrations.legacy_columns_present(self.engine)
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
            contracted = self.legacy_columns and migrations.is_missing_column(error)
            if contracted and await self.adopt_contracted_layout():
                return
            logger.exception("readiness refresh failed; keeping the previous counts")

    async def _refresh_readiness_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.readiness_refresh_seconds)
            await self.refresh_readiness()

    @property
    def layout(self) -> Layout:
        """The layout the session factories were made for (``legacy_columns`` says the same)."""
        return Layout.of(self.legacy_columns)

    @property
    def flag_source_kind(self) -> str:
        return "file" if self.settings.unleash_url is None else "unleash"

    async def announce(self) -> None:
        """Record this instance (host, process, flag source) in the database; a failure is
        logged (the CLI's check for other hosts then does not see it)."""
        try:
            await instances.heartbeat(self.sessions, self.flag_source_kind)
        except Exception:
            logger.warning("could not record this instance in the database", exc_info=True)

    async def purge_idempotency_keys(self) -> None:
        """Delete idempotency keys past their retention (at start, then every hour)."""
        try:
            purged = await idempotency.purge(self.sessions, self.settings.idempotency)
        except Exception:
            logger.warning("could not purge expired idempotency keys", exc_info=True)
            return
        if purged:
            logger.info("purged expired idempotency keys", extra={"count": purged})

    async def _purge_idempotency_keys_forever(self) -> None:
        while True:
            await asyncio.sleep(IDEMPOTENCY_PURGE_SECONDS)
            await self.purge_idempotency_keys()

    def request_context(
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
        in a session of its own.
        """
        return RequestContext.build(
            request,
            response,
            self.sessions,
            self.stage_resolver(viewer),
            viewer,
            self.settings.compare_sample_ratio,
            self.legacy_columns,
            self.settings.idempotency,
            access,
            self.adopt_contracted_layout,
            self.usage,
            db if db is not None else self.request_session(request.headers.get(READ_AFTER_HEADER)),
        )

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
        try:
            await read_tally.READS.flush(self.sessions)
        except Exception:
            logger.warning(read_tally.FLUSH_FAILED, exc_info=True)
        try:
            await RECENT.flush(self.sessions)
        except Exception:
            logger.warning("could not add the recent activity to the database", exc_info=True)

    async def stop(self) -> None:
        """Stop the background tasks, write the field usage, the reads, the recent activity
        and the ledger's repeated sightings counted since the last flush, leave the instances
        table, and close the flag source and the engines."""
        tasks = (
            self._refresher,
            self._purger,
            self._usage_flusher,
            self._reads_flusher,
            self._sightings_flusher,
            self._replica_checker,
            self._activity_flusher,
            self._heartbeat,
            self._listener,
        )
        for task in tasks:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.usage.flush_logged(self.sessions)
        await self.flush_reads()
        await SEEN_AGAIN.flush_logged(self.sessions)
        try:
            await instances.leave(self.sessions)
        except Exception:
            logger.warning("could not remove this instance from the database", exc_info=True)
        self.flags.close()
        if self.replicas is not None:
            await self.replicas.dispose()
        await self.engine.dispose()


def tune_garbage_collector(threshold: int) -> None:
    """Fewer young-generation collections, and none over what start-up allocated.

    A request allocates tens of thousands of short-lived objects; Python's default
    threshold (700) collects many times per request. Frozen start-up objects (the
    schema, the ORM mappers) are never scanned again. 0 leaves Python's defaults.
    """
    if threshold <= 0 or gc.get_threshold()[0] == threshold:
        return
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(threshold, older, oldest)


def create_app(settings: Settings | None = None) -> Starlette:
    """The application, with ``settings`` or, as uvicorn's ``--factory`` target, from the
    environment.

    Called as the factory (no settings), it configures logging as ``clinic serve``
    does (JSON lines with the request id, server/logs.py) unless something configured
    it already (``clinic serve`` has). A caller giving settings (tests, benchmarks,
    an embedding application) keeps its own logging.
    """
    if settings is None:
        settings = Settings.from_environment()
        configure_logging_once(settings.log_level, settings.log_format)
    settings.require_client_token()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services = await Services.start(settings)
        app.state.services = services
        tune_garbage_collector(settings.gc_threshold)
        try:
            yield
        finally:
            await services.stop()

    authenticator = Authenticator.from_settings(settings)
    limits = QueryLimits(
        max_depth=settings.max_query_depth,
        max_aliases=settings.max_aliases,
        max_tokens=settings.max_tokens,
        introspection=settings.introspection,
    )
    graphql = ClinicGraphQL.for_settings(settings, build_schema(limits))
    routes = [
        Route("/", home),
        Route("/healthz", healthz),
        Route("/readyz", Readiness(settings.production).respond),
        Route("/metrics", PrometheusMetrics(settings.production, settings.metrics_token).respond),
        Route(
            "/migration",
            RequireViewer(RequireKnownUser(request_response(migration_dashboard)), authenticator),
        ),
        Route("/graphql", RequireViewer(RequireKnownUser(graphql), authenticator, serves_ide=True)),
    ]
    if settings.graphiql:
        routes.append(Route(f"{graphiql.ASSET_PATH}/{{name}}", graphiql.serve_asset))
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(
                HeaderLimitMiddleware,
                max_total=settings.max_header_bytes,
                max_each=settings.max_header_field_bytes,
            ),
            Middleware(RequestIdMiddleware),
            Middleware(ContainErrorsMiddleware),
            Middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes),
        ],
    )
