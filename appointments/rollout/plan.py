"""The rollout plan: a TOML file of cohorts, a target stage, soak times and guards.

Parsing checks everything a plan can get wrong and reports each problem with
its line (``plan.toml:12: cohort "early": percentage must be between 1 and
100``). Python's ``tomllib`` gives no positions for values, so the lines come
from a scan of the text for table headers and keys (``_Lines``).
"""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from appointments.stages import STAGE_ORDER, Stage

DURATION = re.compile(r"(\d+)([smhd])")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
ROOT_KEYS = {"target", "max_moves_per_hour", "soak", "guards", "cohort", "backfill"}
GUARD_KEYS = ("max_mismatches", "max_read_fallbacks", "max_write_failures")
COHORT_KEYS = {"name", "clinics", "percentage"}

Section = str | tuple[str, int]


class PlanError(ValueError):
    """A plan that cannot be used; ``problems`` are ``file:line: message`` lines."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = tuple(problems)


@dataclass(frozen=True, slots=True)
class Cohort:
    name: str
    clinics: tuple[uuid.UUID, ...] = ()
    percentage: int | None = None


@dataclass(frozen=True, slots=True)
class Guards:
    """The most of each kind of evidence a clinic may show in its window and still move on."""

    max_mismatches: int = 0
    max_read_fallbacks: int = 0
    max_write_failures: int = 0


@dataclass(frozen=True, slots=True)
class Plan:
    target: Stage
    max_moves_per_hour: int
    soak: dict[Stage, timedelta]
    guards: Guards
    cohorts: tuple[Cohort, ...]
    source: str = field(default="plan")
    backfill: bool = False
    """Run a clinic's backfill when rows booked before ``dual_write`` (linkable but not
    linked) are all that keeps it from its next stage, instead of waiting for a person."""

    def soak_for(self, stage: Stage) -> timedelta:
        """How long a clinic stays at ``stage``, every guard holding, before it moves on."""
        return self.soak.get(stage, timedelta(0))

    def assign(self, clinic_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        """Each clinic's cohort: listed clinics first, then each percentage cohort takes its
        share of the clinics no cohort took yet, in a stable order (a hash of the id)."""
        known = set(clinic_ids)
        listed = {c for cohort in self.cohorts for c in cohort.clinics}
        assigned: dict[uuid.UUID, str] = {}
        for cohort in self.cohorts:
            for clinic_id in cohort.clinics:
                if clinic_id in known:
                    assigned.setdefault(clinic_id, cohort.name)
        remaining = sorted((c for c in known if c not in listed), key=stable_rank)
        for cohort in self.cohorts:
            if cohort.percentage is None:
                continue
            count = math.ceil(len(remaining) * cohort.percentage / 100)
            for clinic_id in remaining[:count]:
                assigned[clinic_id] = cohort.name
            remaining = remaining[count:]
        return assigned


def stable_rank(clinic_id: uuid.UUID) -> str:
    return hashlib.sha256(str(clinic_id).encode()).hexdigest()


def parse_duration(text: str) -> timedelta:
    """``"90s"``, ``"30m"``, ``"1h30m"``, ``"2d"``; ``"0s"`` for none."""
    if not isinstance(text, str) or not text or DURATION.sub("", text) != "":
        raise ValueError(f'{text!r} is not a duration like "30m", "1h30m", "2d" or "0s"')
    return timedelta(seconds=sum(int(n) * UNITS[u] for n, u in DURATION.findall(text)))


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    parts = []
    for unit in ("d", "h", "m", "s"):
        amount, seconds = divmod(seconds, UNITS[unit])
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts) or "0s"


class _Lines:
    """Where tables and keys are in a TOML text (the first line of each)."""

    HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_-]+)\s*\]")
    ARRAY_HEADER = re.compile(r"^\s*\[\[\s*([A-Za-z0-9_-]+)\s*\]\]")
    KEY = re.compile(r'^\s*"?([A-Za-z0-9_-]+)"?\s*=')

    def __init__(self, text: str) -> None:
        self.sections: dict[Section, int] = {"": 1}
        self.keys: dict[tuple[Section, str], int] = {}
        section: Section = ""
        arrays: dict[str, int] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            if found := self.ARRAY_HEADER.match(line):
                name = found[1]
                section = (name, arrays.get(name, 0))
                arrays[name] = arrays.get(name, 0) + 1
                self.sections[section] = number
            elif found := self.HEADER.match(line):
                section = found[1]
                self.sections[section] = number
            elif found := self.KEY.match(line):
                self.keys.setdefault((section, found[1]), number)

    def of(self, section: Section, key: str | None = None) -> int:
        if key is not None and (section, key) in self.keys:
            return self.keys[(section, key)]
        return self.sections.get(section, 1)


class _Checker:
    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.lines = _Lines(text)
        self.problems: list[str] = []

    def problem(self, section: Section, key: str | None, message: str) -> None:
        self.problems.append(f"{self.name}:{self.lines.of(section, key)}: {message}")

    def unknown(
        self, section: Section, data: dict[str, Any], allowed: set[str], where: str
    ) -> None:
        for key in data:
            if key not in allowed:
                names = ", ".join(sorted(allowed))
                self.problem(section, key, f"{where}unknown key {key!r} (expected {names})")

    def count(
        self, section: Section, data: dict[str, Any], key: str, least: int, where: str = ""
    ) -> int | None:
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            self.problem(section, key, f"{where}{key} must be a whole number of at least {least}")
            return None
        return value


def parse_plan(text: str, name: str = "plan.toml") -> Plan:
    """The plan in ``text``; raises ``PlanError`` listing every problem with its line."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        found = re.search(r"\(at line (\d+), column \d+\)", str(error))
        line = found[1] if found else "1"
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(error))
        raise PlanError([f"{name}:{line}: not valid TOML: {message}"]) from None
    check = _Checker(name, text)
    check.unknown("", data, ROOT_KEYS, "")
    target = _target(check, data)
    moves = check.count("", data, "max_moves_per_hour", 1) if "max_moves_per_hour" in data else None
    if "max_moves_per_hour" not in data:
        check.problem("", None, "max_moves_per_hour is required (clinics moved per hour at most)")
    soak = _soak(check, data.get("soak", {}), target)
    guards = _guards(check, data.get("guards", {}))
    cohorts = _cohorts(check, data.get("cohort", []))
    backfill = data.get("backfill", False)
    if not isinstance(backfill, bool):
        check.problem("", "backfill", "backfill must be true or false")
    if check.problems or target is None or moves is None:
        raise PlanError(check.problems)
    return Plan(target, moves, soak, guards, cohorts, name, backfill is True)


def _target(check: _Checker, data: dict[str, Any]) -> Stage | None:
    if "target" not in data:
        check.problem("", None, "target is required (the stage the plan moves clinics to)")
        return None
    try:
        return Stage.parse(str(data["target"]))
    except ValueError as error:
        check.problem("", "target", f"target: {error}")
        return None


def _soak(check: _Checker, data: Any, target: Stage | None) -> dict[Stage, timedelta]:
    if not isinstance(data, dict):
        check.problem("", "soak", "soak must be a table of durations by stage")
        return {}
    stages = {stage.value for stage in Stage}
    check.unknown("soak", data, stages | {"default"}, "soak: ")
    durations: dict[str, timedelta] = {}
    for key, value in data.items():
        if key in stages or key == "default":
            try:
                durations[key] = parse_duration(value)
            except ValueError as error:
                check.problem("soak", key, f"soak: {key}: {error}")
    soak: dict[Stage, timedelta] = {}
    if target is None:
        return soak
    for stage in STAGE_ORDER[: STAGE_ORDER.index(target)]:
        duration = durations.get(stage.value, durations.get("default"))
        if duration is None:
            if stage.value not in data and "default" not in data:
                check.problem(
                    "soak",
                    None,
                    f'soak: no soak time for stage {stage.value!r} (add {stage.value} = "1h"'
                    ' or default = "1h")',
                )
            continue
        soak[stage] = duration
    return soak


def _guards(check: _Checker, data: Any) -> Guards:
    if not isinstance(data, dict):
        check.problem("", "guards", "guards must be a table")
        return Guards()
    check.unknown("guards", data, set(GUARD_KEYS), "guards: ")
    values = {
        key: check.count("guards", data, key, 0, "guards: ") for key in GUARD_KEYS if key in data
    }
    return Guards(**{key: value for key, value in values.items() if value is not None})


def _cohorts(check: _Checker, data: Any) -> tuple[Cohort, ...]:
    if not isinstance(data, list) or not data:
        check.problem("", None, "at least one [[cohort]] is required")
        return ()
    cohorts: list[Cohort] = []
    names: set[str] = set()
    seen: dict[uuid.UUID, str] = {}
    for index, entry in enumerate(data):
        section = ("cohort", index)
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            check.problem(section, "name", f"cohort {index + 1}: name is required")
            name = f"#{index + 1}"
        elif name in names:
            check.problem(section, "name", f'cohort "{name}": the name is used twice')
        names.add(name)
        label = f'cohort "{name}": '
        check.unknown(section, entry, COHORT_KEYS, label)
        if ("clinics" in entry) == ("percentage" in entry):
            check.problem(section, None, f"{label}give either clinics or percentage")
            continue
        if "percentage" in entry:
            percentage = entry["percentage"]
            if (
                isinstance(percentage, bool)
                or not isinstance(percentage, int)
                or not (1 <= percentage <= 100)
            ):
                check.problem(section, "percentage", f"{label}percentage must be between 1 and 100")
                continue
            cohorts.append(Cohort(name, percentage=percentage))
            continue
        clinics = _clinic_ids(check, section, label, entry["clinics"], name, seen)
        cohorts.append(Cohort(name, clinics=clinics))
    return tuple(cohorts)


def _clinic_ids(
    check: _Checker,
    section: Section,
    label: str,
    values: Any,
    name: str,
    seen: dict[uuid.UUID, str],
) -> tuple[uuid.UUID, ...]:
    if not isinstance(values, list) or not values:
        check.problem(section, "clinics", f"{label}clinics must be a non-empty list of clinic ids")
        return ()
    clinics: list[uuid.UUID] = []
    for value in values:
        try:
            clinic_id = uuid.UUID(str(value))
        except ValueError:
            check.problem(section, "clinics", f"{label}{value!r} is not a clinic id")
            continue
        if clinic_id in seen:
            check.problem(
                section, "clinics", f"{label}clinic {clinic_id} is also in {seen[clinic_id]!r}"
            )
            continue
        seen[clinic_id] = name
        clinics.append(clinic_id)
    return tuple(clinics)
