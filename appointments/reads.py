"""The read path: which stored columns answer for an appointment's doctor and patient.

The stage's authoritative origin is served, and the other field set is derived
from it: from a legacy person id, the membership is found by (clinic, person);
from a membership, the person is the membership's. When the authoritative
column is empty (a row written in ``complete`` read after a rollback, or a
legacy row not backfilled yet) the other origin answers and a fallback event
is recorded.

In compared stages every read also compares both origins (sampled by a ratio)
and hands the result to the request's mismatch recorder. Both origins come
from the same batched loads, and a failing comparison never fails the read.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from appointments import metrics
from appointments.activity import RECENT
from appointments.comparison import Difference, SideComparison, compare_side
from appointments.events import MigrationEventLog, MismatchSeen, ReadFallback
from appointments.ledger import MismatchRecorder
from appointments.models import Appointment
from appointments.sides import DOCTOR, PATIENT, Membership, Side
from appointments.stages import Origin, Stage, policy_for

logger = logging.getLogger("appointments.reads")

StageLookup = Callable[[uuid.UUID], Stage]
T = TypeVar("T")


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


@dataclass(frozen=True, slots=True)
class SideView:
    link: ResolvedLink
    comparison: SideComparison


@dataclass(frozen=True, slots=True)
class MigrationView:
    """What QA sees of one appointment: the stage, what was served, what each origin holds."""

    stage: Stage
    authoritative: Origin
    compared_stage: bool
    doctor: SideView
    patient: SideView

    @property
    def differences(self) -> tuple[Difference, ...]:
        return self.doctor.comparison.differences + self.patient.comparison.differences

    @property
    def consistent(self) -> bool:
        return not self.differences


class LinkResolver:
    """Resolves and compares appointment links for one request; each (appointment, side) once."""

    def __init__(
        self,
        stage_for: StageLookup,
        lookups: MembershipLookups,
        events: MigrationEventLog,
        recorder: MismatchRecorder | None = None,
        sample_ratio: float = 1.0,
    ) -> None:
        self._stage_for = stage_for
        self._lookups = lookups
        self._events = events
        self._recorder = recorder or MismatchRecorder()
        self._sample_ratio = sample_ratio
        self._resolved: dict[tuple[uuid.UUID, str], asyncio.Future[ResolvedLink]] = {}
        self._compared: dict[tuple[uuid.UUID, str], asyncio.Future[SideComparison]] = {}
        self._sampled: dict[uuid.UUID, bool] = {}

    def resolve(self, side: Side, appointment: Appointment) -> Awaitable[ResolvedLink]:
        return _once(
            self._resolved, (appointment.id, side.name), lambda: self._resolve(side, appointment)
        )

    def compare(self, side: Side, appointment: Appointment) -> Awaitable[SideComparison]:
        """Both origins of one side; recorded in the ledger when the stage is a compared one."""
        return _once(
            self._compared, (appointment.id, side.name), lambda: self._compare(side, appointment)
        )

    async def migration(self, appointment: Appointment) -> MigrationView:
        """Served links and both origins of both sides; compared on demand in any stage."""
        stage = self._stage_for(appointment.clinic_id)
        policy = policy_for(stage)
        doctor_link, patient_link, doctor, patient = await asyncio.gather(
            self.resolve(DOCTOR, appointment),
            self.resolve(PATIENT, appointment),
            self.compare(DOCTOR, appointment),
            self.compare(PATIENT, appointment),
        )
        return MigrationView(
            stage,
            policy.authoritative,
            policy.compared,
            SideView(doctor_link, doctor),
            SideView(patient_link, patient),
        )

    def forget(self) -> None:
        """Drop memoised links, after a write changed what they were computed from."""
        self._resolved.clear()
        self._compared.clear()

    async def _resolve(self, side: Side, appointment: Appointment) -> ResolvedLink:
        stage = self._stage_for(appointment.clinic_id)
        policy = policy_for(stage)
        link = await self._serve(side, appointment, stage, policy.authoritative)
        outcome = "fallback" if link.fell_back else "authoritative"
        if link.person_id is None:
            outcome = "empty"
        metrics.READS.labels(stage.value, side.name, link.origin.value, outcome).inc()
        RECENT.record("read", stage.value)
        if policy.compared:
            await self._compare_safely(side, appointment, stage)
        return link

    async def _serve(
        self, side: Side, appointment: Appointment, stage: Stage, authoritative: Origin
    ) -> ResolvedLink:
        origin = authoritative
        fell_back = _stored(side, appointment, origin) is None and (
            _stored(side, appointment, _other(origin)) is not None
        )
        if fell_back:
            origin = _other(origin)
            self._events.publish(
                ReadFallback(side.name, appointment.id, appointment.clinic_id, stage, origin)
            )
        started = time.perf_counter()
        if origin is Origin.LEGACY:
            person_id = side.legacy_id(appointment)
            membership = (
                None
                if person_id is None
                else await self._lookups.membership_by_clinic_and_person(
                    side, appointment.clinic_id, person_id
                )
            )
        else:
            membership = await self._stored_membership(side, appointment)
            person_id = None if membership is None else side.person_of(membership)
        metrics.ORIGIN_READ_SECONDS.labels(origin.value).observe(time.perf_counter() - started)
        return ResolvedLink(person_id, membership, stage, origin, fell_back)

    async def _compare_safely(self, side: Side, appointment: Appointment, stage: Stage) -> None:
        sampled = self._sampled.get(appointment.id)
        if sampled is None:
            sampled = random.random() < self._sample_ratio  # noqa: S311 - sampling, not security
            self._sampled[appointment.id] = sampled
        if not sampled:
            metrics.COMPARISONS.labels(stage.value, "skipped").inc()
            return
        try:
            await self.compare(side, appointment)
        except Exception:
            metrics.COMPARISONS.labels(stage.value, "error").inc()
            self._events.counts["comparison_error"] += 1
            logger.exception(
                "comparison failed; the read is served unchanged",
                extra={"appointment_id": str(appointment.id), "side": side.name},
            )

    async def _compare(self, side: Side, appointment: Appointment) -> SideComparison:
        stage = self._stage_for(appointment.clinic_id)
        comparison = compare_side(
            side, appointment, await self._stored_membership(side, appointment)
        )
        if policy_for(stage).compared:
            outcome = "consistent" if comparison.consistent else "inconsistent"
            metrics.COMPARISONS.labels(stage.value, outcome).inc()
            for difference in comparison.differences:
                self._events.publish(
                    MismatchSeen(
                        difference.field,
                        appointment.id,
                        appointment.clinic_id,
                        stage,
                        difference.legacy_value,
                        difference.new_value,
                    )
                )
            self._recorder.observe(appointment, stage, comparison)
        return comparison

    async def _stored_membership(self, side: Side, appointment: Appointment) -> Membership | None:
        membership_id = side.membership_id(appointment)
        if membership_id is None:
            return None
        return await self._lookups.membership_by_id(side, membership_id)


def _once(
    memo: dict[tuple[uuid.UUID, str], asyncio.Future[T]],
    key: tuple[uuid.UUID, str],
    start: Callable[[], Coroutine[Any, Any, T]],
) -> asyncio.Future[T]:
    future = memo.get(key)
    if future is None:
        future = asyncio.ensure_future(start())
        memo[key] = future
    return future


def fixed_stage(stage: Stage) -> StageLookup:
    """A stage lookup answering one stage for every clinic (CLI tools, seeding, tests)."""
    return lambda _clinic_id: stage


def _other(origin: Origin) -> Origin:
    return Origin.NEW if origin is Origin.LEGACY else Origin.LEGACY


def _stored(side: Side, appointment: Appointment, origin: Origin) -> uuid.UUID | None:
    return (
        side.legacy_id(appointment) if origin is Origin.LEGACY else side.membership_id(appointment)
    )
