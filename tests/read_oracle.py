"""A reference model of the read rules, in plain Python, for the differential test.

The service never imports this. It states the rules as simply as they can be
said: for each side of an appointment, the stage's authoritative origin answers
unless its column is empty and the other's is not (a fallback); the legacy origin
serves the person stored on the row and their membership in the row's clinic;
the new origin serves the stored membership and its person, unless that
membership belongs to a clinic the viewer cannot see (then nothing); the two
stored origins differ when the membership's person is not the legacy person or
its clinic is not the row's.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from appointments.stages import Stage, policy_for


@dataclass(frozen=True)
class Membership:
    id: uuid.UUID
    clinic_id: uuid.UUID
    person_id: uuid.UUID
    active: bool = True


@dataclass(frozen=True)
class Person:
    id: uuid.UUID
    name: str
    born: date | None = None


@dataclass(frozen=True)
class Row:
    id: uuid.UUID
    clinic_id: uuid.UUID
    starts_at: datetime
    legacy: dict[str, uuid.UUID | None]
    new: dict[str, uuid.UUID | None]


@dataclass
class Data:
    clinics: dict[uuid.UUID, str]
    people: dict[str, dict[uuid.UUID, Person]]
    memberships: dict[str, dict[uuid.UUID, Membership]]
    rows: list[Row]
    legacy_columns: bool = True

    def membership_of(self, side: str, clinic: uuid.UUID, person: uuid.UUID) -> Membership | None:
        return next(
            (
                m
                for m in self.memberships[side].values()
                if m.clinic_id == clinic and m.person_id == person
            ),
            None,
        )


@dataclass(frozen=True)
class ServedSide:
    new_origin: bool
    fell_back: bool
    membership: Membership | None
    person: uuid.UUID | None
    differences: tuple[tuple[str, uuid.UUID | None, uuid.UUID | None], ...]
    stored: Membership | None


def serve(
    data: Data, row: Row, side: str, stage: Stage, sees: Callable[[uuid.UUID], bool]
) -> ServedSide:
    policy = policy_for(stage)
    legacy = row.legacy[side] if data.legacy_columns else None
    new = row.new[side]
    authoritative, other = (new, legacy) if policy.new_authoritative else (legacy, new)
    fell_back = authoritative is None and other is not None
    new_origin = policy.new_authoritative != fell_back
    stored = None if new is None else data.memberships[side][new]
    membership: Membership | None
    if new_origin:
        visible = stored is not None and (
            stored.clinic_id == row.clinic_id or sees(stored.clinic_id)
        )
        membership = stored if visible else None
        person = None if membership is None else membership.person_id
    else:
        person = legacy
        membership = None if legacy is None else data.membership_of(side, row.clinic_id, legacy)
    differences: list[tuple[str, uuid.UUID | None, uuid.UUID | None]] = []
    if stored is None:
        if data.legacy_columns and legacy is not None:
            differences.append((side.upper(), legacy, None))
    else:
        if data.legacy_columns and legacy != stored.person_id:
            differences.append((side.upper(), legacy, stored.person_id))
        if stored.clinic_id != row.clinic_id:
            differences.append((f"{side.upper()}_CLINIC", row.clinic_id, stored.clinic_id))
    return ServedSide(new_origin, fell_back, membership, person, tuple(differences), stored)


def appointment_json(
    data: Data, row: Row, stage: Stage, sees: Callable[[uuid.UUID], bool]
) -> dict[str, Any]:
    """The answer to the differential test's selection (``tests.test_read_oracle.NODE``)."""
    doctor = serve(data, row, "doctor", stage, sees)
    patient = serve(data, row, "patient", stage, sees)
    policy = policy_for(stage)

    def seen(served: ServedSide, value: uuid.UUID | None) -> str | None:
        stored = served.stored
        if stored is None or stored.clinic_id == row.clinic_id or sees(stored.clinic_id):
            return _id(value)
        return None

    def membership(served: ServedSide, side: str) -> dict[str, Any] | None:
        found = served.membership
        if found is None:
            return None
        person = data.people[side][found.person_id]
        return {
            "id": str(found.id),
            "active": found.active,
            "clinic": {"name": data.clinics[found.clinic_id]},
            ("user" if side == "doctor" else "patient"): _person(person, side),
        }

    differences = [
        {"field": field, "legacyValue": _id(old), "newValue": seen(served, new)}
        for served in (doctor, patient)
        for field, old, new in served.differences
    ]
    return {
        "id": str(row.id),
        "startsAt": row.starts_at.astimezone(UTC).isoformat(),
        "doctor": (
            None
            if doctor.person is None
            else _person(data.people["doctor"][doctor.person], "doctor")
        ),
        "patient": (
            None
            if patient.person is None
            else _person(data.people["patient"][patient.person], "patient")
        ),
        "clinicDoctor": membership(doctor, "doctor"),
        "clinicPatient": membership(patient, "patient"),
        "migration": {
            "stage": stage.name,
            "authoritativeOrigin": "NEW" if policy.new_authoritative else "LEGACY",
            "consistent": not differences,
            "doctor": {
                "servedOrigin": "NEW" if doctor.new_origin else "LEGACY",
                "fellBack": doctor.fell_back,
                "newClinicId": seen(
                    doctor, None if doctor.stored is None else doctor.stored.clinic_id
                ),
            },
            "differences": differences,
        },
    }


def _person(person: Person, side: str) -> dict[str, Any]:
    if side == "doctor":
        return {"id": str(person.id), "name": person.name}
    return {
        "id": str(person.id),
        "fullName": person.name,
        "dateOfBirth": None if person.born is None else person.born.isoformat(),
    }


def _id(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def ledger(
    data: Data, stages: dict[uuid.UUID, Stage], shown: set[uuid.UUID]
) -> set[tuple[uuid.UUID, str]]:
    """The (appointment, field) entries a read of ``shown`` leaves open in the ledger."""
    entries: set[tuple[uuid.UUID, str]] = set()
    for row in data.rows:
        stage = stages[row.clinic_id]
        if row.id not in shown or not policy_for(stage).compared:
            continue
        for side in ("doctor", "patient"):
            served = serve(data, row, side, stage, lambda _clinic: True)
            entries |= {(row.id, field.lower()) for field, _, _ in served.differences}
    return entries


def metric_changes(
    data: Data,
    stages: dict[uuid.UUID, Stage],
    shown: list[Row],
    sees: Callable[[uuid.UUID], bool],
) -> Counter[tuple[str, ...]]:
    """What a read showing the links of ``shown`` adds to the migration metrics, by
    (metric, labels...): sides served, fallbacks, comparisons and mismatches."""
    changes: Counter[tuple[str, ...]] = Counter()
    for row in shown:
        stage = stages[row.clinic_id]
        compared = policy_for(stage).compared
        for side in ("doctor", "patient"):
            served = serve(data, row, side, stage, sees)
            origin = "new" if served.new_origin else "legacy"
            outcome = (
                "empty"
                if served.person is None
                else "fallback"
                if served.fell_back
                else "authoritative"
            )
            changes[("reads", stage.value, side, origin, outcome)] += 1
            if served.fell_back:
                changes[("fallbacks", stage.value, side)] += 1
            if compared:
                verdict = "inconsistent" if served.differences else "consistent"
                changes[("comparisons", stage.value, verdict)] += 1
                for field, _, _ in served.differences:
                    changes[("mismatches", stage.value, field.lower())] += 1
    return changes
