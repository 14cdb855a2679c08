"""What the HTTP surface refuses before any route runs: oversized headers (431), and
/metrics without its own bearer token in production (401)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.models import UserRole
from server.auth import mint_token
from server.settings import Settings
from tests.conftest import Api, add_user, open_api, set_stages

HEALTH_QUERY = {"query": "{ clinics { edges { node { id } } } }"}


async def test_a_header_larger_than_the_limit_is_refused_with_431(api: Api) -> None:
    limit = Settings().max_header_field_bytes
    fits = await api.client.post(
        "/graphql", json=HEALTH_QUERY, headers={"X-Note": "a" * (limit - 100)}
    )
    too_large = await api.client.post(
        "/graphql", json=HEALTH_QUERY, headers={"X-Note": "a" * (limit + 1)}
    )

    assert fits.status_code == 200, fits.text
    assert too_large.status_code == 431
    assert too_large.json()["errors"][0]["extensions"]["code"] == "HEADERS_TOO_LARGE"
    assert "larger than 8192 bytes" in too_large.json()["errors"][0]["message"]


async def test_headers_larger_than_the_total_limit_are_refused_even_when_each_fits(
    api: Api,
) -> None:
    each = Settings().max_header_field_bytes - 100
    headers = {f"X-Part-{n}": "b" * each for n in range(3)}

    response = await api.client.get("/healthz", headers=headers)

    assert response.status_code == 431
    assert "in all" in response.json()["errors"][0]["message"]


async def test_the_header_limits_are_settings(
    database_url: str, flags_file: Path, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with open_api(
        database_url, flags_file, max_header_bytes=2000, max_header_field_bytes=600
    ) as api:
        each = await api.client.get("/healthz", headers={"X-Note": "c" * 700})
        total = await api.client.get(
            "/healthz", headers={f"X-Part-{n}": "c" * 500 for n in range(4)}
        )
        fine = await api.client.get("/healthz", headers={"X-Note": "c" * 500})

    assert (each.status_code, total.status_code, fine.status_code) == (431, 431, 200)


def test_the_header_limits_come_from_the_environment() -> None:
    settings = Settings.from_environment(
        {"CLINIC_MAX_HEADER_BYTES": "4096", "CLINIC_MAX_HEADER_FIELD_BYTES": "1024"}
    )

    assert (settings.max_header_bytes, settings.max_header_field_bytes) == (4096, 1024)
    assert (Settings().max_header_bytes, Settings().max_header_field_bytes) == (16384, 8192)


SECRET = "metrics-secret-0123456789-0123456789"


@pytest.mark.parametrize("token", [None, "scrape-token-0123456789"], ids=["unset", "set"])
async def test_metrics_in_production_need_their_own_bearer_token(
    database_url: str,
    flags_file: Path,
    sessions: async_sessionmaker[AsyncSession],
    token: str | None,
) -> None:
    set_stages(flags_file, {})
    admin_id = await add_user(sessions, UserRole.ADMIN)
    admin = mint_token(Settings(jwt_secret=SECRET), admin_id, UserRole.ADMIN, hours=1)
    async with open_api(
        database_url, flags_file, production=True, jwt_secret=SECRET, metrics_token=token
    ) as api:
        anonymous = await api.client.get("/metrics")
        with_a_user_token = await api.client.get(
            "/metrics", headers={"Authorization": f"Bearer {admin}"}
        )
        wrong = await api.client.get("/metrics", headers={"Authorization": "Bearer nope"})
        scraper = await api.client.get(
            "/metrics", headers={"Authorization": f"Bearer {token or ''}"}
        )

    assert [r.status_code for r in (anonymous, with_a_user_token, wrong)] == [401, 401, 401]
    assert anonymous.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    if token is None:
        assert scraper.status_code == 401, "no token configured: closed in production"
    else:
        assert scraper.status_code == 200
        assert "clinic_flag_source_loaded" in scraper.text


async def test_metrics_in_dev_mode_are_open_unless_a_token_is_set(
    api: Api, database_url: str, flags_file: Path
) -> None:
    open_ = await api.client.get("/metrics")
    async with open_api(database_url, flags_file, metrics_token="dev-token-0123456789") as guarded:
        refused = await guarded.client.get("/metrics")
        allowed = await guarded.client.get(
            "/metrics", headers={"Authorization": "Bearer dev-token-0123456789"}
        )

    assert (open_.status_code, refused.status_code, allowed.status_code) == (200, 401, 200)


def test_the_metrics_token_comes_from_the_environment() -> None:
    assert Settings.from_environment({"CLINIC_METRICS_TOKEN": "t0k"}).metrics_token == "t0k"
    assert Settings.from_environment({}).metrics_token is None
