"""Which appointment rows a read model statement serves, with their values as parameters.

A ``RowSource`` is a cache key (the shape of the rows: a page with these filters,
one appointment by id, ids, a stored snapshot) and the parameters a request
binds to it. The FROM clause is built from the key alone, so a compiled
statement is reused by every request of the same shape.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, FromClause, Integer, Select, bindparam, literal_column, select
from sqlalchemy.orm import InstrumentedAttribute

from appointments.layout import Layout
from appointments.models import Appointment
from appointments.queries import (
    APPOINTMENT_ORDER,
    AppointmentFilter,
    names_membership,
    names_person,
    page_size,
)
from appointments.read_model.id_lists import in_ids
from appointments.sides import DOCTOR, PATIENT, SIDES

RowKey = tuple[Any, ...]

_FILTERS = (
    "clinic_id",
    "doctor_id",
    "patient_id",
    "clinic_doctor_id",
    "clinic_patient_id",
    "starts_from",
    "starts_before",
    "status",
)


@dataclass(frozen=True, slots=True)
class RowSource:
    key: RowKey
    parameters: dict[str, Any]


def by_id(appointment_id: uuid.UUID, clinic_id: uuid.UUID) -> RowSource:
    """The appointment, if it is in ``clinic_id`` (the clinic whose stage serves it)."""
    return RowSource(("id",), {"appointment_id": appointment_id, "clinic_id": clinic_id})


def by_ids(ids: list[uuid.UUID]) -> RowSource:
    return RowSource(("ids",), {"ids": ids})


def snapshot(row: Appointment, layout: Layout) -> RowSource:
    values = {f"snapshot_{c.key}": getattr(row, c.key) for c in columns(layout)}
    return RowSource(("snapshot",), values)


def page(
    where: AppointmentFilter,
    first: int | None,
    after: str | None,
    clinics: frozenset[uuid.UUID] | None,
) -> tuple[RowSource, int]:
    """A page (and one row more), within ``clinics`` when given; and the page size."""
    size = page_size(first)
    parameters: dict[str, Any] = {}
    filters = []
    for name in _FILTERS:
        value = getattr(where, name)
        if value is not None:
            filters.append(name)
            parameters[f"filter_{name}"] = value.value if name == "status" else value
    if after is not None:
        for n, value in enumerate(APPOINTMENT_ORDER.decode(after)):
            parameters[f"after_{n}"] = value
    if clinics is not None:
        parameters["scope"] = sorted(clinics)
    key = ("page", tuple(filters), after is not None, size, clinics is not None)
    return RowSource(key, parameters), size


def columns(layout: Layout) -> list[Any]:
    """The appointment columns the database has (no legacy ones once contracted)."""
    legacy = {side.legacy_column for side in SIDES}
    return [c for c in Appointment.__table__.c if layout.legacy_columns or c.key not in legacy]


def from_clause(key: RowKey, layout: Layout) -> FromClause:
    kind = key[0]
    table = Appointment.__table__
    if kind == "id":
        return (
            select(*columns(layout))
            .where(
                table.c.id == bindparam("appointment_id"),
                table.c.clinic_id == bindparam("clinic_id"),
            )
            .subquery("rows")
        )
    if kind == "ids":
        return select(*columns(layout)).where(in_ids(table.c.id, "ids")).subquery("rows")
    if kind == "snapshot":
        values = [
            bindparam(f"snapshot_{c.key}", type_=c.type).label(c.key) for c in columns(layout)
        ]
        return select(*values).subquery("rows")
    return _page(key, layout).subquery("rows")


def _page(key: RowKey, layout: Layout) -> Select[Any]:
    _, filters, has_after, size, scoped = key
    table = Appointment.__table__
    statement = select(*columns(layout))
    for name in filters:
        statement = statement.where(_filter(name, layout, scoped))
    if scoped:
        statement = statement.where(in_ids(table.c.clinic_id, "scope"))
    if has_after:
        order = APPOINTMENT_ORDER.columns
        statement = statement.where(
            APPOINTMENT_ORDER.after_values(
                [bindparam(f"after_{n}", type_=column.type) for n, column in enumerate(order)]
            )
        )
    # Written into the SQL (the size is part of the shape), so the planner knows it.
    limit = literal_column(str(size + 1), Integer)
    return statement.order_by(*APPOINTMENT_ORDER.columns).limit(limit)


def _filter(name: str, layout: Layout, scoped: bool) -> ColumnElement[bool]:
    """One filter, its value a parameter. A doctor or patient filter matches a row when
    either origin names that person or membership, so results do not depend on how far
    the row's clinic has migrated; for a viewer ``scoped`` to some clinics, a stored
    membership of another clinic names nobody (reads serve it as unlinked)."""
    value = bindparam(f"filter_{name}", type_=_TYPES[name])
    if name == "clinic_id":
        return Appointment.clinic_id == value
    if name == "starts_from":
        return Appointment.starts_at >= value
    if name == "starts_before":
        return Appointment.starts_at < value
    if name == "status":
        return Appointment.status == value
    side = DOCTOR if name in ("doctor_id", "clinic_doctor_id") else PATIENT
    clinics = _in_scope if scoped else None
    if name.startswith("clinic_"):
        return names_membership(side, value, layout, clinics)
    return names_person(side, value, layout, clinics)


def _in_scope(clinic_id: InstrumentedAttribute[uuid.UUID]) -> ColumnElement[bool]:
    return in_ids(clinic_id, "scope")


_TYPES = {
    "clinic_id": Appointment.clinic_id.type,
    "doctor_id": Appointment.clinic_id.type,
    "patient_id": Appointment.clinic_id.type,
    "clinic_doctor_id": Appointment.clinic_id.type,
    "clinic_patient_id": Appointment.clinic_id.type,
    "starts_from": Appointment.starts_at.type,
    "starts_before": Appointment.starts_at.type,
    "status": Appointment.status.type,
}
