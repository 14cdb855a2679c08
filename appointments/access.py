"""Who may do what, for which clinics: the one place the authorization rules live.

A viewer's role gives a set of permissions; staff and doctors hold them only in
the clinics they belong to (``clinic_staff``, active ``clinic_doctors``), admin
and QA in every clinic. Objects of a clinic the viewer does not belong to are
reported as not found, never as forbidden, so ids of other clinics leak nothing.
The API checks through an ``Access``; the CLI and the tests act as ``SYSTEM``.

People (users and patients) belong to no single clinic. A viewer limited to
some clinics sees a person who is a member of one of them (a doctor's
membership, active or not, a staff membership, a patient's registration) or
who is the doctor or patient stored on an appointment of one of them. Any id
in an input is checked by the same rules as a read: a person, membership,
appointment or clinic the viewer cannot see answers exactly like an unknown id.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, bindparam, exists, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from appointments.db import layout_of
from appointments.errors import DomainError, ErrorCode
from appointments.layout import Layout
from appointments.models import (
    Appointment,
    ClinicDoctor,
    ClinicPatient,
    ClinicStaff,
    Patient,
    User,
    UserRole,
)
from appointments.sides import DOCTOR


class Permission(enum.StrEnum):
    READ = "read clinic data"
    BOOK = "book or reassign appointments"
    CHANGE_APPOINTMENTS = "reschedule or cancel any appointment"
    CHANGE_OWN_APPOINTMENTS = "reschedule or cancel their own appointments"
    MANAGE_MEMBERSHIPS = "manage clinic memberships"
    CREATE_PATIENTS = "register new patients"
    MANAGE_DIRECTORY = "create clinics and users"
    READ_MIGRATION = "read migration reports and the mismatch ledger"
    READ_ROLLOUT = "read the rollout audit trail"
    TRIAGE_LEDGER = "triage the mismatch ledger"
    RELINK = "relink an appointment from its authoritative side"


EVERY_PERMISSION = frozenset(Permission)

ROLE_PERMISSIONS: dict[UserRole, frozenset[Permission]] = {
    UserRole.ADMIN: EVERY_PERMISSION,
    UserRole.QA: frozenset(
        {
            Permission.READ,
            Permission.READ_MIGRATION,
            Permission.READ_ROLLOUT,
            Permission.TRIAGE_LEDGER,
            Permission.RELINK,
        }
    ),
    UserRole.STAFF: frozenset(
        {
            Permission.READ,
            Permission.BOOK,
            Permission.CHANGE_APPOINTMENTS,
            Permission.MANAGE_MEMBERSHIPS,
            Permission.CREATE_PATIENTS,
        }
    ),
    UserRole.DOCTOR: frozenset({Permission.READ, Permission.CHANGE_OWN_APPOINTMENTS}),
}

ROLES_ACROSS_CLINICS = frozenset({UserRole.ADMIN, UserRole.QA})


@dataclass(frozen=True, slots=True)
class Access:
    """What one viewer may do. ``clinics`` is None when the viewer spans every clinic."""

    role: UserRole | None
    user_id: uuid.UUID | None
    permissions: frozenset[Permission]
    clinics: frozenset[uuid.UUID] | None

    def sees(self, clinic_id: uuid.UUID) -> bool:
        if Permission.READ not in self.permissions:
            return False
        return self.clinics is None or clinic_id in self.clinics

    @property
    def visible_clinics(self) -> frozenset[uuid.UUID] | None:
        """The clinics list queries are limited to; None means no limit."""
        if Permission.READ not in self.permissions:
            return frozenset()
        return self.clinics

    def allows(self, permission: Permission) -> bool:
        return permission in self.permissions

    def require(self, permission: Permission) -> None:
        if permission not in self.permissions:
            raise DomainError(ErrorCode.FORBIDDEN, f"{self._who} may not {permission.value}")

    def require_in_clinic(
        self, permission: Permission, clinic_id: uuid.UUID, field: str, label: str
    ) -> None:
        """Not found outside the viewer's clinics; forbidden where their role may not."""
        if not self.sees(clinic_id):
            raise DomainError(ErrorCode.NOT_FOUND, f"no {label} has this id", field)
        self.require(permission)

    async def require_person(
        self,
        session: AsyncSession,
        model: type[User] | type[Patient],
        person_id: uuid.UUID,
        field: str,
    ) -> User | Patient:
        """The user or patient, if the viewer may see them; else the unknown id's error."""
        person: User | Patient | None = await session.get(model, person_id)
        if person is None or not await self.sees_person(session, model, person_id):
            label = "user" if model is User else "patient"
            raise DomainError(ErrorCode.NOT_FOUND, f"no {label} has this id", field)
        return person

    async def sees_person(
        self,
        session: AsyncSession,
        model: type[User] | type[Patient],
        person_id: uuid.UUID,
    ) -> bool:
        """Whether the viewer may see this person (module docstring); one query at most."""
        if Permission.READ not in self.permissions:
            return False
        if self.clinics is None:
            return True
        if not self.clinics:
            return False
        found = await session.execute(
            select(person_visible_in(model, person_id, self.clinics, layout_of(session)))
        )
        return bool(found.scalar())

    async def require_appointment_change(
        self, session: AsyncSession, appointment: Appointment, own_suffices: bool
    ) -> None:
        """A change to an appointment; with ``own_suffices`` a doctor may change their own."""
        if not self.sees(appointment.clinic_id):
            raise DomainError(ErrorCode.NOT_FOUND, "no appointment has this id", "appointmentId")
        if self.allows(Permission.CHANGE_APPOINTMENTS):
            return
        if (
            own_suffices
            and self.allows(Permission.CHANGE_OWN_APPOINTMENTS)
            and self.user_id is not None
            and await _doctor_of(session, appointment) == self.user_id
        ):
            return
        needed = Permission.CHANGE_OWN_APPOINTMENTS if own_suffices else Permission.BOOK
        if needed in self.permissions:
            raise DomainError(
                ErrorCode.FORBIDDEN,
                f"{self._who} may only {needed.value}, and this is not one of theirs",
                "appointmentId",
            )
        self.require(needed)

    @property
    def _who(self) -> str:
        return "an anonymous viewer" if self.role is None else f"role {self.role.value}"


def role_allows(role: str | None, permission: Permission) -> bool:
    """Whether a role holds a permission anywhere (enough for tools with no clinic scope)."""
    try:
        return role is not None and permission in ROLE_PERMISSIONS[UserRole(role)]
    except ValueError:
        return False


SYSTEM = Access(role=None, user_id=None, permissions=EVERY_PERMISSION, clinics=None)
NOBODY = Access(role=None, user_id=None, permissions=frozenset(), clinics=None)


def role_access(role: UserRole, user_id: uuid.UUID | None = None) -> Access:
    """A role's access in every clinic, with no stored user behind it (the dev-mode demo)."""
    return Access(role, user_id, ROLE_PERMISSIONS[role], None)


def _viewer_statement() -> Select[tuple[str, uuid.UUID | None]]:
    """The stored role of user ``:viewer_id`` when active, with each clinic they belong to
    (staff, or an active doctor), built once for every request."""
    viewer_id = bindparam("viewer_id", type_=User.id.type)
    clinics = (
        select(ClinicStaff.clinic_id.label("clinic_id"))
        .where(ClinicStaff.user_id == viewer_id)
        .union(
            select(ClinicDoctor.clinic_id).where(
                ClinicDoctor.user_id == viewer_id, ClinicDoctor.active.is_(True)
            )
        )
        .subquery()
    )
    return (
        select(User.role, clinics.c.clinic_id)
        .outerjoin(clinics, true())
        .where(User.id == viewer_id, User.active.is_(True))
    )


_VIEWER = _viewer_statement()


@dataclass(frozen=True, slots=True)
class StoredViewer:
    """What the database says of an active user: their role and the clinics they belong to
    (staff, or an active doctor)."""

    role: UserRole
    clinics: frozenset[uuid.UUID]


async def load_viewer(session: AsyncSession, viewer_id: uuid.UUID) -> StoredViewer | None:
    """The user's stored role and clinics, or None when they are unknown or inactive.
    One query."""
    rows = (await session.execute(_VIEWER, {"viewer_id": viewer_id})).all()
    if not rows:
        return None
    clinics = frozenset(row.clinic_id for row in rows if row.clinic_id is not None)
    return StoredViewer(UserRole(rows[0].role), clinics)


def claimed_viewer(user_id: str | None, role: str | None) -> tuple[uuid.UUID, UserRole] | None:
    """The user id and role a verified token claims, or None when either is not valid."""
    try:
        claimed = UserRole(role) if role is not None else None
        viewer_id = uuid.UUID(user_id) if user_id is not None else None
    except ValueError:
        return None
    if claimed is None or viewer_id is None:
        return None
    return viewer_id, claimed


def viewer_access(viewer_id: uuid.UUID, claimed: UserRole, stored: StoredViewer | None) -> Access:
    """NOBODY unless the stored user is active and holds the role the token claims (a
    changed role refuses older tokens); else the role's access in their clinics."""
    if stored is None or stored.role is not claimed:
        return NOBODY
    permissions = ROLE_PERMISSIONS[claimed]
    if claimed in ROLES_ACROSS_CLINICS:
        return Access(claimed, viewer_id, permissions, None)
    return Access(claimed, viewer_id, permissions, stored.clinics)


async def load_access(session: AsyncSession, user_id: str | None, role: str | None) -> Access:
    """The access of the user a verified token names (``viewer_access``); one query."""
    claimed = claimed_viewer(user_id, role)
    if claimed is None:
        return NOBODY
    viewer_id, claimed_role = claimed
    return viewer_access(viewer_id, claimed_role, await load_viewer(session, viewer_id))


def person_visible_in(
    model: type[User] | type[Patient],
    person_id: uuid.UUID,
    clinics: frozenset[uuid.UUID],
    layout: Layout,
) -> ColumnElement[bool]:
    """True when the person belongs to, or is on an appointment of, one of ``clinics``."""
    reasons: list[ColumnElement[bool]]
    if model is User:
        reasons = [
            exists().where(ClinicDoctor.user_id == person_id, ClinicDoctor.clinic_id.in_(clinics)),
            exists().where(ClinicStaff.user_id == person_id, ClinicStaff.clinic_id.in_(clinics)),
        ]
        legacy_column = Appointment.doctor_id
    else:
        reasons = [
            exists().where(
                ClinicPatient.patient_id == person_id, ClinicPatient.clinic_id.in_(clinics)
            )
        ]
        legacy_column = Appointment.patient_id
    if layout.legacy_columns:
        reasons.append(
            exists().where(legacy_column == person_id, Appointment.clinic_id.in_(clinics))
        )
    return or_(*reasons)


async def _doctor_of(session: AsyncSession, appointment: Appointment) -> uuid.UUID | None:
    if appointment.clinic_doctor_id is not None:
        membership = await session.get(ClinicDoctor, appointment.clinic_doctor_id)
        return None if membership is None else membership.user_id
    return DOCTOR.legacy_id(appointment)
