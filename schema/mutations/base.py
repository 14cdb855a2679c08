"""How a mutation is declared and run: one ``Write`` a module, run once per request.

A mutation module declares its GraphQL arguments as the parameters of a plain
function that returns a ``Write``: how to prepare the domain write once the
viewer's access is known, how to wrap the written row for the client, and the
replay rule (``appointments.replays``) a retry under an ``Idempotency-Key`` must
pass. ``mutation`` turns the function into the schema's field; ``IdempotentWrite``
runs the ``Write``. Expected failures come back as typed error members of the
field's result union; the write's transaction is rolled back, so the database
is unchanged.

The idempotency fingerprint is derived from the field's arguments, never
written by hand: each argument by its GraphQL name, with the value the resolver
is given (an omitted one, its default), input objects by their Python field
names (``appointments.snapshots.canonical``). Keys stored before are matched:
the document is the one the hand-written argument dictionaries made
(tests/test_idempotency_fingerprints.py pins it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.extensions import FieldExtension
from strawberry.extensions.field_extension import AsyncExtensionResolver
from strawberry.types import Info
from strawberry.types.field import StrawberryField

from appointments.access import Access
from appointments.errors import DomainError
from appointments.events import PendingEvents
from appointments.idempotency import KEY_FIELD, IdempotentRequest
from appointments.replays import ReplayCheck
from schema.context import RequestContext, WriteOperation
from schema.errors import AnyUserError, user_error

ANONYMOUS_ACTOR = "anonymous"
POSITION = "mutation.position"
"""The metadata key of a mutation field's place in the ``Mutation`` type."""
RowT = TypeVar("RowT")

Prepare = Callable[[Access, RequestContext], WriteOperation[RowT]]
"""Parses what the write needs (raising ``DomainError`` on bad input) and returns it."""


@dataclass(frozen=True, slots=True)
class Write(Generic[RowT]):
    """What one mutation does."""

    prepare: Prepare[RowT]
    success: Callable[[RowT], object]
    """The field's success member, made from the written (or replayed) row."""
    replay: ReplayCheck[RowT]
    """Raises the error a fresh request would get when the viewer may not be given the
    stored row again now."""


def mutation(
    result: object, position: int, description: str | None = None
) -> Callable[[Callable[..., Write[Any]]], StrawberryField]:
    """The schema field for a function whose parameters are the mutation's arguments.

    ``result`` is its GraphQL type; ``position`` its place in the ``Mutation`` type (the
    committed SDL's order: a new mutation takes the next number).
    """

    def declare(plan: Callable[..., Write[Any]]) -> StrawberryField:
        # Typed as the resolver's return; it is the field (its type is ``result``).
        field = strawberry.mutation(
            resolver=plan,
            graphql_type=result,
            description=description,
            extensions=[IdempotentWrite()],
            metadata={POSITION: position},
        )
        return cast("StrawberryField", field)

    return declare


def without_events(
    operation: Callable[[AsyncSession], Awaitable[RowT]],
) -> WriteOperation[RowT]:
    """A domain write that records no migration events, as a ``WriteOperation``."""

    def run(session: AsyncSession, _events: PendingEvents) -> Awaitable[RowT]:
        return operation(session)

    return run


def actor_of(context: RequestContext) -> str:
    """Who the ledger and the idempotency keys name for the request's viewer."""
    return context.viewer.user_id or ANONYMOUS_ACTOR


def fingerprinted_arguments(
    field: StrawberryField, info: Info[Any, Any], values: dict[str, Any]
) -> dict[str, object]:
    """The field's arguments by GraphQL name, as the resolver is given them."""
    names = info.schema.config.name_converter
    return {
        names.from_argument(argument): values.get(argument.python_name, argument.default)
        for argument in field.arguments
        if argument.python_name is not None
    }


class IdempotentWrite(FieldExtension):
    """Runs the field's ``Write`` once, in one transaction, and wraps the row or the error.

    With an ``Idempotency-Key`` header the write is keyed by the viewer, the key, and
    the field's response key (its alias or name); the fingerprinted arguments make a
    reused key with other input refused. A retry gets the stored row only if the
    ``Write``'s replay rule passes for the viewer's access now; otherwise it gets the
    error a fresh request would.
    """

    field: StrawberryField

    def apply(self, field: StrawberryField) -> None:
        self.field = field

    async def resolve_async(
        self, next_: AsyncExtensionResolver, source: Any, info: Info[Any, Any], **kwargs: Any
    ) -> object:
        planned: Write[Any] = await next_(source, info, **kwargs)
        context: RequestContext = info.context
        try:
            access = await context.access()
            operation = planned.prepare(access, context)
            key = context.request.headers.get(KEY_FIELD)
            if key is None:
                row = await context.write(operation)
            else:
                request = IdempotentRequest.build(
                    actor=actor_of(context),
                    key=key,
                    operation=str(info.path.key),
                    arguments={
                        "mutation": info.field_name,
                        **fingerprinted_arguments(self.field, info, kwargs),
                    },
                )
                row = await context.write_once(
                    request,
                    operation,
                    lambda session, stored: planned.replay(session, access, stored),
                )
        except DomainError as error:
            error_member: AnyUserError = user_error(error)
            return error_member
        return planned.success(row)
