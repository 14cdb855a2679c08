"""The mismatch ledger: a durable, deduplicated record of differences between the two sides.

Reads in compared stages hand their comparisons to a ``MismatchRecorder``, each
with the statuses of the appointment's entries the read statement found. At the
end of the request what changes the ledger is written once, in a transaction of
its own, before the response: a difference seen for the first time (or again
after it was fixed) is recorded, an open entry whose row is consistent again is
marked fixed. A difference the ledger has open (or ignored) already is only
counted again, in memory, and added in batches (``ledger_sightings``): a page
that is consistent, or whose differences are all open, writes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import case, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from appointments.access import SYSTEM, Access, Permission
from appointments.checks import check_text
from appointments.comparison import Difference
from appointments.errors import DomainError, ErrorCode
from appointments.models import (
    MigrationMismatch,
    MismatchField,
    MismatchStatus,
    utcnow,
)
from appointments.queries import KeysetOrder, Page, paginate
from appointments.sides import Side
from appointments.stages import Stage

AUTO_FIX_ACTOR = "system"
SessionSource = Callable[[], Awaitable[AsyncSession]]
"""Gives a session to read through, opened when first asked for if need be."""


def given(session: AsyncSession) -> SessionSource:
    """``session`` as a ``SessionSource``."""

    async def source() -> AsyncSession:
        return session

    return source


MAX_COMMENT_LENGTH = 2000
ENTRY_NAMESPACE = uuid.UUID("3b0c2f43-6f7e-4a53-9d2f-7f2b61f0c8e4")


def entry_id(appointment_id: uuid.UUID, field: MismatchField) -> uuid.UUID:
    """The id of the ledger entry of (appointment, field): one entry per pair, so its id is
    derived from the pair and the same in every database (a guide's example can name it)."""
    return uuid.uuid5(ENTRY_NAMESPACE, f"{appointment_id}/{field.value}")


Entries = Mapping[MismatchField, MismatchStatus]
"""The statuses of an appointment's ledger entries, by field (fields without one absent)."""


class Observation(NamedTuple):
    """One compared side of one appointment: what differed (nothing when consistent), and
    the appointment's ledger entries as the read found them (None when it did not look:
    they are then read when the ledger is written)."""

    appointment_id: uuid.UUID
    clinic_id: uuid.UUID
    stage: Stage
    side: Side
    differences: tuple[Difference, ...]
    entries: Entries | None = None


# An observation's appointment (by UUID integer) and side name; a later observation
# of the same key replaces the earlier one.
ObservationKey = tuple[int, str]

EntryKey = tuple[uuid.UUID, str]
"""A ledger entry's appointment and field (its value)."""


@dataclass(frozen=True, slots=True)
class FlushResult:
    recorded: int
    fixed: int


class MismatchRecorder:
    """Collects one request's comparisons; what they change is written once."""

    def __init__(self) -> None:
        self._observations: dict[ObservationKey, Observation] = {}

    def observe(self, observation: Observation) -> None:
        key = (observation.appointment_id.int, observation.side.name)
        self._observations[key] = observation

    def observe_all(self, observations: Iterable[tuple[ObservationKey, Observation]]) -> None:
        """Many observations, each with its key (a list hands in a page's at once)."""
        self._observations.update(observations)

    @property
    def pending(self) -> bool:
        return bool(self._observations)

    def clear(self) -> None:
        """Forget the observations (their changes are written, or counted)."""
        self._observations.clear()

    async def pending_writes(self, session: SessionSource) -> LedgerWrites | None:
        """What the observations change in the ledger (no write): the entries to record,
        the open ones found consistent again, and the differences seen again. The ledger
        is read through the session ``session`` gives, asked for only when observations
        that do not know their entries found fields consistent. None when nothing
        changes."""
        observations = list(self._observations.values())
        if not observations:
            return None
        now = utcnow()
        writes = LedgerWrites([], [], {}, now)
        unknown: list[Observation] = []
        for observation in observations:
            if observation.entries is None:
                unknown.append(observation)
                writes.rows += [_ledger_row(observation, d, now) for d in observation.differences]
            else:
                _plan(observation, observation.entries, writes)
        writes.to_fix += await _open_entries(session, _consistent_fields(unknown))
        return writes if writes.changes else None

    async def write(self, session: AsyncSession, writes: LedgerWrites) -> FlushResult:
        """Apply what ``writes`` records and fixes in ``session``'s transaction (the caller
        commits; the differences seen again are the caller's to count); the observations
        they came from are then forgotten."""
        self._observations.clear()
        fixed = await _fix(session, writes.to_fix, writes.now)
        if writes.rows:
            await session.execute(_upsert(session, writes.rows, writes.now))
        return FlushResult(len(writes.rows), fixed)


@dataclass(slots=True)
class SeenAgain:
    """A difference the ledger has (open or ignored), seen ``times`` more, last as given."""

    times: int
    last_seen_at: datetime
    legacy_value: uuid.UUID | None
    new_value: uuid.UUID | None
    stage: str


@dataclass(slots=True)
class LedgerWrites:
    """Entries to record (one row each), open entries to mark fixed, and differences seen
    again (only counted)."""

    rows: list[dict[str, Any]]
    to_fix: list[EntryKey]
    seen_again: dict[EntryKey, SeenAgain]
    now: datetime

    @property
    def in_request(self) -> bool:
        """Whether the request writes the ledger (a first sighting, a reopening, a fix)."""
        return bool(self.rows or self.to_fix)

    @property
    def changes(self) -> bool:
        return self.in_request or bool(self.seen_again)


_ALREADY_RECORDED = (MismatchStatus.OPEN, MismatchStatus.IGNORED)


def _plan(observation: Observation, entries: Entries, writes: LedgerWrites) -> None:
    """What one observation whose entries are known changes, added to ``writes``."""
    appointment_id, side = observation.appointment_id, observation.side
    differing = set()
    for difference in observation.differences:
        field = difference.field
        differing.add(field)
        if entries.get(field) in _ALREADY_RECORDED:
            writes.seen_again[(appointment_id, field.value)] = SeenAgain(
                1,
                writes.now,
                difference.legacy_value,
                difference.new_value,
                observation.stage.value,
            )
        else:
            writes.rows.append(_ledger_row(observation, difference, writes.now))
    for field in (side.person_field, side.clinic_field):
        if field not in differing and entries.get(field) is MismatchStatus.OPEN:
            writes.to_fix.append((appointment_id, field.value))


def _consistent_fields(observations: list[Observation]) -> set[EntryKey]:
    """(appointment, field) found consistent."""
    consistent: set[EntryKey] = set()
    for observation in observations:
        differing = {difference.field for difference in observation.differences}
        for field in (observation.side.person_field, observation.side.clinic_field):
            if field not in differing:
                consistent.add((observation.appointment_id, field.value))
    return consistent


def _ledger_row(observation: Observation, difference: Difference, now: datetime) -> dict[str, Any]:
    return {
        "id": entry_id(observation.appointment_id, difference.field),
        "appointment_id": observation.appointment_id,
        "clinic_id": observation.clinic_id,
        "field": difference.field.value,
        "legacy_value": difference.legacy_value,
        "new_value": difference.new_value,
        "stage": observation.stage.value,
        "first_seen_at": now,
        "last_seen_at": now,
        "times_seen": 1,
        "status": MismatchStatus.OPEN.value,
    }


async def _open_entries(session: SessionSource, consistent: set[EntryKey]) -> list[EntryKey]:
    """The open entries of (appointment, field) pairs now found consistent."""
    if not consistent:
        return []
    appointment_ids = {appointment_id for appointment_id, _ in consistent}
    open_entries = await (await session()).execute(
        select(MigrationMismatch.appointment_id, MigrationMismatch.field)
        .where(MigrationMismatch.appointment_id.in_(appointment_ids))
        .where(MigrationMismatch.status == MismatchStatus.OPEN.value)
    )
    return [
        (entry.appointment_id, entry.field) for entry in open_entries if tuple(entry) in consistent
    ]


async def _fix(session: AsyncSession, entries: list[EntryKey], now: datetime) -> int:
    """Mark the entries fixed, those still open; how many were."""
    if not entries:
        return 0
    result = await session.execute(
        update(MigrationMismatch)
        .where(tuple_(MigrationMismatch.appointment_id, MigrationMismatch.field).in_(entries))
        .where(MigrationMismatch.status == MismatchStatus.OPEN.value)
        .values(
            status=MismatchStatus.FIXED.value,
            status_changed_by=AUTO_FIX_ACTOR,
            status_changed_at=now,
            status_comment="consistent again when read",
        )
        .execution_options(synchronize_session=False)
    )
    fixed: int = getattr(result, "rowcount", len(entries))
    return fixed


def _upsert(session: AsyncSession, rows: list[dict[str, Any]], now: datetime) -> Any:
    """Insert new entries; for existing ones bump the count and reopen a fixed one."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(MigrationMismatch).values(rows)
    reopened = MigrationMismatch.status == MismatchStatus.FIXED.value
    return statement.on_conflict_do_update(
        index_elements=[MigrationMismatch.appointment_id, MigrationMismatch.field],
        set_={
            "legacy_value": statement.excluded.legacy_value,
            "new_value": statement.excluded.new_value,
            "stage": statement.excluded.stage,
            "last_seen_at": statement.excluded.last_seen_at,
            "times_seen": MigrationMismatch.times_seen + 1,
            "status": case((reopened, MismatchStatus.OPEN.value), else_=MigrationMismatch.status),
            "status_changed_by": case(
                (reopened, AUTO_FIX_ACTOR), else_=MigrationMismatch.status_changed_by
            ),
            "status_changed_at": case((reopened, now), else_=MigrationMismatch.status_changed_at),
            "status_comment": case(
                (reopened, "seen again after it was fixed"),
                else_=MigrationMismatch.status_comment,
            ),
        },
    )


@dataclass(frozen=True, slots=True)
class MismatchFilter:
    clinic_id: uuid.UUID | None = None
    field: MismatchField | None = None
    status: MismatchStatus | None = None


MISMATCH_ORDER = KeysetOrder((MigrationMismatch.last_seen_at, MigrationMismatch.id))


async def list_mismatches(
    session: AsyncSession, where: MismatchFilter, first: int | None, after: str | None
) -> Page[MigrationMismatch]:
    """Entries oldest-seen first (keyset on last seen, then id)."""
    statement = select(MigrationMismatch)
    if where.clinic_id is not None:
        statement = statement.where(MigrationMismatch.clinic_id == where.clinic_id)
    if where.field is not None:
        statement = statement.where(MigrationMismatch.field == where.field.value)
    if where.status is not None:
        statement = statement.where(MigrationMismatch.status == where.status.value)
    return await paginate(session, statement, MISMATCH_ORDER, first, after)


async def get_mismatch(
    session: AsyncSession, mismatch_id: uuid.UUID, access: Access = SYSTEM
) -> MigrationMismatch:
    """One entry, for a viewer who may read the ledger; ``NOT_FOUND`` when there is none."""
    access.require(Permission.READ_MIGRATION)
    entry = await session.get(MigrationMismatch, mismatch_id)
    if entry is None:
        raise DomainError(ErrorCode.NOT_FOUND, "no mismatch has this id", "id")
    return entry


async def set_mismatch_status(
    session: AsyncSession,
    mismatch_id: uuid.UUID,
    status: MismatchStatus,
    actor: str,
    comment: str | None,
    access: Access = SYSTEM,
) -> MigrationMismatch:
    """Triage an entry: mark it ignored, fixed, or open again, saying who and why."""
    access.require(Permission.TRIAGE_LEDGER)
    entry = await session.get(MigrationMismatch, mismatch_id, with_for_update=True)
    if entry is None:
        raise DomainError(ErrorCode.NOT_FOUND, "no mismatch has this id", "id")
    cleaned = clean_comment(comment)
    entry.status = status.value
    entry.status_changed_by = actor
    entry.status_changed_at = utcnow()
    entry.status_comment = cleaned
    await session.flush()
    return entry


def clean_comment(comment: str | None) -> str | None:
    """A triage comment as stored: checked text of at most ``MAX_COMMENT_LENGTH``, stripped;
    None for none."""
    if comment is None:
        return None
    check_text(comment, "comment")
    if len(comment) > MAX_COMMENT_LENGTH:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"comment must be at most {MAX_COMMENT_LENGTH} characters",
            "comment",
        )
    return comment.strip() if comment else None


async def mark_fixed(
    session: AsyncSession,
    appointment_id: uuid.UUID,
    fields: Iterable[MismatchField],
    actor: str,
    comment: str,
) -> int:
    """Mark the appointment's entries for ``fields`` fixed (open or ignored ones), by
    ``actor`` with ``comment``, in the caller's transaction; how many changed."""
    changed = await session.execute(
        update(MigrationMismatch)
        .where(MigrationMismatch.appointment_id == appointment_id)
        .where(MigrationMismatch.field.in_([field.value for field in fields]))
        .where(MigrationMismatch.status != MismatchStatus.FIXED.value)
        .values(
            status=MismatchStatus.FIXED.value,
            status_changed_by=actor,
            status_changed_at=utcnow(),
            status_comment=comment,
        )
        .execution_options(synchronize_session=False)
    )
    return int(getattr(changed, "rowcount", 0) or 0)
