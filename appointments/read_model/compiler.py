"""An appointment selection compiled into one statement whose rows carry each
appointment's JSON, built by the database, and the columns the bookkeeping reads.

``compile_read`` takes the collected selection below an ``Appointment`` (each
field with the source its type declares, ``sources``), the stages the rows are
served in, and a FROM clause of the appointment rows to serve (a page, or rows
by id). Each object the selection reaches is a correlated subquery building its
JSON (one index lookup per row served, as PostGraphile does). The JSON is
formatted as the schema serialises each value (``formats``); the stage rules come
from ``served``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    FromClause,
    Select,
    Text,
    cast,
    not_,
    null,
    or_,
    select,
    type_coerce,
)

from appointments.read_model.formats import JsonSql
from appointments.read_model.served import (
    RowPolicy,
    SideValues,
    served_membership,
    served_side,
)
from appointments.read_model.sources import (
    Column,
    MigrationState,
    Reference,
    SelectedField,
    Selection,
    Served,
    TypeName,
    shows_links,
)
from appointments.read_model.sql import any_of, text_constant, when
from appointments.sides import DOCTOR, PATIENT, Side
from appointments.stages import Stage

Expression = ColumnElement[Any]


@dataclass
class _Build:
    json: JsonSql
    rows: FromClause
    policy: RowPolicy
    sides: dict[Side, SideValues]
    legacy_columns: bool
    aliases: int = 0

    def alias(self, table: Any) -> FromClause:
        self.aliases += 1
        alias: FromClause = table.alias(f"read_{self.aliases}")
        return alias


@dataclass(frozen=True, slots=True)
class CompiledRead:
    """The statement and where its bookkeeping columns are."""

    statement: Select[Any]
    sides: tuple[Side, ...]


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
    # The links are served (and so counted and compared) only where the selection shows
    # them, as a read that shows none of them never looked at them.
    shown_sides = (DOCTOR, PATIENT) if shows_links(selection) else ()
    row_policy = RowPolicy.of(rows.c.clinic_id, stages)
    served = [
        served_side(side, rows, row_policy, legacy_columns, sees_every_clinic)
        for side in shown_sides
    ]
    # The served values are computed once, in an inner select, and the JSON refers to
    # them by name (the statement stays short however often a value is used).
    inner: FromClause = rows
    if served:
        source: Any = rows
        for side in served:
            for table, on in side.joins:
                source = source.outerjoin(table, on)
        labelled = [column for side in served for column in side.values.labelled()]
        inner = select(*rows.c, *labelled).select_from(source).subquery("served")
    sides = {side.values.side: side.values.named(inner) for side in served}
    build = _Build(json, inner, RowPolicy.of(inner.c.clinic_id, stages), sides, legacy_columns)
    node = _row_object(build, inner, selection)
    node_text = cast(node, Text) if json.postgres else type_coerce(node, Text)
    columns: list[Expression] = [
        inner.c.id,
        inner.c.clinic_id,
        inner.c.starts_at,
        node_text.label("node"),
    ]
    for values in sides.values():
        # The stored ids a difference names are sent only for a row that has one.
        differs = any_of(values.person_differs, values.clinic_differs)
        bookkeeping = (
            values.fell_back,
            values.new_origin,
            type_coerce(values.person_id.is_(None), Boolean),
            values.person_differs,
            values.clinic_differs,
            when(differs, values.legacy, null()),
            when(differs, values.stored_person, null()),
            when(differs, values.stored_clinic, null()),
        )
        columns += [
            value.label(f"{values.side.name}_{name}")
            for name, value in zip(SIDE_COLUMNS, bookkeeping, strict=True)
        ]
    statement = select(*columns).select_from(inner).order_by(inner.c.starts_at, inner.c.id)
    return CompiledRead(statement, tuple(sides))


FieldOf = Callable[[SelectedField], Expression]


def _object(build: _Build, selection: Selection, field_of: FieldOf) -> Expression:
    pairs = [
        (
            selected.key,
            build.json.constant(selected.source.name)
            if isinstance(selected.source, TypeName)
            else field_of(selected),
        )
        for selected in selection
    ]
    return build.json.object(pairs)


def _row_object(build: _Build, row: FromClause, selection: Selection) -> Expression:
    """The object of ``row`` (a table, or the appointment rows) as ``selection`` shows it."""
    return _object(build, selection, lambda selected: _value(build, row, selected))


def _value(build: _Build, row: FromClause, selected: SelectedField) -> Expression:
    source = selected.source
    if isinstance(source, Column):
        return build.json.formatted(row.c[source.name], source.format)
    if isinstance(source, Reference):
        key = row.c[source.key]
        return _nested(build, source.model, lambda t: t.c.id == key, selected.children)
    if isinstance(source, Served):
        side = source.side
        served = build.sides[side]
        if source.part == "person":
            person = served.person_id
            return _nested(build, side.person_model, lambda t: t.c.id == person, selected.children)
        model, clinic = side.membership_model, build.rows.c.clinic_id
        by_new = _nested(
            build, model, lambda t: served_membership(served, t, clinic)[0], selected.children
        )
        if not build.legacy_columns:
            return when(served.new_origin, by_new, null())
        by_legacy = _nested(
            build, model, lambda t: served_membership(served, t, clinic)[1], selected.children
        )
        return when(served.new_origin, by_new, by_legacy)
    if isinstance(source, MigrationState):
        return _migration(build, selected.children)
    raise KeyError(f"{selected.name} has no source in the read model")


def _nested(
    build: _Build, model: Any, where: Callable[[FromClause], Expression], selection: Selection
) -> Expression:
    """The object of the ``model`` row ``where`` picks (at most one), or null: a correlated
    subquery, which the database runs as one index lookup per row it serves."""
    table = build.alias(model.__table__)
    value = _row_object(build, table, selection)
    return build.json.nested(select(value).where(where(table)).scalar_subquery())


def _origin_name(new_origin: Expression) -> Expression:
    return when(new_origin, text_constant("NEW"), text_constant("LEGACY"))


def _migration(build: _Build, selection: Selection) -> Expression:
    json, rows, policy, sides = build.json, build.rows, build.policy, build.sides

    def masked(served: SideValues, value: Expression) -> Expression:
        return when(served.visible, value, null())

    def differs(served: SideValues) -> Expression:
        return or_(served.person_differs, served.clinic_differs)

    def side_origins(served: SideValues, children: Selection) -> Expression:
        sources: dict[str, Callable[[], Expression]] = {
            "servedOrigin": lambda: _origin_name(served.new_origin),
            "fellBack": lambda: json.boolean(served.fell_back),
            "legacyPersonId": lambda: json.uuid(served.legacy),
            "newMembershipId": lambda: masked(served, json.uuid(served.new_membership)),
            "newPersonId": lambda: masked(served, json.uuid(served.stored_person)),
            "newClinicId": lambda: masked(served, json.uuid(served.stored_clinic)),
            "consistent": lambda: json.boolean(not_(differs(served))),
        }
        return _object(build, children, lambda s: sources[s.name]())

    def difference(
        children: Selection, served: SideValues, kind: Any, legacy: Expression, new: Expression
    ) -> Expression:
        def field_of(selected: SelectedField) -> Expression:
            if selected.name == "field":
                return text_constant(kind.name)
            if selected.name == "legacyValue":
                return json.uuid(legacy)
            return masked(served, json.uuid(new))

        return _object(build, children, field_of)

    def differences(children: Selection) -> Expression:
        items: list[Expression] = []
        for served in sides.values():
            side = served.side
            for flag, kind, legacy_value, new_value in (
                (served.person_differs, side.person_field, served.legacy, served.stored_person),
                (served.clinic_differs, side.clinic_field, rows.c.clinic_id, served.stored_clinic),
            ):
                item = difference(children, served, kind, legacy_value, new_value)
                items.append(when(flag, item, null()))
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

    return _object(build, selection, field_of)
