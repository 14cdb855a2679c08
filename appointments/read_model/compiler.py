"""An appointment selection compiled into one statement whose rows carry each
appointment's JSON, built by the database, and the columns the bookkeeping reads.

``compile_read`` takes the collected selection (``schema.selection``) below an
``Appointment``, the stages the rows are served in, and a FROM clause of the
appointment rows to serve (a page, or rows by id). Joins are added only for
objects the selection reaches. The JSON is formatted as the schema serialises
each value (``formats``); the stage rules come from ``served``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    FromClause,
    Select,
    Text,
    case,
    cast,
    literal,
    not_,
    null,
    or_,
    select,
    type_coerce,
)

from appointments.models import Clinic, Patient, User
from appointments.read_model.formats import JsonSql
from appointments.read_model.served import RowPolicy, ServedSide, served_side
from appointments.sides import DOCTOR, PATIENT, Side
from appointments.stages import Stage
from schema.selection import SelectedField, Selection

Expression = ColumnElement[Any]


@dataclass
class _Build:
    json: JsonSql
    joins: list[tuple[FromClause, Expression]] = field(default_factory=list)
    joined: dict[str, FromClause] = field(default_factory=dict)

    def join(self, name: str, table: Any, on: Callable[[FromClause], Expression]) -> FromClause:
        found = self.joined.get(name)
        if found is None:
            found = self.joined[name] = table.alias(name)
            self.joins.append((found, on(found)))
        return found


@dataclass(frozen=True, slots=True)
class CompiledRead:
    """The statement and where its bookkeeping columns are."""

    statement: Select[Any]
    sides: tuple[Side, ...]


LINK_FIELDS = frozenset({"doctor", "patient", "clinicDoctor", "clinicPatient", "migration"})

# Columns of every row, before the JSON: the bookkeeping reads them by position.
ROW_COLUMNS = ("id", "clinic_id", "starts_at", "node")
SIDE_COLUMNS = (
    "fell_back",
    "new_origin",
    "empty",
    "person_differs",
    "clinic_differs",
    "legacy",
    "stored_person",
    "stored_clinic",
)


def compile_read(
    json: JsonSql,
    selection: Selection,
    rows: FromClause,
    stages: Sequence[Stage],
    legacy_columns: bool,
    sees_every_clinic: bool,
) -> CompiledRead:
    build = _Build(json)
    policy = RowPolicy.of(rows.c.clinic_id, stages)
    # The links are served (and so counted and compared) only where the selection shows
    # them, as a read that shows none of them never looked at them.
    shows_links = any(selected.name in LINK_FIELDS for selected in selection)
    sides = {
        side: served_side(side, rows, policy, legacy_columns, sees_every_clinic)
        for side in ((DOCTOR, PATIENT) if shows_links else ())
    }
    appointment = _AppointmentSource(build, rows, policy, sides)
    node = _object(build, "Appointment", selection, appointment.field)
    node_text = cast(node, Text) if json.postgres else type_coerce(node, Text)
    columns: list[Expression] = [
        rows.c.id,
        rows.c.clinic_id,
        rows.c.starts_at,
        node_text.label("node"),
    ]
    for served in sides.values():
        values = (
            served.fell_back,
            served.new_origin,
            type_coerce(served.person_id.is_(None), served.fell_back.type),
            served.person_differs,
            served.clinic_differs,
            served.legacy,
            served.stored_person,
            served.stored_clinic,
        )
        columns += [
            value.label(f"{served.side.name}_{name}")
            for name, value in zip(SIDE_COLUMNS, values, strict=True)
        ]
    source: Any = rows
    for served in sides.values():
        for table, on in served.joins(rows, rows.c.clinic_id):
            source = source.outerjoin(table, on)
    for table, on in build.joins:
        source = source.outerjoin(table, on)
    statement = select(*columns).select_from(source).order_by(rows.c.starts_at, rows.c.id)
    return CompiledRead(statement, tuple(sides))


FieldOf = Callable[[SelectedField], Expression]


def _object(build: _Build, type_name: str, selection: Selection, field_of: FieldOf) -> Expression:
    pairs = [
        (
            selected.key,
            build.json.constant(type_name) if selected.name == "__typename" else field_of(selected),
        )
        for selected in selection
    ]
    return build.json.object(pairs)


@dataclass
class _AppointmentSource:
    build: _Build
    rows: FromClause
    policy: RowPolicy
    sides: dict[Side, ServedSide]

    def field(self, selected: SelectedField) -> Expression:
        json, row = self.build.json, self.rows.c
        name = selected.name
        scalars: dict[str, Callable[[], Expression]] = {
            "id": lambda: json.uuid(row.id),
            "startsAt": lambda: json.moment(row.starts_at),
            "endsAt": lambda: json.moment(row.ends_at),
            "createdAt": lambda: json.moment(row.created_at),
            "updatedAt": lambda: json.moment(row.updated_at),
            "status": lambda: json.enum_name(row.status),
            "reason": lambda: row.reason,
        }
        if name in scalars:
            return scalars[name]()
        if name == "clinic":
            clinic = self.build.join(
                "appointment_clinic", Clinic.__table__, lambda t: t.c.id == row.clinic_id
            )
            return _clinic(self.build, clinic, selected.children)
        if name in ("doctor", "patient"):
            side = DOCTOR if name == "doctor" else PATIENT
            served = self.sides[side]
            person = self.build.join(
                f"{name}_person",
                side.person_model.__table__,
                lambda t: t.c.id == served.person_id,
            )
            return _person(self.build, side, person, selected.children)
        if name in ("clinicDoctor", "clinicPatient"):
            side = DOCTOR if name == "clinicDoctor" else PATIENT
            served = self.sides[side]
            membership = self.build.join(
                f"{side.name}_served",
                side.membership_model.__table__,
                lambda t: t.c.id == served.membership_id,
            )
            return _membership(self.build, side, membership, selected.children)
        if name == "migration":
            return _migration(self.build, self.rows, self.policy, self.sides, selected.children)
        raise KeyError(f"Appointment.{name} has no source in the read model")


def _clinic(build: _Build, clinic: FromClause, selection: Selection) -> Expression:
    json = build.json
    sources: dict[str, Callable[[], Expression]] = {
        "id": lambda: json.uuid(clinic.c.id),
        "name": lambda: clinic.c.name,
        "createdAt": lambda: json.moment(clinic.c.created_at),
    }
    return _object(build, "Clinic", selection, lambda selected: sources[selected.name]())


def _person(build: _Build, side: Side, person: FromClause, selection: Selection) -> Expression:
    json = build.json
    sources: dict[str, Callable[[], Expression]]
    if side is DOCTOR:
        type_name = "User"
        sources = {
            "id": lambda: json.uuid(person.c.id),
            "name": lambda: person.c.name,
            "email": lambda: person.c.email,
            "role": lambda: json.enum_name(person.c.role),
            "active": lambda: json.boolean(person.c.active),
        }
    else:
        type_name = "Patient"
        sources = {
            "id": lambda: json.uuid(person.c.id),
            "fullName": lambda: person.c.full_name,
            "dateOfBirth": lambda: json.date(person.c.date_of_birth),
        }
    value = _object(build, type_name, selection, lambda selected: sources[selected.name]())
    return _or_null(person.c.id, value)


def _or_null(key: Expression, value: Expression) -> Expression:
    return case((key.isnot(None), value), else_=null())


def _membership(
    build: _Build, side: Side, membership: FromClause, selection: Selection
) -> Expression:
    json = build.json
    prefix = f"{side.name}_served"

    def field_of(selected: SelectedField) -> Expression:
        name = selected.name
        if name == "id":
            return json.uuid(membership.c.id)
        if name == "createdAt":
            return json.moment(membership.c.created_at)
        if name == "active" and side is DOCTOR:
            return json.boolean(membership.c.active)
        if name == "clinic":
            clinic = build.join(
                f"{prefix}_clinic", Clinic.__table__, lambda t: t.c.id == membership.c.clinic_id
            )
            return _clinic(build, clinic, selected.children)
        if name in ("user", "patient"):
            person_table = User.__table__ if side is DOCTOR else Patient.__table__
            person = build.join(
                f"{prefix}_person",
                person_table,
                lambda t: t.c.id == membership.c[side.person_column],
            )
            return _person(build, side, person, selected.children)
        raise KeyError(f"{side.name} membership field {name} has no source")

    type_name = "ClinicDoctor" if side is DOCTOR else "ClinicPatient"
    return _or_null(membership.c.id, _object(build, type_name, selection, field_of))


def _origin_name(new_origin: Expression) -> Expression:
    return case((new_origin, literal("NEW")), else_=literal("LEGACY"))


def _migration(
    build: _Build,
    rows: FromClause,
    policy: RowPolicy,
    sides: dict[Side, ServedSide],
    selection: Selection,
) -> Expression:
    json = build.json

    def masked(served: ServedSide, value: Expression) -> Expression:
        return case((served.visible, value), else_=null())

    def differs(served: ServedSide) -> Expression:
        return or_(served.person_differs, served.clinic_differs)

    def side_origins(served: ServedSide, children: Selection) -> Expression:
        sources: dict[str, Callable[[], Expression]] = {
            "servedOrigin": lambda: _origin_name(served.new_origin),
            "fellBack": lambda: json.boolean(served.fell_back),
            "legacyPersonId": lambda: json.uuid(served.legacy),
            "newMembershipId": lambda: masked(served, json.uuid(rows.c[served.side.new_column])),
            "newPersonId": lambda: masked(served, json.uuid(served.stored_person)),
            "newClinicId": lambda: masked(served, json.uuid(served.stored_clinic)),
            "consistent": lambda: json.boolean(not_(differs(served))),
        }
        return _object(build, "SideOrigins", children, lambda s: sources[s.name]())

    def difference(
        children: Selection, served: ServedSide, kind: Any, legacy: Expression, new: Expression
    ) -> Expression:
        def field_of(selected: SelectedField) -> Expression:
            if selected.name == "field":
                return literal(kind.name)
            if selected.name == "legacyValue":
                return json.uuid(legacy)
            return masked(served, json.uuid(new))

        return _object(build, "MigrationDifference", children, field_of)

    def differences(children: Selection) -> Expression:
        items: list[Expression] = []
        for served in sides.values():
            side = served.side
            for flag, kind, legacy_value, new_value in (
                (served.person_differs, side.person_field, served.legacy, served.stored_person),
                (served.clinic_differs, side.clinic_field, rows.c.clinic_id, served.stored_clinic),
            ):
                item = difference(children, served, kind, legacy_value, new_value)
                items.append(case((flag, item), else_=null()))
        return json.array(items)

    doctor, patient = sides[DOCTOR], sides[PATIENT]

    def field_of(selected: SelectedField) -> Expression:
        name = selected.name
        if name == "stage":
            return json.enum_name(policy.stage)
        if name == "authoritativeOrigin":
            return _origin_name(policy.new_authoritative)
        if name == "comparedStage":
            return json.boolean(policy.compared)
        if name == "consistent":
            return json.boolean(not_(or_(differs(doctor), differs(patient))))
        if name in ("doctor", "patient"):
            return side_origins(sides[DOCTOR if name == "doctor" else PATIENT], selected.children)
        if name == "differences":
            return differences(selected.children)
        raise KeyError(f"AppointmentMigration.{name} has no source in the read model")

    return _object(build, "AppointmentMigration", selection, field_of)
