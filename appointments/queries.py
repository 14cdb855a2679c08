"""Read queries: batch fetches for the DataLoaders and keyset-paginated lists."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Select,
    and_,
    any_,
    bindparam,
    exists,
    literal,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from appointments.checks import check_moment, check_text
from appointments.errors import DomainError, ErrorCode
from appointments.layout import Layout
from appointments.models import (
    Appointment,
    AppointmentStatus,
    Base,
    Clinic,
    ClinicDoctor,
    ClinicPatient,
    ClinicStaff,
    Patient,
    User,
    UserRole,
)
from appointments.sides import Side

RowT = TypeVar("RowT", bound=Base)
ListedT = TypeVar("ListedT")

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20


def one_of(
    session: AsyncSession, column: InstrumentedAttribute[uuid.UUID], values: Collection[uuid.UUID]
) -> ColumnElement[bool]:
    """``column IN values``; on PostgreSQL ``column = ANY(array)`` with one parameter.

    An IN list renders one parameter per value, so each page size is another
    statement text: psycopg parses it again on every execution and the server never
    prepares it. The array form has the same text for any number of values.
    """
    bind = session.bind
    if bind is not None and bind.dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(values)


async def rows_by_ids(
    session: AsyncSession, model: type[RowT], ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, RowT]:
    id_column: InstrumentedAttribute[uuid.UUID] = model.id  # type: ignore[attr-defined]
    statement = select(model).where(one_of(session, id_column, set(ids)))
    rows = (await session.execute(statement)).scalars()
    return {row.id: row for row in rows}  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Page(Generic[ListedT]):
    """A page of rows: ORM rows, or records carrying the order's columns as attributes."""

    rows: list[ListedT]
    order: KeysetOrder
    has_next_page: bool

    def cursor(self, row: ListedT) -> str:
        """The cursor after ``row`` (encoded on demand: most queries never ask)."""
        return self.order.encode(row)

    @property
    def end_cursor(self) -> str | None:
        return self.cursor(self.rows[-1]) if self.rows else None


@dataclass(frozen=True, slots=True)
class KeysetOrder:
    """Columns a list is ordered by; the last one must be unique (the id)."""

    columns: tuple[InstrumentedAttribute[Any], ...]

    def encode(self, row: object) -> str:
        values = [_to_json(getattr(row, column.key)) for column in self.columns]
        return base64.urlsafe_b64encode(json.dumps(values).encode()).decode()

    def after(self, cursor: str) -> Any:
        return self.after_values(self.decode(cursor))

    def decode(self, cursor: str) -> list[Any]:
        """The order's values in ``cursor``; ``INVALID_INPUT`` when it is not one of its."""
        try:
            values = json.loads(base64.urlsafe_b64decode(cursor.encode()))
            if not isinstance(values, list) or len(values) != len(self.columns):
                raise ValueError("cursor has the wrong shape")
            decoded = [
                _from_json(column, value)
                for column, value in zip(self.columns, values, strict=True)
            ]
        except (ValueError, binascii.Error, TypeError, RecursionError, DomainError) as error:
            raise DomainError(
                ErrorCode.INVALID_INPUT, "after is not a cursor of this list", "after"
            ) from error
        return decoded

    def after_values(self, decoded: Sequence[Any]) -> Any:
        """The rows after these order values (values or bound parameters)."""
        condition = self.columns[-1] > decoded[-1]
        for column, value in zip(reversed(self.columns[:-1]), reversed(decoded[:-1]), strict=True):
            condition = or_(column > value, and_(column == value, condition))
        return condition


def _to_json(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _from_json(column: InstrumentedAttribute[Any], value: Any) -> Any:
    if not isinstance(value, str):
        raise TypeError("cursor values are strings")
    python_type = column.type.python_type
    if python_type is datetime:
        return check_moment(datetime.fromisoformat(value), "after")
    if python_type is uuid.UUID:
        return uuid.UUID(value)
    return check_text(value, "after")


async def paginate(
    session: AsyncSession,
    statement: Select[RowT],
    order: KeysetOrder,
    first: int | None,
    after: str | None,
) -> Page[RowT]:
    statement, size = page_statement(statement, order, first, after)
    rows = list((await session.execute(statement)).scalars())
    page = rows[:size]
    return Page(page, order, len(rows) > size)


SelectT = TypeVar("SelectT", bound=Select[Any])


def page_statement(
    statement: SelectT, order: KeysetOrder, first: int | None, after: str | None
) -> tuple[SelectT, int]:
    """``statement`` limited to the page after ``after`` and one more row (which says
    whether a next page exists), in the order's order; and the page size."""
    size = page_size(first)
    if after is not None:
        statement = statement.where(order.after(after))
    # The limit is written into the statement, not sent as a parameter: PostgreSQL
    # reuses one plan for a prepared statement, and a plan made without knowing the
    # limit expects the clinic's every row (hash joins over whole tables, not a few
    # index look-ups). At most 101 texts, one per page size.
    limit = literal(size + 1, literal_execute=True)
    return statement.order_by(*order.columns).limit(limit), size


def page_size(first: int | None) -> int:
    """The page size ``first`` asks for; ``INVALID_INPUT`` outside 0 to ``MAX_PAGE_SIZE``."""
    size = DEFAULT_PAGE_SIZE if first is None else first
    if not 0 <= size <= MAX_PAGE_SIZE:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"first must be between 0 and {MAX_PAGE_SIZE}", "first"
        )
    return size


ClinicScope = frozenset[uuid.UUID] | None
"""The clinics a list may show rows of; None shows every clinic (see appointments.access)."""


def _within(
    statement: Select[RowT], clinic_column: InstrumentedAttribute[uuid.UUID], clinics: ClinicScope
) -> Select[RowT]:
    return statement if clinics is None else statement.where(clinic_column.in_(clinics))


@dataclass(frozen=True, slots=True)
class AppointmentFilter:
    clinic_id: uuid.UUID | None = None
    doctor_id: uuid.UUID | None = None
    patient_id: uuid.UUID | None = None
    clinic_doctor_id: uuid.UUID | None = None
    clinic_patient_id: uuid.UUID | None = None
    starts_from: datetime | None = None
    starts_before: datetime | None = None
    status: AppointmentStatus | None = None


APPOINTMENT_ORDER = KeysetOrder((Appointment.starts_at, Appointment.id))
NAME_ORDERS = {
    Clinic: KeysetOrder((Clinic.name, Clinic.id)),
    User: KeysetOrder((User.name, User.id)),
    Patient: KeysetOrder((Patient.full_name, Patient.id)),
}
MEMBERSHIP_ORDERS = {
    ClinicDoctor: KeysetOrder((ClinicDoctor.created_at, ClinicDoctor.id)),
    ClinicPatient: KeysetOrder((ClinicPatient.created_at, ClinicPatient.id)),
}


ClinicTest = Callable[[InstrumentedAttribute[uuid.UUID]], ColumnElement[bool]]
"""Whether a clinic id column is one of the viewer's clinics (as SQL)."""


def names_person(
    side: Side, person_id: Any, layout: Layout, in_clinics: ClinicTest | None = None
) -> ColumnElement[bool]:
    """Either origin of ``side`` names the person (a value or a bound parameter). With
    ``in_clinics`` (the viewer's), a stored membership counts only in one of them: a link
    into a clinic the viewer cannot see is served as unlinked, and filters like one."""
    model = side.membership_model
    memberships_of_person = select(model.id).where(getattr(model, side.person_column) == person_id)
    if in_clinics is not None:
        memberships_of_person = memberships_of_person.where(in_clinics(model.clinic_id))
    by_new = getattr(Appointment, side.new_column).in_(memberships_of_person)
    if not layout.legacy_columns:
        return by_new  # type: ignore[no-any-return]
    return or_(getattr(Appointment, side.legacy_column) == person_id, by_new)


def names_membership(
    side: Side, membership_id: Any, layout: Layout, in_clinics: ClinicTest | None = None
) -> ColumnElement[bool]:
    """Either origin of ``side`` names the membership (a value or a bound parameter); with
    ``in_clinics``, a stored membership counts only in one of them (see ``names_person``)."""
    model = side.membership_model
    by_new: ColumnElement[bool] = getattr(Appointment, side.new_column) == membership_id
    if in_clinics is not None:
        visible = exists().where(model.id == membership_id, in_clinics(model.clinic_id))
        by_new = and_(by_new, visible)
    if not layout.legacy_columns:
        return by_new
    derived_from_legacy = exists().where(
        model.id == membership_id,
        model.clinic_id == Appointment.clinic_id,
        getattr(model, side.person_column) == getattr(Appointment, side.legacy_column),
    )
    return or_(by_new, derived_from_legacy)


async def list_clinics(
    session: AsyncSession, first: int | None, after: str | None, clinics: ClinicScope = None
) -> Page[Clinic]:
    statement = _within(select(Clinic), Clinic.id, clinics)
    return await paginate(session, statement, NAME_ORDERS[Clinic], first, after)


async def list_users(
    session: AsyncSession,
    role: UserRole | None,
    first: int | None,
    after: str | None,
    clinics: ClinicScope = None,
) -> Page[User]:
    """Users; limited to clinics, the doctors and staff who belong to one of them."""
    statement = select(User) if role is None else select(User).where(User.role == role.value)
    if clinics is not None:
        doctors = select(ClinicDoctor.user_id).where(ClinicDoctor.clinic_id.in_(clinics))
        staff = select(ClinicStaff.user_id).where(ClinicStaff.clinic_id.in_(clinics))
        statement = statement.where(or_(User.id.in_(doctors), User.id.in_(staff)))
    return await paginate(session, statement, NAME_ORDERS[User], first, after)


async def list_patients(
    session: AsyncSession, first: int | None, after: str | None, clinics: ClinicScope = None
) -> Page[Patient]:
    """Patients; limited to clinics, those registered in one of them."""
    statement = select(Patient)
    if clinics is not None:
        registered = select(ClinicPatient.patient_id).where(ClinicPatient.clinic_id.in_(clinics))
        statement = statement.where(Patient.id.in_(registered))
    return await paginate(session, statement, NAME_ORDERS[Patient], first, after)


async def list_clinic_doctors(
    session: AsyncSession,
    clinic_id: uuid.UUID,
    first: int | None,
    after: str | None,
    clinics: ClinicScope = None,
) -> Page[ClinicDoctor]:
    statement = select(ClinicDoctor).where(ClinicDoctor.clinic_id == clinic_id)
    statement = _within(statement, ClinicDoctor.clinic_id, clinics)
    return await paginate(session, statement, MEMBERSHIP_ORDERS[ClinicDoctor], first, after)


async def list_clinic_patients(
    session: AsyncSession,
    clinic_id: uuid.UUID,
    first: int | None,
    after: str | None,
    clinics: ClinicScope = None,
) -> Page[ClinicPatient]:
    statement = select(ClinicPatient).where(ClinicPatient.clinic_id == clinic_id)
    statement = _within(statement, ClinicPatient.clinic_id, clinics)
    return await paginate(session, statement, MEMBERSHIP_ORDERS[ClinicPatient], first, after)
