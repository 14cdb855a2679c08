"""The stored user behind a request's token: it must exist, be active and hold the role
the token claims, checked on every request so that a deleted, deactivated or changed
user takes effect on the next one.

Wraps an app that ``server.auth.RequireViewer`` authenticates. One query per request
(the user's role and clinics), whose ``Access`` the request's context then uses, or
none while the process's ``ViewerCache`` knows the user and may be trusted (on
PostgreSQL, while it listens for changes of users). The query opens the request's
session (``RequestState.db``, server/request_state.py), which the rest of the request uses too: one
connection, one transaction, and a read-only one ends in a commit, which keeps the
connection's prepared statements (a second session of its own would roll back, and
psycopg forgets every prepared statement of a connection that rolls back). The
dev-mode demo admin (an anonymous request from this machine) has no stored user.
"""

from __future__ import annotations

import logging
import uuid

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from appointments.access import NOBODY, role_access
from appointments.db import SerializedSession
from appointments.models import UserRole
from appointments.replicas import READ_AFTER_HEADER, ReplicaSession, on_replica
from appointments.viewer_cache import ViewerCache
from flags.stages import Viewer
from server.auth import DEMO_ADMIN
from server.request_state import request_state

logger = logging.getLogger("server.viewers")


class RequireKnownUser:
    """401 unless the token's user exists, is active and has the claimed role; 503 when the
    database cannot tell. Puts the viewer's ``Access`` and the request's session in the
    request's state (``request_state``), and ends that session when the
    request is answered (if nothing ended it before)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = request_state(scope)
        viewer = state.viewer
        if scope["type"] != "http" or viewer is None:
            await self.app(scope, receive, send)
            return
        if viewer is DEMO_ADMIN:
            assert DEMO_ADMIN.user_id is not None
            state.access = role_access(UserRole.ADMIN, uuid.UUID(DEMO_ADMIN.user_id))
            await self.app(scope, receive, send)
            return
        services = scope["app"].state.services
        db = services.request_session(Headers(scope=scope).get(READ_AFTER_HEADER))
        try:
            await self._checked(db, services.viewers, viewer, scope, receive, send)
        finally:
            await db.close()

    async def _checked(
        self,
        db: SerializedSession,
        viewers: ViewerCache,
        viewer: Viewer,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        try:
            access = await viewers.access(db, viewer.user_id, viewer.role)
            if access is NOBODY and on_replica(db):
                # A user added moments ago may not have reached the replica yet.
                assert isinstance(db, ReplicaSession)
                await db.use_primary()
                access = await viewers.access(db, viewer.user_id, viewer.role)
        except Exception:
            logger.warning("cannot look up the token's user", exc_info=True)
            unavailable = _refusal(
                503, "the service cannot check credentials now; retry", "UNAVAILABLE", "1"
            )
            await unavailable(scope, receive, send)
            return
        if access is NOBODY:
            logger.info(
                "token refused: its user is unknown, inactive or holds another role",
                extra={"user_id": viewer.user_id, "claimed_role": viewer.role},
            )
            refused = _refusal(401, "invalid or expired credentials", "UNAUTHENTICATED")
            await refused(scope, receive, send)
            return
        state = request_state(scope)
        state.access = access
        state.db = db
        await self.app(scope, receive, send)


def _refusal(status: int, message: str, code: str, retry_after: str | None = None) -> JSONResponse:
    headers = (
        {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        if retry_after is None
        else {"Retry-After": retry_after}
    )
    body = {"errors": [{"message": message, "extensions": {"code": code}}]}
    return JSONResponse(body, status_code=status, headers=headers)
