"""What a read model statement's rows tell the migration's observers.

The statement decides what is served and where the origins differ; this reads
those columns where their labels put them (``compiler.RowColumns``,
``compiler.SideColumns``) and reports them as the read path always has: the
reads metric by stage, side, origin and outcome, a fallback event per fallback,
and in compared stages (for the sampled share of appointments) the comparisons
metric, a mismatch event per difference and an observation for the mismatch
ledger, with the appointment's entries as the statement found them. Nothing here
compares anything.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from appointments import metrics
from appointments.activity import RECENT
from appointments.comparison import Difference
from appointments.events import MigrationEventLog, MismatchSeen, ReadFallback
from appointments.ledger import Entries, MismatchRecorder, Observation, ObservationKey
from appointments.read_model.compiler import CompiledRead, SideColumns
from appointments.read_model.entries import decoded
from appointments.read_tally import READS as READ_TALLY
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


@dataclass(slots=True)
class _Counts:
    """What one read's rows add to the metrics, the read tally and the ledger.

    Counted per row with plain keys (the side's name, whether the new origin served,
    the clinic's id as an integer): an enum's ``name`` and ``value`` and a UUID's hash
    are Python-level calls, too many for every side of every row. ``_publish`` turns
    the keys into stages' origins and clinics' UUIDs once per read.
    """

    reads: Counter[tuple[Stage, str, bool, str]] = field(default_factory=Counter)
    """(stage, side's name, new origin, outcome) -> sides."""
    by_clinic: Counter[tuple[int, bool]] = field(default_factory=Counter)
    """(clinic id as an integer, new origin) -> sides."""
    clinics: dict[int, uuid.UUID] = field(default_factory=dict)
    comparisons: Counter[tuple[Stage, str]] = field(default_factory=Counter)
    observations: list[tuple[ObservationKey, Observation]] = field(default_factory=list)


def report(
    rows: Sequence[Any],
    compiled: CompiledRead,
    stages: Mapping[uuid.UUID, Stage],
    events: MigrationEventLog,
    recorder: MismatchRecorder,
    sampled: Sampler,
    seconds: float,
) -> None:
    """Count, publish and hand to the ledger what ``rows`` (of ``compiled``) found."""
    counts = _Counts()
    columns = compiled.row
    # Most reads serve one stage: then no row needs its clinic's looked up.
    served_stages = set(stages.values())
    only_stage = next(iter(served_stages)) if len(served_stages) == 1 else None
    compared_in = {stage: policy_for(stage).compared for stage in served_stages}
    for values in rows:
        clinic_id = values[columns.clinic_id]
        clinic_key = clinic_id.int
        counts.clinics[clinic_key] = clinic_id
        row = _Row(
            values, values[columns.id], clinic_id, clinic_key, only_stage or stages[clinic_id]
        )
        compared = compared_in[row.stage]
        recorded = compared and sampled(row.appointment_id)
        entries = None if columns.entries is None else decoded(values[columns.entries])
        for side in compiled.sides:
            _count_read(counts, events, row, side)
            if recorded:
                _compare(counts, events, row, side, entries)
            elif compared:
                counts.comparisons[(row.stage, "skipped")] += 1
    recorder.observe_all(counts.observations)
    _publish(counts, seconds)


class _Row(NamedTuple):
    """A row of the statement, with the values every side's bookkeeping uses."""

    values: Any
    appointment_id: uuid.UUID
    clinic_id: uuid.UUID
    clinic_key: int
    """``clinic_id.int``: hashed by C, where a UUID's hash is a Python call."""
    stage: Stage


def _count_read(counts: _Counts, events: MigrationEventLog, row: _Row, side: SideColumns) -> None:
    """One side served: the origin it came from, and whether it fell back or was empty."""
    values = row.values
    fell_back = values[side.fell_back]
    new = bool(values[side.new_origin])
    outcome = "empty" if values[side.empty] else "fallback" if fell_back else "authoritative"
    counts.reads[(row.stage, side.name, new, outcome)] += 1
    counts.by_clinic[(row.clinic_key, new)] += 1
    if fell_back:
        origin = Origin.NEW if new else Origin.LEGACY
        events.publish(
            ReadFallback(side.name, row.appointment_id, row.clinic_id, row.stage, origin)
        )


def _compare(
    counts: _Counts,
    events: MigrationEventLog,
    row: _Row,
    side: SideColumns,
    entries: Entries | None,
) -> None:
    """One side compared: its differences published and observed for the ledger."""
    appointment_id, clinic_id, stage = row.appointment_id, row.clinic_id, row.stage
    try:
        differences = _differences(row.values, side, clinic_id)
        if not differences and entries is not None and not entries:
            # Consistent, and the ledger has nothing of it to fix: nothing to observe.
            counts.comparisons[(stage, "consistent")] += 1
            return
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
        observation = Observation(appointment_id, clinic_id, stage, side.side, differences, entries)
    except Exception:
        counts.comparisons[(stage, "error")] += 1
        events.counts["comparison_error"] += 1
        logger.exception(
            "comparison failed; the read is served unchanged",
            extra={"appointment_id": str(appointment_id), "side": side.name},
        )
        return
    counts.comparisons[(stage, "inconsistent" if differences else "consistent")] += 1
    counts.observations.append(((appointment_id.int, side.name), observation))


def _publish(counts: _Counts, seconds: float) -> None:
    origins = {True: Origin.NEW, False: Origin.LEGACY}
    READ_TALLY.add(
        Counter(
            {
                (counts.clinics[clinic], origins[new].value): count
                for (clinic, new), count in counts.by_clinic.items()
            }
        )
    )
    for (stage, side_name, new, outcome), count in counts.reads.items():
        metrics.READS.labels(stage.value, side_name, origins[new].value, outcome).inc(count)
        RECENT.record("read", stage.value, count)
    for (stage, outcome), count in counts.comparisons.items():
        metrics.COMPARISONS.labels(stage.value, outcome).inc(count)
    for new in {new for (_, _, new, _) in counts.reads}:
        metrics.ORIGIN_READ_SECONDS.labels(origins[new].value).observe(seconds)


def _differences(row: Any, side: SideColumns, clinic_id: uuid.UUID) -> tuple[Difference, ...]:
    """The differences the statement found on one side, as the ledger records them."""
    differences: tuple[Difference, ...] = ()
    if row[side.person_differs]:
        differences += (
            Difference(side.side.person_field, row[side.legacy], row[side.stored_person]),
        )
    if row[side.clinic_differs]:
        differences += (Difference(side.side.clinic_field, clinic_id, row[side.stored_clinic]),)
    return differences
