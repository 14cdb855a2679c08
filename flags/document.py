"""Unleash client-features documents for the migration flag: build, validate, edit.

The local flags file is in Unleash's own ``/api/client/features`` format, so the
same SDK evaluates it as it would a server's answer, and a file exported from a
server works unchanged.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from yggdrasil_engine.engine import UnleashEngine

from appointments.rollout.flag import FlagSwitchedOffError
from appointments.stages import Stage
from flags import FLAG_NAME
from flags.pins import (
    pin_strategy,
    plan_pin,
    refuse_if_claimed,
    rollout_stage,
    rollout_strategy,
)

Document = dict[str, Any]


class FlagsFileError(ValueError):
    """The flags file cannot be used; the message says why."""


def build_document(
    clinic_stages: Mapping[str, Stage], rollouts: Iterable[tuple[Stage, int]] = ()
) -> Document:
    """A document where listed clinics are pinned to their stage and the rest follow the
    rollouts (``flags.pins``: one strategy per pinned clinic, before the rollouts, which are
    tried in the order given)."""
    strategies = [pin_strategy(clinic_id, stage) for clinic_id, stage in clinic_stages.items()]
    try:
        strategies += [rollout_strategy(stage, percentage) for stage, percentage in rollouts]
    except ValueError as error:
        raise FlagsFileError(str(error)) from error
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


def migration_feature(document: Document) -> dict[str, Any] | None:
    """The migration flag's entry in ``document``, or None when it has none."""
    for feature in document.get("features", []):
        if isinstance(feature, dict) and feature.get("name") == FLAG_NAME:
            return feature
    return None


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


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the flags file's writer lock (a lock file beside it), so two commands editing
    the file at once cannot lose each other's change (each reads, edits and replaces it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a", encoding="utf-8") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def switched_off(document: Document) -> str | None:
    """Why the document's flag serves no clinic a stage (its kill switch), or None."""
    feature = migration_feature(document)
    if feature is not None and not feature.get("enabled", True):
        return f"the flag {FLAG_NAME} is switched off in the flags file"
    return None


def _writable_strategies(document: Document) -> list[dict[str, Any]]:
    """The flag's strategies to edit in place: a document without the flag gets it, switched
    on (it was never switched off); a switched-off flag refuses (``FlagSwitchedOffError``)."""
    feature = migration_feature(document)
    if feature is None:
        feature = build_document({})["features"][0]
        document.setdefault("features", []).append(feature)
    off = switched_off(document)
    if off is not None:
        raise FlagSwitchedOffError(f"{off}; nothing written")
    strategies: list[dict[str, Any]] = feature.setdefault("strategies", [])
    return strategies


def set_clinic_stage(document: Document, clinic_id: str, stage: Stage) -> Document:
    """Pin one clinic to a stage: its own pin is replaced, or a new one is added first.

    Refuses (``FlagSwitchedOffError``) when the flag is switched off, and
    (``ClinicClaimedError``) when a strategy our tools did not make targets the clinic.
    """
    strategies = _writable_strategies(document)
    refuse_if_claimed(strategies, clinic_id)
    edit = plan_pin(strategies, clinic_id, stage)
    for index in reversed(edit.duplicates):
        del strategies[index]
    if edit.index is None:
        strategies.insert(0, edit.strategy)
    else:
        strategies[edit.index] = edit.strategy
    return document


def set_rollout(document: Document, stage: Stage, percentage: int) -> Document:
    """Give ``percentage`` of the clinics no pin matches to ``stage`` (0 removes the rollout);
    only a rollout our tools made is edited."""
    try:
        wanted = rollout_strategy(stage, percentage)
    except ValueError as error:
        raise FlagsFileError(str(error)) from error
    strategies = _writable_strategies(document)
    existing = [i for i, s in enumerate(strategies) if rollout_stage(s) is stage]
    if percentage == 0:
        strategies[:] = [s for i, s in enumerate(strategies) if i not in existing]
    elif existing:
        strategies[existing[0]] = wanted
    else:
        strategies.append(wanted)
    return document
