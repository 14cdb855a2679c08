"""Counting writes: by stage, operation, input style and outcome; failed writes per clinic."""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from appointments import metrics
from appointments.activity import RECENT
from appointments.errors import DomainError, ErrorCode
from appointments.events import PendingEvents, WriteFailed
from appointments.stages import Stage


class PersonReference(Protocol):
    @property
    def person_id(self) -> uuid.UUID | None: ...

    @property
    def membership_id(self) -> uuid.UUID | None: ...


@dataclass
class WriteMeter:
    stage: Stage | None = None
    clinic_id: uuid.UUID | None = None


_COUNTED: contextvars.ContextVar[bool] = contextvars.ContextVar("writes_counted", default=True)


@contextmanager
def not_traffic() -> Iterator[None]:
    """Writes made inside are not service traffic (the demo seed): not in the Prometheus
    counters nor in the dashboard's recent activity."""
    token = _COUNTED.set(False)
    try:
        yield
    finally:
        _COUNTED.reset(token)


# Outcomes that say the stage could not write what it must (not a caller's mistake).
FAILED_WRITE_OUTCOMES = frozenset({ErrorCode.MEMBERSHIP_MISSING.value.lower(), "internal_error"})


@contextmanager
def metered(
    operation: str, *references: PersonReference, failures: PendingEvents | None = None
) -> Iterator[WriteMeter]:
    """Count the write by stage, operation, input style and outcome (ok or the error code);
    a failed write of a known clinic and stage also goes to ``failures``."""
    meter = WriteMeter()
    outcome = "ok"
    try:
        yield meter
    except DomainError as error:
        outcome = error.code.value.lower()
        raise
    except Exception:
        outcome = "internal_error"
        raise
    finally:
        stage = "unknown" if meter.stage is None else meter.stage.value
        if _COUNTED.get():
            metrics.WRITES.labels(stage, operation, _input_style(references), outcome).inc()
            RECENT.record("write", stage)
        if (
            failures is not None
            and outcome in FAILED_WRITE_OUTCOMES
            and meter.stage is not None
            and meter.clinic_id is not None
        ):
            failures.failures.append(WriteFailed(operation, meter.clinic_id, meter.stage, outcome))


def _input_style(references: tuple[PersonReference, ...]) -> str:
    styles = {
        "new" if reference.membership_id is not None else "legacy"
        for reference in references
        if reference.membership_id is not None or reference.person_id is not None
    }
    if not styles:
        return "none"
    return styles.pop() if len(styles) == 1 else "mixed"
