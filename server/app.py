"""The ASGI application: GraphQL (and GraphiQL) at /graphql, /healthz, /readyz, /metrics,
and the migration dashboard at /migration; what requests share is ``server.services``."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route, request_response

from schema.schema import QueryLimits, build_schema
from server import graphiql
from server.auth import Authenticator, RequireViewer
from server.dashboard import migration_dashboard
from server.endpoints import PrometheusMetrics, Readiness, healthz, home
from server.graphql_view import ClinicGraphQL
from server.logs import configure_logging_once
from server.middleware import (
    BodySizeLimitMiddleware,
    ContainErrorsMiddleware,
    HeaderLimitMiddleware,
    RequestIdMiddleware,
)
from server.services import Services
from server.settings import Settings
from server.viewers import RequireKnownUser


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
        compiled_operations=settings.compiled_operations,
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
    app = Starlette(
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
    app.state.authenticator = authenticator
    return app
