"""What a read model statement's rows tell the migration's observers.

The statement decides what is served and where the origins differ; this reads
those columns (``compiler.ROW_COLUMNS``, ``compiler.SIDE_COLUMNS``) and reports
them as the read path always has: the reads metric by stage, side, origin and
outcome, a fallback event per fallback, and in compared stages (for the sampled
share of appointments) the comparisons metric, a mismatch event per difference
and an observation for the mismatch ledger. Nothing here compares anything.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from appointments import metrics
from appointments.activity import RECENT
from appointments.comparison import Difference
from appointments.events import MigrationEventLog, MismatchSeen, ReadFallback
from appointments.ledger import MismatchRecorder, Observation, ObservationKey
from appointments.read_model.compiler import ROW_COLUMNS, SIDE_COLUMNS
from appointments.read_tally import READS as READ_TALLY
from appointments.sides import Side
from appointments.stages import Origin, Stage, policy_for

Sampler = Callable[[uuid.UUID], bool]
logger = logging.getLogger("appointments.reads")


def sampler(ratio: float) -> Sampler:
    """Whether an appointment's comparison is recorded: every one, or a random share."""
    if ratio >= 1.0:
        return lambda _appointment_id: True
    chosen: dict[uuid.UUID, bool] = {}

    def sampled(appointment_id: uuid.UUID) -> bool:
        found = chosen.get(appointment_id)
        if found is None:
            found = chosen[appointment_id] = random.random() < ratio  # noqa: S311 - sampling
        return found

    return sampled


def report(
    rows: Sequence[Any],
    sides: Sequence[Side],
    stages: Mapping[uuid.UUID, Stage],
    events: MigrationEventLog,
    recorder: MismatchRecorder,
    sampled: Sampler,
    seconds: float,
) -> None:
    reads: Counter[tuple[Stage, str, Origin, str]] = Counter()
    by_clinic: Counter[tuple[uuid.UUID, str]] = Counter()
    comparisons: Counter[tuple[Stage, str]] = Counter()
    observations: list[tuple[ObservationKey, Observation]] = []
    origins: set[Origin] = set()
    width = len(SIDE_COLUMNS)
    positions = [(side, len(ROW_COLUMNS) + n * width) for n, side in enumerate(sides)]
    # Most reads serve one stage: then no row needs its clinic's looked up.
    served_stages = set(stages.values())
    only_stage = next(iter(served_stages)) if len(served_stages) == 1 else None
    for row in rows:
        appointment_id, clinic_id = row[0], row[1]
        stage = only_stage or stages[clinic_id]
        compared = policy_for(stage).compared
        recorded = compared and sampled(appointment_id)
        for side, start in positions:
            fell_back, new_origin, empty = row[start], row[start + 1], row[start + 2]
            origin = Origin.NEW if new_origin else Origin.LEGACY
            origins.add(origin)
            outcome = "empty" if empty else "fallback" if fell_back else "authoritative"
            reads[(stage, side.name, origin, outcome)] += 1
            by_clinic[(clinic_id, origin.value)] += 1
            if fell_back:
                events.publish(ReadFallback(side.name, appointment_id, clinic_id, stage, origin))
            if not recorded:
                if compared:
                    comparisons[(stage, "skipped")] += 1
                continue
            try:
                differences = _differences(side, row, start, clinic_id)
                for difference in differences:
                    events.publish(
                        MismatchSeen(
                            difference.field,
                            appointment_id,
                            clinic_id,
                            stage,
                            difference.legacy_value,
                            difference.new_value,
                        )
                    )
                observation = Observation(appointment_id, clinic_id, stage, side, differences)
            except Exception:
                comparisons[(stage, "error")] += 1
                events.counts["comparison_error"] += 1
                logger.exception(
                    "comparison failed; the read is served unchanged",
                    extra={"appointment_id": str(appointment_id), "side": side.name},
                )
                continue
            comparisons[(stage, "inconsistent" if differences else "consistent")] += 1
            observations.append(((appointment_id.int, side.name), observation))
    recorder.observe_all(observations)
    READ_TALLY.add(by_clinic)
    for (stage, side_name, origin, outcome), count in reads.items():
        metrics.READS.labels(stage.value, side_name, origin.value, outcome).inc(count)
        RECENT.record("read", stage.value, count)
    for (stage, outcome), count in comparisons.items():
        metrics.COMPARISONS.labels(stage.value, outcome).inc(count)
    for origin in origins:
        metrics.ORIGIN_READ_SECONDS.labels(origin.value).observe(seconds)


def _differences(side: Side, row: Any, start: int, clinic_id: uuid.UUID) -> tuple[Difference, ...]:
    """The differences the statement found on one side, as the ledger records them."""
    person_differs, clinic_differs, legacy, stored_person, stored_clinic = row[
        start + 3 : start + 8
    ]
    differences: tuple[Difference, ...] = ()
    if person_differs:
        differences += (Difference(side.person_field, legacy, stored_person),)
    if clinic_differs:
        differences += (Difference(side.clinic_field, clinic_id, stored_clinic),)
    return differences
