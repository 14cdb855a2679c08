"""The write path of appointments: booking, rescheduling, reassigning and cancelling.

Writes to clinics, users, patients and memberships are in ``appointments.directory``,
the ledger's triage in ``appointments.ledger``, relinking in ``appointments.relink``.
Each function takes a session inside an open transaction and either completes
its change or raises ``DomainError`` (the caller rolls back, so the database is
unchanged). ``run_in_transaction`` is that caller for the API, the CLI and the
tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar, cast

from sqlalchemy import and_, insert, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from appointments.access import SYSTEM, Access, Permission
from appointments.checks import check_time_range, clean_reason
from appointments.clinic_directory import clinic_directory
from appointments.db import layout_of
from appointments.directory import LABELS, check_role
from appointments.errors import DomainError, ErrorCode
from appointments.events import MigrationEventLog, PendingEvents, UnlinkedWrite
from appointments.models import (
    Appointment,
    AppointmentStatus,
    ClinicDoctor,
    Patient,
    User,
    UserRole,
    utcnow,
)
from appointments.sides import DOCTOR, PATIENT, Membership, Side
from appointments.stages import StageLookup, StagePolicy, policy_for
from appointments.write_meter import metered

T = TypeVar("T")


async def run_in_transaction(
    sessions: async_sessionmaker[AsyncSession],
    events: MigrationEventLog,
    operation: Callable[[AsyncSession, PendingEvents], Awaitable[T]],
) -> T:
    """Run one write in one transaction; publish its events only once it committed."""
    pending = PendingEvents()
    try:
        async with sessions() as session, session.begin():
            result = await operation(session, pending)
    except BaseException:
        events.publish_failures(pending)
        raise
    events.publish_all(pending)
    return result


@dataclass(frozen=True, slots=True)
class PersonReference:
    """A doctor or patient, named by person id (legacy), membership id (new), or both."""

    person_id: uuid.UUID | None = None
    membership_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class NewAppointment:
    """A booking. ``appointment_id`` is for the demo seed's fixed ids; None draws one."""

    clinic_id: uuid.UUID
    starts_at: datetime
    ends_at: datetime
    doctor: PersonReference
    patient: PersonReference
    reason: str | None = None
    appointment_id: uuid.UUID | None = None


async def create_appointment(
    session: AsyncSession,
    stage_for: StageLookup,
    command: NewAppointment,
    events: PendingEvents,
    access: Access = SYSTEM,
) -> Appointment:
    with metered("create", command.doctor, command.patient, failures=events) as meter:
        access.require_in_clinic(Permission.BOOK, command.clinic_id, "clinicId", "clinic")
        check_time_range(command.starts_at, command.ends_at)
        reason = clean_reason(command.reason)
        if not await clinic_directory.exists(session, command.clinic_id):
            raise DomainError(ErrorCode.NOT_FOUND, "no clinic has this id", "clinicId")
        policy = policy_for(stage_for(command.clinic_id))
        meter.stage, meter.clinic_id = policy.stage, command.clinic_id
        now = utcnow()
        appointment = Appointment(
            id=command.appointment_id or uuid.uuid4(),
            clinic_id=command.clinic_id,
            starts_at=command.starts_at,
            ends_at=command.ends_at,
            status=AppointmentStatus.SCHEDULED.value,
            reason=reason,
            created_at=now,
            updated_at=now,
        )
        for side, reference in ((DOCTOR, command.doctor), (PATIENT, command.patient)):
            await link_side(session, policy, side, appointment, reference, events, access)
        return await _insert_appointment(session, appointment)


async def reschedule_appointment(
    session: AsyncSession,
    appointment_id: uuid.UUID,
    starts_at: datetime,
    ends_at: datetime,
    stage_for: StageLookup | None = None,
    access: Access = SYSTEM,
) -> Appointment:
    with metered("reschedule") as meter:
        appointment = await _scheduled_appointment(
            session, appointment_id, "reschedule", access, own_suffices=True
        )
        check_time_range(starts_at, ends_at)
        meter.stage = None if stage_for is None else stage_for(appointment.clinic_id)
        appointment.starts_at = starts_at
        appointment.ends_at = ends_at
        await session.flush()
        return appointment


async def reassign_appointment(
    session: AsyncSession,
    stage_for: StageLookup,
    side: Side,
    appointment_id: uuid.UUID,
    reference: PersonReference,
    events: PendingEvents,
    access: Access = SYSTEM,
) -> Appointment:
    with metered(f"reassign_{side.name}", reference, failures=events) as meter:
        appointment = await _scheduled_appointment(
            session, appointment_id, f"reassign the {side.name}", access, own_suffices=False
        )
        policy = policy_for(stage_for(appointment.clinic_id))
        meter.stage, meter.clinic_id = policy.stage, appointment.clinic_id
        await link_side(session, policy, side, appointment, reference, events, access)
        await session.flush()
        return appointment


async def cancel_appointment(
    session: AsyncSession,
    appointment_id: uuid.UUID,
    stage_for: StageLookup | None = None,
    access: Access = SYSTEM,
) -> Appointment:
    with metered("cancel") as meter:
        appointment = await _scheduled_appointment(
            session, appointment_id, "cancel", access, own_suffices=True
        )
        meter.stage = None if stage_for is None else stage_for(appointment.clinic_id)
        appointment.status = AppointmentStatus.CANCELLED.value
        await session.flush()
        return appointment


async def _insert_appointment(session: AsyncSession, appointment: Appointment) -> Appointment:
    """Insert only the columns that were set, then attach the row as persistent.

    The ORM would name every mapped column in its INSERT, the legacy ones too,
    which no longer exist after the contract revision.
    """
    state = inspect(appointment)
    values = {
        attribute.key: state.dict[attribute.key]
        for attribute in state.mapper.column_attrs
        if attribute.key in state.dict
    }
    await session.execute(insert(Appointment).values(values))
    make_transient_to_detached(appointment)
    if layout_of(session).legacy_columns:
        for side in (DOCTOR, PATIENT):
            if not side.has_legacy_column(appointment):
                set_committed_value(appointment, side.legacy_column, None)
    session.add(appointment)
    return appointment


async def link_side(
    session: AsyncSession,
    policy: StagePolicy,
    side: Side,
    appointment: Appointment,
    reference: PersonReference,
    events: PendingEvents,
    access: Access,
) -> None:
    """Write one side of an appointment as the stage says, after the checks of a write
    (the person or membership exists, is visible to ``access``, belongs to the clinic,
    is active; the stage accepts the input). Creates, reassignments and
    ``appointments.relink`` all link through here.

    The side the stage does not write is cleared rather than left as it was,
    so the two sides of a row are always either consistent or one of them empty;
    an empty side is what backfills and read fallbacks know how to handle.
    """
    person_id, membership = await _resolve_reference(
        session, policy, side, appointment.clinic_id, reference, access
    )
    if policy.writes_new and membership is None:
        events.add(
            UnlinkedWrite(side.name, appointment.id, appointment.clinic_id, policy.stage, person_id)
        )
    side.set_links(
        appointment,
        person_id if policy.writes_legacy else None,
        membership.id if policy.writes_new and membership is not None else None,
    )


async def _resolve_reference(
    session: AsyncSession,
    policy: StagePolicy,
    side: Side,
    clinic_id: uuid.UUID,
    reference: PersonReference,
    access: Access,
) -> tuple[uuid.UUID, Membership | None]:
    if reference.membership_id is not None:
        named = await _membership_from_new_input(
            session, policy, side, clinic_id, reference, access
        )
        return side.person_of(named), named
    if reference.person_id is None:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"name the {side.name} with {side.legacy_input} or {side.new_input}",
            side.legacy_input,
        )
    if not policy.writes_new:
        await _require_person(session, side, reference.person_id, access)
        return reference.person_id, None
    existing = await _person_and_membership(session, side, clinic_id, reference.person_id, access)
    if existing is None and policy.new_authoritative:
        raise DomainError(
            ErrorCode.MEMBERSHIP_MISSING,
            f"the {side.name} has no membership in this clinic, and in stage "
            f"{policy.stage.value} the new model is authoritative; add the membership first",
            side.legacy_input,
            stage=policy.stage,
        )
    if existing is not None:
        _require_active(side, existing, side.legacy_input)
    return reference.person_id, existing


async def _membership_from_new_input(
    session: AsyncSession,
    policy: StagePolicy,
    side: Side,
    clinic_id: uuid.UUID,
    reference: PersonReference,
    access: Access,
) -> Membership:
    assert reference.membership_id is not None
    if not policy.accepts_new_input:
        raise DomainError(
            ErrorCode.STAGE_FORBIDS_INPUT,
            f"this clinic is in stage {policy.stage.value}, which does not use the new model; "
            f"name the {side.name} with {side.legacy_input}",
            side.new_input,
            stage=policy.stage,
        )
    membership = cast(
        "Membership | None", await session.get(side.membership_model, reference.membership_id)
    )
    if membership is None or not access.sees(membership.clinic_id):
        raise DomainError(ErrorCode.NOT_FOUND, f"no clinic {side.name} has this id", side.new_input)
    if membership.clinic_id != clinic_id:
        raise DomainError(
            ErrorCode.CROSS_CLINIC_REFERENCE,
            f"the clinic {side.name} belongs to another clinic than the appointment",
            side.new_input,
        )
    if reference.person_id is not None and reference.person_id != side.person_of(membership):
        raise DomainError(
            ErrorCode.CONFLICTING_REFERENCES,
            f"{side.legacy_input} and {side.new_input} name different {side.name}s",
            side.legacy_input,
        )
    _require_active(side, membership, side.new_input)
    return membership


async def _require_person(
    session: AsyncSession, side: Side, person_id: uuid.UUID, access: Access
) -> None:
    model: type[User] | type[Patient] = User if side is DOCTOR else Patient
    person = await access.require_person(session, model, person_id, side.legacy_input)
    if isinstance(person, User):
        check_role(person, UserRole.DOCTOR, side.legacy_input)


async def _person_and_membership(
    session: AsyncSession, side: Side, clinic_id: uuid.UUID, person_id: uuid.UUID, access: Access
) -> Membership | None:
    """The person must exist, be visible to the viewer (and be a doctor on the doctor side);
    their membership in the clinic, if any. One statement, and one more only when the
    person has no membership there and the viewer is limited to some clinics."""
    person_model: type[User | Patient] = User if side is DOCTOR else Patient
    membership_model = side.membership_model
    statement = (
        select(person_model, membership_model)
        .outerjoin(
            membership_model,
            and_(
                getattr(membership_model, side.person_column) == person_model.id,
                membership_model.clinic_id == clinic_id,
            ),
        )
        .where(person_model.id == person_id)
    )
    found = (await session.execute(statement)).one_or_none()
    # A membership in the appointment's clinic (which the viewer sees) makes the person visible.
    if found is None or (
        found[1] is None and not await access.sees_person(session, person_model, person_id)
    ):
        raise DomainError(
            ErrorCode.NOT_FOUND, f"no {LABELS[person_model]} has this id", side.legacy_input
        )
    person, membership = found
    if isinstance(person, User):
        check_role(person, UserRole.DOCTOR, side.legacy_input)
    return cast("Membership | None", membership)


def _require_active(side: Side, membership: Membership, field: str) -> None:
    if isinstance(membership, ClinicDoctor) and not membership.active:
        raise DomainError(
            ErrorCode.MEMBERSHIP_INACTIVE,
            f"the {side.name} no longer works in this clinic (membership inactive)",
            field,
        )


async def _scheduled_appointment(
    session: AsyncSession,
    appointment_id: uuid.UUID,
    action: str,
    access: Access,
    own_suffices: bool,
) -> Appointment:
    statement = select(Appointment).where(Appointment.id == appointment_id).with_for_update()
    appointment = (await session.execute(statement)).scalar_one_or_none()
    if appointment is None:
        raise DomainError(ErrorCode.NOT_FOUND, "no appointment has this id", "appointmentId")
    await access.require_appointment_change(session, appointment, own_suffices)
    if appointment.status != AppointmentStatus.SCHEDULED.value:
        raise DomainError(
            ErrorCode.INVALID_STATUS_TRANSITION,
            f"cannot {action} an appointment that is {appointment.status}",
            "appointmentId",
        )
    return appointment
