"""The last active admin cannot be deactivated (a typed error, nothing written), and
`clinic user activate` brings a user back from the shell."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments import directory
from appointments.errors import DomainError, ErrorCode
from appointments.models import User, UserRole
from server.auth import mint_token
from server.settings import Settings
from tests.conftest import add_user, open_api, table_snapshot

SECRET = "last-admin-secret-0123456789-0123456789"
SET_ACTIVE = """
mutation($id: ID!, $active: Boolean!) {
  setUserActive(userId: $id, active: $active) {
    __typename
    ... on UserSuccess { user { active } }
    ... on UserError { code field message }
  }
}
"""


async def active_admins(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.role == UserRole.ADMIN.value, User.active.is_(True))
        )
    return int(count or 0)


async def test_the_last_active_admin_cannot_deactivate_themselves_or_be_deactivated(
    database_url: str, flags_file: Path, sessions: async_sessionmaker[AsyncSession]
) -> None:
    first = await add_user(sessions, UserRole.ADMIN)
    second = await add_user(sessions, UserRole.ADMIN)
    settings = Settings(jwt_secret=SECRET)
    headers = {"Authorization": f"Bearer {mint_token(settings, first, UserRole.ADMIN, hours=1)}"}
    async with open_api(database_url, flags_file, production=True, jwt_secret=SECRET) as api:

        async def set_active(user: uuid.UUID, active: bool) -> dict[str, Any]:
            response = await api.client.post(
                "/graphql",
                json={"query": SET_ACTIVE, "variables": {"id": str(user), "active": active}},
                headers=headers,
            )
            answer: dict[str, Any] = response.json()["data"]["setUserActive"]
            return answer

        other_gone = await set_active(second, False)
        before = await table_snapshot(sessions)
        last = await set_active(first, False)
        after = await table_snapshot(sessions)

    assert other_gone == {"__typename": "UserSuccess", "user": {"active": False}}
    assert last["__typename"] == "InvalidInputError"
    assert (last["code"], last["field"]) == ("LAST_ADMIN", "active")
    assert after == before
    assert await active_admins(sessions) == 1


async def test_two_admins_deactivating_each_other_at_once_leave_one_active(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    admins = [await add_user(sessions, UserRole.ADMIN) for _ in range(2)]
    ready = asyncio.Barrier(2)

    async def deactivate(user: uuid.UUID) -> None:
        async with sessions() as session, session.begin():
            row = await session.get(User, user)
            assert row is not None
            await ready.wait()
            await directory.set_user_active(session, user, False)

    outcomes = await asyncio.gather(*(deactivate(a) for a in admins), return_exceptions=True)

    assert await active_admins(sessions) == 1
    assert sum(outcome is None for outcome in outcomes) == 1
    refused = [o for o in outcomes if isinstance(o, DomainError)]
    assert all(error.code is ErrorCode.LAST_ADMIN for error in refused)


async def test_clinic_user_activate_brings_back_a_locked_out_admin(
    sessions: async_sessionmaker[AsyncSession], clinic_command: Any
) -> None:
    admin = await add_user(sessions, UserRole.ADMIN)
    async with sessions() as session, session.begin():
        email = (await session.get(User, admin)).email  # type: ignore[union-attr]
        await session.execute(update(User).where(User.id == admin).values(active=False))

    by_email = await clinic_command("user", "activate", email.upper())
    refused = await clinic_command("user", "deactivate", str(admin))
    unknown = await clinic_command("user", "activate", "nobody@example.org")

    assert by_email[0] == 0
    assert "is active" in by_email[1]
    assert refused[0] == 1
    assert "last active admin" in refused[2]
    assert unknown[0] == 2
    assert await active_admins(sessions) == 1
