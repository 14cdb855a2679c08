"""Who is asking: bearer JWTs (HS256 secret or RS256 public key), or the dev-mode demo admin.

In production mode a request needs a valid token. In dev mode (the embedded
demo) an anonymous request from the loopback interface is the demo admin, so
GraphiQL works with no setup; anything else still needs a token.
"""

from __future__ import annotations

import ipaddress
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from appointments.models import UserRole
from appointments.seed import demo_id
from flags.stages import Viewer
from server.request_state import request_state
from server.settings import Settings, SettingsError

logger = logging.getLogger("server.auth")

DEMO_ADMIN = Viewer(user_id=str(demo_id("user", 0)), role=UserRole.ADMIN.value)


# What a 401 says (messages, not credentials).
NO_TOKEN = "authentication required: send 'Authorization: Bearer <token>'"  # noqa: S105
TOKEN_REJECTED = "invalid or expired credentials"  # noqa: S105


class AuthenticationError(Exception):
    """The request's credentials are missing or not acceptable.

    ``str(error)`` is what the client is told: ``NO_TOKEN`` when it sent no bearer
    token, ``TOKEN_REJECTED`` for any token that is not accepted, whatever the
    reason (signature, expiry, audience, issuer, claims), so the answer reveals
    nothing about the token or the keys. ``reason`` is the specific cause, for the log.
    """

    def __init__(self, public: str, reason: str) -> None:
        super().__init__(public)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Authenticator:
    settings: Settings

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        settings.require_production_keys()
        if not settings.production:
            logger.warning(
                "DEV MODE: anonymous requests from this machine act as the demo admin;"
                " set CLINIC_PRODUCTION=true to require tokens"
            )
        return cls(settings)

    def viewer(self, scope: Scope) -> Viewer:
        header = Headers(scope=scope).get("authorization")
        if header is None:
            if not self.settings.production and _from_loopback(scope):
                return DEMO_ADMIN
            raise AuthenticationError(NO_TOKEN, "no Authorization header")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationError(NO_TOKEN, "the Authorization header is not a bearer token")
        return self._decode(token.strip())

    def _decode(self, token: str) -> Viewer:
        key, algorithm = self._key()
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.settings.jwt_audience,
                issuer=self.settings.jwt_issuer,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.PyJWTError as error:
            raise AuthenticationError(TOKEN_REJECTED, f"token rejected: {error}") from None
        role = claims.get("role")
        if role not in {member.value for member in UserRole}:
            raise AuthenticationError(TOKEN_REJECTED, "token has no known role")
        try:
            user_id = str(uuid.UUID(str(claims["sub"])))
        except ValueError:
            raise AuthenticationError(TOKEN_REJECTED, "token subject is not a user id") from None
        return Viewer(user_id=user_id, role=role)

    def _key(self) -> tuple[str, str]:
        if self.settings.jwt_public_key is not None:
            return self.settings.jwt_public_key, "RS256"
        if self.settings.jwt_secret is not None:
            return self.settings.jwt_secret, "HS256"
        raise AuthenticationError(
            TOKEN_REJECTED, "this service accepts no tokens (no key configured)"
        )


def mint_token(settings: Settings, user_id: uuid.UUID, role: UserRole, hours: float) -> str:
    """An HS256 token for a user, signed with the configured secret (demo and tests)."""
    if settings.jwt_secret is None:
        raise SettingsError("minting tokens needs CLINIC_JWT_SECRET")
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "role": role.value,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "exp": now + int(hours * 3600),
    }
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")


def _from_loopback(scope: Scope) -> bool:
    client = HTTPConnection(scope).client
    if client is None:
        return False
    try:
        return ipaddress.ip_address(client.host).is_loopback
    except ValueError:
        return False


class RequireViewer:
    """Authenticates every request to the wrapped app; 401 with a generic JSON error otherwise.

    The 401 says only whether a token was missing or rejected (``AuthenticationError``),
    the latter with RFC 6750's ``error="invalid_token"``; the specific reason is logged
    at info level with the request id.

    With ``serves_ide``, the GraphiQL page itself (a GET asking for HTML) is
    served without a token: it holds no data, and its requests carry their own.
    """

    def __init__(
        self, app: ASGIApp, authenticator: Authenticator, serves_ide: bool = False
    ) -> None:
        self.app = app
        self.authenticator = authenticator
        self.serves_ide = serves_ide

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self.serves_ide and _asks_for_the_ide(scope)):
            await self.app(scope, receive, send)
            return
        try:
            viewer = self.authenticator.viewer(scope)
        except AuthenticationError as error:
            logger.info(
                "request not authenticated", extra={"path": scope["path"], "reason": error.reason}
            )
            response = JSONResponse(
                {"errors": [{"message": str(error), "extensions": {"code": "UNAUTHENTICATED"}}]},
                status_code=401,
                headers={"WWW-Authenticate": _challenge(error)},
            )
            await response(scope, receive, send)
            return
        request_state(scope).viewer = viewer
        await self.app(scope, receive, send)


def _challenge(error: AuthenticationError) -> str:
    return 'Bearer error="invalid_token"' if str(error) == TOKEN_REJECTED else "Bearer"


def _asks_for_the_ide(scope: Scope) -> bool:
    return scope["method"] == "GET" and "text/html" in Headers(scope=scope).get("accept", "")
