"""`clinic user activate|deactivate USER`: the recovery path for accounts.

``activate`` is how an operator with shell access brings back a deactivated user,
an admin locked out included; ``deactivate`` does what ``setUserActive(active:
false)`` does, with the same rule (never the last active admin). ``USER`` is the
user's id or e-mail. Exit status: 0 done, 1 refused, 2 no such user.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from appointments import directory
from appointments.errors import DomainError, ErrorCode
from appointments.models import User
from server.command_sessions import command_transaction
from server.settings import Settings

EXIT_REFUSED = 1
EXIT_NOT_FOUND = 2


def add_user_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("user", help="activate or deactivate a user (recovery)")
    actions = parser.add_subparsers(required=True, metavar="ACTION")
    for name, active, help_ in (
        ("activate", True, "make a user active again (e.g. the only admin)"),
        ("deactivate", False, "deactivate a user (never the last active admin)"),
    ):
        action = actions.add_parser(name, help=help_)
        action.add_argument("user", metavar="USER", help="the user's id or e-mail")
        action.set_defaults(handler=_set_active, active=active)


def _set_active(settings: Settings, arguments: argparse.Namespace) -> int:
    try:
        user = asyncio.run(_apply(settings, arguments.user, arguments.active))
    except DomainError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return EXIT_NOT_FOUND if error.code is ErrorCode.NOT_FOUND else EXIT_REFUSED
    state = "active" if user.active else "inactive"
    print(f"{user.name} <{user.email}> ({user.role}, {user.id}) is {state}")
    return 0


async def _apply(settings: Settings, given: str, active: bool) -> User:
    async with command_transaction(settings) as session:
        user_id = await _user_id(session, given)
        return await directory.set_user_active(session, user_id, active)


async def _user_id(session: AsyncSession, given: str) -> uuid.UUID:
    try:
        return uuid.UUID(given)
    except ValueError:
        pass
    found = await session.scalar(select(User.id).where(User.email == func.lower(func.trim(given))))
    if found is None:
        raise DomainError(ErrorCode.NOT_FOUND, f"no user with id or e-mail {given!r}", "user")
    return found
