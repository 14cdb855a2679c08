"""Typed errors returned by mutations, one GraphQL type per family of error codes."""

from __future__ import annotations

import uuid

import strawberry
from graphql import GraphQLError

from appointments.errors import DomainError, ErrorCode
from appointments.stages import Stage

strawberry.enum(ErrorCode, name="ErrorCode", description="What went wrong; stable for clients")
strawberry.enum(Stage, name="MigrationStage", description="A clinic's migration stage")


@strawberry.interface(description="An expected failure: nothing was changed")
class UserError:
    code: ErrorCode
    message: str
    field: str | None = strawberry.field(description="The input field at fault, when one is")


@strawberry.type(description="A referenced object does not exist")
class NotFoundError(UserError): ...


@strawberry.type(description="The input is malformed or inconsistent in itself")
class InvalidInputError(UserError): ...


@strawberry.type(description="A clinic membership is missing, inactive or of another clinic")
class MembershipError(UserError):
    stage: Stage | None = strawberry.field(
        default=None, description="The clinic's stage, when the stage is why a membership is needed"
    )


@strawberry.type(description="The clinic's migration stage does not accept this input")
class StageForbidsInputError(UserError):
    stage: Stage


@strawberry.type(description="The appointment's status does not allow this change")
class InvalidStatusTransitionError(UserError): ...


@strawberry.type(description="An object with the same unique key exists")
class AlreadyExistsError(UserError): ...


@strawberry.type(description="Your role may not do this in this clinic")
class ForbiddenError(UserError): ...


@strawberry.type(
    description=(
        "The Idempotency-Key was used for a different request, or its first request"
        " is still running"
    )
)
class IdempotencyKeyError(UserError): ...


AnyUserError = (
    NotFoundError
    | InvalidInputError
    | MembershipError
    | StageForbidsInputError
    | InvalidStatusTransitionError
    | AlreadyExistsError
    | ForbiddenError
    | IdempotencyKeyError
)


def user_error(error: DomainError) -> AnyUserError:
    code, message, field = error.code, error.message, error.field
    match code:
        case ErrorCode.NOT_FOUND:
            return NotFoundError(code=code, message=message, field=field)
        case (
            ErrorCode.MEMBERSHIP_MISSING
            | ErrorCode.MEMBERSHIP_INACTIVE
            | ErrorCode.CROSS_CLINIC_REFERENCE
        ):
            return MembershipError(code=code, message=message, field=field, stage=error.stage)
        case ErrorCode.STAGE_FORBIDS_INPUT if error.stage is not None:
            return StageForbidsInputError(
                code=code, message=message, field=field, stage=error.stage
            )
        case ErrorCode.INVALID_STATUS_TRANSITION:
            return InvalidStatusTransitionError(code=code, message=message, field=field)
        case ErrorCode.ALREADY_EXISTS:
            return AlreadyExistsError(code=code, message=message, field=field)
        case ErrorCode.FORBIDDEN:
            return ForbiddenError(code=code, message=message, field=field)
        case ErrorCode.IDEMPOTENCY_KEY_REUSED | ErrorCode.IDEMPOTENCY_KEY_IN_USE:
            return IdempotencyKeyError(code=code, message=message, field=field)
        case _:
            return InvalidInputError(code=code, message=message, field=field)


def query_error(error: DomainError) -> GraphQLError:
    """Queries have no payload to carry a typed error; the code goes in the extensions."""
    return GraphQLError(error.message, extensions={"code": error.code.value, "field": error.field})


def parse_id(value: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        raise DomainError(ErrorCode.MALFORMED_ID, f"{field} is not a valid id", field) from None


def parse_optional_id(value: str | None, field: str) -> uuid.UUID | None:
    return None if value is None else parse_id(value, field)
