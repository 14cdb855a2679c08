"""The six migration stages and what each one means for writes and reads.

The table below is the single source of truth: write and read paths look up a
``StagePolicy`` and follow it; no code path branches on a stage name.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from appointments.layout import Layout


class Stage(enum.StrEnum):
    LEGACY = "legacy"
    DUAL_WRITE = "dual_write"
    SHADOW = "shadow"
    LIVE = "live"
    RAMPDOWN = "rampdown"
    COMPLETE = "complete"

    @classmethod
    def parse(cls, value: str) -> Stage:
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(stage.value for stage in cls)
            raise ValueError(
                f"unknown migration stage {value!r}; expected one of {names}"
            ) from None


STAGE_ORDER = tuple(Stage)
"""The stages in migration order, legacy to complete (as ``Stage`` declares them)."""


def next_stage(stage: Stage) -> Stage | None:
    """The stage after ``stage``; none after the last."""
    position = STAGE_ORDER.index(stage)
    return STAGE_ORDER[position + 1] if position + 1 < len(STAGE_ORDER) else None


def previous_stage(stage: Stage) -> Stage | None:
    """The stage before ``stage``; none before the first."""
    position = STAGE_ORDER.index(stage)
    return STAGE_ORDER[position - 1] if position > 0 else None


class Origin(enum.StrEnum):
    """Which stored columns a value came from."""

    LEGACY = "legacy"
    NEW = "new"


@dataclass(frozen=True, slots=True)
class StagePolicy:
    stage: Stage
    writes_legacy: bool
    writes_new: bool
    authoritative: Origin
    compared: bool
    accepts_new_input: bool

    @property
    def new_authoritative(self) -> bool:
        return self.authoritative is Origin.NEW


STAGE_POLICIES: dict[Stage, StagePolicy] = {
    policy.stage: policy
    for policy in (
        StagePolicy(Stage.LEGACY, True, False, Origin.LEGACY, False, False),
        StagePolicy(Stage.DUAL_WRITE, True, True, Origin.LEGACY, False, True),
        StagePolicy(Stage.SHADOW, True, True, Origin.LEGACY, True, True),
        StagePolicy(Stage.LIVE, True, True, Origin.NEW, True, True),
        StagePolicy(Stage.RAMPDOWN, True, True, Origin.NEW, False, True),
        StagePolicy(Stage.COMPLETE, False, True, Origin.NEW, False, True),
    )
}


def policy_for(stage: Stage) -> StagePolicy:
    return STAGE_POLICIES[stage]


def contracted_stage(layout: Layout) -> Stage | None:
    """The stage every clinic is served whatever its flag: ``complete`` once the contract
    dropped the legacy columns (no other stage can be served without them), else none."""
    return None if layout.legacy_columns else Stage.COMPLETE


StageLookup = Callable[[uuid.UUID], Stage]
"""The stage a request serves a clinic in (the flag, evaluated once per request and clinic)."""


def fixed_stage(stage: Stage) -> StageLookup:
    """A stage lookup answering one stage for every clinic (CLI tools, seeding, tests)."""
    return lambda _clinic_id: stage
