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


def compare_side(link: StoredLink, stored_membership: MembershipRecord | None) -> SideComparison:
    """Compare one side. ``stored_membership`` is the row ``link``'s new column names."""
    if stored_membership is None:
        new_person = new_clinic = None
    else:
        new_person = link.side.person_of(stored_membership)
        new_clinic = stored_membership.clinic_id
    return SideComparison(
        link.side,
        link.legacy_id,
        link.membership_id,
        new_person,
        new_clinic,
        differences_between(link, stored_membership),
    )


def differences_between(
    link: StoredLink, stored_membership: MembershipRecord | None
) -> tuple[Difference, ...]:
    """Where the two origins of one side differ; empty when they agree.

    A list compares a few hundred links, most of them consistent, so this builds
    nothing for a consistent one and compares UUIDs by integer (``uuid.UUID``
    compares in Python).
    """
    side = link.side
    legacy_person = link.legacy_id
    if stored_membership is None:
        if link.has_legacy_column and legacy_person is not None:
            return (Difference(side.person_field, legacy_person, None),)
        return ()
    new_person: uuid.UUID = getattr(stored_membership, side.person_column)
    new_clinic = stored_membership.clinic_id
    differences: tuple[Difference, ...] = ()
    if link.has_legacy_column and (legacy_person is None or legacy_person.int != new_person.int):
        differences = (Difference(side.person_field, legacy_person, new_person),)
    if new_clinic.int != link.clinic_id.int:
        differences += (Difference(side.clinic_field, link.clinic_id, new_clinic),)
    return differences
