"""Migration events: read fallbacks and unlinked writes.

Events raised inside a write are buffered and published only after the
transaction commits, so a rolled-back write never reports anything.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from dataclasses import dataclass, field

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


MigrationEvent = ReadFallback | UnlinkedWrite


@dataclass
class PendingEvents:
    """Events of one write, held until its transaction commits."""

    events: list[MigrationEvent] = field(default_factory=list)

    def add(self, event: MigrationEvent) -> None:
        self.events.append(event)


@dataclass
class MigrationEventLog:
    """Logs every event and counts them; one per request, or per CLI run."""

    counts: Counter[str] = field(default_factory=Counter)

    def publish(self, event: MigrationEvent) -> None:
        kind = "read_fallback" if isinstance(event, ReadFallback) else "unlinked_write"
        self.counts[kind] += 1
        details = {
            "event": kind,
            "side": event.side,
            "appointment_id": str(event.appointment_id),
            "clinic_id": str(event.clinic_id),
            "stage": event.stage.value,
        }
        if isinstance(event, ReadFallback):
            details["served_origin"] = event.served_origin.value
            logger.info("read fell back to the non-authoritative side", extra=details)
        else:
            details["person_id"] = str(event.person_id)
            logger.warning("write left the appointment unlinked in the new model", extra=details)

    def publish_all(self, pending: PendingEvents) -> None:
        for event in pending.events:
            self.publish(event)
