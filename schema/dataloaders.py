"""One DataLoader per relation, created per request; each batch is one SQL statement.

Every loaded row is also kept in a plain dict (``known``), so that a resolver
whose rows were preloaded for a whole page answers without awaiting anything:
an async resolver costs graphql-core a task per field, a plain one does not.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Collection, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from strawberry.dataloader import DataLoader

from appointments import queries
from appointments.db import SerializedSession
from appointments.models import (
    Appointment,
    Base,
    Clinic,
    ClinicDoctor,
    ClinicPatient,
    Patient,
    User,
)
from appointments.reads import MISSING, Missing
from appointments.sides import DOCTOR, PATIENT, Membership, Side

RowT = TypeVar("RowT", bound=Base)
KeyT = TypeVar("KeyT", bound=Hashable)
ValueT = TypeVar("ValueT")
MembershipT = TypeVar("MembershipT", ClinicDoctor, ClinicPatient)
PersonT = TypeVar("PersonT", User, Patient)
MembershipKey = tuple[uuid.UUID, uuid.UUID]


def _known_first(
    known: dict[KeyT, ValueT | None],
    fetch: Callable[[list[KeyT]], Awaitable[Mapping[KeyT, ValueT]]],
) -> DataLoader[KeyT, ValueT | None]:
    """A loader answering keys already known (loaded with another relation, say)
    from ``known`` and fetching the rest in one batch; what it fetches becomes known."""

    async def load(keys: list[KeyT]) -> list[ValueT | None]:
        unknown = [key for key in keys if key not in known]
        if unknown:
            found = await fetch(unknown)
            for key in unknown:
                known[key] = found.get(key)
        return [known[key] for key in keys]

    return DataLoader(load_fn=load)


def _by_id_loader(
    db: SerializedSession, model: type[RowT], known: dict[uuid.UUID, RowT | None]
) -> DataLoader[uuid.UUID, RowT | None]:
    return _known_first(
        known, lambda ids: db.run(lambda session: queries.rows_by_ids(session, model, ids))
    )


def _by_clinic_and_person_loader(
    db: SerializedSession, side: Side, known: dict[MembershipKey, Membership | None]
) -> DataLoader[MembershipKey, Membership | None]:
    return _known_first(
        known,
        lambda keys: db.run(
            lambda session: queries.memberships_by_clinic_and_person(session, side, keys)
        ),
    )


def peek(known: dict[KeyT, ValueT], key: KeyT) -> ValueT | Missing:
    return known.get(key, MISSING)


def _remember(known: dict[KeyT, ValueT], key: KeyT, value: ValueT) -> None:
    """Record a row loaded outside its loader (or its absence), unless already known;
    the loader answers known keys without fetching them."""
    if key not in known:
        known[key] = value


@dataclass(frozen=True, slots=True)
class _SideLoaders(Generic[MembershipT, PersonT]):
    """One side's memberships (by id, by (clinic, person)) and people: known rows, loaders."""

    known_by_id: dict[uuid.UUID, MembershipT | None]
    by_id_loader: DataLoader[uuid.UUID, MembershipT | None]
    known_by_person: dict[MembershipKey, MembershipT | None]
    by_person_loader: DataLoader[MembershipKey, MembershipT | None]
    known_people: dict[uuid.UUID, PersonT | None]


class Loaders:
    """The request's loaders; also the read path's ``MembershipLookups``."""

    def __init__(self, db: SerializedSession) -> None:
        self.known_appointments: dict[uuid.UUID, Appointment | None] = {}
        self.known_clinics: dict[uuid.UUID, Clinic | None] = {}
        self.known_users: dict[uuid.UUID, User | None] = {}
        self.known_patients: dict[uuid.UUID, Patient | None] = {}
        self.known_clinic_doctors: dict[uuid.UUID, ClinicDoctor | None] = {}
        self.known_clinic_patients: dict[uuid.UUID, ClinicPatient | None] = {}
        self.known_doctor_memberships: dict[MembershipKey, Membership | None] = {}
        self.known_patient_memberships: dict[MembershipKey, Membership | None] = {}
        self.appointment_by_id = _by_id_loader(db, Appointment, self.known_appointments)
        self.clinic_by_id = _by_id_loader(db, Clinic, self.known_clinics)
        self.user_by_id = _by_id_loader(db, User, self.known_users)
        self.patient_by_id = _by_id_loader(db, Patient, self.known_patients)
        self.clinic_doctor_by_id = _by_id_loader(db, ClinicDoctor, self.known_clinic_doctors)
        self.clinic_patient_by_id = _by_id_loader(db, ClinicPatient, self.known_clinic_patients)
        self.clinic_doctor_by_clinic_and_user = _by_clinic_and_person_loader(
            db, DOCTOR, self.known_doctor_memberships
        )
        self.clinic_patient_by_clinic_and_patient = _by_clinic_and_person_loader(
            db, PATIENT, self.known_patient_memberships
        )
        self._sides: dict[str, _SideLoaders[Any, Any]] = {
            DOCTOR.name: _SideLoaders(
                self.known_clinic_doctors,
                self.clinic_doctor_by_id,
                self.known_doctor_memberships,
                self.clinic_doctor_by_clinic_and_user,
                self.known_users,
            ),
            PATIENT.name: _SideLoaders(
                self.known_clinic_patients,
                self.clinic_patient_by_id,
                self.known_patient_memberships,
                self.clinic_patient_by_clinic_and_patient,
                self.known_patients,
            ),
        }
        self._db = db
        self._known_by_loader: dict[int, dict[Any, Any]] = {
            id(loader): known
            for loader, known in (
                (self.appointment_by_id, self.known_appointments),
                (self.clinic_by_id, self.known_clinics),
                (self.user_by_id, self.known_users),
                (self.patient_by_id, self.known_patients),
                (self.clinic_doctor_by_id, self.known_clinic_doctors),
                (self.clinic_patient_by_id, self.known_clinic_patients),
                (self.clinic_doctor_by_clinic_and_user, self.known_doctor_memberships),
                (self.clinic_patient_by_clinic_and_patient, self.known_patient_memberships),
            )
        }

    async def preload(self, *wanted: tuple[DataLoader[Any, Any], Collection[Any]]) -> None:
        """Load, in one batch per loader, every key not known yet."""
        pending: list[Awaitable[Any]] = []
        for loader, keys in wanted:
            known = self._known_by_loader[id(loader)]
            missing = [key for key in keys if key not in known]
            if missing:
                pending.append(loader.load_many(missing))
        if pending:
            await asyncio.gather(*pending)

    async def preload_memberships(
        self,
        by_id: dict[Side, set[uuid.UUID]],
        by_clinic_and_person: dict[Side, set[MembershipKey]],
        people: Collection[Side] = (),
    ) -> None:
        """Memberships by id first; those also answer (clinic, person) keys, so a page
        whose two origins agree costs one statement per side, not two. For the sides
        in ``people`` each membership comes with its person in that statement, so the
        page's people cost no statement of their own."""
        await self._load_memberships(people, ids=by_id)
        for side in (DOCTOR, PATIENT):
            loaders = self._side(side)
            for membership in loaders.known_by_id.values():
                if membership is not None:
                    key = (membership.clinic_id, side.person_of(membership))
                    _remember(loaders.known_by_person, key, membership)
        await self._load_memberships(people, keys=by_clinic_and_person)

    async def _load_memberships(
        self,
        people: Collection[Side],
        ids: dict[Side, set[uuid.UUID]] | None = None,
        keys: dict[Side, set[MembershipKey]] | None = None,
    ) -> None:
        """One batch per side, by id or by (clinic, person); joined with the people for
        the sides in ``people``."""
        joined: list[Awaitable[None]] = []
        plain: list[tuple[DataLoader[Any, Any], Collection[Any]]] = []
        for side in (DOCTOR, PATIENT):
            side_ids = set() if ids is None else ids.get(side, set())
            side_keys = set() if keys is None else keys.get(side, set())
            if side in people:
                joined.append(self._load_with_people(side, side_ids, side_keys))
            elif ids is not None:
                plain.append((self._side(side).by_id_loader, side_ids))
            else:
                plain.append((self._side(side).by_person_loader, side_keys))
        await asyncio.gather(*joined, self.preload(*plain))

    async def _load_with_people(
        self,
        side: Side,
        ids: Collection[uuid.UUID] = (),
        keys: Collection[MembershipKey] = (),
    ) -> None:
        """Memberships not known yet, by id or by (clinic, person), with their people."""
        loaders = self._side(side)
        missing_ids = {key for key in ids if key not in loaders.known_by_id}
        missing_keys = {key for key in keys if key not in loaders.known_by_person}
        if not missing_ids and not missing_keys:
            return
        rows = await self._db.run(
            lambda session: queries.memberships_with_people(
                session, side, missing_ids, missing_keys
            )
        )
        for membership, person in rows:
            key = (membership.clinic_id, side.person_of(membership))
            _remember(loaders.known_by_id, membership.id, membership)
            _remember(loaders.known_by_person, key, membership)
            _remember(loaders.known_people, person.id, person)
        # Asked for and not found: known to be absent, as a loader's batch records it.
        for absent_id in missing_ids:
            _remember(loaders.known_by_id, absent_id, None)
        for absent_key in missing_keys:
            _remember(loaders.known_by_person, absent_key, None)

    def _side(self, side: Side) -> _SideLoaders[Any, Any]:
        return self._sides[side.name]

    def known_membership_by_id(
        self, side: Side, membership_id: uuid.UUID
    ) -> Membership | Missing | None:
        known: dict[uuid.UUID, Any] = (
            self.known_clinic_doctors if side is DOCTOR else self.known_clinic_patients
        )
        return peek(known, membership_id)

    def known_membership_by_clinic_and_person(
        self, side: Side, clinic_id: uuid.UUID, person_id: uuid.UUID
    ) -> Membership | Missing | None:
        known = self.known_doctor_memberships if side is DOCTOR else self.known_patient_memberships
        return peek(known, (clinic_id, person_id))

    def membership_by_id(
        self, side: Side, membership_id: uuid.UUID
    ) -> Awaitable[Membership | None]:
        if side is DOCTOR:
            return self.clinic_doctor_by_id.load(membership_id)
        return self.clinic_patient_by_id.load(membership_id)

    def membership_by_clinic_and_person(
        self, side: Side, clinic_id: uuid.UUID, person_id: uuid.UUID
    ) -> Awaitable[Membership | None]:
        loader = (
            self.clinic_doctor_by_clinic_and_user
            if side is DOCTOR
            else self.clinic_patient_by_clinic_and_patient
        )
        return loader.load((clinic_id, person_id))

    def clear_all(self) -> None:
        """Forget cached rows, after a write in this request may have changed them."""
        for value in vars(self).values():
            if isinstance(value, DataLoader):
                value.clear_all()
        for known in self._known_by_loader.values():
            known.clear()
