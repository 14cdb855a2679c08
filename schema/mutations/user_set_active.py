"""``setUserActive``: deactivate or reactivate a user (directory managers)."""

from __future__ import annotations

import strawberry

from appointments import directory, models
from appointments.access import Access, Permission
from appointments.replays import anywhere
from schema.context import RequestContext, WriteOperation
from schema.errors import parse_id
from schema.mutations.base import Write, mutation, without_events
from schema.mutations.results import UserResult
from schema.types import User, UserSuccess


@mutation(
    UserResult,
    position=8,
    description="Deactivate or reactivate a user; an inactive user's tokens are refused",
)
def set_user_active(user_id: strawberry.ID, active: bool) -> Write[models.User]:
    def prepare(access: Access, _context: RequestContext) -> WriteOperation[models.User]:
        user = parse_id(user_id, "userId")
        return without_events(lambda s: directory.set_user_active(s, user, active, access))

    return Write(
        prepare,
        lambda row: UserSuccess(user=User.from_model(row)),
        anywhere(Permission.MANAGE_DIRECTORY),
    )
