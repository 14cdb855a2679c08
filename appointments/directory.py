"""Writes to the directory: clinics, users, patients and their memberships.

Each function takes a session inside an open transaction and either completes
its change or raises ``DomainError`` (the caller rolls back, so the database is
unchanged). Ids in an input obey the viewer's visibility rules (access.py).
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import TypeVar, cast

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from appointments.access import SYSTEM, Access, Permission
from appointments.checks import check_birth_date, check_text
from appointments.errors import DomainError, ErrorCode
from appointments.models import (
    Clinic,
    ClinicDoctor,
    ClinicPatient,
    ClinicStaff,
    Patient,
    User,
    UserRole,
)

MAX_NAME_LENGTH = 200


async def create_clinic(session: AsyncSession, name: str, access: Access = SYSTEM) -> Clinic:
    access.require(Permission.MANAGE_DIRECTORY)
    clinic = Clinic(id=uuid.uuid4(), name=_clean_name(name, "name"))
    return await _insert_unique(session, clinic, "a clinic with this name exists", "name")


async def create_user(
    session: AsyncSession, name: str, email: str, role: UserRole, access: Access = SYSTEM
) -> User:
    access.require(Permission.MANAGE_DIRECTORY)
    email = check_text(email, "email").strip().lower()
    if "@" not in email or len(email) > 320:
        raise DomainError(ErrorCode.INVALID_INPUT, "email must be an address like a@b.org", "email")
    user = User(id=uuid.uuid4(), name=_clean_name(name, "name"), email=email, role=role.value)
    return await _insert_unique(session, user, "a user with this email exists", "email")


async def set_user_active(
    session: AsyncSession, user_id: uuid.UUID, active: bool, access: Access = SYSTEM
) -> User:
    """Deactivate or reactivate a user: an inactive user's tokens are refused from the next
    request on (server.viewers); their memberships and appointments stay as they are.
    The last active admin cannot be deactivated (``keep_an_admin``)."""
    access.require(Permission.MANAGE_DIRECTORY)
    user = await require_row(session, User, user_id, "userId")
    if not active:
        await keep_an_admin(session, user, "active")
    user.active = active
    await session.flush()
    return user


async def keep_an_admin(session: AsyncSession, leaving: User, field: str) -> None:
    """Refuse (``LAST_ADMIN``) to deactivate or demote ``leaving`` when no other active
    admin would remain: only SQL could bring one back (`clinic user activate` can, but
    needs shell access). The active admins are locked first (PostgreSQL: its rows, in id
    order; SQLite: the database), so two admins deactivating each other at once cannot
    both succeed."""
    if leaving.role != UserRole.ADMIN.value or not leaving.active:
        return
    if session.get_bind().dialect.name == "sqlite":
        # SQLite ignores FOR UPDATE and begins a transaction at its first write: this one
        # takes the database's write lock, so the count below cannot go stale.
        await session.execute(update(User).where(User.id == leaving.id).values(active=User.active))
    admins = await session.scalars(
        select(User.id)
        .where(User.role == UserRole.ADMIN.value, User.active.is_(True))
        .order_by(User.id)
        .with_for_update()
    )
    if not any(admin != leaving.id for admin in admins):
        raise DomainError(
            ErrorCode.LAST_ADMIN,
            "this is the last active admin; make another admin active first",
            field,
        )


def authorize_patient_creation(access: Access, clinic_id: uuid.UUID | None) -> None:
    """Whether the viewer may create a patient registered in ``clinic_id`` (or nowhere)."""
    access.require(Permission.CREATE_PATIENTS)
    if clinic_id is None and access.clinics is not None:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "name the clinic to register the patient in", "clinicId"
        )
    if clinic_id is not None:
        access.require_in_clinic(Permission.CREATE_PATIENTS, clinic_id, "clinicId", "clinic")


async def create_patient(
    session: AsyncSession,
    full_name: str,
    date_of_birth: date | None,
    access: Access = SYSTEM,
    clinic_id: uuid.UUID | None = None,
) -> Patient:
    """A new patient, registered in ``clinic_id`` when given.

    A viewer limited to some clinics must name one of them: a patient registered
    nowhere is one they could not see again (access.py).
    """
    authorize_patient_creation(access, clinic_id)
    if clinic_id is not None:
        await require_row(session, Clinic, clinic_id, "clinicId")
    patient = Patient(
        id=uuid.uuid4(),
        full_name=_clean_name(full_name, "fullName"),
        date_of_birth=None if date_of_birth is None else check_birth_date(date_of_birth),
    )
    session.add(patient)
    await session.flush()
    if clinic_id is not None:
        session.add(ClinicPatient(id=uuid.uuid4(), clinic_id=clinic_id, patient_id=patient.id))
        await session.flush()
    return patient


async def add_clinic_doctor(
    session: AsyncSession, clinic_id: uuid.UUID, user_id: uuid.UUID, access: Access = SYSTEM
) -> ClinicDoctor:
    await _require_clinic_member(session, clinic_id, user_id, UserRole.DOCTOR, access)
    membership = ClinicDoctor(id=uuid.uuid4(), clinic_id=clinic_id, user_id=user_id, active=True)
    return await _insert_unique(
        session, membership, "this doctor already works in this clinic", "userId"
    )


async def set_clinic_doctor_active(
    session: AsyncSession, clinic_doctor_id: uuid.UUID, active: bool, access: Access = SYSTEM
) -> ClinicDoctor:
    membership = await require_row(session, ClinicDoctor, clinic_doctor_id, "clinicDoctorId")
    access.require_in_clinic(
        Permission.MANAGE_MEMBERSHIPS, membership.clinic_id, "clinicDoctorId", "clinic doctor"
    )
    membership.active = active
    await session.flush()
    return membership


async def add_clinic_patient(
    session: AsyncSession, clinic_id: uuid.UUID, patient_id: uuid.UUID, access: Access = SYSTEM
) -> ClinicPatient:
    access.require_in_clinic(Permission.MANAGE_MEMBERSHIPS, clinic_id, "clinicId", "clinic")
    await require_row(session, Clinic, clinic_id, "clinicId")
    await access.require_person(session, Patient, patient_id, "patientId")
    membership = ClinicPatient(id=uuid.uuid4(), clinic_id=clinic_id, patient_id=patient_id)
    return await _insert_unique(
        session, membership, "this patient is already registered in this clinic", "patientId"
    )


async def add_clinic_staff(
    session: AsyncSession, clinic_id: uuid.UUID, user_id: uuid.UUID, access: Access = SYSTEM
) -> ClinicStaff:
    await _require_clinic_member(session, clinic_id, user_id, UserRole.STAFF, access)
    membership = ClinicStaff(id=uuid.uuid4(), clinic_id=clinic_id, user_id=user_id)
    return await _insert_unique(
        session, membership, "this user is already staff of this clinic", "userId"
    )


async def _require_clinic_member(
    session: AsyncSession, clinic_id: uuid.UUID, user_id: uuid.UUID, role: UserRole, access: Access
) -> None:
    """A user joining a clinic: the viewer manages its memberships, both exist, the role fits."""
    access.require_in_clinic(Permission.MANAGE_MEMBERSHIPS, clinic_id, "clinicId", "clinic")
    await require_row(session, Clinic, clinic_id, "clinicId")
    user = await access.require_person(session, User, user_id, "userId")
    check_role(cast("User", user), role, "userId")


def check_role(user: User, role: UserRole, field: str) -> None:
    if user.role != role.value:
        raise DomainError(
            ErrorCode.WRONG_ROLE, f"user has role {user.role}, not {role.value}", field
        )


ModelT = TypeVar("ModelT", Clinic, User, Patient, ClinicDoctor, ClinicPatient, ClinicStaff)


LABELS: dict[type, str] = {
    Clinic: "clinic",
    User: "user",
    Patient: "patient",
    ClinicDoctor: "clinic doctor",
    ClinicPatient: "clinic patient",
}


async def require_row(
    session: AsyncSession, model: type[ModelT], key: uuid.UUID, field: str
) -> ModelT:
    row = await session.get(model, key)
    if row is None:
        raise DomainError(ErrorCode.NOT_FOUND, f"no {LABELS[model]} has this id", field)
    return row


async def _insert_unique(session: AsyncSession, row: ModelT, message: str, field: str) -> ModelT:
    session.add(row)
    try:
        await session.flush()
    except IntegrityError as error:
        raise DomainError(ErrorCode.ALREADY_EXISTS, message, field) from error
    return row


def _clean_name(value: str, field: str) -> str:
    cleaned = check_text(value, field).strip()
    if not cleaned or len(cleaned) > MAX_NAME_LENGTH:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"{field} must be 1 to {MAX_NAME_LENGTH} characters", field
        )
    return cleaned
