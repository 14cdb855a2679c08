"""What a backfill run is asked to do, what it reports while it runs, and what it did."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from appointments.backfill.pacing import ThrottleLimits


class Direction(enum.StrEnum):
    FORWARD = "forward"
    REVERSE = "reverse"


DEFAULT_BATCH_SIZE = 10_000
DEFAULT_BATCH_SECONDS = 0.2


@dataclass(frozen=True, slots=True)
class BackfillOptions:
    """A run's options.

    ``batch_size`` is the largest batch. With ``batch_seconds`` each batch is sized
    to take about that long, from the rows per second of the batches before it;
    ``None`` makes every batch ``batch_size`` appointments. ``throttle`` says when
    the run pauses between batches (PostgreSQL only).
    """

    direction: Direction = Direction.FORWARD
    clinic_id: uuid.UUID | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    batch_seconds: float | None = DEFAULT_BATCH_SECONDS
    create_memberships: bool = False
    dry_run: bool = False
    restart: bool = False
    throttle: ThrottleLimits = field(default_factory=ThrottleLimits)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError("batch size must be at least 1")
        if self.batch_seconds is not None and self.batch_seconds <= 0:
            raise ValueError("batch seconds must be positive (None: fixed batches)")

    @property
    def scope(self) -> str:
        return "all" if self.clinic_id is None else str(self.clinic_id)


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a run is, reported after each batch and while it pauses.

    ``done`` counts the appointments the batches of this process took (needing
    work when their batch read them), of ``total`` needing work when it started.
    ``batch_size`` is the size the next batch will have; ``batch_seconds`` how
    long the last batch's transaction took, from its first statement to its
    commit, which bounds how long it held any row lock. ``rows_per_second`` is
    ``done`` over the time since this process started the run, pauses included.
    ``paused`` says why the run is waiting before its next batch, while it is.
    """

    done: int
    total: int
    batches: int
    batch_size: int = 0
    batch_seconds: float = 0.0
    rows_per_second: float = 0.0
    paused: str | None = None


ProgressCallback = Callable[[Progress], None]


def _per_side() -> dict[str, int]:
    return {"doctor": 0, "patient": 0}


@dataclass
class BackfillSummary:
    """What a run did (a dry run: would do), counted by side, and what is left undone.

    ``linked`` counts the sides a run filled: forward, new links; reverse, legacy
    columns. ``remaining`` is what still needs work when it ends, by reason.
    """

    direction: Direction
    scope: str
    dry_run: bool
    resumed: bool = False
    batches: int = 0
    linked: dict[str, int] = field(default_factory=_per_side)
    created_memberships: dict[str, int] = field(default_factory=_per_side)
    remaining: dict[str, dict[str, int]] = field(default_factory=dict)
    paused_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "direction": self.direction.value,
            "scope": self.scope,
            "dry_run": self.dry_run,
            "resumed": self.resumed,
            "batches": self.batches,
            "linked": self.linked,
            "created_memberships": self.created_memberships,
            "remaining": self.remaining,
            "paused_seconds": round(self.paused_seconds, 3),
        }
