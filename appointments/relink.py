"""Relinking: rewrite an appointment's derived side from its authoritative side.

A QA repair for one appointment, whatever its status (a completed or cancelled
row is repaired as well as a scheduled one). For each of the doctor and the
patient, the clinic's stage says which origin is authoritative
(``appointments.stages``); the person that origin names is written again through
``writes.link_side``, with every check of a write, so the other origin is derived
from it exactly as a create or a reassignment would derive it. When the
authoritative origin of a side is empty, the other one is the source, as a read
falls back to it. The stage's own rules hold: in ``legacy`` the new side is
cleared, in ``complete`` the legacy side; in ``live``, ``rampdown`` and
``complete`` a person with no membership in the clinic is refused
(``MEMBERSHIP_MISSING``), and in ``dual_write`` and ``shadow`` the new side stays
empty (an unlinked write).

Then every mismatch-ledger entry of the appointment whose field is now consistent
(open or ignored) is marked fixed by the actor, with why. All of it happens in the
caller's transaction: a refused side leaves the row and the ledger as they were.
"""

from __future__ import annotations

import uuid
from typing import cast

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from appointments import ledger
from appointments.access import SYSTEM, Access, Permission
from appointments.errors import DomainError, ErrorCode
from appointments.events import PendingEvents
from appointments.models import Appointment, MismatchField
from appointments.read_model.differences import stored_differences
from appointments.sides import SIDES, Membership, Side
from appointments.stages import Origin, StageLookup, StagePolicy, policy_for
from appointments.writes import PersonReference, link_side


async def relink_appointment(
    session: AsyncSession,
    stage_for: StageLookup,
    appointment_id: uuid.UUID,
    actor: str,
    comment: str | None,
    events: PendingEvents,
    access: Access = SYSTEM,
) -> Appointment:
    """Relink both sides of one appointment (module docstring) and record it in the ledger.

    ``NOT_FOUND`` for an appointment the viewer cannot see, ``FORBIDDEN`` without the
    ``RELINK`` permission, and any error a write's link would raise. Returns the row.
    """
    why = ledger.clean_comment(comment)
    statement = select(Appointment).where(Appointment.id == appointment_id).with_for_update()
    appointment = (await session.execute(statement)).scalar_one_or_none()
    if appointment is None or not access.sees(appointment.clinic_id):
        raise DomainError(ErrorCode.NOT_FOUND, "no appointment has this id", "appointmentId")
    access.require(Permission.RELINK)
    policy = policy_for(stage_for(appointment.clinic_id))
    for side in SIDES:
        reference = await _authoritative_reference(session, policy, side, appointment)
        await link_side(session, policy, side, appointment, reference, events, access)
    await session.flush()
    consistent = await _consistent_fields(session, appointment)
    summary = f"relinked from the {policy.authoritative.value} side in stage {policy.stage.value}"
    await ledger.mark_fixed(
        session, appointment.id, consistent, actor, summary if why is None else f"{summary}: {why}"
    )
    return appointment


async def _authoritative_reference(
    session: AsyncSession, policy: StagePolicy, side: Side, appointment: Appointment
) -> PersonReference:
    """The person the authoritative origin names, as a write's input; the other origin's
    when the authoritative one is empty."""
    legacy_id = side.legacy_id(appointment)
    membership_id = side.membership_id(appointment)
    if policy.authoritative is Origin.NEW and membership_id is not None:
        return PersonReference(membership_id=membership_id)
    if legacy_id is not None:
        return PersonReference(person_id=legacy_id)
    if membership_id is not None:
        membership = cast(
            "Membership | None", await session.get(side.membership_model, membership_id)
        )
        if membership is not None:
            return PersonReference(person_id=side.person_of(membership))
    raise DomainError(
        ErrorCode.INVALID_INPUT,
        f"the appointment names no {side.name} on either side: reassign the {side.name}",
        "appointmentId",
    )


async def _consistent_fields(
    session: AsyncSession, appointment: Appointment
) -> list[MismatchField]:
    """The ledger fields on which the row's two origins now agree."""
    differing = await stored_differences(session, appointment.id)
    return [
        field
        for side in SIDES
        for field in (side.person_field, side.clinic_field)
        if field not in differing
    ]
