"""What ``addClinicDoctor``, ``addClinicPatient`` and ``addClinicStaff`` share: a member
added to a clinic by a membership manager of that clinic."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from appointments.access import Access, Permission
from appointments.models import ClinicDoctor, ClinicPatient, ClinicStaff
from appointments.replays import in_clinic
from schema.context import RequestContext, WriteOperation
from schema.errors import parse_id
from schema.mutations.base import Write, without_events

MembershipT = TypeVar("MembershipT", bound=ClinicDoctor | ClinicPatient | ClinicStaff)
AddMember = Callable[[AsyncSession, uuid.UUID, uuid.UUID, Access], Awaitable[MembershipT]]


def membership_addition(
    add: AddMember[MembershipT],
    success: Callable[[MembershipT], object],
    clinic_id: strawberry.ID,
    member: tuple[strawberry.ID, str],
) -> Write[MembershipT]:
    """``add`` a member to the clinic; ``member`` is its id and the argument naming it."""
    member_id, member_field = member

    def prepare(access: Access, _context: RequestContext) -> WriteOperation[MembershipT]:
        clinic, member = parse_id(clinic_id, "clinicId"), parse_id(member_id, member_field)
        return without_events(lambda s: add(s, clinic, member, access))

    return Write(prepare, success, in_clinic(Permission.MANAGE_MEMBERSHIPS, "clinicId", "clinic"))
