"""The read path: which stored columns answer for an appointment's doctor and patient.

The stage's authoritative origin is served, and the other field set is derived
from it: from a legacy person id, the membership is found by (clinic, person);
from a membership, the person is the membership's. When the authoritative
column is empty (a row written in ``complete`` read after a rollback, or a
legacy row not backfilled yet) the other origin answers and a fallback event
is recorded.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from appointments.events import MigrationEventLog, ReadFallback
from appointments.models import Appointment
from appointments.sides import Membership, Side
from appointments.stages import Origin, Stage, policy_for

StageLookup = Callable[[uuid.UUID], Stage]


class MembershipLookups(Protocol):
    """Batched membership look-ups (the request's DataLoaders implement this)."""

    def membership_by_id(
        self, side: Side, membership_id: uuid.UUID
    ) -> Awaitable[Membership | None]: ...

    def membership_by_clinic_and_person(
        self, side: Side, clinic_id: uuid.UUID, person_id: uuid.UUID
    ) -> Awaitable[Membership | None]: ...


@dataclass(frozen=True, slots=True)
class ResolvedLink:
    """One side of an appointment as served: both field sets, from one origin."""

    person_id: uuid.UUID | None
    membership: Membership | None
    stage: Stage
    origin: Origin
    fell_back: bool


class LinkResolver:
    """Resolves appointment links for one request; each (appointment, side) once."""

    def __init__(
        self, stage_for: StageLookup, lookups: MembershipLookups, events: MigrationEventLog
    ) -> None:
        self._stage_for = stage_for
        self._lookups = lookups
        self._events = events
        self._resolved: dict[tuple[uuid.UUID, str], asyncio.Future[ResolvedLink]] = {}

    def resolve(self, side: Side, appointment: Appointment) -> Awaitable[ResolvedLink]:
        key = (appointment.id, side.name)
        future = self._resolved.get(key)
        if future is None:
            future = asyncio.ensure_future(self._resolve(side, appointment))
            self._resolved[key] = future
        return future

    def forget(self) -> None:
        """Drop memoised links, after a write changed what they were computed from."""
        self._resolved.clear()

    async def _resolve(self, side: Side, appointment: Appointment) -> ResolvedLink:
        stage = self._stage_for(appointment.clinic_id)
        origin = policy_for(stage).authoritative
        fell_back = _stored(side, appointment, origin) is None and (
            _stored(side, appointment, _other(origin)) is not None
        )
        if fell_back:
            origin = _other(origin)
            self._events.publish(
                ReadFallback(side.name, appointment.id, appointment.clinic_id, stage, origin)
            )
        if origin is Origin.LEGACY:
            person_id = side.legacy_id(appointment)
            membership = (
                None
                if person_id is None
                else await self._lookups.membership_by_clinic_and_person(
                    side, appointment.clinic_id, person_id
                )
            )
            return ResolvedLink(person_id, membership, stage, origin, fell_back)
        membership_id = side.membership_id(appointment)
        membership = (
            None
            if membership_id is None
            else await self._lookups.membership_by_id(side, membership_id)
        )
        person_id = None if membership is None else side.person_of(membership)
        return ResolvedLink(person_id, membership, stage, origin, fell_back)


def fixed_stage(stage: Stage) -> StageLookup:
    """A stage lookup answering one stage for every clinic (CLI tools, seeding, tests)."""
    return lambda _clinic_id: stage


def _other(origin: Origin) -> Origin:
    return Origin.NEW if origin is Origin.LEGACY else Origin.LEGACY


def _stored(side: Side, appointment: Appointment, origin: Origin) -> uuid.UUID | None:
    return (
        side.legacy_id(appointment) if origin is Origin.LEGACY else side.membership_id(appointment)
    )
