"""``createUser``: a new user with a role (directory managers)."""

from __future__ import annotations

from appointments import directory, models
from appointments.access import Access, Permission
from appointments.replays import anywhere
from schema.context import RequestContext, WriteOperation
from schema.inputs import CreateUserInput
from schema.mutations.base import Write, mutation, without_events
from schema.mutations.results import UserResult
from schema.types import User, UserSuccess


@mutation(UserResult, position=7)
def create_user(input: CreateUserInput) -> Write[models.User]:
    def prepare(access: Access, _context: RequestContext) -> WriteOperation[models.User]:
        return without_events(
            lambda s: directory.create_user(s, input.name, input.email, input.role, access)
        )

    return Write(
        prepare,
        lambda row: UserSuccess(user=User.from_model(row)),
        anywhere(Permission.MANAGE_DIRECTORY),
    )
