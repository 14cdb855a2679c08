"""The stage rules on the read side, as SQL generated from the stage table.

For each side (doctor, patient) of an appointment row: which origin answers
(the authoritative one, or the other when the authoritative column is empty: a
fallback), the membership and the person served, and where the two stored
origins differ. Nothing here names a stage: the per-row policy comes from the
``StagePolicy`` of each stage the statement serves, as constants when they all
agree and as a test of the row's clinic otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    FromClause,
    and_,
    case,
    false,
    null,
    or_,
    true,
    type_coerce,
)
from sqlalchemy.sql.elements import False_, True_

from appointments.layout import Layout
from appointments.membership_sql import membership_of, membership_table, person_of
from appointments.read_model.id_lists import in_ids
from appointments.read_model.sql import all_of, any_of, constant, negate, text_constant, when
from appointments.sides import Side
from appointments.stages import Stage, policy_for

Expression = ColumnElement[Any]


@dataclass(frozen=True, slots=True)
class RowPolicy:
    """The stage policy of a row, as SQL (constants where every served stage agrees)."""

    stage: Expression
    new_authoritative: Expression
    compared: Expression

    @classmethod
    def of(cls, clinic: Expression, stages: Sequence[Stage]) -> RowPolicy:
        """``stages``: the stages served, each row's chosen by its clinic being in the
        parameter ``clinics_<stage>`` (only when more than one is served; a row whose
        clinic is in none of them has a null policy, and is not to be served)."""

        def pick(
            value_of: Callable[[Stage], Any], as_literal: Callable[[Any], Expression]
        ) -> Expression:
            values = {stage: value_of(stage) for stage in stages}
            if len(set(values.values())) == 1:
                return as_literal(next(iter(values.values())))
            whens = [
                (in_ids(clinic, f"clinics_{stage.value}"), as_literal(value))
                for stage, value in values.items()
            ]
            return case(*whens, else_=null())

        return cls(
            stage=pick(lambda stage: stage.value, text_constant),
            new_authoritative=pick(lambda stage: policy_for(stage).new_authoritative, constant),
            compared=pick(lambda stage: policy_for(stage).compared, constant),
        )


@dataclass(frozen=True, slots=True)
class SideValues:
    """What one side (doctor or patient) of a row serves, and how its origins compare."""

    side: Side
    legacy: Expression
    new_membership: Expression
    fell_back: Expression
    new_origin: Expression
    visible: Expression
    stored_membership_id: Expression
    person_id: Expression
    person_differs: Expression
    clinic_differs: Expression
    stored_person: Expression
    stored_clinic: Expression

    def labelled(self) -> list[Expression]:
        """The values as columns named ``<side>_<value>`` (constants stay out)."""
        return [
            value.label(f"{self.side.name}_{name}")
            for name, value in self._values()
            if not isinstance(value, True_ | False_)
        ]

    def named(self, columns: FromClause) -> SideValues:
        """The same values read from ``columns``, a FROM that selected ``labelled()``."""
        named: dict[str, Any] = {
            name: columns.c[f"{self.side.name}_{name}"]
            for name, value in self._values()
            if not isinstance(value, True_ | False_)
        }
        return replace(self, **named)

    def _values(self) -> list[tuple[str, Expression]]:
        return [(name, getattr(self, name)) for name in _VALUES]


_VALUES = tuple(field.name for field in fields(SideValues) if field.name != "side")


@dataclass(frozen=True, slots=True)
class ServedSide:
    """One side of the row: the values it serves, and the joins they need."""

    values: SideValues
    joins: Sequence[tuple[FromClause, Expression]]


def served_side(
    side: Side,
    row: FromClause,
    policy: RowPolicy,
    layout: Layout,
    sees_every_clinic: bool,
) -> ServedSide:
    """The SQL of ``side`` for the rows of ``row`` (a FROM with the appointment's columns):
    its values, and the outer join bringing the stored membership. The membership the
    legacy origin serves (the legacy person's in the row's clinic) is found where it is
    shown (``served_membership``).

    A stored membership of another clinic than the row's is served only when the
    viewer sees that clinic (parameter ``viewer_clinics`` unless ``sees_every_clinic``).
    """
    table = membership_table(side)
    stored = table.alias(f"{side.name}_stored")
    clinic = row.c.clinic_id
    legacy: Expression = row.c[side.legacy_column] if layout.legacy_columns else null()
    new = row.c[side.new_column]
    new_authoritative = policy.new_authoritative
    authoritative_empty = when(new_authoritative, new.is_(None), legacy.is_(None))
    other_present = when(new_authoritative, legacy.isnot(None), new.isnot(None))
    fell_back = all_of(authoritative_empty, other_present)
    new_origin = any_of(
        all_of(new_authoritative, negate(fell_back)),
        all_of(negate(new_authoritative), fell_back),
    )
    visible = (
        true()
        if sees_every_clinic
        else or_(
            stored.c.clinic_id.is_(None),
            stored.c.clinic_id == clinic,
            in_ids(stored.c.clinic_id, "viewer_clinics"),
        )
    )
    stored_person = person_of(side, stored)
    person_id = when(new_origin, when(visible, stored_person, null()), legacy)
    person_differs: Expression
    if layout.legacy_columns:
        person_differs = case(
            (stored.c.id.is_(None), legacy.isnot(None)),
            else_=or_(legacy.is_(None), legacy != stored_person),
        )
    else:
        person_differs = false()
    clinic_differs = and_(stored.c.id.isnot(None), stored.c.clinic_id != clinic)
    values = SideValues(
        side=side,
        legacy=legacy,
        new_membership=new,
        fell_back=_boolean(fell_back),
        new_origin=_boolean(new_origin),
        visible=visible,
        stored_membership_id=when(visible, stored.c.id, null()),
        person_id=person_id,
        person_differs=_boolean(person_differs),
        clinic_differs=_boolean(clinic_differs),
        stored_person=stored_person,
        stored_clinic=stored.c.clinic_id,
    )
    joins: list[tuple[FromClause, Expression]] = [(stored, stored.c.id == new)]
    return ServedSide(values, joins)


def served_membership(
    values: SideValues, membership: FromClause, clinic: Expression
) -> tuple[Expression, Expression]:
    """Which row of ``membership`` (an alias of the side's membership table) the side
    serves: (condition when the new origin serves, condition when the legacy one does)."""
    return (
        membership.c.id == values.stored_membership_id,
        membership_of(values.side, membership, clinic, values.legacy),
    )


def _boolean(condition: Expression) -> Expression:
    """A condition read back as a bool (SQLite returns integers), constants as they are."""
    if isinstance(condition, True_ | False_):
        return condition
    return type_coerce(condition, Boolean)


def stage_parameters(
    stages_by_clinic: Mapping[Any, Stage], served: Sequence[Stage]
) -> dict[str, list[Any]]:
    """The ``clinics_<stage>`` parameters ``RowPolicy.of`` reads for the ``served``
    stages (each present, empty when no clinic is in it), for these clinics."""
    parameters: dict[str, list[Any]] = {f"clinics_{stage.value}": [] for stage in served}
    for clinic, stage in stages_by_clinic.items():
        parameters.setdefault(f"clinics_{stage.value}", []).append(clinic)
    return parameters
