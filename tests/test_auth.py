"""Authentication: bearer JWTs in production mode, the demo admin in dev mode on loopback."""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments import directory
from appointments.models import User, UserRole
from appointments.seed import DEMO_USERS
from appointments.stages import Stage
from flags.document import build_document, write_document
from server.app import create_app
from server.auth import mint_token
from server.cli import main
from server.settings import Settings, SettingsError
from tests.conftest import READ_CLINIC, World, add_user, insert_appointment, open_api

SECRET = "test-secret-0123456789-0123456789"
QUERY = "query($c: ID!) { migrationReport(clinicId: $c) { servedStage } }"


def production(**overrides: Any) -> dict[str, Any]:
    return {"production": True, "jwt_secret": SECRET, **overrides}


def test_production_mode_refuses_to_start_without_auth_settings(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="production mode needs"):
        create_app(Settings(production=True, flags_file=tmp_path / "flags.json"))


async def test_production_requests_need_a_valid_token(
    database_url: str, flags_file: Path, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    settings = Settings(jwt_secret=SECRET)
    good = mint_token(settings, await add_user(sessions, UserRole.QA), UserRole.QA, hours=1)
    expired = jwt.encode(
        {
            "sub": str(world.staff.id),
            "role": "staff",
            "iss": settings.jwt_issuer,
            "aud": settings.jwt_audience,
            "exp": int(time.time()) - 10,
        },
        SECRET,
        algorithm="HS256",
    )
    other_audience = jwt.encode(
        {
            "sub": str(world.staff.id),
            "role": "staff",
            "iss": settings.jwt_issuer,
            "aud": "someone-else",
            "exp": int(time.time()) + 600,
        },
        SECRET,
        algorithm="HS256",
    )
    forged = mint_token(
        Settings(jwt_secret="another-secret-0123456789-012345"),
        world.staff.id,
        UserRole.STAFF,
        hours=1,
    )
    variables = {"c": str(world.clinic_a.id)}

    async with open_api(database_url, flags_file, **production()) as api:
        anonymous = await api.client.post("/graphql", json={"query": QUERY, "variables": variables})
        answers = {
            name: await api.client.post(
                "/graphql",
                json={"query": QUERY, "variables": variables},
                headers={"Authorization": f"Bearer {token}"},
            )
            for name, token in {
                "good": good,
                "expired": expired,
                "audience": other_audience,
                "forged": forged,
            }.items()
        }

    assert anonymous.status_code == 401
    assert anonymous.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert "data" not in anonymous.json()
    assert answers["good"].status_code == 200
    assert "errors" not in answers["good"].json()
    assert {name: r.status_code for name, r in answers.items() if name != "good"} == {
        "expired": 401,
        "audience": 401,
        "forged": 401,
    }


def signed(claims: dict[str, Any], secret: str = SECRET) -> str:
    settings = Settings()
    defaults = {"iss": settings.jwt_issuer, "aud": settings.jwt_audience}
    return jwt.encode(
        {**defaults, "exp": int(time.time()) + 600, **claims}, secret, algorithm="HS256"
    )


async def test_a_401_says_only_that_a_token_is_missing_or_rejected_and_the_log_says_why(
    database_url: str, flags_file: Path, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    staff = {"sub": str(world.staff.id), "role": "staff"}
    rejected = {
        "expired": signed({**staff, "exp": int(time.time()) - 10}),
        "audience": signed({**staff, "aud": "someone-else"}),
        "forged": signed(staff, secret="another-secret-0123456789-012345"),
        "garbage": "not-a-jwt",
        "no-role": signed({"sub": str(world.staff.id)}),
        "subject": signed({"sub": "someone", "role": "staff"}),
    }
    missing = {"no-header": None, "basic": "Basic dXNlcjpwYXNz"}
    answers: dict[str, httpx.Response] = {}
    with caplog.at_level(logging.INFO, logger="server.auth"):
        async with open_api(database_url, flags_file, **production()) as api:
            for name, token in rejected.items():
                answers[name] = await api.client.post(
                    "/graphql",
                    json={"query": "{ __typename }"},
                    headers={"Authorization": f"Bearer {token}"},
                )
            for name, header in missing.items():
                headers = {} if header is None else {"Authorization": header}
                answers[name] = await api.client.post(
                    "/graphql", json={"query": "{ __typename }"}, headers=headers
                )

    assert {name: r.status_code for name, r in answers.items()} == dict.fromkeys(answers, 401)
    messages = {name: r.json()["errors"][0]["message"] for name, r in answers.items()}
    assert {messages[name] for name in rejected} == {"invalid or expired credentials"}
    assert {messages[name] for name in missing} == {
        "authentication required: send 'Authorization: Bearer <token>'"
    }
    challenges = {name: r.headers["WWW-Authenticate"] for name, r in answers.items()}
    assert {challenges[name] for name in rejected} == {'Bearer error="invalid_token"'}
    assert {challenges[name] for name in missing} == {"Bearer"}
    for answer in answers.values():
        assert answer.json()["errors"][0]["extensions"] == {"code": "UNAUTHENTICATED"}
        for detail in ("Signature", "audience", "segments", "role", "subject", "Basic"):
            assert detail not in answer.text
    logged = [record for record in caplog.records if record.name == "server.auth"]
    reasons = [getattr(record, "reason", "") for record in logged]
    assert any("Signature has expired" in reason for reason in reasons), reasons
    assert any("audience" in reason.lower() for reason in reasons), reasons
    assert any("known role" in reason for reason in reasons), reasons
    assert len(logged) == len(answers)
    assert {record.levelno for record in logged} == {logging.INFO}
    assert not any(token in caplog.text for token in rejected.values())


async def test_the_flag_context_carries_the_viewer_so_a_qa_user_can_get_a_stage(
    database_url: str, flags_file: Path, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    qa_user = await add_user(sessions, UserRole.QA)
    document = build_document({}, [])
    document["features"][0]["strategies"] = [
        {
            "name": "default",
            "parameters": {},
            "constraints": [
                {
                    "contextName": "userId",
                    "operator": "IN",
                    "values": [str(qa_user)],
                    "inverted": False,
                    "caseInsensitive": False,
                }
            ],
            "variants": [
                {
                    "name": "shadow",
                    "weight": 1000,
                    "weightType": "variable",
                    "stickiness": "default",
                }
            ],
        }
    ]
    write_document(flags_file, document)
    async with sessions() as session, session.begin():
        await directory.add_clinic_staff(session, world.clinic_a.id, world.staff.id)
        await insert_appointment(
            session, world, 9, doctor_id=world.doctor.id, patient_id=world.patient.id
        )
    settings = Settings(jwt_secret=SECRET)
    tokens = {
        "qa": mint_token(settings, qa_user, UserRole.QA, hours=1),
        "staff": mint_token(settings, world.staff.id, UserRole.STAFF, hours=1),
    }

    async with open_api(database_url, flags_file, **production()) as api:
        served = {
            name: (
                await api.client.post(
                    "/graphql",
                    json={"query": READ_CLINIC, "variables": {"clinicId": str(world.clinic_a.id)}},
                    headers={"Authorization": f"Bearer {token}"},
                )
            ).json()["extensions"]["migration"]["stages"][str(world.clinic_a.id)]
            for name, token in tokens.items()
        }

    assert served == {"qa": Stage.SHADOW.value, "staff": Stage.DUAL_WRITE.value}


async def test_dev_mode_admits_anonymous_loopback_requests_only(
    database_url: str, flags_file: Path, world: World
) -> None:
    app = create_app(Settings(database_url=database_url, auto_migrate=False, flags_file=flags_file))
    async with app.router.lifespan_context(app):
        for client_host, expected in (("127.0.0.1", 200), ("10.1.2.3", 401)):
            transport = httpx.ASGITransport(app=app, client=(client_host, 40000))
            async with httpx.AsyncClient(
                transport=transport, base_url="http://testserver"
            ) as client:
                response = await client.post(
                    "/graphql", json={"query": QUERY, "variables": {"c": str(world.clinic_a.id)}}
                )
            assert response.status_code == expected, client_host


async def test_graphiql_page_is_served_without_a_token(database_url: str, flags_file: Path) -> None:
    async with open_api(database_url, flags_file, **production()) as api:
        page = await api.client.get("/graphql", headers={"Accept": "text/html"})

    assert page.status_code == 200
    assert "graphiql" in page.text.lower()


def test_the_token_command_mints_a_token_for_a_demo_role(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CLINIC_JWT_SECRET", SECRET)
    monkeypatch.setenv("CLINIC_LOG_FORMAT", "text")
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        code = main(["token", "--demo", "qa", "--hours", "2"])
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)

    claims = jwt.decode(
        capsys.readouterr().out.strip(),
        SECRET,
        algorithms=["HS256"],
        audience="clinic-appointments",
    )
    assert code == 0
    assert (claims["sub"], claims["role"]) == (str(DEMO_USERS[UserRole.QA]), "qa")
    assert 7100 <= claims["exp"] - claims["iat"] <= 7200


async def test_the_dashboard_page_needs_a_viewer_even_when_a_browser_asks_for_it(
    database_url: str, flags_file: Path, sessions: async_sessionmaker[AsyncSession]
) -> None:
    browser = {"Accept": "text/html,application/xhtml+xml"}
    async with open_api(database_url, flags_file, **production()) as api:
        anonymous = await api.client.get("/migration", headers=browser)
    async with open_api(database_url, flags_file) as api:
        demo_admin = await api.client.get("/migration", headers=browser)

    assert anonymous.status_code == 401
    assert demo_admin.status_code == 200
    assert "<table" in demo_admin.text


async def test_a_token_counts_only_for_its_stored_active_user_and_role(
    database_url: str, flags_file: Path, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    settings = Settings(jwt_secret=SECRET)
    qa, admin = await add_user(sessions, UserRole.QA), await add_user(sessions, UserRole.ADMIN)
    tokens = {
        "ghost admin": mint_token(settings, uuid.uuid4(), UserRole.ADMIN, hours=1),
        "staff claiming qa": mint_token(settings, world.staff.id, UserRole.QA, hours=1),
        "qa": mint_token(settings, qa, UserRole.QA, hours=1),
        "admin": mint_token(settings, admin, UserRole.ADMIN, hours=1),
    }
    set_active = """
    mutation($id: ID!, $active: Boolean!) {
      setUserActive(userId: $id, active: $active) {
        __typename
        ... on UserSuccess { user { active } }
      }
    }
    """

    async with open_api(database_url, flags_file, **production()) as api:

        async def ask(name: str, query: str = QUERY, **variables: Any) -> httpx.Response:
            return await api.client.post(
                "/graphql",
                json={"query": query, "variables": variables or {"c": str(world.clinic_a.id)}},
                headers={"Authorization": f"Bearer {tokens[name]}"},
            )

        ghost, impostor, first = (
            await ask("ghost admin"),
            await ask("staff claiming qa"),
            await ask("qa"),
        )
        deactivated = await ask("admin", set_active, id=str(qa), active=False)
        while_inactive = await ask("qa")
        await ask("admin", set_active, id=str(qa), active=True)
        reactivated = await ask("qa")
        async with sessions() as session, session.begin():
            await session.execute(update(User).where(User.id == qa).values(role="staff"))
        role_changed = await ask("qa")
        async with sessions() as session, session.begin():
            await session.execute(delete(User).where(User.id == qa))
        deleted = await ask("qa")

    assert (first.status_code, reactivated.status_code) == (200, 200)
    assert deactivated.json()["data"]["setUserActive"]["user"] == {"active": False}
    refused = [ghost, impostor, while_inactive, role_changed, deleted]
    assert [response.status_code for response in refused] == [401] * 5
    assert len({response.content for response in refused}) == 1
    assert refused[0].json()["errors"][0]["extensions"] == {"code": "UNAUTHENTICATED"}
