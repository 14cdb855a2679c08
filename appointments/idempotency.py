"""Idempotency keys: a retried write runs once, and its retries get the first result back.

A key is scoped to the actor (who sent it) and the operation (the mutation's
response key), and fingerprinted with the operation's input. ``run_once``:

1. claims the key in a short transaction of its own (a row in ``running``).
   A key already ``done`` with the same input replays its stored result, once
   ``authorize_replay`` has found that the viewer may still be given it (else
   its ``DomainError``, what a fresh request would answer, and no stored data);
   with other input it is refused (``IDEMPOTENCY_KEY_REUSED``); a key ``running``
   for another live request is refused (``IDEMPOTENCY_KEY_IN_USE``), so a retry
   that overtakes the first attempt never writes a second time.
2. runs the write and marks the key ``done`` with the result in the write's
   own transaction: either both are committed or neither is.
3. on failure, releases the claim, so a retry runs the write again (nothing
   was written).

A claim left ``running`` by a request that died (its process crashed, or
its connection was cut before it could release the claim, as a PostgreSQL
restart does) is taken over: on PostgreSQL as soon as a retry finds that no
live connection holds it (``appointments.claimants``), on SQLite once it is
older than ``claim_timeout``. Taking a claim over gives it a new token, and
completing checks the token, so even a claimant taken over while alive can
only roll its write back.

Keys are kept ``retention`` long (24 hours by default); ``purge`` deletes older ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import delete, inspect, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.claimants import ClaimHold, claimant
from appointments.errors import DomainError, ErrorCode
from appointments.events import MigrationEventLog, PendingEvents
from appointments.models import Base, IdempotencyKey, IdempotencyState, utcnow
from appointments.writes import run_in_transaction

logger = logging.getLogger("appointments.idempotency")

RowT = TypeVar("RowT")
AuthorizeReplay = Callable[[AsyncSession, RowT], Awaitable[None]]

MAX_KEY_LENGTH = 255
KEY_FIELD = "Idempotency-Key"


@dataclass(frozen=True, slots=True)
class IdempotencyPolicy:
    """``retention``: how long keys and results are kept. ``claim_timeout``: after this a
    ``running`` claim is taken over even if its holder may be alive (SQLite's only way)."""

    retention: timedelta = timedelta(hours=24)
    claim_timeout: timedelta = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class IdempotentRequest:
    actor: str
    key: str
    operation: str
    fingerprint: str

    @classmethod
    def build(cls, actor: str, key: str, operation: str, arguments: Any) -> IdempotentRequest:
        if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
            raise DomainError(
                ErrorCode.INVALID_INPUT,
                f"{KEY_FIELD} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters",
                KEY_FIELD,
            )
        canonical = json.dumps(
            {"operation": operation, "arguments": arguments},
            sort_keys=True,
            default=_canonical,
            separators=(",", ":"),
        )
        return cls(actor, key, operation, hashlib.sha256(canonical.encode()).hexdigest())


@dataclass(frozen=True, slots=True)
class Outcome(Generic[RowT]):
    row: RowT
    replayed: bool


async def run_once(
    sessions: async_sessionmaker[AsyncSession],
    events: MigrationEventLog,
    request: IdempotentRequest,
    operation: Callable[[AsyncSession, PendingEvents], Awaitable[RowT]],
    policy: IdempotencyPolicy,
    authorize_replay: AuthorizeReplay[RowT],
) -> Outcome[RowT]:
    """Run ``operation`` once for ``request``, or replay its stored result.

    ``authorize_replay`` is given the stored row before a replay, in the claim's
    transaction; it raises ``DomainError`` if the viewer may not be given it now.
    """
    identity = (request.actor, request.key, request.operation)
    async with claimant(sessions, *identity) as (own_sessions, hold):
        claimed = await _claim(own_sessions, request, policy, authorize_replay, hold)
        if not isinstance(claimed, uuid.UUID):
            return Outcome(claimed, replayed=True)

        async def write_and_complete(session: AsyncSession, pending: PendingEvents) -> RowT:
            row = await operation(session, pending)
            await session.flush()
            await _complete(session, request, claimed, snapshot(row))
            return row

        try:
            row = await run_in_transaction(own_sessions, events, write_and_complete)
        except BaseException:
            await _release(own_sessions, request, claimed)
            raise
        return Outcome(row, replayed=False)


async def purge(sessions: async_sessionmaker[AsyncSession], policy: IdempotencyPolicy) -> int:
    """Delete keys older than the retention period; returns how many."""
    cutoff = utcnow() - policy.retention
    async with sessions() as session, session.begin():
        result = await session.execute(
            delete(IdempotencyKey)
            .where(IdempotencyKey.created_at < cutoff)
            .returning(IdempotencyKey.key)
        )
        return len(result.all())


async def _claim(
    sessions: async_sessionmaker[AsyncSession],
    request: IdempotentRequest,
    policy: IdempotencyPolicy,
    authorize_replay: AuthorizeReplay[RowT],
    hold: ClaimHold,
) -> uuid.UUID | RowT:
    """A new claim token to run the write under, or the stored row to replay.

    A new claim is held (``hold``) before it commits, so no retry can find it
    ``running`` and unheld while its request is alive.
    """
    token = uuid.uuid4()
    try:
        async with sessions() as session, session.begin():
            primary_key = (request.actor, request.key, request.operation)
            existing = await session.get(IdempotencyKey, primary_key, with_for_update=True)
            now = utcnow()
            if existing is None:
                session.add(
                    IdempotencyKey(
                        actor=request.actor,
                        key=request.key,
                        operation=request.operation,
                        fingerprint=request.fingerprint,
                        state=IdempotencyState.RUNNING.value,
                        claim=token,
                        claimed_at=now,
                        created_at=now,
                    )
                )
                await session.flush()
                if not await hold.hold(session):
                    raise _in_use()
                return token
            if existing.created_at < now - policy.retention:
                existing.fingerprint = request.fingerprint
                existing.created_at = now
                existing.completed_at = None
                existing.result = None
            elif existing.fingerprint != request.fingerprint:
                raise DomainError(
                    ErrorCode.IDEMPOTENCY_KEY_REUSED,
                    f"this {KEY_FIELD} was used for a request with other input; use a new key",
                    KEY_FIELD,
                )
            elif existing.state == IdempotencyState.DONE.value:
                assert existing.result is not None
                stored = cast("RowT", restore(existing.result))
                await authorize_replay(session, stored)
                return stored
            elif existing.claimed_at > now - policy.claim_timeout and not (
                await hold.claimant_gone(session)
            ):
                raise _in_use()
            # Past the claim timeout a stuck holder may keep the lock: the claim goes on unheld.
            await hold.hold(session)
            existing.state = IdempotencyState.RUNNING.value
            existing.claim = token
            existing.claimed_at = now
            return token
    except IntegrityError:
        # Another request inserted the same key between our read and our insert.
        raise _in_use() from None


async def _complete(
    session: AsyncSession, request: IdempotentRequest, claim: uuid.UUID, result: str
) -> None:
    statement = (
        update(IdempotencyKey)
        .where(
            IdempotencyKey.actor == request.actor,
            IdempotencyKey.key == request.key,
            IdempotencyKey.operation == request.operation,
            IdempotencyKey.claim == claim,
            IdempotencyKey.state == IdempotencyState.RUNNING.value,
        )
        .values(state=IdempotencyState.DONE.value, result=result, completed_at=utcnow())
        .returning(IdempotencyKey.key)
    )
    if (await session.execute(statement)).first() is None:
        # Our claim timed out and another attempt took the key over: roll this write back.
        raise _in_use()


async def _release(
    sessions: async_sessionmaker[AsyncSession], request: IdempotentRequest, claim: uuid.UUID
) -> None:
    try:
        async with sessions() as session, session.begin():
            await session.execute(
                delete(IdempotencyKey).where(
                    IdempotencyKey.actor == request.actor,
                    IdempotencyKey.key == request.key,
                    IdempotencyKey.operation == request.operation,
                    IdempotencyKey.claim == claim,
                    IdempotencyKey.state == IdempotencyState.RUNNING.value,
                )
            )
    except Exception:
        logger.warning(
            "could not release an idempotency claim; it expires by itself",
            exc_info=True,
            extra={"operation": request.operation},
        )


def _in_use() -> DomainError:
    return DomainError(
        ErrorCode.IDEMPOTENCY_KEY_IN_USE,
        f"a request with this {KEY_FIELD} is still running; retry when it has finished",
        KEY_FIELD,
    )


def snapshot(row: object) -> str:
    """The row's loaded columns as JSON, to give back on a replay as it was written."""
    if not isinstance(row, Base):
        raise TypeError(f"only mapped rows can be replayed, not {type(row).__name__}")
    state = inspect(row)
    columns = {
        attribute.key: _canonical(state.dict[attribute.key])
        for attribute in state.mapper.column_attrs
        if attribute.key in state.dict
    }
    return json.dumps({"model": state.mapper.class_.__name__, "columns": columns})


def restore(stored: str) -> Base:
    """A detached copy of a snapshotted row."""
    document = json.loads(stored)
    mapper = _MAPPERS_BY_MODEL[document["model"]]
    values: dict[str, Any] = {}
    for attribute in mapper.column_attrs:
        if attribute.key not in document["columns"]:
            continue
        raw = document["columns"][attribute.key]
        values[attribute.key] = None if raw is None else _parse(attribute.columns[0].type, raw)
    row: Base = mapper.class_(**values)
    return row


def _parse(column_type: Any, raw: Any) -> Any:
    python_type = column_type.python_type
    if python_type is uuid.UUID:
        return uuid.UUID(raw)
    if python_type is datetime:
        return datetime.fromisoformat(raw)
    if python_type is date:
        return date.fromisoformat(raw)
    return raw


def _canonical(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "__dataclass_fields__"):
        return {name: getattr(value, name) for name in value.__dataclass_fields__}
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


_MAPPERS_BY_MODEL = {mapper.class_.__name__: mapper for mapper in Base.registry.mappers}
