"""Unleash client-features documents for the migration flag: build, validate, edit.

The local flags file is in Unleash's own ``/api/client/features`` format, so the
same SDK evaluates it as it would a server's answer, and a file exported from a
server works unchanged.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from yggdrasil_engine.engine import UnleashEngine

from appointments.stages import Stage
from flags import FLAG_NAME

Document = dict[str, Any]


class FlagsFileError(ValueError):
    """The flags file cannot be used; the message says why."""


def build_document(
    clinic_stages: Mapping[str, Stage], rollouts: Iterable[tuple[Stage, int]] = ()
) -> Document:
    """A document where listed clinics get their stage and the rest follow the rollouts.

    Clinic constraints come first, so a pilot clinic keeps its stage whatever the
    percentage rollouts say; rollouts are tried in the order given.
    """
    by_stage: dict[Stage, list[str]] = {}
    for clinic_id, stage in clinic_stages.items():
        by_stage.setdefault(stage, []).append(clinic_id)
    strategies = [_clinic_strategy(stage, sorted(ids)) for stage, ids in by_stage.items()]
    strategies += [_rollout_strategy(stage, percentage) for stage, percentage in rollouts]
    return {
        "version": 2,
        "features": [
            {
                "name": FLAG_NAME,
                "description": "Migration stage of each clinic (to clinic memberships)",
                "type": "release",
                "project": "default",
                "enabled": True,
                "stale": False,
                "impressionData": False,
                "strategies": strategies,
                "variants": [],
            }
        ],
    }


def _variant(stage: Stage, stickiness: str) -> dict[str, Any]:
    return {"name": stage.value, "weight": 1000, "weightType": "variable", "stickiness": stickiness}


def _clinic_strategy(stage: Stage, clinic_ids: list[str]) -> dict[str, Any]:
    return {
        "name": "default",
        "parameters": {},
        "constraints": [
            {
                "contextName": "clinicId",
                "operator": "IN",
                "values": clinic_ids,
                "inverted": False,
                "caseInsensitive": False,
            }
        ],
        "variants": [_variant(stage, "default")],
    }


def _rollout_strategy(stage: Stage, percentage: int) -> dict[str, Any]:
    if not 0 <= percentage <= 100:
        raise FlagsFileError(f"a rollout percentage must be 0 to 100, not {percentage}")
    return {
        "name": "flexibleRollout",
        "parameters": {"rollout": str(percentage), "stickiness": "clinicId", "groupId": FLAG_NAME},
        "constraints": [],
        "variants": [_variant(stage, "clinicId")],
    }


def parse_document(text: str) -> Document:
    """Parse and check a client-features document; raise ``FlagsFileError`` if unusable."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise FlagsFileError(f"not valid JSON: {error}") from error
    if not isinstance(document, dict) or not isinstance(document.get("features"), list):
        raise FlagsFileError(
            "expected an object with a 'features' list (Unleash client-features format)"
        )
    for feature in document["features"]:
        if not isinstance(feature, dict) or not isinstance(feature.get("name"), str):
            raise FlagsFileError("every feature needs a 'name'")
        if not isinstance(feature.get("strategies", []), list):
            raise FlagsFileError(f"feature {feature['name']!r}: 'strategies' must be a list")
        if feature["name"] == FLAG_NAME:
            _check_stage_variants(feature)
    try:
        UnleashEngine().take_state(text)
    except Exception as error:
        raise FlagsFileError(f"the Unleash engine rejects the document: {error!r}") from error
    return document


def _check_stage_variants(feature: dict[str, Any]) -> None:
    variants = list(feature.get("variants", []))
    for strategy in feature.get("strategies", []):
        if not isinstance(strategy, dict):
            raise FlagsFileError(f"{FLAG_NAME}: every strategy must be an object")
        variants += strategy.get("variants", [])
    for variant in variants:
        name = variant.get("name") if isinstance(variant, dict) else None
        try:
            Stage.parse(str(name))
        except ValueError as error:
            raise FlagsFileError(f"{FLAG_NAME}: variant {name!r}: {error}") from error


def read_document(path: Path) -> Document:
    try:
        return parse_document(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise FlagsFileError(f"cannot read {path}: {error.strerror}") from error


def write_document(path: Path, document: Document) -> None:
    """Write atomically (temp file + rename): a reader never sees half a file."""
    text = json.dumps(document, indent=2) + "\n"
    parse_document(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def set_clinic_stage(document: Document, clinic_id: str, stage: Stage) -> Document:
    """Pin one clinic to a stage: remove it from every clinic constraint, add it to its stage's."""
    features = [f for f in document.get("features", []) if f.get("name") == FLAG_NAME]
    if not features:
        feature = build_document({})["features"][0]
        document.setdefault("features", []).append(feature)
    else:
        feature = features[0]
    strategies: list[dict[str, Any]] = feature.setdefault("strategies", [])
    for strategy in strategies:
        for constraint in _clinic_constraints(strategy):
            constraint["values"] = [value for value in constraint["values"] if value != clinic_id]
    strategies[:] = [s for s in strategies if not _is_emptied_clinic_strategy(s)]
    for strategy in strategies:
        constraints = _clinic_constraints(strategy)
        if constraints and _strategy_stage(strategy) == stage:
            constraints[0]["values"].append(clinic_id)
            break
    else:
        strategies.insert(0, _clinic_strategy(stage, [clinic_id]))
    feature["enabled"] = True
    return document


def _clinic_constraints(strategy: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        constraint
        for constraint in strategy.get("constraints", [])
        if constraint.get("contextName") == "clinicId"
        and constraint.get("operator") == "IN"
        and not constraint.get("inverted", False)
    ]


def _is_emptied_clinic_strategy(strategy: dict[str, Any]) -> bool:
    constraints = _clinic_constraints(strategy)
    return bool(constraints) and not any(constraint["values"] for constraint in constraints)


def _strategy_stage(strategy: dict[str, Any]) -> Stage | None:
    variants = strategy.get("variants", [])
    if len(variants) != 1:
        return None
    try:
        return Stage.parse(variants[0]["name"])
    except ValueError:
        return None


def set_rollout(document: Document, stage: Stage, percentage: int) -> Document:
    """Give ``percentage`` of the clinics no pin matches to ``stage`` (0 removes the rollout)."""
    if not 0 <= percentage <= 100:
        raise FlagsFileError(f"a rollout percentage must be 0 to 100, not {percentage}")
    if not any(f.get("name") == FLAG_NAME for f in document.get("features", [])):
        document.setdefault("features", []).append(build_document({})["features"][0])
    feature = next(f for f in document["features"] if f.get("name") == FLAG_NAME)
    strategies: list[dict[str, Any]] = feature.setdefault("strategies", [])
    existing = [
        s
        for s in strategies
        if s.get("name") == "flexibleRollout"
        and not _clinic_constraints(s)
        and _strategy_stage(s) is stage
    ]
    if percentage == 0:
        strategies[:] = [s for s in strategies if all(s is not e for e in existing)]
    elif existing:
        existing[0].setdefault("parameters", {})["rollout"] = str(percentage)
    else:
        strategies.append(_rollout_strategy(stage, percentage))
    feature["enabled"] = True
    return document
