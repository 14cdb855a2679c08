"""The HTTP surface: health, readiness, GraphiQL, and what the endpoint refuses."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.models import UserRole
from server.app import create_app
from server.auth import mint_token
from server.settings import Settings
from tests.conftest import Api, add_user, open_api, set_stages


async def test_healthz_answers_ok(api: Api) -> None:
    response = await api.client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_checks_the_database_and_reports_the_flag_source(
    api: Api, flags_file: Path
) -> None:
    set_stages(flags_file, {})
    response = await api.client.get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["database"] == "ok"
    assert body["flags"]["source"] == "file"
    assert "path" in body["flags"], "dev mode, from loopback: the details"


async def test_readyz_is_unavailable_while_no_flags_file_was_loaded(
    api: Api, flags_file: Path
) -> None:
    missing = await api.client.get("/readyz")
    set_stages(flags_file, {})
    loaded = await api.client.get("/readyz")

    assert missing.status_code == 503
    assert missing.json()["status"] == "unavailable"
    assert missing.json()["reason"] == "flags not loaded: every clinic would get the default stage"
    assert "does not exist" in missing.json()["flags"]["problem"]
    assert loaded.status_code == 200


async def test_readyz_is_unavailable_when_unleash_is_unreachable_and_nothing_is_cached(
    database_url: str, flags_file: Path, tmp_path: Path, sessions: async_sessionmaker[AsyncSession]
) -> None:
    set_stages(flags_file, {})  # present, and unused: UNLEASH_URL wins
    async with open_api(
        database_url,
        flags_file,
        unleash_url="http://127.0.0.1:9/api",
        unleash_api_token="default:development.client-token",
        unleash_cache_dir=tmp_path / "empty-cache",
    ) as api:
        response = await api.client.get("/readyz")
        metrics = (await api.client.get("/metrics")).text

    assert response.status_code == 503
    body = response.json()
    assert body["reason"] == "flags not loaded: every clinic would get the default stage"
    assert body["flags"]["source"] == "unleash"
    assert (body["flags"]["loaded"], body["flags"]["reachable"]) == (False, False)
    assert "default stage" in body["flags"]["problem"]
    assert "clinic_flag_source_reachable 0.0" in metrics


async def test_the_reachable_gauge_follows_the_flags_file(api: Api, flags_file: Path) -> None:
    set_stages(flags_file, {})
    healthy = (await api.client.get("/metrics")).text
    await asyncio.to_thread(flags_file.unlink)
    deleted = (await api.client.get("/metrics")).text

    assert "clinic_flag_source_reachable 1.0" in healthy
    assert "clinic_flag_source_loaded 1.0" in healthy
    assert "clinic_flag_source_reachable 0.0" in deleted
    assert "clinic_flag_source_loaded 1.0" in deleted, "the last stages are still served"


SECRET = "test-secret-0123456789-0123456789"


async def test_readyz_in_production_shows_no_path_to_anyone(
    database_url: str, flags_file: Path, sessions: async_sessionmaker[AsyncSession]
) -> None:
    admin = await add_user(sessions, UserRole.ADMIN)
    token = mint_token(Settings(jwt_secret=SECRET), admin, UserRole.ADMIN, hours=1)
    async with open_api(database_url, flags_file, production=True, jwt_secret=SECRET) as api:
        not_loaded = await api.client.get("/readyz")
        set_stages(flags_file, {})
        anonymous = await api.client.get("/readyz")
        rejected = await api.client.get("/readyz", headers={"Authorization": "Bearer nonsense"})
        admin_asks = await api.client.get("/readyz", headers={"Authorization": f"Bearer {token}"})

    role = {"role": "primary"} if database_url.startswith("postgresql") else {}
    assert not_loaded.status_code == 503
    assert not_loaded.json() == role | {
        "status": "unavailable",
        "reason": "flags not loaded: every clinic would get the default stage",
        "database": "ok",
        "flags": {"source": "file", "loaded": False, "reachable": False},
    }
    assert flags_file.parent.name not in not_loaded.text
    for answer in (anonymous, rejected, admin_asks):
        assert answer.status_code == 200
        assert answer.json() == role | {
            "status": "ready",
            "database": "ok",
            "flags": {"source": "file", "loaded": True, "reachable": True},
        }
        assert flags_file.parent.name not in answer.text


async def test_readyz_in_production_hides_paths_when_the_database_is_unreachable(
    tmp_path: Path,
) -> None:
    settings = Settings(
        database_url="postgresql+psycopg://postgres@127.0.0.1:1/nowhere",
        auto_migrate=False,
        flags_file=tmp_path / "flags.json",
        production=True,
        jwt_secret=SECRET,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["flags"] == {"source": "file", "loaded": False, "reachable": False}
    assert response.json()["reason"] == (
        "database unreachable; flags not loaded: every clinic would get the default stage"
    )
    assert tmp_path.name not in response.text
    assert "nowhere" not in response.text


async def test_readyz_is_unavailable_when_the_database_is_unreachable(tmp_path: Path) -> None:
    settings = Settings(
        database_url="postgresql+psycopg://postgres@127.0.0.1:1/nowhere",
        auto_migrate=False,
        flags_file=tmp_path / "flags.json",
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["database"] == "unreachable"


async def test_graphiql_is_served_at_graphql(api: Api) -> None:
    response = await api.client.get("/graphql", headers={"Accept": "text/html"})

    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


async def test_queries_over_get_are_refused(api: Api) -> None:
    response = await api.client.get("/graphql", params={"query": "{ __typename }"})

    assert response.status_code in {400, 405}


async def test_the_root_redirects_to_graphiql(api: Api) -> None:
    response = await api.client.get("/")

    assert response.status_code == 307
    assert response.headers["location"] == "/graphql"
