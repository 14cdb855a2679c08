"""One DataLoader per relation, created per request; each batch is one SQL statement."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from typing import TypeVar

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
from appointments.sides import DOCTOR, PATIENT, Membership, Side

RowT = TypeVar("RowT", bound=Base)
MembershipKey = tuple[uuid.UUID, uuid.UUID]


def _by_id_loader(db: SerializedSession, model: type[RowT]) -> DataLoader[uuid.UUID, RowT | None]:
    async def load(ids: list[uuid.UUID]) -> list[RowT | None]:
        found = await db.run(lambda session: queries.rows_by_ids(session, model, ids))
        return [found.get(key) for key in ids]

    return DataLoader(load_fn=load)


def _by_clinic_and_person_loader(
    db: SerializedSession, side: Side
) -> DataLoader[MembershipKey, Membership | None]:
    async def load(keys: list[MembershipKey]) -> list[Membership | None]:
        found = await db.run(
            lambda session: queries.memberships_by_clinic_and_person(session, side, keys)
        )
        return [found.get(key) for key in keys]

    return DataLoader(load_fn=load)


class Loaders:
    """The request's loaders; also the read path's ``MembershipLookups``."""

    def __init__(self, db: SerializedSession) -> None:
        self.appointment_by_id = _by_id_loader(db, Appointment)
        self.clinic_by_id = _by_id_loader(db, Clinic)
        self.user_by_id = _by_id_loader(db, User)
        self.patient_by_id = _by_id_loader(db, Patient)
        self.clinic_doctor_by_id = _by_id_loader(db, ClinicDoctor)
        self.clinic_patient_by_id = _by_id_loader(db, ClinicPatient)
        self.clinic_doctor_by_clinic_and_user = _by_clinic_and_person_loader(db, DOCTOR)
        self.clinic_patient_by_clinic_and_patient = _by_clinic_and_person_loader(db, PATIENT)

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
        for loader in vars(self).values():
            if isinstance(loader, DataLoader):
                loader.clear_all()
