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
from typing import Any, NamedTuple

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
from sqlalchemy.sql.elements import False_

from appointments.layout import Layout
from appointments.read_model.entries import entries_sql
from appointments.read_model.formats import JsonSql
from appointments.read_model.served import (
    RowPolicy,
    SideValues,
    served_membership,
    served_side,
)
from appointments.read_model.sources import (
    Column,
    Consistency,
    Differences,
    DifferenceValue,
    MigrationSide,
    MigrationState,
    PolicyValue,
    Reference,
    SelectedField,
    Selection,
    Served,
    SideValue,
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
    layout: Layout
    aliases: int = 0

    def alias(self, table: Any) -> FromClause:
        self.aliases += 1
        alias: FromClause = table.alias(f"read_{self.aliases}")
        return alias


class RowColumns(NamedTuple):
    """Where a row's own values are in the statement's rows, found by their labels."""

    id: int
    clinic_id: int
    starts_at: int
    node: int
    entries: int | None
    """The appointment's ledger entries (``entries``), when the stages compare."""


class SideColumns(NamedTuple):
    """Where one side's bookkeeping values are in the statement's rows, by label
    (``<side>_<value>``)."""

    side: Side
    fell_back: int
    new_origin: int
    empty: int
    person_differs: int
    clinic_differs: int
    legacy: int
    stored_person: int
    stored_clinic: int
    name: str
    """``side.name``, read for every row (an enum's ``name`` is a Python-level call)."""


@dataclass(frozen=True, slots=True)
class CompiledRead:
    """The statement and where its bookkeeping columns are."""

    statement: Select[Any]
    row: RowColumns
    sides: tuple[SideColumns, ...]


def compile_read(
    json: JsonSql,
    selection: Selection,
    rows: FromClause,
    stages: Sequence[Stage],
    layout: Layout,
    sees_every_clinic: bool,
) -> CompiledRead:
    # The links are served (and so counted and compared) only where the selection shows
    # them, as a read that shows none of them never looked at them.
    shown_sides = (DOCTOR, PATIENT) if shows_links(selection) else ()
    row_policy = RowPolicy.of(rows.c.clinic_id, stages)
    served = [
        served_side(side, rows, row_policy, layout, sees_every_clinic) for side in shown_sides
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
    build = _Build(json, inner, RowPolicy.of(inner.c.clinic_id, stages), sides, layout)
    node = _row_object(build, inner, selection)
    node_text = cast(node, Text) if json.postgres else type_coerce(node, Text)
    columns: list[Expression] = [
        inner.c.id,
        inner.c.clinic_id,
        inner.c.starts_at,
        node_text.label("node"),
    ]
    compared = build.policy.compared
    if sides and not isinstance(compared, False_):
        columns.append(when(compared, entries_sql(inner.c.id), null()).label("entries"))
    for values in sides.values():
        columns += [
            value.label(f"{values.side.name}_{name}")
            for name, value in _bookkeeping(values).items()
        ]
    statement = select(*columns).select_from(inner).order_by(inner.c.starts_at, inner.c.id)
    at = {key: n for n, key in enumerate(statement.selected_columns.keys())}
    row_columns = RowColumns(
        at["id"], at["clinic_id"], at["starts_at"], at["node"], at.get("entries")
    )
    side_columns = tuple(
        SideColumns(
            side,
            **{name: at[f"{side.name}_{name}"] for name in SideColumns._fields[1:-1]},
            name=side.name,
        )
        for side in sides
    )
    return CompiledRead(statement, row_columns, side_columns)


def _bookkeeping(values: SideValues) -> dict[str, Expression]:
    """The values of a side the bookkeeping reads, by ``SideColumns`` name. The stored
    ids a difference names are sent only for a row that has one."""
    differs = any_of(values.person_differs, values.clinic_differs)
    return {
        "fell_back": values.fell_back,
        "new_origin": values.new_origin,
        "empty": type_coerce(values.person_id.is_(None), Boolean),
        "person_differs": values.person_differs,
        "clinic_differs": values.clinic_differs,
        "legacy": when(differs, values.legacy, null()),
        "stored_person": when(differs, values.stored_person, null()),
        "stored_clinic": when(differs, values.stored_clinic, null()),
    }


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
        if not build.layout.legacy_columns:
            return when(served.new_origin, by_new, null())
        by_legacy = _nested(
            build, model, lambda t: served_membership(served, t, clinic)[1], selected.children
        )
        return when(served.new_origin, by_new, by_legacy)
    if isinstance(source, MigrationState):
        return _migration(build, _InView(tuple(build.sides.values())), selected.children)
    raise KeyError(f"{selected.name} has no source in the read model")


def _nested(
    build: _Build, model: Any, where: Callable[[FromClause], Expression], selection: Selection
) -> Expression:
    """The object of the ``model`` row ``where`` picks (at most one), or null: a correlated
    subquery, which the database runs as one index lookup per row it serves."""
    table = build.alias(model.__table__)
    value = _row_object(build, table, selection)
    return build.json.nested(select(value).where(where(table)).scalar_subquery())


@dataclass(frozen=True, slots=True)
class _InView:
    """What the migration fields below an object see: the sides (both, or one), and
    the difference (its field's name, legacy and new values) when below one."""

    sides: tuple[SideValues, ...]
    difference: tuple[Expression, Expression, Expression] | None = None


def _migration(build: _Build, in_view: _InView, selection: Selection) -> Expression:
    return _object(build, selection, lambda selected: _migration_value(build, in_view, selected))


def _migration_value(build: _Build, in_view: _InView, selected: SelectedField) -> Expression:
    """A migration field's value, as the source it declares says (``sources``)."""
    json, source = build.json, selected.source
    if isinstance(source, PolicyValue):
        return json.formatted(getattr(build.policy, source.name), source.format)
    if isinstance(source, Consistency):
        return json.boolean(not_(or_(*(_differs(served) for served in in_view.sides))))
    if isinstance(source, MigrationSide):
        return _migration(build, _InView((build.sides[source.side],)), selected.children)
    if isinstance(source, SideValue):
        (served,) = in_view.sides
        value = json.formatted(getattr(served, source.name), source.format)
        return when(served.visible, value, null()) if source.masked else value
    if isinstance(source, Differences):
        items = [
            when(flag, _migration(build, _InView((served,), values), selected.children), null())
            for served in in_view.sides
            for flag, values in _differences_of(build, served)
        ]
        return json.array(items)
    if isinstance(source, DifferenceValue) and in_view.difference is not None:
        (served,) = in_view.sides
        field, legacy_value, new_value = in_view.difference
        parts = {"field": field, "legacy_value": legacy_value, "new_value": new_value}
        value = json.formatted(parts[source.name], source.format)
        return when(served.visible, value, null()) if source.masked else value
    raise KeyError(f"{selected.name} has no source in the migration state")


def _differs(served: SideValues) -> Expression:
    return or_(served.person_differs, served.clinic_differs)


def _differences_of(
    build: _Build, served: SideValues
) -> list[tuple[Expression, tuple[Expression, Expression, Expression]]]:
    """Each difference a side may have: whether it has it, and (field, legacy, new)."""
    side = served.side
    return [
        (
            served.person_differs,
            (text_constant(side.person_field.name), served.legacy, served.stored_person),
        ),
        (
            served.clinic_differs,
            (text_constant(side.clinic_field.name), build.rows.c.clinic_id, served.stored_clinic),
        ),
    ]
