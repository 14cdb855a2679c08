"""The small endpoints: /healthz, /readyz, /metrics and the home redirect."""

from __future__ import annotations

import hmac
import logging
import os
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from appointments.replicas import is_standby
from server.metrics_endpoint import forget_dead_processes
from server.services import Services

logger = logging.getLogger("server")


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


class Readiness:
    """/readyz: 200 "ready" when the database answers, takes writes (PostgreSQL: not in
    recovery; ``role`` says which) and the flag source has loaded the migration flag;
    else 503 "unavailable" with ``reason`` (no flag data means every clinic would be
    served the default stage, whatever its flag says). With replicas, ``replicas`` gives
    each one's state and lag, checked now; none of them decides readiness.

    It needs no token (orchestrators probe it). ``reason`` names what is missing in
    words that hold no path, URL or error text. In production mode it tells only
    ``PUBLIC_FLAG_FIELDS`` of the flag source, to anyone (operators find the rest in
    the log and with `clinic flags`). In dev mode it gives the source's full description.
    """

    PUBLIC_FLAG_FIELDS = ("source", "loaded", "reachable")

    def __init__(self, production: bool) -> None:
        self.production = production

    async def respond(self, request: Request) -> Response:
        services: Services = request.app.state.services
        flags = services.flags.describe()
        reasons: list[str] = []
        database = "ok"
        extra: dict[str, object] = {}
        try:
            if services.engine.dialect.name == "postgresql":
                standby = await is_standby(services.engine)
                extra["role"] = "standby" if standby else "primary"
                if standby:
                    database = "read-only"
                    reasons.append("database is a read-only standby: writes cannot succeed")
            else:
                async with services.engine.connect() as connection:
                    await connection.execute(text("SELECT 1"))
        except Exception as error:
            logger.warning(
                "readiness check failed: database unreachable", extra={"error": repr(error)}
            )
            database = "unreachable"
            reasons.append("database unreachable")
        if services.replicas is not None:
            # A replica behind or away costs no readiness: its reads go to the primary.
            await services.replicas.refresh()
            extra["replicas"] = services.replicas.describe()
        if not flags["loaded"]:
            reasons.append("flags not loaded: every clinic would get the default stage")
        if self.production:
            flags = {k: v for k, v in flags.items() if k in self.PUBLIC_FLAG_FIELDS}
        if not reasons:
            ready = {"status": "ready", "database": database, "flags": flags}
            return JSONResponse(ready | extra)
        body = {"status": "unavailable", "reason": "; ".join(reasons)}
        return JSONResponse(body | {"database": database, "flags": flags} | extra, status_code=503)


class PrometheusMetrics:
    """/metrics, the Prometheus exposition; the flag source is looked at first, so its
    gauges are current.

    With a token (``CLINIC_METRICS_TOKEN``) only ``Authorization: Bearer <token>`` is
    answered; without one it is open in dev mode and refused (401) in production,
    since it names clients and counts per field and outcome. The token is its own:
    a scraper holds no user's JWT, and a user's JWT does not open it.
    """

    def __init__(self, production: bool, token: str | None) -> None:
        self.production = production
        self.expected = None if token is None else f"Bearer {token}".encode()

    async def respond(self, request: Request) -> Response:
        if (self.production or self.expected is not None) and not self._authorized(request):
            return JSONResponse(
                {
                    "errors": [
                        {
                            "message": "authentication required",
                            "extensions": {"code": "UNAUTHENTICATED"},
                        }
                    ]
                },
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        services: Services = request.app.state.services
        services.flags.describe()
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if directory:
            forget_dead_processes(Path(directory))
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        else:
            registry = REGISTRY
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    def _authorized(self, request: Request) -> bool:
        given = request.headers.get("authorization", "").encode()
        return self.expected is not None and hmac.compare_digest(given, self.expected)


async def home(_request: Request) -> Response:
    return RedirectResponse("/graphql")
