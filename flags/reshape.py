"""Moving a flag from the old shape (one strategy per stage listing its clinics) to pins.

Before pins, our tools kept one ``default`` strategy per stage whose
``clinicId IN`` constraint listed every clinic at that stage, and untitled
percentage rollouts. Moving a clinic then meant editing lists other clinics
were in. ``reshape`` changes such a flag into one pin per clinic
(``flags.pins``) without any clinic changing stage at any moment:

1. for each listed clinic, one at a time: its pin is added, giving the stage
   the clinic is served now (so wherever the pin sits, the clinic's stage is the
   same), then the clinic is taken out of the old list (its pin decides it now),
   the emptied list removed; every clinic named in the flag is evaluated again
   after each step and the reshape stops at the first difference;
2. each untitled rollout of the old shape gets our rollout title (its content is
   unchanged, so no clinic moves).

In the local file all of it is one atomic replacement of the file, checked the
same way before it is written.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appointments.rollout.flag import FlagSwitchedOffError
from appointments.stages import Stage
from flags.document import (
    Document,
    locked,
    migration_feature,
    read_document,
    switched_off,
    write_document,
)
from flags.pins import (
    ROLLOUT_TITLE,
    Strategy,
    is_ours,
    pin_strategy,
    strategy_stage,
)
from flags.stage_writers import evaluate
from flags.unleash_admin import UnleashAdmin


class ReshapeError(RuntimeError):
    """A step would have changed, or did change, what a clinic is served; it stopped there."""


@dataclass(frozen=True, slots=True)
class OldList:
    """A strategy of the old shape: the clinics it lists, at its one stage."""

    index: int
    clinics: tuple[str, ...]


@dataclass
class ReshapePlan:
    lists: list[OldList] = field(default_factory=list)
    rollouts: list[int] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.lists and not self.rollouts

    def describe(self, strategies: Sequence[Strategy], served: dict[str, str]) -> list[str]:
        lines = []
        for old in self.lists:
            stage = strategy_stage(strategies[old.index])
            for clinic_id in old.clinics:
                lines.append(
                    f"pin {clinic_id} to {served.get(clinic_id, stage)} and take it out of the"
                    f" {stage} list"
                )
        for index in self.rollouts:
            lines.append(f"title the {strategy_stage(strategies[index])} rollout as ours")
        return lines


def plan_reshape(strategies: Sequence[Strategy]) -> ReshapePlan:
    """The old-shape strategies in ``strategies`` (active ones, in evaluation order)."""
    plan = ReshapePlan()
    for index, strategy in enumerate(strategies):
        if strategy.get("disabled", False) or is_ours(strategy) or strategy.get("title"):
            continue
        if strategy.get("segments") or strategy_stage(strategy) is None:
            continue
        constraints = strategy.get("constraints") or []
        if strategy.get("name") == "default" and len(constraints) == 1:
            constraint = constraints[0]
            if (
                constraint.get("contextName") == "clinicId"
                and constraint.get("operator") == "IN"
                and not constraint.get("inverted", False)
            ):
                values = tuple(str(v) for v in constraint.get("values") or ())
                plan.lists.append(OldList(index, values))
        elif (
            strategy.get("name") == "flexibleRollout"
            and not constraints
            and (strategy.get("parameters") or {}).get("stickiness") == "clinicId"
        ):
            plan.rollouts.append(index)
    return plan


def named_clinics(strategies: Sequence[Strategy]) -> list[str]:
    """Every clinic a ``clinicId`` constraint names (the clinics a reshape could move)."""
    found: dict[str, None] = {}
    for strategy in strategies:
        for constraint in strategy.get("constraints") or []:
            if constraint.get("contextName") == "clinicId":
                found.update(dict.fromkeys(str(v) for v in constraint.get("values") or ()))
    return list(found)


def without_clinic(strategy: Strategy, clinic_id: str) -> Strategy | None:
    """The old list without ``clinic_id``; None when nothing would be left in it."""
    constraint = dict(strategy["constraints"][0])
    constraint["values"] = [v for v in constraint.get("values") or () if str(v) != clinic_id]
    if not constraint["values"]:
        return None
    edited = {
        key: strategy[key]
        for key in ("name", "title", "parameters", "variants")
        if strategy.get(key) is not None
    }
    return {**edited, "constraints": [constraint]}


def titled_rollout(strategy: Strategy) -> Strategy:
    stage = strategy_stage(strategy)
    assert stage is not None
    edited = {
        key: strategy[key]
        for key in ("name", "parameters", "constraints", "variants")
        if strategy.get(key) is not None
    }
    return {**edited, "title": f"{ROLLOUT_TITLE}{stage.value}"}


def reshaped(strategies: Sequence[Strategy], served: dict[str, Any]) -> list[Strategy]:
    """``strategies`` reshaped at once (the local file's single write): pins first."""
    plan = plan_reshape(strategies)
    pins = [
        pin_strategy(clinic_id, served[clinic_id])
        for old in plan.lists
        for clinic_id in old.clinics
    ]
    listed = {old.index for old in plan.lists}
    kept = [
        titled_rollout(strategy) if index in plan.rollouts else strategy
        for index, strategy in enumerate(strategies)
        if index not in listed
    ]
    return pins + kept


def check_unchanged(
    before: dict[str, Any], evaluate: Callable[[], dict[str, Any]], step: str
) -> None:
    """Raise ``ReshapeError`` when any clinic's stage differs from ``before`` after ``step``."""
    after = evaluate()
    changed = [
        f"{clinic_id}: {before[clinic_id]} -> {after.get(clinic_id)}"
        for clinic_id in before
        if after.get(clinic_id) != before[clinic_id]
    ]
    if changed:
        raise ReshapeError(f"after {step}, clinics changed stage: {'; '.join(changed)}")


def _served(document: Document, clinic_ids: Sequence[str], default_stage: Stage) -> dict[str, Any]:
    valid = []
    for clinic_id in clinic_ids:
        try:
            valid.append(uuid.UUID(clinic_id))
        except ValueError:
            continue
    return {str(c): s for c, s in evaluate(document, valid, default_stage).items()}


def reshape_file(
    path: Path, default_stage: Stage, dry_run: bool, say: Callable[[str], None]
) -> int:
    """Reshape the local flags file in one atomic write (under its writer lock), after
    checking that no clinic named in it would change stage. Returns the steps taken."""
    with locked(path):
        document = read_document(path)
        off = switched_off(document)
        if off is not None:
            raise FlagSwitchedOffError(f"{off}; nothing written")
        feature = migration_feature(document)
        strategies = [] if feature is None else list(feature.get("strategies", []))
        plan = plan_reshape(strategies)
        clinics = named_clinics(strategies)
        served = _served(document, clinics, default_stage)
        steps = plan.describe(strategies, served)
        for line in steps:
            say(("would " if dry_run else "") + line)
        if dry_run or plan.empty or feature is None:
            return len(steps)
        feature["strategies"] = reshaped(strategies, served)
        check_unchanged(served, lambda: _served(document, clinics, default_stage), "the reshape")
        write_document(path, document)
    return len(steps)


def reshape_unleash(
    admin: UnleashAdmin, default_stage: Stage, dry_run: bool, say: Callable[[str], None]
) -> int:
    """Reshape the flag in Unleash one clinic at a time, each step one Admin API call,
    checking every clinic named in the flag after each call. Returns the steps taken."""
    flag = admin.flag()
    if flag.switched_off is not None:
        raise FlagSwitchedOffError(f"{flag.switched_off}; nothing written")
    active = flag.active
    plan = plan_reshape(active)
    clinics = named_clinics(active)
    served = _served(admin.flag_document(flag), clinics, default_stage)
    steps = plan.describe(active, served)
    if dry_run:
        for line in steps:
            say(f"would {line}")
        return len(steps)

    def now_served() -> dict[str, Any]:
        return _served(admin.export(), clinics, default_stage)

    for old in plan.lists:
        list_id = active[old.index]["id"]
        for clinic_id in old.clinics:
            admin.add_pin(clinic_id, served[clinic_id])
            check_unchanged(served, now_served, f"pinning {clinic_id}")
            current = next(s for s in admin.flag().strategies if s["id"] == list_id)
            edited = without_clinic(current, clinic_id)
            if edited is None:
                admin.delete_strategy(list_id)
            else:
                admin.replace_strategy(list_id, edited)
            check_unchanged(served, now_served, f"taking {clinic_id} out of its old list")
            say(f"pinned {clinic_id} to {served[clinic_id]}")
    for index in plan.rollouts:
        admin.replace_strategy(active[index]["id"], titled_rollout(active[index]))
        check_unchanged(served, now_served, "titling a rollout")
        say(f"titled the {strategy_stage(active[index])} rollout as ours")
    return len(steps)
