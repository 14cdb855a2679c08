"""Whether a viewer may be given a stored idempotent result again, checked as of now.

A replay must answer what a fresh request from the same viewer would answer
now: if the viewer could no longer make the write (the clinic is no longer
theirs, their role lost the permission, the appointment is no longer one they
may change), the replay raises the ``DomainError`` that the write's own
authorization step would raise today, and the stored result is not returned.

The kinds of check are here; which one a write's replay passes is declared by
its mutation, beside it (the ``Write`` of each module of ``schema/mutations/``).
A check repeats the authorization step the write's domain action starts with
(``appointments.writes``, ``appointments.directory``,
``appointments.ledger.set_mismatch_status``), through the rules of
``appointments.access``: a mutation's module and its domain action change
together. The checks only read, in the claim's transaction
(``appointments.idempotency.run_once``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from appointments.access import Access, Permission
from appointments.errors import DomainError, ErrorCode
from appointments.models import Appointment, ClinicDoctor, ClinicPatient, ClinicStaff

RowT = TypeVar("RowT")

ReplayCheck = Callable[[AsyncSession, Access, RowT], Awaitable[None]]
"""Raises ``DomainError`` when ``Access`` may not be given the stored row now."""

ClinicRow = Appointment | ClinicDoctor | ClinicPatient | ClinicStaff


def anywhere(permission: Permission) -> ReplayCheck[object]:
    """For writes that need a permission and no clinic (directory, patients, the ledger)."""

    async def check(_session: AsyncSession, access: Access, _row: object) -> None:
        access.require(permission)

    return check


def in_clinic(permission: Permission, field: str, label: str) -> ReplayCheck[ClinicRow]:
    """For writes that need ``permission`` in the row's clinic; not found outside the
    viewer's clinics, with the ``field`` and ``label`` the write reports."""

    async def check(_session: AsyncSession, access: Access, row: ClinicRow) -> None:
        access.require_in_clinic(permission, row.clinic_id, field, label)

    return check


def appointment_change(own_suffices: bool) -> ReplayCheck[Appointment]:
    """For changes to an existing appointment, judged on the appointment as it is now
    (its clinic and, when a doctor may change their own, its current doctor)."""

    async def check(session: AsyncSession, access: Access, row: Appointment) -> None:
        current = await session.get(Appointment, row.id)
        if current is None:
            raise DomainError(ErrorCode.NOT_FOUND, "no appointment has this id", "appointmentId")
        await access.require_appointment_change(session, current, own_suffices)

    return check
