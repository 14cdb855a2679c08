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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from appointments.bounded_cache import BoundedCache
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

LEEWAY_SECONDS = 0
"""Tolerance on the time claims, as PyJWT's ``leeway``: none (the issuer's clock is trusted)."""


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
class VerifiedToken:
    """What a token that passed every check says: its viewer, and the claims whose
    verdict changes with time (``exp``, and ``nbf`` and ``iat`` when present, as the
    whole seconds PyJWT compares)."""

    viewer: Viewer
    expires: int
    not_before: int | None
    issued: int | None

    @classmethod
    def of(cls, viewer: Viewer, claims: dict[str, Any]) -> VerifiedToken:
        """From claims PyJWT accepted (so each time claim present converts with ``int``)."""
        nbf, iat = claims.get("nbf"), claims.get("iat")
        return cls(
            viewer,
            int(claims["exp"]),
            None if nbf is None else int(nbf),
            None if iat is None else int(iat),
        )

    def refusal(self, now: float) -> str | None:
        """PyJWT's message refusing the token at ``now`` (its checks, order and
        ``LEEWAY_SECONDS``), or None while it would accept it."""
        if self.issued is not None and self.issued > now + LEEWAY_SECONDS:
            return "The token is not yet valid (iat)"
        if self.not_before is not None and self.not_before > now + LEEWAY_SECONDS:
            return "The token is not yet valid (nbf)"
        if self.expires <= now - LEEWAY_SECONDS:
            return "Signature has expired"
        return None


class VerifiedTokens:
    """The last ``capacity`` tokens that passed every check, by their exact text.

    A client sends the same token on every request until it expires; verifying it
    (the signature above all) each time costs more than the rest of a cheap request's
    authentication. A token kept here is not verified again: its signature, issuer,
    audience, subject and role cannot change meaning while the key and the settings
    are those of the process, so only its time claims are checked on each use,
    against ``clock`` (the wall clock, as PyJWT reads it). A token refused at use is
    dropped. Only verified tokens are kept, so garbage sent by anyone costs a
    verification each time and takes no room.
    """

    def __init__(self, capacity: int, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._kept: BoundedCache[str, VerifiedToken] = BoundedCache(capacity, capacity)

    def __len__(self) -> int:
        return len(self._kept)

    def viewer(self, token: str) -> Viewer | None:
        """The viewer of a kept token, None when it is not kept; ``AuthenticationError``
        when it is kept but its time claims refuse it now."""
        kept = self._kept.get(token)
        if kept is None:
            return None
        refusal = kept.refusal(self.clock())
        if refusal is not None:
            self._kept.discard(token)
            raise AuthenticationError(TOKEN_REJECTED, f"token rejected: {refusal}")
        return kept.viewer

    def keep(self, token: str, verified: VerifiedToken) -> None:
        """Keep a token that passed every check (the least recently used goes when full)."""
        self._kept.put(token, verified, 1)


@dataclass(frozen=True, slots=True)
class Authenticator:
    """Who a request's credentials name; one per app. ``verified`` keeps tokens
    already verified (``CLINIC_TOKEN_CACHE_SIZE``; None when it is 0)."""

    settings: Settings
    verified: VerifiedTokens | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        settings.require_production_keys()
        if not settings.production:
            logger.warning(
                "DEV MODE: anonymous requests from this machine act as the demo admin;"
                " set CLINIC_PRODUCTION=true to require tokens"
            )
        size = settings.token_cache_size
        return cls(settings, VerifiedTokens(size) if size > 0 else None)

    def viewer(self, scope: Scope) -> Viewer:
        header = Headers(scope=scope).get("authorization")
        if header is None:
            if not self.settings.production and _from_loopback(scope):
                return DEMO_ADMIN
            raise AuthenticationError(NO_TOKEN, "no Authorization header")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationError(NO_TOKEN, "the Authorization header is not a bearer token")
        token = token.strip()
        if self.verified is None:
            return self._decode(token).viewer
        viewer = self.verified.viewer(token)
        if viewer is None:
            checked = self._decode(token)
            self.verified.keep(token, checked)
            viewer = checked.viewer
        return viewer

    def _decode(self, token: str) -> VerifiedToken:
        key, algorithm = self._key()
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.settings.jwt_audience,
                issuer=self.settings.jwt_issuer,
                leeway=LEEWAY_SECONDS,
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
        return VerifiedToken.of(Viewer(user_id=user_id, role=role), claims)

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
