"""The concurrent writer of the backfill benchmark: reassignDoctor through the domain layer.

A paced loop of ``writes.reassign_appointment`` (what the GraphQL mutation
``reassignDoctor`` runs), each in its own transaction as the service runs it, on
appointments drawn at random from every clinic, each given another doctor of
its clinic by person id, in stage ``dual_write`` (the stage a backfill runs in:
both links written). Paced rather than back to back: a loop without pauses keeps
one of the two cores busy by itself and measures how the cores are shared, not
how the backfill's locks and I/O delay a write.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass

from sqlalchemy import func, select

from appointments import writes
from appointments.db import create_engine, create_session_factory
from appointments.events import PendingEvents
from appointments.models import Appointment, ClinicDoctor
from appointments.sides import DOCTOR
from appointments.stages import Stage, fixed_stage

SAMPLE = 20_000


@dataclass(frozen=True, slots=True)
class Latencies:
    """Seconds each write took, sorted."""

    seconds: list[float]

    def percentile(self, share: float) -> float:
        """The nearest-rank percentile (``share`` 0.99 for p99); NaN without samples."""
        if not self.seconds:
            return math.nan
        rank = max(1, math.ceil(share * len(self.seconds)))
        return self.seconds[rank - 1]

    def describe(self) -> str:
        return (
            f"{len(self.seconds)} writes, p50 {self.percentile(0.5) * 1000:.1f} ms,"
            f" p99 {self.percentile(0.99) * 1000:.1f} ms, max {self.percentile(1.0) * 1000:.1f} ms"
        )


async def write_while(
    url: str, rate: float, until: Awaitable[object] | float, seed: int = 19
) -> Latencies:
    """Reassign doctors at ``rate`` writes per second until ``until`` is done (an awaitable)
    or for that many seconds (a number); the latency of each write."""
    engine = create_engine(url)
    sessions = create_session_factory(engine)
    chooser = random.Random(seed)  # noqa: S311 - a benchmark's workload, not a secret
    try:
        async with sessions() as session:
            targets = (
                await session.execute(
                    select(Appointment.id, Appointment.clinic_id)
                    .order_by(func.random())
                    .limit(SAMPLE)
                )
            ).all()
            doctors: dict[uuid.UUID, list[uuid.UUID]] = {}
            for clinic_id, user_id in await session.execute(
                select(ClinicDoctor.clinic_id, ClinicDoctor.user_id)
            ):
                doctors.setdefault(clinic_id, []).append(user_id)
        stop = asyncio.ensure_future(
            asyncio.sleep(until) if isinstance(until, float | int) else until
        )
        latencies: list[float] = []
        interval = 1 / rate
        next_start = time.perf_counter()
        while not stop.done():
            appointment_id, clinic_id = chooser.choice(targets)
            doctor = chooser.choice(doctors[clinic_id])
            started = time.perf_counter()
            async with sessions() as session, session.begin():
                await writes.reassign_appointment(
                    session,
                    fixed_stage(Stage.DUAL_WRITE),
                    DOCTOR,
                    appointment_id,
                    writes.PersonReference(person_id=doctor),
                    PendingEvents(),
                )
            latencies.append(time.perf_counter() - started)
            next_start = max(next_start + interval, time.perf_counter())
            await asyncio.wait([stop], timeout=next_start - time.perf_counter())
        await stop
        return Latencies(sorted(latencies))
    finally:
        await engine.dispose()
