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

A list resolver calls ``prefetch`` with its page: one batched load per kind of
membership for the whole page, then every link resolved and compared at once,
so the fields answer from memory (``ready``) with nothing left to await.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Coroutine, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, NamedTuple, Protocol, TypeVar

from appointments import metrics
from appointments.activity import RECENT
from appointments.comparison import (
    Difference,
    SideComparison,
    compare_side,
    differences_between,
)
from appointments.events import MigrationEventLog, MismatchSeen, ReadFallback
from appointments.ledger import MismatchRecorder, Observation, ObservationKey
from appointments.models import Appointment
from appointments.sides import DOCTOR, PATIENT, Membership, MembershipRecord, Side, StoredLink
from appointments.stages import Origin, Stage, StagePolicy, policy_for

logger = logging.getLogger("appointments.reads")

StageLookup = Callable[[uuid.UUID], Stage]
ClinicVisibility = Callable[[uuid.UUID], bool]
T = TypeVar("T")
MembershipT = TypeVar("MembershipT", bound="MembershipRecord | None")
MembershipKey = tuple[uuid.UUID, uuid.UUID]
LinkKey = tuple[int, str]


class Missing:
    """Not loaded yet (None means loaded, and no row has that key)."""


MISSING: Final = Missing()


class KnownMemberships(Protocol):
    """Memberships already in memory, by id and by (clinic, person)."""

    def known_membership_by_id(
        self, side: Side, membership_id: uuid.UUID
    ) -> MembershipRecord | Missing | None: ...

    def known_membership_by_clinic_and_person(
        self, side: Side, clinic_id: uuid.UUID, person_id: uuid.UUID
    ) -> MembershipRecord | Missing | None: ...


class MembershipLookups(KnownMemberships, Protocol):
    """Batched membership look-ups (the request's DataLoaders implement this)."""

    async def preload_memberships(
        self,
        by_id: dict[Side, set[uuid.UUID]],
        by_clinic_and_person: dict[Side, set[MembershipKey]],
        people: Collection[Side] = (),
    ) -> None:
        """Load the memberships not known yet; for the sides in ``people``, their
        people too (in the same statement where the store can)."""

    def membership_by_id(
        self, side: Side, membership_id: uuid.UUID
    ) -> Awaitable[Membership | None]: ...

    def membership_by_clinic_and_person(
        self, side: Side, clinic_id: uuid.UUID, person_id: uuid.UUID
    ) -> Awaitable[Membership | None]: ...


class ResolvedLink(NamedTuple):
    """One side of an appointment as served: both field sets, from one origin."""

    person_id: uuid.UUID | None
    membership: MembershipRecord | None
    stage: Stage
    origin: Origin
    fell_back: bool


class _LinkPlan(NamedTuple):
    link: StoredLink
    stage: Stage
    origin: Origin
    fell_back: bool
    compared: bool


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


def sees_every_clinic(_clinic_id: uuid.UUID) -> bool:
    return True


def sees_no_other_clinic(_clinic_id: uuid.UUID) -> bool:
    return False


class LinkResolver:
    """Resolves and compares appointment links for one request; each (appointment, side) once.

    ``sees`` says which clinics the viewer may see. A stored membership of another
    clinic than its appointment's (a data error the ledger tracks) is served only to
    a viewer who sees that clinic; to anyone else the side is served as unlinked, and
    the ``migration`` view hides what the new origin holds. The comparison and the
    ledger always see the stored rows.
    """

    def __init__(
        self,
        stage_for: StageLookup,
        lookups: MembershipLookups,
        events: MigrationEventLog,
        recorder: MismatchRecorder | None = None,
        sample_ratio: float = 1.0,
        sees: ClinicVisibility = sees_every_clinic,
    ) -> None:
        self._sees = sees
        self._stage_for = stage_for
        self._lookups = lookups
        self._events = events
        self._recorder = recorder or MismatchRecorder()
        self._sample_ratio = sample_ratio
        # Keyed by the appointment id's integer: uuid.UUID hashes and compares in Python,
        # and a list looks up a few hundred keys.
        self._resolved: dict[LinkKey, asyncio.Future[ResolvedLink]] = {}
        self._compared: dict[LinkKey, asyncio.Future[SideComparison]] = {}
        self._ready: dict[LinkKey, ResolvedLink] = {}
        # Links compared by a list, with the stored membership they were compared with:
        # the full comparison is built only if a field asks for it.
        self._compared_known: dict[LinkKey, tuple[StoredLink, MembershipRecord | None]] = {}
        self._sampled: dict[uuid.UUID, bool] = {}

    def limit_to(self, sees: ClinicVisibility) -> None:
        """Serve links as a viewer who sees these clinics (set once the viewer is known)."""
        self._sees = sees

    def ready(self, side: Side, appointment: Appointment) -> ResolvedLink | None:
        """The link if ``prefetch`` resolved it already, else None (then use ``resolve``)."""
        return self._ready.get((appointment.id.int, side.name))

    def resolve(self, side: Side, appointment: Appointment) -> Awaitable[ResolvedLink]:
        ready = self._ready.get((appointment.id.int, side.name))
        if ready is not None:
            return _done(ready)
        return _once(
            self._resolved,
            (appointment.id.int, side.name),
            lambda: self._resolve(side, appointment),
        )

    def compare(self, side: Side, appointment: Appointment) -> Awaitable[SideComparison]:
        """Both origins of one side; recorded in the ledger when the stage is a compared one."""
        key = (appointment.id.int, side.name)
        known = self._compared_known.get(key)
        if known is not None:
            return _done(compare_side(*known))  # compared (and recorded) by a list already
        return _once(self._compared, key, lambda: self._compare(side, appointment))

    async def prefetch(
        self, appointments: Sequence[Appointment], people: Collection[Side] = ()
    ) -> None:
        """Resolve (and, in compared stages, compare) both sides of a page of appointments.

        Same results, events, metrics and ledger observations as resolving each
        link on its own, with one batched load per kind of membership. ``people``:
        the sides whose people the caller will show, loaded with the memberships.
        """
        plans = self._plan(
            [
                side.stored(appointment, appointment.id, appointment.clinic_id)
                for appointment in appointments
                for side in (DOCTOR, PATIENT)
            ]
        )
        if not plans:
            return
        by_id: dict[Side, set[uuid.UUID]] = {DOCTOR: set(), PATIENT: set()}
        by_person: dict[Side, set[MembershipKey]] = {DOCTOR: set(), PATIENT: set()}
        for plan in plans:
            link = plan.link
            if plan.origin is Origin.LEGACY and link.legacy_id is not None:
                by_person[link.side].add((link.clinic_id, link.legacy_id))
            if (plan.origin is Origin.NEW or plan.compared) and link.membership_id is not None:
                by_id[link.side].add(link.membership_id)
        started = time.perf_counter()
        await self._lookups.preload_memberships(by_id, by_person, people)
        self._serve_plans(plans, self._lookups, time.perf_counter() - started)

    def serve_known(
        self, links: Sequence[StoredLink], known: KnownMemberships, load_seconds: float
    ) -> list[ResolvedLink]:
        """``prefetch`` for links whose memberships the caller loaded already (a joined
        read): every membership they name, by id and by (clinic, legacy person), must
        be known to ``known``. Returns the served link of each, in order."""
        self._serve_plans(self._plan(links), known, load_seconds)
        ready = self._ready
        served: list[ResolvedLink] = []
        for link in links:
            resolved = ready.get((link.appointment_id.int, link.side.name))
            if resolved is None:
                raise LookupError(f"membership of {link.side.name} link not known to the caller")
            served.append(resolved)
        return served

    def _plan(self, links: Sequence[StoredLink]) -> list[_LinkPlan]:
        """Stage, origin and sampling of each link not resolved earlier in the request."""
        plans: list[_LinkPlan] = []
        ready = self._ready
        every_read = self._sample_ratio >= 1.0
        stages: dict[int, tuple[Stage, StagePolicy]] = {}
        for link in links:
            if (link.appointment_id.int, link.side.name) in ready:
                continue
            known = stages.get(link.clinic_id.int)
            if known is None:
                stage = self._stage_for(link.clinic_id)
                known = stages[link.clinic_id.int] = (stage, policy_for(stage))
            stage, policy = known
            compared = policy.compared and (every_read or self._is_sampled(link.appointment_id))
            origin, fell_back = _origin_of(link, policy.authoritative)
            plans.append(_LinkPlan(link, stage, origin, fell_back, compared))
        return plans

    def _serve_plans(self, plans: list[_LinkPlan], known: KnownMemberships, elapsed: float) -> None:
        reads: Counter[tuple[Stage, str, Origin, str]] = Counter()
        comparisons: Counter[tuple[Stage, str]] = Counter()
        observations: list[tuple[ObservationKey, Observation]] = []
        ready = self._ready
        for plan in plans:
            link, stage = plan.link, plan.stage
            key = (link.appointment_id.int, link.side.name)
            if key in ready:
                continue  # served by another list of this request while this one loaded
            resolved = self._link_now(link, stage, plan.origin, plan.fell_back, known)
            if resolved is None:
                continue  # not preloaded (cannot happen): the field resolves it on its own
            ready[key] = resolved
            reads[(stage, link.side.name, resolved.origin, _outcome(resolved))] += 1
            if plan.compared:
                outcome = self._compare_now(key, link, stage, resolved, known, observations)
                if outcome is not None:
                    comparisons[(stage, outcome)] += 1
            elif policy_for(stage).compared:
                comparisons[(stage, "skipped")] += 1
        self._recorder.observe_all(observations)
        for (stage, side_name, origin, outcome), count in reads.items():
            metrics.READS.labels(stage.value, side_name, origin.value, outcome).inc(count)
            RECENT.record("read", stage.value, count)
        for (stage, outcome), count in comparisons.items():
            metrics.COMPARISONS.labels(stage.value, outcome).inc(count)
        for origin in {plan.origin for plan in plans}:
            metrics.ORIGIN_READ_SECONDS.labels(origin.value).observe(elapsed)

    def _link_now(
        self,
        link: StoredLink,
        stage: Stage,
        origin: Origin,
        fell_back: bool,
        known: KnownMemberships,
    ) -> ResolvedLink | None:
        side = link.side
        membership: MembershipRecord | Missing | None
        if origin is Origin.LEGACY:
            person_id = link.legacy_id
            membership = (
                None
                if person_id is None
                else known.known_membership_by_clinic_and_person(side, link.clinic_id, person_id)
            )
        else:
            membership = _known_stored_membership(link, known)
            if isinstance(membership, Missing):
                return None
            membership = self._visible(link.clinic_id, membership)
            person_id = None if membership is None else side.person_of(membership)
        if isinstance(membership, Missing):
            return None
        if fell_back:
            self._events.publish(
                ReadFallback(side.name, link.appointment_id, link.clinic_id, stage, origin)
            )
        return ResolvedLink(person_id, membership, stage, origin, fell_back)

    def _compare_now(
        self,
        key: LinkKey,
        link: StoredLink,
        stage: Stage,
        served: ResolvedLink,
        known: KnownMemberships,
        observations: list[tuple[ObservationKey, Observation]],
    ) -> str | None:
        """Compare a served link whose memberships ``known`` holds; the outcome for the
        metric, None when the stored membership was not loaded (the field compares it)."""
        try:
            # The served membership is the stored one when the new origin answered (unless
            # it was withheld from this viewer: then it is looked up like the legacy origin's).
            stored: MembershipRecord | Missing | None
            if served.origin is Origin.NEW and served.membership is not None:
                stored = served.membership
            elif link.membership_id is None:
                stored = None
            else:
                stored = known.known_membership_by_id(link.side, link.membership_id)
            if isinstance(stored, Missing):
                return None
            differences = differences_between(link, stored)
            if differences:
                self._publish(link, stage, differences)
        except Exception:
            self._comparison_failed(link.appointment_id, link.side)
            return "error"
        self._compared_known[key] = (link, stored)
        observations.append(
            (key, Observation(link.appointment_id, link.clinic_id, stage, link.side, differences))
        )
        return "inconsistent" if differences else "consistent"

    def _comparison_failed(self, appointment_id: uuid.UUID, side: Side) -> None:
        self._events.counts["comparison_error"] += 1
        logger.exception(
            "comparison failed; the read is served unchanged",
            extra={"appointment_id": str(appointment_id), "side": side.name},
        )

    def _is_sampled(self, appointment_id: uuid.UUID) -> bool:
        sampled = self._sampled.get(appointment_id)
        if sampled is None:
            sampled = random.random() < self._sample_ratio  # noqa: S311 - sampling, not security
            self._sampled[appointment_id] = sampled
        return sampled

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
            SideView(doctor_link, self._as_seen(appointment.clinic_id, doctor)),
            SideView(patient_link, self._as_seen(appointment.clinic_id, patient)),
        )

    def _visible(self, clinic_id: uuid.UUID, membership: MembershipT) -> MembershipT | None:
        """The stored membership, or None where it is of a clinic the viewer cannot see."""
        if (
            membership is None
            or membership.clinic_id.int == clinic_id.int
            or self._sees(membership.clinic_id)
        ):
            return membership
        return None

    def _as_seen(self, clinic_id: uuid.UUID, comparison: SideComparison) -> SideComparison:
        """The comparison without what the new origin holds in a clinic the viewer cannot see."""
        clinic = comparison.new_clinic_id
        if clinic is None or clinic.int == clinic_id.int or self._sees(clinic):
            return comparison
        return comparison._replace(
            new_membership_id=None,
            new_person_id=None,
            new_clinic_id=None,
            differences=tuple(replace(d, new_value=None) for d in comparison.differences),
        )

    def forget(self) -> None:
        """Drop memoised links, after a write changed what they were computed from."""
        self._resolved.clear()
        self._compared.clear()
        self._ready.clear()
        self._compared_known.clear()

    async def _resolve(self, side: Side, appointment: Appointment) -> ResolvedLink:
        stage = self._stage_for(appointment.clinic_id)
        policy = policy_for(stage)
        link = await self._serve(side, appointment, stage, policy.authoritative)
        metrics.READS.labels(stage.value, side.name, link.origin.value, _outcome(link)).inc()
        RECENT.record("read", stage.value)
        if policy.compared:
            await self._compare_safely(side, appointment, stage)
        return link

    async def _serve(
        self, side: Side, appointment: Appointment, stage: Stage, authoritative: Origin
    ) -> ResolvedLink:
        origin, fell_back = _origin(side, appointment, authoritative)
        if fell_back:
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
            membership = self._visible(
                appointment.clinic_id, await self._stored_membership(side, appointment)
            )
            person_id = None if membership is None else side.person_of(membership)
        metrics.ORIGIN_READ_SECONDS.labels(origin.value).observe(time.perf_counter() - started)
        return ResolvedLink(person_id, membership, stage, origin, fell_back)

    async def _compare_safely(self, side: Side, appointment: Appointment, stage: Stage) -> None:
        if not self._is_sampled(appointment.id):
            metrics.COMPARISONS.labels(stage.value, "skipped").inc()
            return
        try:
            await self.compare(side, appointment)
        except Exception:
            metrics.COMPARISONS.labels(stage.value, "error").inc()
            self._comparison_failed(appointment.id, side)

    async def _compare(self, side: Side, appointment: Appointment) -> SideComparison:
        stage = self._stage_for(appointment.clinic_id)
        link = side.stored(appointment, appointment.id, appointment.clinic_id)
        comparison = compare_side(link, await self._stored_membership(side, appointment))
        self._record(link, stage, comparison)
        return comparison

    def _record(self, link: StoredLink, stage: Stage, comparison: SideComparison) -> None:
        """Count, log and hand the comparison to the ledger, in compared stages."""
        if policy_for(stage).compared:
            outcome = "consistent" if comparison.consistent else "inconsistent"
            metrics.COMPARISONS.labels(stage.value, outcome).inc()
            self._publish(link, stage, comparison.differences)
            self._recorder.observe(
                Observation(
                    link.appointment_id, link.clinic_id, stage, link.side, comparison.differences
                )
            )

    def _publish(self, link: StoredLink, stage: Stage, differences: tuple[Difference, ...]) -> None:
        for difference in differences:
            self._events.publish(
                MismatchSeen(
                    difference.field,
                    link.appointment_id,
                    link.clinic_id,
                    stage,
                    difference.legacy_value,
                    difference.new_value,
                )
            )

    async def _stored_membership(self, side: Side, appointment: Appointment) -> Membership | None:
        membership_id = side.membership_id(appointment)
        if membership_id is None:
            return None
        return await self._lookups.membership_by_id(side, membership_id)


def _once(
    memo: dict[LinkKey, asyncio.Future[T]],
    key: LinkKey,
    start: Callable[[], Coroutine[Any, Any, T]],
) -> asyncio.Future[T]:
    future = memo.get(key)
    if future is None:
        future = asyncio.ensure_future(start())
        memo[key] = future
    return future


def _done(value: T) -> asyncio.Future[T]:
    future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future


def _known_stored_membership(
    link: StoredLink, known: KnownMemberships
) -> MembershipRecord | Missing | None:
    if link.membership_id is None:
        return None
    return known.known_membership_by_id(link.side, link.membership_id)


def _origin(side: Side, appointment: Appointment, authoritative: Origin) -> tuple[Origin, bool]:
    """The origin that answers, and whether that is a fallback from the authoritative one."""
    return _origin_of(
        side.stored(appointment, appointment.id, appointment.clinic_id), authoritative
    )


def _origin_of(link: StoredLink, authoritative: Origin) -> tuple[Origin, bool]:
    fell_back = _stored(link, authoritative) is None and (
        _stored(link, _other(authoritative)) is not None
    )
    return (_other(authoritative), True) if fell_back else (authoritative, False)


def _outcome(link: ResolvedLink) -> str:
    if link.person_id is None:
        return "empty"
    return "fallback" if link.fell_back else "authoritative"


def fixed_stage(stage: Stage) -> StageLookup:
    """A stage lookup answering one stage for every clinic (CLI tools, seeding, tests)."""
    return lambda _clinic_id: stage


def _other(origin: Origin) -> Origin:
    return Origin.NEW if origin is Origin.LEGACY else Origin.LEGACY


def _stored(link: StoredLink, origin: Origin) -> uuid.UUID | None:
    return link.legacy_id if origin is Origin.LEGACY else link.membership_id
