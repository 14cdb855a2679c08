"""The migration flag's shape: one strategy per pinned clinic, marked as ours.

A clinic pinned to a stage has a strategy of its own: a ``default`` strategy
whose only constraint is ``clinicId IN [that clinic]`` and whose one strategy
variant is the stage. Pins come before the percentage rollouts, so the first
matching strategy of a pinned clinic is its pin. Moving a clinic therefore edits
that clinic's strategy alone (one call), and no edit of one clinic can change
what another is served.

Our tools mark what they make with a title: ``clinic-pin <clinic id>`` for a
pin, ``clinic-rollout <stage>`` for a percentage rollout. They edit only
strategies with such a title whose content is still what they made; anything
else (a strategy a person made in the Unleash UI, one of ours a person edited)
is left exactly as it is. A strategy we did not make that targets a clinic
(a ``clinicId`` constraint it matches) *claims* that clinic: our tools do not
move it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from yggdrasil_engine.engine import UnleashEngine

from appointments.rollout.flag import ClinicClaimedError
from appointments.stages import Stage

PIN_TITLE = "clinic-pin "
ROLLOUT_TITLE = "clinic-rollout "
ROLLOUT_GROUP = "appointments.clinic-model-migration"

Strategy = dict[str, Any]


def stage_variant(stage: Stage, stickiness: str) -> dict[str, Any]:
    return {"name": stage.value, "weight": 1000, "weightType": "variable", "stickiness": stickiness}


def clinic_constraint(clinic_ids: Sequence[str]) -> dict[str, Any]:
    return {
        "contextName": "clinicId",
        "operator": "IN",
        "values": list(clinic_ids),
        "inverted": False,
        "caseInsensitive": False,
    }


def pin_strategy(clinic_id: str, stage: Stage) -> Strategy:
    """The strategy that pins one clinic to ``stage``."""
    return {
        "name": "default",
        "title": f"{PIN_TITLE}{clinic_id}",
        "parameters": {},
        "constraints": [clinic_constraint([clinic_id])],
        "variants": [stage_variant(stage, "default")],
    }


def rollout_strategy(stage: Stage, percentage: int) -> Strategy:
    """``percentage`` of the clinics no pin matches get ``stage`` (sticky on ``clinicId``)."""
    if not 0 <= percentage <= 100:
        raise ValueError(f"a rollout percentage must be 0 to 100, not {percentage}")
    return {
        "name": "flexibleRollout",
        "title": f"{ROLLOUT_TITLE}{stage.value}",
        "parameters": {
            "rollout": str(percentage),
            "stickiness": "clinicId",
            "groupId": ROLLOUT_GROUP,
        },
        "constraints": [],
        "variants": [stage_variant(stage, "clinicId")],
    }


def strategy_stage(strategy: Strategy) -> Stage | None:
    """The stage of a strategy with exactly one variant named after a stage, else None."""
    variants = strategy.get("variants") or []
    if len(variants) != 1 or not isinstance(variants[0], dict):
        return None
    try:
        return Stage.parse(str(variants[0].get("name")))
    except ValueError:
        return None


def pinned_clinic(strategy: Strategy) -> str | None:
    """The clinic a pin of ours holds; None for anything else (including a pin of ours a
    person has edited: its content no longer says what its title says)."""
    title = strategy.get("title") or ""
    if not title.startswith(PIN_TITLE) or strategy.get("name") != "default":
        return None
    clinic_id = title.removeprefix(PIN_TITLE)
    stage = strategy_stage(strategy)
    if stage is None or strategy.get("segments") or strategy.get("parameters"):
        return None
    if _comparable_constraints(strategy) != _comparable_constraints(pin_strategy(clinic_id, stage)):
        return None
    return clinic_id


def rollout_stage(strategy: Strategy) -> Stage | None:
    """The stage of a percentage rollout of ours; None for anything else."""
    title = strategy.get("title") or ""
    stage = strategy_stage(strategy)
    if stage is None or title != f"{ROLLOUT_TITLE}{stage.value}":
        return None
    parameters = strategy.get("parameters") or {}
    if (
        strategy.get("name") != "flexibleRollout"
        or strategy.get("constraints")
        or strategy.get("segments")
        or parameters.get("stickiness") != "clinicId"
    ):
        return None
    return stage


def is_ours(strategy: Strategy) -> bool:
    return pinned_clinic(strategy) is not None or rollout_stage(strategy) is not None


def describe(strategy: Strategy) -> str:
    """A strategy as a product owner finds it in the Unleash UI."""
    title = strategy.get("title")
    stage = strategy_stage(strategy)
    gives = f"gives {stage}" if stage is not None else "gives no stage (the default applies)"
    named = f'"{title}"' if title else f"an untitled {strategy.get('name', '?')} strategy"
    return f"{named} ({gives})"


def _comparable_constraints(
    strategy: Strategy,
) -> list[tuple[str, str, tuple[str, ...], bool, bool]]:
    return [
        (
            str(c.get("contextName")),
            str(c.get("operator")),
            tuple(str(v) for v in c.get("values") or ()),
            bool(c.get("inverted", False)),
            bool(c.get("caseInsensitive", False)),
        )
        for c in strategy.get("constraints") or []
    ]


def claims(strategies: Sequence[Strategy], clinic_ids: Iterable[str]) -> dict[str, str]:
    """Clinics a strategy we did not make targets, each with that strategy described.

    A strategy targets a clinic when it is switched on, has a ``clinicId``
    constraint, and matches the clinic on its own (evaluated by the Unleash engine
    with the clinic as the only context, as the autopilot sees a clinic).
    """
    foreign = [
        strategy
        for strategy in strategies
        if not strategy.get("disabled", False)
        and not is_ours(strategy)
        and any(c.get("contextName") == "clinicId" for c in strategy.get("constraints") or [])
    ]
    if not foreign:
        return {}
    engine = UnleashEngine()
    engine.take_state(
        json.dumps(
            {
                "version": 2,
                "features": [
                    {
                        "name": f"strategy-{index}",
                        "enabled": True,
                        "strategies": [_evaluable(strategy)],
                    }
                    for index, strategy in enumerate(foreign)
                ],
            }
        )
    )
    found: dict[str, str] = {}
    for clinic_id in clinic_ids:
        context = {"properties": {"clinicId": clinic_id}}
        for index, strategy in enumerate(foreign):
            if engine.is_enabled(f"strategy-{index}", context).is_enabled:
                found[clinic_id] = describe(strategy)
                break
    return found


def refuse_if_claimed(strategies: Sequence[Strategy], clinic_id: str) -> None:
    """Raise ``ClinicClaimedError`` when a strategy we did not make targets the clinic."""
    claimed = claims(strategies, [clinic_id]).get(clinic_id)
    if claimed is not None:
        raise ClinicClaimedError(
            f"clinic {clinic_id} is decided by {claimed}, which our tools did not make;"
            " nothing written"
        )


def _evaluable(strategy: Strategy) -> Strategy:
    return {
        key: strategy[key]
        for key in ("name", "parameters", "constraints", "variants", "segments")
        if key in strategy
    }


@dataclass(frozen=True, slots=True)
class PinEdit:
    """The one change that gives one clinic a stage: ``strategy`` replaces the pin at
    ``index`` (an update), or is added before every other strategy (``index`` None).
    ``duplicates`` are later pins of the same clinic, shadowed by the first (two writers
    raced to create it): removing them changes what no clinic is served."""

    clinic_id: str
    stage: Stage
    strategy: Strategy
    index: int | None
    duplicates: tuple[int, ...]


def plan_pin(strategies: Sequence[Strategy], clinic_id: str, stage: Stage) -> PinEdit:
    """How to pin ``clinic_id`` to ``stage`` in ``strategies`` (in evaluation order),
    touching nothing but that clinic's own pin."""
    own = [
        index for index, strategy in enumerate(strategies) if pinned_clinic(strategy) == clinic_id
    ]
    first = own[0] if own else None
    return PinEdit(clinic_id, stage, pin_strategy(clinic_id, stage), first, tuple(own[1:]))


def pinned_stages(strategies: Iterable[Strategy]) -> dict[str, Stage]:
    """The stage of each clinic a pin of ours holds (the first pin, where several raced)."""
    found: dict[str, Stage] = {}
    for strategy in strategies:
        clinic_id = pinned_clinic(strategy)
        stage = strategy_stage(strategy)
        if clinic_id is not None and stage is not None:
            found.setdefault(clinic_id, stage)
    return found
