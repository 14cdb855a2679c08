"""Verified tokens kept per app (``CLINIC_TOKEN_CACHE_SIZE``): a token seen before is not
verified again, yet is refused from the moment its time claims refuse it; a token that
fails verification is verified each time and never kept; the number kept is bounded."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.models import UserRole
from server.app import create_app
from server.auth import TOKEN_REJECTED, Authenticator, VerifiedTokens, mint_token
from server.settings import Settings
from tests.conftest import World, add_user

SECRET = "test-secret-0123456789-0123456789"
SIGNING = Settings(jwt_secret=SECRET)
CLINIC = "query($id: ID!) { clinic(id: $id) { id } }"


class Clock:
    """A wall clock that moves only when told."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclasses.dataclass
class Served:
    client: httpx.AsyncClient
    authenticator: Authenticator

    @property
    def verified(self) -> VerifiedTokens:
        assert self.authenticator.verified is not None
        return self.authenticator.verified

    async def ask(self, token: str, query: str = "{ __typename }", **variables: Any) -> Any:
        return await self.client.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {token}"},
        )


@asynccontextmanager
async def serving(
    database_url: str, flags_file: Path, settings: Settings | None = None, **overrides: Any
) -> AsyncIterator[Served]:
    """The real app in production mode, over HTTP, with its authenticator."""
    app = create_app(
        dataclasses.replace(
            settings or Settings(),
            database_url=database_url,
            auto_migrate=False,
            flags_file=flags_file,
            production=True,
            jwt_secret=SECRET,
            **overrides,
        )
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Served(client, app.state.authenticator)


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every token PyJWT is asked to verify, in order."""
    seen: list[str] = []
    decode = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(token)
        return decode(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    return seen


def signed(claims: dict[str, Any], secret: str = SECRET) -> str:
    defaults = {"iss": SIGNING.jwt_issuer, "aud": SIGNING.jwt_audience}
    return jwt.encode({**defaults, **claims}, secret, algorithm="HS256")


async def test_a_token_accepted_again_is_not_verified_again_and_names_its_own_viewer(
    database_url: str,
    flags_file: Path,
    world: World,
    sessions: async_sessionmaker[AsyncSession],
    verifications: list[str],
) -> None:
    admin = mint_token(SIGNING, await add_user(sessions, UserRole.ADMIN), UserRole.ADMIN, hours=1)
    doctor = mint_token(SIGNING, world.doctor_of_b.id, UserRole.DOCTOR, hours=1)
    clinic_a = str(world.clinic_a.id)

    async with serving(database_url, flags_file) as served:
        answers = [
            (await served.ask(token, CLINIC, id=clinic_a)).json()["data"]
            for token in (admin, doctor, admin, doctor, admin)
        ]
        kept = len(served.verified)

    assert verifications == [admin, doctor]
    assert kept == 2
    admin_sees, doctor_of_b_sees = {"clinic": {"id": clinic_a}}, {"clinic": None}
    assert answers == [admin_sees, doctor_of_b_sees, admin_sees, doctor_of_b_sees, admin_sees]


async def test_a_kept_token_is_refused_from_the_second_it_expires_as_if_verified_again(
    database_url: str,
    flags_file: Path,
    world: World,
    verifications: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = mint_token(SIGNING, world.staff.id, UserRole.STAFF, hours=1)
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    verifications.clear()
    expired_at_issue = signed(
        {"sub": str(world.staff.id), "role": "staff", "exp": int(time.time()) - 10}
    )
    clock = Clock()

    with caplog.at_level(logging.INFO, logger="server.auth"):
        async with serving(database_url, flags_file) as served:
            served.verified.clock = clock
            first = await served.ask(token)
            clock.now = expires - 0.001
            last_moment = await served.ask(token)
            clock.now = expires
            at_expiry = await served.ask(token)
            kept_after = len(served.verified)
            never_kept = await served.ask(expired_at_issue)

    assert [first.status_code, last_moment.status_code] == [200, 200]
    assert at_expiry.status_code == 401
    assert at_expiry.json()["errors"][0]["message"] == TOKEN_REJECTED
    assert (at_expiry.content, at_expiry.headers["WWW-Authenticate"]) == (
        never_kept.content,
        never_kept.headers["WWW-Authenticate"],
    )
    assert verifications.count(token) == 1
    assert kept_after == 0
    reasons = [
        getattr(record, "reason", "") for record in caplog.records if record.name == "server.auth"
    ]
    assert reasons.count("token rejected: Signature has expired") == 2, reasons


async def test_a_kept_token_is_refused_while_the_clock_is_before_its_not_before(
    database_url: str, flags_file: Path, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    now = int(time.time())
    token = signed({"sub": str(world.staff.id), "role": "staff", "nbf": now, "exp": now + 600})
    clock = Clock()

    with caplog.at_level(logging.INFO, logger="server.auth"):
        async with serving(database_url, flags_file) as served:
            served.verified.clock = clock
            first = await served.ask(token)
            clock.now = now - 0.5
            stepped_back = await served.ask(token)

    assert (first.status_code, stepped_back.status_code) == (200, 401)
    reasons = [
        getattr(record, "reason", "") for record in caplog.records if record.name == "server.auth"
    ]
    assert reasons == ["token rejected: The token is not yet valid (nbf)"]


async def test_a_token_that_fails_verification_is_verified_each_time_and_never_kept(
    database_url: str, flags_file: Path, world: World, verifications: list[str]
) -> None:
    staff = {"sub": str(world.staff.id), "role": "staff", "exp": int(time.time()) + 600}
    forged = signed(staff, secret="another-secret-0123456789-012345")
    no_role = signed({**staff, "role": "janitor"})

    async with serving(database_url, flags_file) as served:
        answers = [(await served.ask(token)).status_code for token in [forged, no_role] * 3]
        kept = len(served.verified)

    assert answers == [401] * 6
    assert verifications == [forged, no_role] * 3
    assert kept == 0


async def test_size_zero_verifies_every_request(
    database_url: str, flags_file: Path, world: World, verifications: list[str]
) -> None:
    settings = Settings.from_environment({"CLINIC_TOKEN_CACHE_SIZE": "0"})
    token = mint_token(SIGNING, world.staff.id, UserRole.STAFF, hours=1)

    async with serving(database_url, flags_file, settings) as served:
        answers = [(await served.ask(token)).status_code for _ in range(3)]
        cache = served.authenticator.verified

    assert answers == [200] * 3
    assert verifications == [token] * 3
    assert cache is None


async def test_the_least_recently_used_token_goes_when_the_bound_is_reached(
    database_url: str, flags_file: Path, world: World, verifications: list[str]
) -> None:
    a, b, c = (
        mint_token(SIGNING, world.staff.id, UserRole.STAFF, hours=hours) for hours in (1, 2, 3)
    )

    async with serving(database_url, flags_file, token_cache_size=2) as served:
        answers = [(await served.ask(token)).status_code for token in (a, b, a, c, a, b)]
        kept = len(served.verified)

    assert answers == [200] * 6
    assert verifications == [a, b, c, b]
    assert kept == 2


def test_the_size_comes_from_the_environment() -> None:
    assert Settings.from_environment({}).token_cache_size == 10_000
    assert Settings.from_environment({"CLINIC_TOKEN_CACHE_SIZE": "5"}).token_cache_size == 5
    with pytest.raises(ValueError, match="CLINIC_TOKEN_CACHE_SIZE must be at least 0"):
        Settings.from_environment({"CLINIC_TOKEN_CACHE_SIZE": "-1"})
