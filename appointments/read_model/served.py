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
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    FromClause,
    and_,
    bindparam,
    case,
    false,
    literal,
    not_,
    null,
    or_,
    true,
    type_coerce,
)

from appointments.membership_sql import membership_of, membership_table, person_of
from appointments.sides import Side
from appointments.stages import Stage, policy_for

Expression = ColumnElement[Any]


def clinics_param(name: str) -> Any:
    """An expanding parameter: a list of clinic ids, one text for any length."""
    return bindparam(name, expanding=True)


@dataclass(frozen=True, slots=True)
class RowPolicy:
    """The stage policy of a row, as SQL (constants where every served stage agrees)."""

    stage: Expression
    new_authoritative: Expression
    compared: Expression

    @classmethod
    def of(cls, clinic: Expression, stages: Sequence[Stage]) -> RowPolicy:
        """``stages``: the stages served, each row's chosen by its clinic being in the
        parameter ``clinics_<stage>`` (only when more than one is served)."""

        def pick(
            value_of: Callable[[Stage], Any], as_literal: Callable[[Any], Expression]
        ) -> Expression:
            values = {stage: value_of(stage) for stage in stages}
            if len(set(values.values())) == 1:
                return as_literal(next(iter(values.values())))
            whens = [
                (clinic.in_(clinics_param(f"clinics_{stage.value}")), as_literal(value))
                for stage, value in values.items()
            ]
            return case(*whens, else_=null())

        return cls(
            stage=pick(lambda stage: stage.value, lambda value: literal(value)),
            new_authoritative=pick(lambda stage: policy_for(stage).new_authoritative, _boolean),
            compared=pick(lambda stage: policy_for(stage).compared, _boolean),
        )


def _boolean(value: bool) -> Expression:
    return true() if value else false()


@dataclass(frozen=True, slots=True)
class ServedSide:
    """One side of the row: the stored origins, what is served, and the differences."""

    side: Side
    legacy: Expression
    stored_membership: FromClause
    derived_membership: FromClause | None
    fell_back: Expression
    new_origin: Expression
    visible: Expression
    membership_id: Expression
    person_id: Expression
    person_differs: Expression
    clinic_differs: Expression

    @property
    def stored_person(self) -> Expression:
        return person_of(self.side, self.stored_membership)

    @property
    def stored_clinic(self) -> Expression:
        return self.stored_membership.c.clinic_id

    def joins(self, row: FromClause, clinic: Expression) -> list[tuple[FromClause, Expression]]:
        """Outer joins bringing the stored membership, and the one the legacy person has
        in the row's clinic."""
        joins = [
            (self.stored_membership, self.stored_membership.c.id == row.c[self.side.new_column])
        ]
        if self.derived_membership is not None:
            derived = self.derived_membership
            joins.append((derived, membership_of(self.side, derived, clinic, self.legacy)))
        return joins


def served_side(
    side: Side,
    row: FromClause,
    policy: RowPolicy,
    legacy_columns: bool,
    sees_every_clinic: bool,
) -> ServedSide:
    """The SQL of ``side`` for the rows of ``row`` (a FROM with the appointment's columns).

    A stored membership of another clinic than the row's is served only when the
    viewer sees that clinic (parameter ``viewer_clinics`` unless ``sees_every_clinic``).
    """
    table = membership_table(side)
    stored = table.alias(f"{side.name}_stored")
    derived = table.alias(f"{side.name}_derived") if legacy_columns else None
    clinic = row.c.clinic_id
    legacy: Expression = row.c[side.legacy_column] if legacy_columns else null()
    new = row.c[side.new_column]
    authoritative_empty = case((policy.new_authoritative, new.is_(None)), else_=legacy.is_(None))
    other_present = case((policy.new_authoritative, legacy.isnot(None)), else_=new.isnot(None))
    fell_back = and_(authoritative_empty, other_present)
    new_origin = or_(
        and_(policy.new_authoritative, not_(fell_back)),
        and_(not_(policy.new_authoritative), fell_back),
    )
    visible = (
        true()
        if sees_every_clinic
        else or_(
            stored.c.clinic_id.is_(None),
            stored.c.clinic_id == clinic,
            stored.c.clinic_id.in_(clinics_param("viewer_clinics")),
        )
    )
    stored_person = person_of(side, stored)
    derived_id = derived.c.id if derived is not None else null()
    membership_id = case((new_origin, case((visible, stored.c.id), else_=null())), else_=derived_id)
    person_id = case((new_origin, case((visible, stored_person), else_=null())), else_=legacy)
    person_differs: Expression
    if legacy_columns:
        person_differs = case(
            (stored.c.id.is_(None), legacy.isnot(None)),
            else_=or_(legacy.is_(None), legacy != stored_person),
        )
    else:
        person_differs = false()
    clinic_differs = and_(stored.c.id.isnot(None), stored.c.clinic_id != clinic)
    return ServedSide(
        side,
        legacy,
        stored,
        derived,
        type_coerce(fell_back, Boolean),
        type_coerce(new_origin, Boolean),
        visible,
        membership_id,
        person_id,
        type_coerce(person_differs, Boolean),
        type_coerce(clinic_differs, Boolean),
    )


def stage_parameters(stages_by_clinic: Mapping[Any, Stage]) -> dict[str, list[Any]]:
    """The ``clinics_<stage>`` parameters ``RowPolicy.of`` reads, for these clinics."""
    parameters: dict[str, list[Any]] = {}
    for clinic, stage in stages_by_clinic.items():
        parameters.setdefault(f"clinics_{stage.value}", []).append(clinic)
    return parameters
