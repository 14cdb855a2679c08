"""Idempotency keys: a retried write runs once, and its retries get the first result back.

A key is scoped to the actor (who sent it) and the operation (the mutation's
response key), and fingerprinted with the operation's input. Whatever the
database, ``run_once``:

- replays the stored result of a key ``done`` with the same input, once
  ``authorize_replay`` has found that the viewer may still be given it (else
  its ``DomainError``, what a fresh request would answer, and no stored data);
- refuses a key used with other input (``IDEMPOTENCY_KEY_REUSED``);
- refuses a key whose first attempt is still running
  (``IDEMPOTENCY_KEY_IN_USE``), so a retry that overtakes it never writes a
  second time;
- stores the result in the write's own transaction: both commit or neither;
- leaves nothing behind when the write fails, so a retry runs it again.

How an attempt holds its key differs, and decides what happens when the
request dies with its write in flight (a PostgreSQL restart, a killed
connection, a crashed process):

PostgreSQL: the key is held by the write's own transaction, with a
transaction-level advisory lock taken as its first statement; the key's row
is written, ``done``, with the result. No ``running`` row is committed, so a
request that dies leaves nothing: PostgreSQL drops its transaction and the
lock together, and the retry runs at once. (A claim committed ahead of the
write needs something that outlives a transaction to tell its holder alive: a
session-level lock stays behind on server connections that PgBouncer in
transaction mode hands to other clients, and a backend id in the row is blind
there and needs a schema change. Holding the key in the write's transaction
needs neither.) A retry with other input while the first attempt runs is
refused as in use, since the first attempt's input is not committed yet.

SQLite: the key is claimed (a row in ``running``) in a short transaction of
its own, then marked ``done`` in the write's transaction, and released if the
write fails. A claim left behind by a request that died is taken over once it
is older than ``claim_timeout``: several worker processes may share the file
(``clinic serve --workers N``), so none can tell that another's claim is dead.

Keys are kept ``retention`` long (24 hours by default); ``purge`` deletes older ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import delete, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.db import dialect_of
from appointments.errors import DomainError, ErrorCode
from appointments.events import MigrationEventLog, PendingEvents
from appointments.models import IdempotencyKey, IdempotencyState, utcnow
from appointments.policies import IdempotencyPolicy as IdempotencyPolicy
from appointments.snapshots import canonical, restore, snapshot
from appointments.writes import run_in_transaction

logger = logging.getLogger("appointments.idempotency")

RowT = TypeVar("RowT")
AuthorizeReplay = Callable[[AsyncSession, RowT], Awaitable[None]]
Operation = Callable[[AsyncSession, PendingEvents], Awaitable[RowT]]

MAX_KEY_LENGTH = 255
KEY_FIELD = "Idempotency-Key"
LOCK_SPACE = 0x1DE3
"""First key of the two-key advisory locks that hold keys on PostgreSQL."""

_TRY_LOCK = text("SELECT pg_try_advisory_xact_lock(:space, :key)")


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
        document = json.dumps(
            {"operation": operation, "arguments": arguments},
            sort_keys=True,
            default=canonical,
            separators=(",", ":"),
        )
        return cls(actor, key, operation, hashlib.sha256(document.encode()).hexdigest())

    @property
    def primary_key(self) -> tuple[str, str, str]:
        return (self.actor, self.key, self.operation)

    @property
    def lock_key(self) -> int:
        """A 32-bit lock for the key; keys that share one may be refused as in use while the
        other one is written, never more."""
        digest = hashlib.sha256("\0".join(self.primary_key).encode()).digest()
        return int.from_bytes(digest[:4], "big", signed=True)


@dataclass(frozen=True, slots=True)
class Outcome(Generic[RowT]):
    row: RowT
    replayed: bool


async def run_once(
    sessions: async_sessionmaker[AsyncSession],
    events: MigrationEventLog,
    request: IdempotentRequest,
    operation: Operation[RowT],
    policy: IdempotencyPolicy,
    authorize_replay: AuthorizeReplay[RowT],
) -> Outcome[RowT]:
    """Run ``operation`` once for ``request``, or replay its stored result.

    ``authorize_replay`` is given the stored row before a replay, in a transaction
    that holds the key; it raises ``DomainError`` if the viewer may not be given it now.
    """
    if dialect_of(sessions) == "postgresql":
        return await _run_holding_the_key(
            sessions, events, request, operation, policy, authorize_replay
        )
    return await _run_under_a_claim(sessions, events, request, operation, policy, authorize_replay)


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


async def _run_holding_the_key(
    sessions: async_sessionmaker[AsyncSession],
    events: MigrationEventLog,
    request: IdempotentRequest,
    operation: Operation[RowT],
    policy: IdempotencyPolicy,
    authorize_replay: AuthorizeReplay[RowT],
) -> Outcome[RowT]:
    """PostgreSQL: lock, look up, write and store in one transaction."""
    replayed = False

    async def hold_write_store(session: AsyncSession, pending: PendingEvents) -> RowT:
        nonlocal replayed
        held = await session.scalar(_TRY_LOCK, {"space": LOCK_SPACE, "key": request.lock_key})
        if not held:
            raise _in_use()
        existing = await session.get(IdempotencyKey, request.primary_key, with_for_update=True)
        now = utcnow()
        # A current key ``running`` was claimed by an earlier version of the service; its
        # write would hold the lock if it could still commit. It is overwritten below.
        if (
            existing is not None
            and _current(existing, request, policy, now)
            and existing.state == IdempotencyState.DONE.value
        ):
            replayed = True
            return await _replay(session, existing, authorize_replay)
        row = await operation(session, pending)
        await session.flush()
        stored: dict[str, Any] = {
            "fingerprint": request.fingerprint,
            "state": IdempotencyState.DONE.value,
            "claim": uuid.uuid4(),
            "claimed_at": now,
            "created_at": now,
            "completed_at": now,
            "result": snapshot(row),
        }
        if existing is None:
            session.add(
                IdempotencyKey(
                    actor=request.actor, key=request.key, operation=request.operation, **stored
                )
            )
        else:
            for name, value in stored.items():
                setattr(existing, name, value)
        try:
            await session.flush()
        except IntegrityError:
            # Only a writer that does not take the lock (an earlier version) gets here.
            raise _in_use() from None
        return row

    row = await run_in_transaction(sessions, events, hold_write_store)
    return Outcome(row, replayed)


async def _run_under_a_claim(
    sessions: async_sessionmaker[AsyncSession],
    events: MigrationEventLog,
    request: IdempotentRequest,
    operation: Operation[RowT],
    policy: IdempotencyPolicy,
    authorize_replay: AuthorizeReplay[RowT],
) -> Outcome[RowT]:
    """SQLite: claim in a transaction of its own, write and complete, release on failure."""
    claimed = await _claim(sessions, request, policy, authorize_replay)
    if not isinstance(claimed, uuid.UUID):
        return Outcome(claimed, replayed=True)

    async def write_and_complete(session: AsyncSession, pending: PendingEvents) -> RowT:
        row = await operation(session, pending)
        await session.flush()
        await _complete(session, request, claimed, snapshot(row))
        return row

    try:
        row = await run_in_transaction(sessions, events, write_and_complete)
    except BaseException:
        await _release(sessions, request, claimed)
        raise
    return Outcome(row, replayed=False)


def _current(
    existing: IdempotencyKey, request: IdempotentRequest, policy: IdempotencyPolicy, now: datetime
) -> bool:
    """Whether a stored key still counts (younger than the retention); a current key used
    with other input is refused."""
    if existing.created_at < now - policy.retention:
        return False
    if existing.fingerprint != request.fingerprint:
        raise DomainError(
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
            f"this {KEY_FIELD} was used for a request with other input; use a new key",
            KEY_FIELD,
        )
    return True


async def _replay(
    session: AsyncSession, existing: IdempotencyKey, authorize_replay: AuthorizeReplay[RowT]
) -> RowT:
    assert existing.result is not None
    stored = cast("RowT", restore(existing.result))
    await authorize_replay(session, stored)
    return stored


async def _claim(
    sessions: async_sessionmaker[AsyncSession],
    request: IdempotentRequest,
    policy: IdempotencyPolicy,
    authorize_replay: AuthorizeReplay[RowT],
) -> uuid.UUID | RowT:
    """A new claim token to run the write under, or the stored row to replay."""
    token = uuid.uuid4()
    try:
        async with sessions() as session, session.begin():
            existing = await session.get(IdempotencyKey, request.primary_key, with_for_update=True)
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
                return token
            if not _current(existing, request, policy, now):
                existing.fingerprint = request.fingerprint
                existing.created_at = now
                existing.completed_at = None
                existing.result = None
            elif existing.state == IdempotencyState.DONE.value:
                return await _replay(session, existing, authorize_replay)
            elif existing.claimed_at > now - policy.claim_timeout:
                raise _in_use()
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
