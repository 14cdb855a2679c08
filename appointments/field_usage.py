"""Who still reads the deprecated fields: operations per client and field, counted in memory
and written to ``field_usage_daily`` in batches.

The GraphQL layer finds the deprecated fields an operation selects and calls
``UsageRecorder.record`` once per operation: a few dictionary increments and a
Prometheus counter, no SQL. ``flush`` writes what was counted since the last
flush in one transaction (one upsert per 500 rows, adding to the stored counts),
so several processes add up. The service flushes every
``CLINIC_USAGE_FLUSH_SECONDS``, before the dashboard reads the table, and when it
stops; counts of a process that dies between two flushes are lost (at most one
interval's worth), the Prometheus counter is unaffected.

Client names and versions are labels with bounded cardinality: a name is kept only
when the operator lists it (``CLINIC_USAGE_CLIENTS``), so requests cannot take the
slots; any other name, or none, is ``unknown``. A listed client's versions are kept
up to ``MAX_VERSIONS_PER_CLIENT``; a malformed version, or one beyond that, is ``other``.

Each count is also kept per operation (its name and the SHA-256 of its document, in
``field_usage_operations``), so a frontend team can find the code to change. A process
keeps the first ``MAX_OPERATIONS_PER_CLIENT`` operations of each client label by name;
later ones count as ``other`` (with trusted documents on, only the app's own operations
run, so none are crowded out).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from prometheus_client import Counter
from sqlalchemy import case
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments import metrics
from appointments.batched import BatchedCounts
from appointments.models import FieldUsageDaily, FieldUsageOperation
from appointments.policies import OTHER_CLIENT, UNKNOWN_CLIENT, label_of

logger = logging.getLogger("appointments.field_usage")

UNKNOWN = UNKNOWN_CLIENT
OTHER = OTHER_CLIENT
MAX_VERSIONS_PER_CLIENT = 20
MAX_OPERATIONS_PER_CLIENT = 200
MAX_OPERATION_NAME = 128
KNOWN_CLIENTS_DAYS = 30
UPSERT_BATCH_ROWS = 500
_SECONDS_PER_DAY = 86400
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


class ClientLabels:
    """The client names the operator listed, and their first versions, kept as sent;
    any other name is ``unknown``, any other version ``other``."""

    def __init__(self, clients: Iterable[str]) -> None:
        self._versions: dict[str, set[str]] = {name: set() for name in clients}
        self._versions[UNKNOWN] = set()

    @property
    def listed(self) -> frozenset[str]:
        return frozenset(self._versions) - {UNKNOWN}

    def name(self, sent: str | None) -> str:
        return sent if sent and sent in self._versions else UNKNOWN

    def version(self, name: str, sent: str | None) -> str:
        """The version label of client ``name`` (a label ``name`` answered)."""
        if name == UNKNOWN:
            return UNKNOWN if not sent else OTHER
        version = label_of(sent)
        if version is None:
            return OTHER
        known = self._versions[name]
        if version in known or version in (UNKNOWN, OTHER):
            return version
        if len(known) >= MAX_VERSIONS_PER_CLIENT:
            return OTHER
        known.add(version)
        return version


UsageKey = tuple[date, str, str, str]
"""(UTC day, client name, client version, field)."""
OperationUsageKey = tuple[date, str, str, str, str]
"""(UTC day, client name, operation name, document hash, field)."""


@dataclass(frozen=True, slots=True)
class Operation:
    """An executed operation: its name (empty when anonymous) and its document's SHA-256."""

    name: str
    document_hash: str


OTHER_OPERATION = Operation(OTHER, "")
"""Where a client's operations beyond ``MAX_OPERATIONS_PER_CLIENT`` are counted."""


class OperationLabels:
    """The first ``MAX_OPERATIONS_PER_CLIENT`` operations of each client label, kept as
    sent (names cut at ``MAX_OPERATION_NAME`` characters); any later one is ``other``."""

    def __init__(self) -> None:
        self._known: dict[str, set[Operation]] = {}

    def of(self, client_name: str, operation: Operation) -> Operation:
        known = self._known.setdefault(client_name, set())
        kept = Operation(operation.name[:MAX_OPERATION_NAME], operation.document_hash)
        if kept in known:
            return kept
        if len(known) >= MAX_OPERATIONS_PER_CLIENT:
            return OTHER_OPERATION
        known.add(kept)
        return kept


@dataclass(slots=True)
class Tally:
    operations: int
    first_seen: float
    last_seen: float


class UsageRecorder:
    """One process's counts of operations selecting deprecated fields, until flushed."""

    def __init__(self, clients: Iterable[str] = ()) -> None:
        self.clients = ClientLabels(clients)
        self.operations = OperationLabels()
        self._counts = BatchedCounts(
            _Pending,
            _write_pending,
            metrics.USAGE_FLUSHES,
            logger,
            "could not write deprecated field usage; kept for later",
        )
        self._counters: dict[tuple[str, str], Counter] = {}

    def record(
        self,
        client_name: str | None,
        client_version: str | None,
        fields: Iterable[str],
        operation: Operation,
    ) -> None:
        """One ``operation`` of this client selected ``fields`` (schema coordinates, each
        once)."""
        name = self.clients.name(client_name)
        version = self.clients.version(name, client_version)
        kept = self.operations.of(name, operation)
        now = time.time()
        day = int(now // _SECONDS_PER_DAY)
        pending = self._counts.pending
        for field in fields:
            _count(pending.by_version, (day, name, version, field), now)
            _count(pending.by_operation, (day, name, kept.name, kept.document_hash, field), now)
            counter = self._counters.get((name, field))
            if counter is None:
                counter = metrics.DEPRECATED_FIELD_OPERATIONS.labels(name, field)
                self._counters[(name, field)] = counter
            counter.inc()

    def pending(self) -> dict[UsageKey, Tally]:
        """What is counted per client version and not yet written."""
        return {_version_key(raw): tally for raw, tally in self._counts.pending.by_version.items()}

    def pending_operations(self) -> dict[OperationUsageKey, Tally]:
        """What is counted per operation and not yet written."""
        return {
            _operation_key(raw): tally for raw, tally in self._counts.pending.by_operation.items()
        }

    async def flush(self, sessions: async_sessionmaker[AsyncSession]) -> int:
        """Write the counts in one transaction and forget them; the rows written.

        When the write fails (or is cancelled) the counts stay pending, added to
        what was counted meanwhile, and the error propagates.
        """
        return await self._counts.flush(sessions)

    async def flush_logged(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        """``flush``, a failure logged and counted (the counts are kept for the next one)."""
        await self._counts.flush_logged(sessions)


class _Pending:
    """Counts not yet written, keyed by the UTC day's number since the epoch."""

    __slots__ = ("by_operation", "by_version")

    def __init__(self) -> None:
        self.by_version: dict[tuple[int, str, str, str], Tally] = {}
        self.by_operation: dict[tuple[int, str, str, str, str], Tally] = {}

    def __len__(self) -> int:
        return len(self.by_version)

    def absorb(self, later: _Pending) -> None:
        _merge_later(self.by_version, later.by_version)
        _merge_later(self.by_operation, later.by_operation)


async def _write_pending(session: AsyncSession, pending: _Pending) -> int:
    await write_counts(
        session, {_version_key(raw): tally for raw, tally in pending.by_version.items()}
    )
    await write_operation_counts(
        session, {_operation_key(raw): tally for raw, tally in pending.by_operation.items()}
    )
    return len(pending.by_version)


_Key = TypeVar("_Key")


def _count(pending: dict[_Key, Tally], key: _Key, now: float) -> None:
    tally = pending.get(key)
    if tally is None:
        pending[key] = Tally(1, now, now)
    else:
        tally.operations += 1
        tally.last_seen = now


def _merge_later(taken: dict[_Key, Tally], later: dict[_Key, Tally]) -> None:
    """Add what was counted while ``taken`` was being written to ``taken``."""
    for key, tally in later.items():
        kept = taken.get(key)
        if kept is None:
            taken[key] = tally
        else:
            kept.operations += tally.operations
            kept.last_seen = tally.last_seen


def _version_key(raw: tuple[int, str, str, str]) -> UsageKey:
    day, name, version, field = raw
    return date.fromordinal(_EPOCH_ORDINAL + day), name, version, field


def _operation_key(raw: tuple[int, str, str, str, str]) -> OperationUsageKey:
    day, name, operation, document_hash, field = raw
    return date.fromordinal(_EPOCH_ORDINAL + day), name, operation, document_hash, field


async def write_counts(session: AsyncSession, counts: Mapping[UsageKey, Tally]) -> None:
    """Add ``counts`` to the daily table: new rows inserted, existing ones added to (their
    first and last seen widened). Rows go in key order, so that concurrent writers lock
    them in the same order."""
    rows = [
        {
            "day": day,
            "client_name": name,
            "client_version": version,
            "field": field,
            "operations": tally.operations,
            "first_seen_at": datetime.fromtimestamp(tally.first_seen, UTC),
            "last_seen_at": datetime.fromtimestamp(tally.last_seen, UTC),
        }
        for (day, name, version, field), tally in sorted(counts.items())
    ]
    for start in range(0, len(rows), UPSERT_BATCH_ROWS):
        await session.execute(
            _upsert(session, FieldUsageDaily, rows[start : start + UPSERT_BATCH_ROWS])
        )


async def write_operation_counts(
    session: AsyncSession, counts: Mapping[OperationUsageKey, Tally]
) -> None:
    """``write_counts`` for the per-operation table."""
    rows = [
        {
            "day": day,
            "client_name": name,
            "operation_name": operation,
            "document_hash": document_hash,
            "field": field,
            "operations": tally.operations,
            "first_seen_at": datetime.fromtimestamp(tally.first_seen, UTC),
            "last_seen_at": datetime.fromtimestamp(tally.last_seen, UTC),
        }
        for (day, name, operation, document_hash, field), tally in sorted(counts.items())
    ]
    for start in range(0, len(rows), UPSERT_BATCH_ROWS):
        await session.execute(
            _upsert(session, FieldUsageOperation, rows[start : start + UPSERT_BATCH_ROWS])
        )


def _upsert(
    session: AsyncSession,
    table: type[FieldUsageDaily] | type[FieldUsageOperation],
    rows: list[dict[str, Any]],
) -> Any:
    """Insert ``rows``, adding the operations of those already stored and widening their
    first and last seen."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(table).values(rows)
    added = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=list(table.__mapper__.primary_key),
        set_={
            "operations": table.operations + added.operations,
            "first_seen_at": case(
                (added.first_seen_at < table.first_seen_at, added.first_seen_at),
                else_=table.first_seen_at,
            ),
            "last_seen_at": case(
                (added.last_seen_at > table.last_seen_at, added.last_seen_at),
                else_=table.last_seen_at,
            ),
        },
    )
