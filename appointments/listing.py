"""A page of appointments with both origins of both sides, read in one statement.

The list the frontend asks for most (a clinic's next appointments with their
doctor and patient in both field sets) is read here without ORM instances: one
statement joins each appointment to what either origin of each side could serve,

- the stored membership (the new column) and its person,
- the membership of (clinic, legacy person) and the legacy person,

and the rows become plain records. The stage rules then run unchanged on the
page: ``LinkResolver.serve_known`` picks the origin, falls back, compares and
records exactly as ``LinkResolver.prefetch`` does for ORM rows, from memberships
already in memory. What the served link names is then one of the joined records.

The statement does not depend on the selection: every look-up is a primary-key or
unique-key look-up per listed row, cheaper than another round trip. On PostgreSQL
the look-ups the stored membership makes redundant (a consistent row's) are
skipped. After the contract revision the legacy look-ups are left out
(``legacy_columns=False``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    DateTime,
    FromClause,
    Select,
    and_,
    column,
    false,
    null,
    select,
    table,
    true,
    type_coerce,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from appointments.models import Appointment, UtcDateTime, as_utc
from appointments.queries import (
    APPOINTMENT_ORDER,
    AppointmentFilter,
    ClinicScope,
    Page,
    appointments_matching,
    page_statement,
)
from appointments.reads import LinkResolver, ResolvedLink
from appointments.sides import DOCTOR, PATIENT, MembershipRecord, Side, StoredLink
from appointments.stages import Origin


class AppointmentRecord(NamedTuple):
    """An appointment's columns; moments as the driver returns them (``as_utc``)."""

    id: uuid.UUID
    clinic_id: uuid.UUID
    starts_at: datetime
    ends_at: datetime
    status: str
    reason: str | None
    created_at: datetime
    updated_at: datetime
    doctor_id: uuid.UUID | None
    patient_id: uuid.UUID | None
    clinic_doctor_id: uuid.UUID | None
    clinic_patient_id: uuid.UUID | None


class DoctorMembershipRecord(NamedTuple):
    """A membership's columns; ``created_at`` as the driver returns it (``as_utc``)."""

    id: uuid.UUID
    clinic_id: uuid.UUID
    user_id: uuid.UUID
    active: bool
    created_at: datetime


class PatientMembershipRecord(NamedTuple):
    """A membership's columns; ``created_at`` as the driver returns it (``as_utc``)."""

    id: uuid.UUID
    clinic_id: uuid.UUID
    patient_id: uuid.UUID
    created_at: datetime


class UserRecord(NamedTuple):
    id: uuid.UUID
    name: str
    email: str
    role: str


class PatientRecord(NamedTuple):
    id: uuid.UUID
    full_name: str
    date_of_birth: date | None


PersonRecord = UserRecord | PatientRecord


class ServedSide(NamedTuple):
    """One side of a listed appointment as served: the link, and the person it names
    (the same person for the legacy field and for the membership's person)."""

    link: ResolvedLink
    person: PersonRecord | None


class ListedAppointment(NamedTuple):
    record: AppointmentRecord
    doctor: ServedSide | None
    patient: ServedSide | None
    """None when the caller asked for no link field (then none was served)."""

    # The list's keyset order reads these (cursors).
    @property
    def id(self) -> uuid.UUID:
        return self.record.id

    @property
    def starts_at(self) -> datetime:
        return as_utc(self.record.starts_at)


def _joined_page(
    where: AppointmentFilter,
    clinics: ClinicScope,
    legacy_columns: bool,
    first: int | None,
    after: str | None,
    lateral: bool = True,
) -> tuple[Any, int]:
    """The page (filter, scope, cursor, limit) as a common table expression ``page``,
    then the joins.

    Joined first and limited after, PostgreSQL plans nine relations in about 20 ms
    (warm) for every unprepared execution; the page first takes about 2 ms. Only the
    page's statement is built per request: the joins, about 40 columns, are built
    once per schema (``_joins``), which saves about 1 ms of SQLAlchemy per list.
    """
    appointment = Appointment.__table__
    page_columns: list[ColumnElement[Any]] = [
        appointment.c[name]
        if legacy_columns or name not in (DOCTOR.legacy_column, PATIENT.legacy_column)
        else null().label(name)
        for name in AppointmentRecord._fields
    ]
    matching = appointments_matching(where, legacy_columns, clinics).with_only_columns(
        *page_columns
    )
    limited, size = page_statement(matching, APPOINTMENT_ORDER, first, after)
    return _joins(legacy_columns, lateral).add_cte(limited.cte(_PAGE.name)), size


_PAGE = table(
    "page",
    *[
        column(
            name,
            DateTime(timezone=True)
            if isinstance(Appointment.__table__.c[name].type, UtcDateTime)
            else Appointment.__table__.c[name].type,
        )
        for name in AppointmentRecord._fields
    ],
)


@lru_cache(maxsize=4)
def _joins(legacy_columns: bool, lateral: bool) -> Select[Any]:
    """Every column of a joined page, from the source expression ``page``.

    With ``lateral`` (PostgreSQL) each look-up is a lateral subquery fenced with
    ``OFFSET 0``, so PostgreSQL runs it as one index look-up per listed row. As
    plain joins it plans the eight of them together: twice the planning (about
    5 ms when a statement is not prepared), and its generic plan for a prepared
    statement hashed whole tables of doctors and users for a page of 100 rows
    (2.5 ms of execution against 1.4 on 1,000,000 appointments). SQLite has no
    lateral subqueries; it gets plain left joins, which it runs as look-ups anyway.
    """
    page = _PAGE
    columns: list[ColumnElement[Any]] = [page.c[name] for name in AppointmentRecord._fields]
    joined: FromClause = page
    for layout in (_DOCTOR_LAYOUT, _PATIENT_LAYOUT):
        side = layout.side
        membership = side.membership_model.__table__
        person = side.person_model.__table__
        stored, on, selected = _look_up(
            f"stored_{side.name}_membership",
            membership,
            layout.membership._fields,
            _id_is(page.c[side.new_column]),
            lateral,
        )
        joined = joined.outerjoin(stored, on)
        columns += selected
        for name, source, names, where in (
            (
                f"derived_{side.name}_membership",
                membership,
                layout.membership._fields,
                _legacy_membership_where(side, stored, legacy_columns, lateral),
            ),
            (
                f"legacy_{side.name}",
                person,
                layout.person._fields,
                _legacy_person_where(side, stored, legacy_columns, lateral),
            ),
            (
                f"new_{side.name}",
                person,
                layout.person._fields,
                _id_is(stored.c[side.person_column]),
            ),
        ):
            look_up, on, selected = _look_up(name, source, names, where, lateral)
            joined = joined.outerjoin(look_up, on)
            columns += selected
    return select(*columns).select_from(joined).order_by(page.c.starts_at, page.c.id)


Where = Callable[[FromClause], ColumnElement[bool]]


def _id_is(key: ColumnElement[Any]) -> Where:
    return lambda source: source.c.id == key


# Where the stored membership names the legacy person (a consistent row, most of
# them), it is also the legacy person's membership in the row's clinic (unique per
# clinic and person), and its person is the legacy person. On PostgreSQL those two
# look-ups are then skipped (a condition on the outer row only, checked before any
# index is read), and _collect_side takes the stored membership and its person
# instead: half the look-ups and a third of the values of a consistent page.


def _legacy_membership_where(
    side: Side, stored: FromClause, legacy_columns: bool, lateral: bool
) -> Where:
    if not legacy_columns:
        return lambda _source: false()
    page = _PAGE
    legacy_id = page.c[side.legacy_column]
    is_stored = and_(
        stored.c[side.person_column] == legacy_id, stored.c.clinic_id == page.c.clinic_id
    )

    def where(source: FromClause) -> ColumnElement[bool]:
        found = and_(
            source.c.clinic_id == page.c.clinic_id, source.c[side.person_column] == legacy_id
        )
        return and_(found, is_stored.is_not(true())) if lateral else found

    return where


def _legacy_person_where(
    side: Side, stored: FromClause, legacy_columns: bool, lateral: bool
) -> Where:
    if not legacy_columns:
        return lambda _source: false()
    legacy_id = _PAGE.c[side.legacy_column]
    is_stored_person = stored.c[side.person_column] == legacy_id

    def where(source: FromClause) -> ColumnElement[bool]:
        found = source.c.id == legacy_id
        return and_(found, is_stored_person.is_not(true())) if lateral else found

    return where


def _look_up(
    name: str,
    source: FromClause,
    names: tuple[str, ...],
    where: Where,
    lateral: bool,
) -> tuple[FromClause, ColumnElement[bool], list[ColumnElement[Any]]]:
    """At most one row of ``source`` per listed row, named ``name``: what to join, on
    what, and the columns ``names`` as selected."""
    if lateral:
        fenced = (
            select(*[_raw_moment(source.c[column]) for column in names])
            .where(where(source))
            .offset(0)
            .lateral(name)
        )
        return fenced, true(), list(fenced.c)
    alias = source.alias(name)
    return alias, where(alias), [_raw_moment(alias.c[column]) for column in names]


def _raw_moment(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """A moment column as the driver returns it: ``UtcDateTime`` would convert about 800
    values a page in Python, where a list shows a few (``as_utc`` when shown)."""
    if isinstance(column.type, UtcDateTime):
        return type_coerce(column, DateTime(timezone=True)).label(column.key)
    return column


class _JoinedMemberships:
    """The memberships a joined page loaded, answering the read path's look-ups: by id
    (the stored column) and by (clinic, legacy person); a key not there has no row.
    Keyed by the ids' integers (``uuid.UUID`` hashes and compares in Python)."""

    def __init__(self) -> None:
        self.by_id: dict[Side, dict[int, MembershipRecord]] = {DOCTOR: {}, PATIENT: {}}
        self.by_person: dict[Side, dict[tuple[int, int], MembershipRecord | None]] = {
            DOCTOR: {},
            PATIENT: {},
        }

    def known_membership_by_id(
        self, side: Side, membership_id: uuid.UUID
    ) -> MembershipRecord | None:
        return self.by_id[side].get(membership_id.int)

    def known_membership_by_clinic_and_person(
        self, side: Side, clinic_id: uuid.UUID, person_id: uuid.UUID
    ) -> MembershipRecord | None:
        return self.by_person[side].get((clinic_id.int, person_id.int))


_APPOINTMENT_END = len(AppointmentRecord._fields)
_DOCTOR_WIDTH = 2 * len(DoctorMembershipRecord._fields) + 2 * len(UserRecord._fields)


def _side_layout(
    side: Side,
    start: int,
    membership: type[DoctorMembershipRecord] | type[PatientMembershipRecord],
    person: type[UserRecord] | type[PatientRecord],
) -> _Layout:
    """Where one side's joined columns are in a row (the order ``_joined_page`` selects)."""
    m, p = len(membership._fields), len(person._fields)
    return _Layout(
        side,
        membership,
        person,
        slice(start, start + m),
        slice(start + m, start + 2 * m),
        slice(start + 2 * m, start + 2 * m + p),
        slice(start + 2 * m + p, start + 2 * m + 2 * p),
    )


async def list_appointments_joined(
    session: AsyncSession,
    links: LinkResolver | None,
    where: AppointmentFilter,
    first: int | None,
    after: str | None,
    legacy_columns: bool = True,
    clinics: ClinicScope = None,
) -> Page[ListedAppointment]:
    """The page ``queries.list_appointments`` lists (same filter, scope, order and
    cursors), each row with both sides served by the request's stage rules; with no
    ``links`` (the caller shows no link field), the sides are not served."""
    lateral = session.get_bind().dialect.name == "postgresql"
    statement, size = _joined_page(where, clinics, legacy_columns, first, after, lateral)
    started = time.perf_counter()
    connection = await session.connection()
    rows = (await connection.execute(statement)).all()
    load_seconds = time.perf_counter() - started
    has_next_page = len(rows) > size
    records, people = _records(rows[:size], legacy_columns)
    if links is None:
        listed = [ListedAppointment(record, None, None) for record in records]
        return Page(listed, APPOINTMENT_ORDER, has_next_page)
    served = links.serve_known(
        [
            StoredLink(side, record.id, record.clinic_id, legacy_id, legacy_columns, membership)
            for record in records
            for side, legacy_id, membership in (
                (DOCTOR, record.doctor_id, record.clinic_doctor_id),
                (PATIENT, record.patient_id, record.clinic_patient_id),
            )
        ],
        people.memberships,
        load_seconds,
    )
    unjoined: list[tuple[int, Side, ResolvedLink]] = []
    listed = [
        ListedAppointment(
            record,
            _served(served[2 * n], people.doctors[n], n, DOCTOR, unjoined),
            _served(served[2 * n + 1], people.patients[n], n, PATIENT, unjoined),
        )
        for n, record in enumerate(records)
    ]
    if unjoined:
        await _serve_unjoined(connection, listed, unjoined)
    return Page(listed, APPOINTMENT_ORDER, has_next_page)


async def _serve_unjoined(
    connection: AsyncConnection,
    listed: list[ListedAppointment],
    unjoined: list[tuple[int, Side, ResolvedLink]],
) -> None:
    """Give the links this request served before the joined statement ran, where the
    row the statement read names someone else (another transaction changed it in
    between), the person they were served with: one more statement per side, and
    only then. The page shows every link as the request first served it."""
    loaded: dict[tuple[Side, int], PersonRecord] = {}
    for layout in (_DOCTOR_LAYOUT, _PATIENT_LAYOUT):
        ids = {link.person_id for _, side, link in unjoined if side is layout.side}
        if not ids:
            continue
        table = layout.side.person_model.__table__
        statement = select(*[table.c[name] for name in layout.person._fields]).where(
            table.c.id.in_(ids)
        )
        for row in await connection.execute(statement):
            loaded[(layout.side, row.id.int)] = _record(layout.person, tuple(row))
    for n, side, link in unjoined:
        person = None if link.person_id is None else loaded.get((side, link.person_id.int))
        if person is None:
            raise LookupError(f"no {side.name} {link.person_id} for a served link")
        served = ServedSide(link, person)
        listed[n] = (
            listed[n]._replace(doctor=served)
            if side is DOCTOR
            else listed[n]._replace(patient=served)
        )


@dataclass(slots=True)
class _People:
    memberships: _JoinedMemberships
    doctors: list[tuple[PersonRecord | None, PersonRecord | None]]
    patients: list[tuple[PersonRecord | None, PersonRecord | None]]


def _records(rows: Sequence[Any], legacy_columns: bool) -> tuple[list[AppointmentRecord], _People]:
    memberships = _JoinedMemberships()
    people = _People(memberships, [], [])
    records: list[AppointmentRecord] = []
    for row in rows:
        record = _record(AppointmentRecord, row[:_APPOINTMENT_END])
        records.append(record)
        _collect_side(
            row,
            record,
            record.doctor_id,
            legacy_columns,
            memberships,
            _DOCTOR_LAYOUT,
            people.doctors,
        )
        _collect_side(
            row,
            record,
            record.patient_id,
            legacy_columns,
            memberships,
            _PATIENT_LAYOUT,
            people.patients,
        )
    return records, people


# NamedTuple._make without its Python frame: a page builds about a thousand records.
_record: Any = tuple.__new__


class _Layout(NamedTuple):
    side: Side
    membership: type[DoctorMembershipRecord] | type[PatientMembershipRecord]
    person: type[UserRecord] | type[PatientRecord]
    stored: slice
    derived: slice
    legacy_person: slice
    new_person: slice


def _collect_side(
    row: Sequence[Any],
    record: AppointmentRecord,
    legacy_id: uuid.UUID | None,
    legacy_columns: bool,
    memberships: _JoinedMemberships,
    layout: _Layout,
    found: list[tuple[PersonRecord | None, PersonRecord | None]],
) -> None:
    side, membership_type, person_type, stored, derived, legacy_person, new_person = layout
    stored_membership = None
    if row[stored.start] is not None:
        stored_membership = _record(membership_type, row[stored])
        memberships.by_id[side][stored_membership.id.int] = stored_membership
    # What the statement may leave out because the stored membership is it (_joins).
    names_legacy_person = (
        stored_membership is not None
        and legacy_id is not None
        and stored_membership[_PERSON].int == legacy_id.int
    )
    if legacy_columns and legacy_id is not None:
        if row[derived.start] is not None:
            derived_membership = _record(membership_type, row[derived])
        elif (
            stored_membership is not None
            and names_legacy_person
            and stored_membership.clinic_id.int == record.clinic_id.int
        ):
            derived_membership = stored_membership
        else:
            derived_membership = None
        memberships.by_person[side][(record.clinic_id.int, legacy_id.int)] = derived_membership
    new = None if row[new_person.start] is None else _record(person_type, row[new_person])
    if row[legacy_person.start] is not None:
        legacy = _record(person_type, row[legacy_person])
    else:
        legacy = new if names_legacy_person else None
    found.append((legacy, new))


def _served(
    link: ResolvedLink,
    people: tuple[PersonRecord | None, PersonRecord | None],
    position: int,
    side: Side,
    unjoined: list[tuple[int, Side, ResolvedLink]],
) -> ServedSide:
    legacy_person, new_person = people
    person = legacy_person if link.origin is Origin.LEGACY else new_person
    if link.person_id is None:
        person = None
    elif person is None or person.id.int != link.person_id.int:
        # Served earlier in the request, from the row as it was then (_serve_unjoined).
        unjoined.append((position, side, link))
        person = None
    return ServedSide(link, person)


# Where a membership record keeps its person (user_id or patient_id).
_PERSON = 2
assert DoctorMembershipRecord._fields[_PERSON] == DOCTOR.person_column
assert PatientMembershipRecord._fields[_PERSON] == PATIENT.person_column

_DOCTOR_LAYOUT = _side_layout(DOCTOR, _APPOINTMENT_END, DoctorMembershipRecord, UserRecord)
_PATIENT_LAYOUT = _side_layout(
    PATIENT, _APPOINTMENT_END + _DOCTOR_WIDTH, PatientMembershipRecord, PatientRecord
)
