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
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from prometheus_client import Counter
from sqlalchemy import case
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments import metrics
from appointments.models import FieldUsageDaily
from appointments.policies import OTHER_CLIENT, UNKNOWN_CLIENT, label_of

logger = logging.getLogger("appointments.field_usage")

UNKNOWN = UNKNOWN_CLIENT
OTHER = OTHER_CLIENT
MAX_VERSIONS_PER_CLIENT = 20
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


@dataclass(slots=True)
class Tally:
    operations: int
    first_seen: float
    last_seen: float


class UsageRecorder:
    """One process's counts of operations selecting deprecated fields, until flushed."""

    def __init__(self, clients: Iterable[str] = ()) -> None:
        self.clients = ClientLabels(clients)
        self._pending: dict[tuple[int, str, str, str], Tally] = {}
        self._counters: dict[tuple[str, str], Counter] = {}

    def record(
        self, client_name: str | None, client_version: str | None, fields: Iterable[str]
    ) -> None:
        """One operation of this client selected ``fields`` (schema coordinates, each once)."""
        name = self.clients.name(client_name)
        version = self.clients.version(name, client_version)
        now = time.time()
        day = int(now // _SECONDS_PER_DAY)
        for field in fields:
            tally = self._pending.get((day, name, version, field))
            if tally is None:
                self._pending[(day, name, version, field)] = Tally(1, now, now)
            else:
                tally.operations += 1
                tally.last_seen = now
            counter = self._counters.get((name, field))
            if counter is None:
                counter = metrics.DEPRECATED_FIELD_OPERATIONS.labels(name, field)
                self._counters[(name, field)] = counter
            counter.inc()

    def pending(self) -> dict[UsageKey, Tally]:
        """What is counted and not yet written."""
        return {_key(raw): tally for raw, tally in self._pending.items()}

    async def flush(self, sessions: async_sessionmaker[AsyncSession]) -> int:
        """Write the counts in one transaction and forget them; the rows written.

        When the write fails (or is cancelled) the counts stay pending, added to
        what was counted meanwhile, and the error propagates.
        """
        taken, self._pending = self._pending, {}
        if not taken:
            return 0
        try:
            async with sessions() as session, session.begin():
                await write_counts(session, {_key(raw): tally for raw, tally in taken.items()})
        except BaseException:
            for raw, tally in taken.items():
                later = self._pending.get(raw)
                if later is not None:
                    tally.operations += later.operations
                    tally.last_seen = later.last_seen
                self._pending[raw] = tally
            raise
        return len(taken)

    async def flush_logged(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        """``flush``, a failure logged and counted (the counts are kept for the next one)."""
        try:
            if await self.flush(sessions):
                metrics.USAGE_FLUSHES.labels("ok").inc()
        except Exception:
            metrics.USAGE_FLUSHES.labels("error").inc()
            logger.warning("could not write deprecated field usage; kept for later", exc_info=True)

    async def flush_forever(
        self, sessions: Callable[[], async_sessionmaker[AsyncSession]], seconds: float
    ) -> None:
        while True:
            await asyncio.sleep(seconds)
            await self.flush_logged(sessions())


def _key(raw: tuple[int, str, str, str]) -> UsageKey:
    day, name, version, field = raw
    return date.fromordinal(_EPOCH_ORDINAL + day), name, version, field


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
        await session.execute(_upsert(session, rows[start : start + UPSERT_BATCH_ROWS]))


def _upsert(session: AsyncSession, rows: list[dict[str, Any]]) -> Any:
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(FieldUsageDaily).values(rows)
    added = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[
            FieldUsageDaily.day,
            FieldUsageDaily.client_name,
            FieldUsageDaily.client_version,
            FieldUsageDaily.field,
        ],
        set_={
            "operations": FieldUsageDaily.operations + added.operations,
            "first_seen_at": case(
                (added.first_seen_at < FieldUsageDaily.first_seen_at, added.first_seen_at),
                else_=FieldUsageDaily.first_seen_at,
            ),
            "last_seen_at": case(
                (added.last_seen_at > FieldUsageDaily.last_seen_at, added.last_seen_at),
                else_=FieldUsageDaily.last_seen_at,
            ),
        },
    )
