"""Migration events: read fallbacks, unlinked writes, mismatches seen, failed writes.

Every event is logged (one structured line) and counted in the metrics. Events
raised inside a write are buffered and published only after the transaction
commits, so a rolled-back write never reports anything, except its own failure.
Fallbacks and failures are also counted per clinic (``by_clinic``), for the
database's health counters (``appointments.health``).
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from dataclasses import dataclass, field

from appointments import health, metrics
from appointments.models import MismatchField
from appointments.stages import Origin, Stage

logger = logging.getLogger("appointments.migration")


@dataclass(frozen=True, slots=True)
class ReadFallback:
    side: str
    appointment_id: uuid.UUID
    clinic_id: uuid.UUID
    stage: Stage
    served_origin: Origin


@dataclass(frozen=True, slots=True)
class UnlinkedWrite:
    side: str
    appointment_id: uuid.UUID
    clinic_id: uuid.UUID
    stage: Stage
    person_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class MismatchSeen:
    field: MismatchField
    appointment_id: uuid.UUID
    clinic_id: uuid.UUID
    stage: Stage
    legacy_value: uuid.UUID | None
    new_value: uuid.UUID | None


@dataclass(frozen=True, slots=True)
class WriteFailed:
    """A write refused because its stage could not write the authoritative side, or one
    that failed unexpectedly: what the rollout's write-failure guard counts."""

    operation: str
    clinic_id: uuid.UUID
    stage: Stage
    outcome: str


MigrationEvent = ReadFallback | UnlinkedWrite | MismatchSeen


@dataclass
class PendingEvents:
    """Events of one write, held until its transaction commits; its failure, if it fails."""

    events: list[MigrationEvent] = field(default_factory=list)
    failures: list[WriteFailed] = field(default_factory=list)

    def add(self, event: MigrationEvent) -> None:
        self.events.append(event)


def _text(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


@dataclass
class MigrationEventLog:
    """Logs, meters and counts events; one per request, or per CLI run."""

    counts: Counter[str] = field(default_factory=Counter)
    by_clinic: health.HealthCounts = field(default_factory=Counter)

    def publish(self, event: MigrationEvent) -> None:
        details: dict[str, object] = {
            "appointment_id": str(event.appointment_id),
            "clinic_id": str(event.clinic_id),
            "stage": event.stage.value,
        }
        match event:
            case ReadFallback():
                self.counts["read_fallback"] += 1
                metrics.READ_FALLBACKS.labels(event.stage.value, event.side).inc()
                self.by_clinic[(event.clinic_id, health.READ_FALLBACK)] += 1
                details |= {"event": "read_fallback", "side": event.side}
                details["served_origin"] = event.served_origin.value
                logger.info("read fell back to the non-authoritative side", extra=details)
            case UnlinkedWrite():
                self.counts["unlinked_write"] += 1
                metrics.UNLINKED_WRITES.labels(event.stage.value, event.side).inc()
                details |= {"event": "unlinked_write", "side": event.side}
                details["person_id"] = str(event.person_id)
                logger.warning("write left the new side unlinked", extra=details)
            case MismatchSeen():
                self.counts["mismatch"] += 1
                metrics.MISMATCHES.labels(event.stage.value, event.field.value).inc()
                details |= {"event": "mismatch", "field": event.field.value}
                details["legacy_value"] = _text(event.legacy_value)
                details["new_value"] = _text(event.new_value)
                logger.warning("legacy and new side disagree", extra=details)

    def publish_all(self, pending: PendingEvents) -> None:
        for event in pending.events:
            self.publish(event)

    def publish_failures(self, pending: PendingEvents) -> None:
        """A write's failure (its other events were rolled back with it)."""
        for failure in pending.failures:
            self.counts["write_failure"] += 1
            self.by_clinic[(failure.clinic_id, health.WRITE_FAILURE)] += 1
            logger.warning(
                "write failed",
                extra={
                    "event": "write_failed",
                    "clinic_id": str(failure.clinic_id),
                    "stage": failure.stage.value,
                    "operation": failure.operation,
                    "outcome": failure.outcome,
                },
            )
