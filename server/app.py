"""The ASGI application: GraphQL (and GraphiQL) at /graphql, /healthz, /readyz."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL

import migrations
from appointments.db import create_engine, create_session_factory
from flags.source import FlagSource, LocalFileFlagSource, UnleashServerFlagSource
from flags.stages import StageResolver, Viewer
from schema.schema import schema
from server.context import RequestContext
from server.settings import Settings

logger = logging.getLogger("server")


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    flags: FlagSource

    @classmethod
    async def start(cls, settings: Settings) -> Services:
        engine = create_engine(settings.database_url)
        if settings.auto_migrate:
            await migrations.upgrade(engine)
        # The server source registers with Unleash over the network: not on the event loop.
        flags = await asyncio.to_thread(open_flag_source, settings)
        return cls(settings, engine, create_session_factory(engine), flags)

    async def stop(self) -> None:
        self.flags.close()
        await self.engine.dispose()


def open_flag_source(settings: Settings) -> FlagSource:
    if settings.unleash_url is not None and settings.unleash_api_token is not None:
        logger.info("stages come from the Unleash server", extra={"url": settings.unleash_url})
        return UnleashServerFlagSource(
            url=settings.unleash_url,
            api_token=settings.unleash_api_token,
            app_name=settings.unleash_app_name,
            refresh_interval=settings.unleash_refresh_interval,
            cache_directory=settings.unleash_cache_dir,
            environment=settings.unleash_environment,
        )
    logger.info("stages come from the local flags file", extra={"path": str(settings.flags_file)})
    return LocalFileFlagSource(settings.flags_file, settings.unleash_app_name)


class ClinicGraphQL(GraphQL[RequestContext, None]):
    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> RequestContext:
        assert isinstance(request, Request), "subscriptions are not served"
        services: Services = request.app.state.services
        stages = StageResolver(services.flags, services.settings.default_stage, Viewer())
        return RequestContext.build(
            request, response if isinstance(response, Response) else None, services.sessions, stages
        )


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    services: Services = request.app.state.services
    flags = services.flags.describe()
    try:
        async with services.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as error:
        logger.warning("readiness check failed: database unreachable", extra={"error": repr(error)})
        return JSONResponse(
            {"status": "unavailable", "database": "unreachable", "flags": flags}, status_code=503
        )
    return JSONResponse({"status": "ready", "database": "ok", "flags": flags})


async def home(_request: Request) -> Response:
    return RedirectResponse("/graphql")


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_environment()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services = await Services.start(settings)
        app.state.services = services
        try:
            yield
        finally:
            await services.stop()

    graphql = ClinicGraphQL(
        schema,
        graphql_ide="graphiql" if settings.graphiql else None,
        allow_queries_via_get=False,
    )
    routes = [
        Route("/", home),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/graphql", graphql),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
