"""Which clients still read each deprecated field: the daily usage table over a window."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from appointments.models import FieldUsageDaily, FieldUsageOperation

DEFAULT_WINDOW_DAYS = 30
FieldUsageRow = Row[str, str, str, date, int, datetime, datetime]


@dataclass(frozen=True, slots=True)
class OperationUsage:
    """One operation of a client that selected the field: its name (empty when anonymous,
    ``other`` beyond the per-client limit) and its document's SHA-256."""

    operation_name: str
    document_hash: str
    operations: int
    last_seen_at: datetime

    @property
    def label(self) -> str:
        """The name (or ``anonymous``) and the hash's first 12 digits, enough to search a
        persisted-documents manifest or the code; ``other`` alone past the limit."""
        if not self.document_hash:
            return self.operation_name
        return f"{self.operation_name or 'anonymous'} sha256:{self.document_hash[:12]}"


@dataclass(frozen=True, slots=True)
class ClientUsage:
    client_name: str
    versions: tuple[str, ...]
    operations: int
    first_seen_at: datetime
    last_seen_at: datetime
    daily: tuple[tuple[date, int], ...]
    """Operations per UTC day of the window that had any, oldest first."""
    documents: tuple[OperationUsage, ...] = ()
    """The operations that selected the field, most recently seen first."""

    def operations_since(self, day: date) -> int:
        return sum(operations for seen, operations in self.daily if seen >= day)


@dataclass(frozen=True, slots=True)
class FieldUsage:
    field: str
    deprecation_reason: str | None
    """None for a field no longer deprecated (or gone) that was read in the window."""
    clients: tuple[ClientUsage, ...]
    """Most recently seen first; empty when no client read the field in the window."""

    @property
    def operations(self) -> int:
        return sum(client.operations for client in self.clients)


@dataclass(frozen=True, slots=True)
class UsageReport:
    days: int
    since: date
    until: date
    fields: tuple[FieldUsage, ...]


async def usage_report(
    session: AsyncSession,
    deprecated: Mapping[str, str],
    days: int = DEFAULT_WINDOW_DAYS,
    today: date | None = None,
) -> UsageReport:
    """Usage of every field of ``deprecated`` (coordinate to deprecation reason, in the
    order given), then of any other field stored, over the ``days`` UTC days ending
    ``today`` (default: the current UTC day). One query: the window's rows, at most
    days x clients x versions x fields, all bounded.

    Raises ``ValueError`` when ``days`` is below 1.
    """
    if days < 1:
        raise ValueError(f"days must be at least 1, not {days}")
    until = today or datetime.now(UTC).date()
    since = until - timedelta(days=days - 1)
    statement = select(
        FieldUsageDaily.field,
        FieldUsageDaily.client_name,
        FieldUsageDaily.client_version,
        FieldUsageDaily.day,
        FieldUsageDaily.operations,
        FieldUsageDaily.first_seen_at,
        FieldUsageDaily.last_seen_at,
    ).where(FieldUsageDaily.day.between(since, until))
    by_client: dict[tuple[str, str], list[FieldUsageRow]] = {}
    for row in await session.execute(statement):
        by_client.setdefault((row.field, row.client_name), []).append(row)
    documents = await _operations(session, since, until)
    clients: dict[str, list[ClientUsage]] = {}
    for (field, name), rows in by_client.items():
        daily: dict[date, int] = {}
        for row in rows:
            daily[row.day] = daily.get(row.day, 0) + row.operations
        clients.setdefault(field, []).append(
            ClientUsage(
                client_name=name,
                versions=tuple(sorted({row.client_version for row in rows})),
                operations=sum(daily.values()),
                first_seen_at=min(row.first_seen_at for row in rows),
                last_seen_at=max(row.last_seen_at for row in rows),
                daily=tuple(sorted(daily.items())),
                documents=documents.get((field, name), ()),
            )
        )
    names = [*deprecated, *sorted(set(clients) - set(deprecated))]
    fields = tuple(
        FieldUsage(
            field=name,
            deprecation_reason=deprecated.get(name),
            clients=tuple(
                sorted(
                    clients.get(name, ()),
                    key=lambda client: (-client.last_seen_at.timestamp(), client.client_name),
                )
            ),
        )
        for name in names
    )
    return UsageReport(days=days, since=since, until=until, fields=fields)


async def _operations(
    session: AsyncSession, since: date, until: date
) -> dict[tuple[str, str], tuple[OperationUsage, ...]]:
    """(field, client name) -> the window's operations, most recently seen first."""
    statement = (
        select(
            FieldUsageOperation.field,
            FieldUsageOperation.client_name,
            FieldUsageOperation.operation_name,
            FieldUsageOperation.document_hash,
            func.sum(FieldUsageOperation.operations).label("operations"),
            func.max(FieldUsageOperation.last_seen_at).label("last_seen_at"),
        )
        .where(FieldUsageOperation.day.between(since, until))
        .group_by(
            FieldUsageOperation.field,
            FieldUsageOperation.client_name,
            FieldUsageOperation.operation_name,
            FieldUsageOperation.document_hash,
        )
    )
    found: dict[tuple[str, str], list[OperationUsage]] = {}
    for row in await session.execute(statement):
        found.setdefault((row.field, row.client_name), []).append(
            OperationUsage(
                row.operation_name, row.document_hash, int(row.operations), row.last_seen_at
            )
        )
    return {
        key: tuple(
            sorted(
                usages,
                key=lambda usage: (
                    -usage.last_seen_at.timestamp(),
                    usage.operation_name,
                    usage.document_hash,
                ),
            )
        )
        for key, usages in found.items()
    }
