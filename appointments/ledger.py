"""The mismatch ledger: a durable, deduplicated record of differences between the two sides.

Reads in compared stages hand their comparisons to a ``MismatchRecorder``; it
writes the ledger once at the end of the request: one upsert for every
difference seen (first seen, last seen, times seen), and one update marking
open entries fixed when their row was found consistent again. A request that
saw no difference and had nothing open writes nothing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import case, select, update
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
MAX_COMMENT_LENGTH = 2000
ENTRY_NAMESPACE = uuid.UUID("3b0c2f43-6f7e-4a53-9d2f-7f2b61f0c8e4")


def entry_id(appointment_id: uuid.UUID, field: MismatchField) -> uuid.UUID:
    """The id of the ledger entry of (appointment, field): one entry per pair, so its id is
    derived from the pair and the same in every database (a guide's example can name it)."""
    return uuid.uuid5(ENTRY_NAMESPACE, f"{appointment_id}/{field.value}")


class Observation(NamedTuple):
    """One compared side of one appointment: what differed (nothing when consistent)."""

    appointment_id: uuid.UUID
    clinic_id: uuid.UUID
    stage: Stage
    side: Side
    differences: tuple[Difference, ...]


# An observation's appointment (by UUID integer) and side name; a later observation
# of the same key replaces the earlier one.
ObservationKey = tuple[int, str]


@dataclass(frozen=True, slots=True)
class FlushResult:
    recorded: int
    fixed: int


class OpenClinics:
    """The clinics with open ledger entries, as of at most ``max_age`` seconds ago.

    One per process. A read that finds rows consistent looks for their open
    entries (to mark them fixed) only in these clinics, so a clinic with a clean
    ledger costs no ledger query per read: one query per ``max_age`` instead.
    An entry opened by another process is seen at the next refresh; until then
    a consistent read of its row leaves it open (a later read fixes it).
    """

    def __init__(self, max_age: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        self._clock = clock
        self._clinics: frozenset[uuid.UUID] | None = None
        self._checked_at = 0.0

    async def current(self, session: AsyncSession) -> frozenset[uuid.UUID]:
        now = self._clock()
        if self._clinics is None or now - self._checked_at > self.max_age:
            rows = await session.execute(
                select(MigrationMismatch.clinic_id)
                .where(MigrationMismatch.status == MismatchStatus.OPEN.value)
                .distinct()
            )
            self._clinics = frozenset(rows.scalars())
            self._checked_at = now
        return self._clinics

    def opened(self, clinic_ids: set[uuid.UUID]) -> None:
        if self._clinics is not None and not clinic_ids <= self._clinics:
            self._clinics = self._clinics | clinic_ids


class MismatchRecorder:
    """Collects one request's comparisons and writes the ledger once."""

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

    async def flush(
        self, session: AsyncSession, open_clinics: OpenClinics | None = None
    ) -> FlushResult:
        """Write what was observed, in ``session``'s transaction (the caller commits)."""
        writes = await self.pending_writes(session, open_clinics)
        if writes is None:
            return FlushResult(0, 0)
        return await self.write(session, writes, open_clinics)

    async def pending_writes(
        self, session: AsyncSession, open_clinics: OpenClinics | None = None
    ) -> LedgerWrites | None:
        """What the observations change in the ledger, read through ``session`` (no write):
        the entries to record, and the open ones found consistent again. None when nothing
        changes. With ``open_clinics``, open entries are looked for only in clinics known
        to have some."""
        observations = list(self._observations.values())
        if not observations:
            return None
        now = utcnow()
        rows = [
            _ledger_row(observation, difference, now)
            for observation in observations
            for difference in observation.differences
        ]
        with_open = None if open_clinics is None else await open_clinics.current(session)
        consistent = _consistent_fields(observations, with_open)
        to_fix = await _entries_to_fix(session, consistent)
        if not rows and not to_fix:
            return None
        return LedgerWrites(rows, to_fix, now)

    async def write(
        self, session: AsyncSession, writes: LedgerWrites, open_clinics: OpenClinics | None = None
    ) -> FlushResult:
        """Apply ``writes`` in ``session``'s transaction (the caller commits); the
        observations they came from are then forgotten."""
        self._observations.clear()
        fixed = await _fix(session, writes.to_fix, writes.now)
        if writes.rows:
            await session.execute(_upsert(session, writes.rows, writes.now))
            if open_clinics is not None:
                open_clinics.opened({row["clinic_id"] for row in writes.rows})
        return FlushResult(len(writes.rows), fixed)


@dataclass(frozen=True, slots=True)
class LedgerWrites:
    """Entries to record (one row each) and open entries to mark fixed (by id)."""

    rows: list[dict[str, Any]]
    to_fix: list[uuid.UUID]
    now: datetime


def _consistent_fields(
    observations: list[Observation], open_clinics: frozenset[uuid.UUID] | None
) -> set[tuple[uuid.UUID, str]]:
    """(appointment, field) found consistent, in the clinics that may have open entries
    (``open_clinics``; every clinic when it is None)."""
    if open_clinics is not None and not open_clinics:
        return set()
    # By UUID integer: uuid.UUID hashes in Python, and a list hands in hundreds.
    open_ints = None if open_clinics is None else {clinic.int for clinic in open_clinics}
    consistent: set[tuple[uuid.UUID, str]] = set()
    for observation in observations:
        if open_ints is not None and observation.clinic_id.int not in open_ints:
            continue
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


async def _entries_to_fix(
    session: AsyncSession, consistent: set[tuple[uuid.UUID, str]]
) -> list[uuid.UUID]:
    """The open entries of (appointment, field) pairs now found consistent."""
    if not consistent:
        return []
    appointment_ids = {appointment_id for appointment_id, _ in consistent}
    open_entries = await session.execute(
        select(MigrationMismatch.id, MigrationMismatch.appointment_id, MigrationMismatch.field)
        .where(MigrationMismatch.appointment_id.in_(appointment_ids))
        .where(MigrationMismatch.status == MismatchStatus.OPEN.value)
    )
    return [entry.id for entry in open_entries if (entry.appointment_id, entry.field) in consistent]


async def _fix(session: AsyncSession, entry_ids: list[uuid.UUID], now: datetime) -> int:
    """Mark the entries fixed, those still open; how many were."""
    if not entry_ids:
        return 0
    result = await session.execute(
        update(MigrationMismatch)
        .where(MigrationMismatch.id.in_(entry_ids))
        .where(MigrationMismatch.status == MismatchStatus.OPEN.value)
        .values(
            status=MismatchStatus.FIXED.value,
            status_changed_by=AUTO_FIX_ACTOR,
            status_changed_at=now,
            status_comment="consistent again when read",
        )
    )
    fixed: int = getattr(result, "rowcount", len(entry_ids))
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
