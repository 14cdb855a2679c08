"""Comparing the two sides of an appointment: what each origin says, and where they differ.

The legacy origin is the person id stored on the appointment; the new origin is
the membership stored on it, with that membership's person and clinic. They
agree when the membership's person is the legacy person and the membership
belongs to the appointment's clinic. A side present on one origin only is a
difference too. After the contract revision there is no legacy origin: only
the membership's clinic is checked.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import NamedTuple

from appointments.models import MismatchField
from appointments.sides import MembershipRecord, Side, StoredLink


@dataclass(frozen=True, slots=True)
class Difference:
    field: MismatchField
    legacy_value: uuid.UUID | None
    new_value: uuid.UUID | None


class SideComparison(NamedTuple):
    """One side (doctor or patient) of one appointment, as each origin has it."""

    side: Side
    legacy_person_id: uuid.UUID | None
    new_membership_id: uuid.UUID | None
    new_person_id: uuid.UUID | None
    new_clinic_id: uuid.UUID | None
    differences: tuple[Difference, ...]

    @property
    def consistent(self) -> bool:
        return not self.differences

    @property
    def compared_fields(self) -> tuple[MismatchField, MismatchField]:
        return (self.side.person_field, self.side.clinic_field)


def compare_side(link: StoredLink, stored_membership: MembershipRecord | None) -> SideComparison:
    """Compare one side. ``stored_membership`` is the row ``link``'s new column names."""
    side = link.side
    legacy_person = link.legacy_id
    if stored_membership is None:
        new_person = new_clinic = None
    else:
        new_person = getattr(stored_membership, side.person_column)
        new_clinic = stored_membership.clinic_id
    differences: tuple[Difference, ...] = ()
    if link.has_legacy_column and _differ(legacy_person, new_person):
        differences = (Difference(side.person_field, legacy_person, new_person),)
    if new_clinic is not None and new_clinic.int != link.clinic_id.int:
        differences += (Difference(side.clinic_field, link.clinic_id, new_clinic),)
    return SideComparison(
        side, legacy_person, link.membership_id, new_person, new_clinic, differences
    )


def _differ(one: uuid.UUID | None, other: uuid.UUID | None) -> bool:
    # By integer: uuid.UUID compares in Python, and a list compares 400 pairs.
    if one is None or other is None:
        return one is not other
    return one.int != other.int
