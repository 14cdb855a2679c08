"""A per-process memo of the migration flag's answer, so a clinic's stage costs the same
whatever the number of pinned clinics.

The Unleash engine walks the flag's strategies in order on every evaluation: with
one strategy per pinned clinic, that is hundreds of constraint checks per call.
When the flag's evaluation is deterministic (the same context fields give the same
variant), the answer for a clinic is remembered per *revision* of the features the
engine holds, and a repeated question is answered from the memo.

Contracts:

- **Exact.** A memo answer is what ``UnleashClient.get_variant`` returns for the same
  context under the same features. ``plan_for`` only memoizes a flag whose every
  input is a context field in the key; anything else (time, randomness, segments,
  custom strategies, dependencies, unknown operators or fields) is evaluated
  directly, every time.
- **Revisions.** The owner calls ``unsettle()`` before the engine takes new features
  and ``settle()`` after: in between, every evaluation is direct. ``settle()`` opens
  a new revision planned from the engine's own state (``get_state``), so the plan
  always describes the features being evaluated. A revision number is never
  reused, and an answer computed while a newer revision was on its way is dropped,
  never stored under the newer one.
- **Exposure.** A memo answer is counted in the engine's metrics exactly as
  ``get_variant`` counts an evaluation (one toggle yes/no, one variant), so what the
  client reports to Unleash does not depend on the memo.
- **Bounded.** A revision holds at most ``MAX_ENTRIES`` answers; when full it is
  emptied and refilled (answers stay exact, a burst of direct evaluations follows).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from UnleashClient import UnleashClient

from flags import FLAG_NAME

MAX_ENTRIES = 20_000
"""Answers kept per revision: every clinic of a large deployment once (an answer is a
few hundred bytes, so about 10 MB at most). A flag that keys on the user too fills it
sooner and is emptied more often, which costs time, never exactness."""

KNOWN_FIELDS = frozenset(
    {"clinicId", "role", "userId", "sessionId", "remoteAddress", "environment", "appName"}
)
"""Context fields a memoized flag may refer to. ``currentTime`` is not one: an answer
that depends on the clock cannot be remembered."""

# Fields the SDK keeps at the top of the context; any other field is a property.
_TOP_LEVEL_FIELDS = frozenset({"userId", "sessionId", "remoteAddress", "environment", "appName"})

DETERMINISTIC_OPERATORS = frozenset(
    {
        "IN",
        "NOT_IN",
        "STR_ENDS_WITH",
        "STR_STARTS_WITH",
        "STR_CONTAINS",
        "NUM_EQ",
        "NUM_GT",
        "NUM_GTE",
        "NUM_LT",
        "NUM_LTE",
        "SEMVER_EQ",
        "SEMVER_GT",
        "SEMVER_LT",
    }
)
"""Constraint operators whose result depends on the context field alone
(``DATE_AFTER``/``DATE_BEFORE`` compare with the time of the call)."""

MEMOIZED_STRATEGIES = frozenset({"default", "flexibleRollout"})

_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True, slots=True)
class MemoPlan:
    """How one revision of the flag may be memoized.

    ``fields``: the context fields the answer depends on, ``clinicId`` first; the memo
    key is their values. ``seeded``: fields that seed a hash (stickiness); when one is
    missing from a context the engine picks at random, so that context is evaluated
    directly. ``refusal``: why the flag is not memoizable (``None`` when it is).
    """

    fields: tuple[str, ...] = ("clinicId",)
    seeded: tuple[str, ...] = ()
    refusal: str | None = None

    @property
    def memoizable(self) -> bool:
        return self.refusal is None

    def key(self, context: Mapping[str, Any]) -> tuple[str | None, ...] | None:
        """The memo key of ``context``, or ``None`` when it must be evaluated directly."""
        values = tuple(field_value(context, name) for name in self.fields)
        for name in self.seeded:
            if values[self.fields.index(name)] is None:
                return None
        return values


class _NotMemoizableError(Exception):
    """The flag is not memoizable; the message says why."""


def plan_for(state: Any, flag: str = FLAG_NAME) -> MemoPlan:
    """The memo plan for ``flag`` in a client-features document (as the engine holds it).

    Memoizable when every strategy is ``default`` or ``flexibleRollout`` without
    segments, every constraint is on a ``KNOWN_FIELDS`` field with a
    ``DETERMINISTIC_OPERATORS`` operator, a partial rollout and every choice among
    several variants hash on a named ``KNOWN_FIELDS`` field, and the flag has no
    dependencies and no impression data. A flag absent or disabled is memoizable
    (its answer is constant).
    """
    try:
        return _plan(state, flag)
    except _NotMemoizableError as refusal:
        return MemoPlan(refusal=str(refusal))


def _plan(state: Any, flag: str) -> MemoPlan:
    if not isinstance(state, Mapping) or not isinstance(state.get("features"), list):
        raise _NotMemoizableError("no client-features document")
    features = [f for f in state["features"] if isinstance(f, Mapping) and f.get("name") == flag]
    if not features:
        return MemoPlan()
    feature = features[0]
    if feature.get("dependencies"):
        raise _NotMemoizableError("the flag depends on another flag")
    if feature.get("impressionData"):
        raise _NotMemoizableError("the flag emits an impression event per evaluation")
    if not feature.get("enabled"):
        return MemoPlan()
    fields: dict[str, None] = {"clinicId": None}
    seeded: dict[str, None] = {}
    for strategy in _list(feature.get("strategies"), "strategies"):
        _plan_strategy(strategy, fields, seeded)
    variants = _list(feature.get("variants"), "variants")
    # The engine hashes a flag's own variants on the first variant's stickiness.
    first = variants[0] if variants and isinstance(variants[0], Mapping) else {}
    _plan_variants(variants, first.get("stickiness"), fields, seeded)
    return MemoPlan(tuple(fields), tuple(seeded))


def _plan_strategy(strategy: Any, fields: dict[str, None], seeded: dict[str, None]) -> None:
    if not isinstance(strategy, Mapping):
        raise _NotMemoizableError("a strategy is not an object")
    name = strategy.get("name")
    if not isinstance(name, str) or name not in MEMOIZED_STRATEGIES:
        raise _NotMemoizableError(f"strategy {name!r} is not one the memo understands")
    if strategy.get("segments"):
        raise _NotMemoizableError("a strategy uses segments")
    for constraint in _list(strategy.get("constraints"), "constraints"):
        if not isinstance(constraint, Mapping):
            raise _NotMemoizableError("a constraint is not an object")
        operator = constraint.get("operator")
        if not isinstance(operator, str) or operator not in DETERMINISTIC_OPERATORS:
            raise _NotMemoizableError(f"constraint operator {operator!r} is not deterministic")
        fields[_known(constraint.get("contextName"))] = None
    parameters = strategy.get("parameters") or {}
    if not isinstance(parameters, Mapping):
        raise _NotMemoizableError("strategy parameters are not an object")
    stickiness = parameters.get("stickiness")
    if name == "flexibleRollout" and not _all_or_nothing(parameters.get("rollout")):
        _bind(stickiness, fields, seeded)
    # The engine hashes strategy variants on the strategy's stickiness parameter.
    _plan_variants(_list(strategy.get("variants"), "variants"), stickiness, fields, seeded)


def _plan_variants(
    variants: list[Any], stickiness: Any, fields: dict[str, None], seeded: dict[str, None]
) -> None:
    """Variants chosen by a hash on ``stickiness`` (overrides first)."""
    if not variants:
        return
    if not all(isinstance(v, Mapping) and isinstance(v.get("weight"), int) for v in variants):
        raise _NotMemoizableError("a variant is not an object with an integer weight")
    if sum(v["weight"] for v in variants) <= 0:
        raise _NotMemoizableError("variants without weight")
    for variant in variants:
        for override in _list(variant.get("overrides"), "overrides"):
            if not isinstance(override, Mapping):
                raise _NotMemoizableError("a variant override is not an object")
            fields[_known(override.get("contextName"))] = None
    if len(variants) > 1:
        _bind(stickiness, fields, seeded)


def _bind(stickiness: Any, fields: dict[str, None], seeded: dict[str, None]) -> None:
    if stickiness in (None, "default", "random"):
        raise _NotMemoizableError(
            f"a choice is random or on userId/sessionId fallback ({stickiness!r})"
        )
    name = _known(stickiness)
    fields[name] = None
    seeded[name] = None


def _known(name: Any) -> str:
    if not isinstance(name, str) or name not in KNOWN_FIELDS:
        raise _NotMemoizableError(f"context field {name!r} is not one the memo keys on")
    return name


def _all_or_nothing(rollout: Any) -> bool:
    """A rollout of 0 or at least 100 (or one the engine cannot parse, always off)."""
    if not isinstance(rollout, str):
        return rollout is None
    if not _DIGITS.fullmatch(rollout):
        return False
    return int(rollout) == 0 or int(rollout) >= 100


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _NotMemoizableError(f"{what} is not a list")
    return value


def field_value(context: Mapping[str, Any], name: str) -> str | None:
    """The value of one field as the SDK hands it to the engine, ``None`` when absent.

    Mirrors ``UnleashClient``'s context enrichment: top-level fields stay on top, any
    other field is a property (``properties`` winning over a top-level key), every
    value is a string (datetimes in ISO format).
    """
    if name in _TOP_LEVEL_FIELDS:
        if name not in context:
            return None
        value = context[name]
    else:
        properties = context.get("properties")
        if isinstance(properties, Mapping) and name in properties:
            value = properties[name]
        elif name in context:
            value = context[name]
        else:
            return None
    return value.isoformat() if isinstance(value, datetime) else str(value)


@dataclass(frozen=True, slots=True)
class Answer:
    """One evaluation: the enabled variant's name (or None), and what the SDK counts."""

    name: str | None
    feature_enabled: bool
    variant_name: str


class _Revision:
    __slots__ = ("entries", "number", "plan", "settled")

    def __init__(self, number: int, plan: MemoPlan | None, settled: bool) -> None:
        self.number = number
        self.plan = plan
        self.settled = settled
        self.entries: dict[tuple[str | None, ...], Answer] = {}


class FlagMemo:
    """The flag's answers for one Unleash client, per revision of its features.

    Safe to call from many threads: the current revision is swapped as a whole, and
    an answer is only stored if its revision was still current once it was computed.
    Starts unsettled (every evaluation direct) until the first ``settle()``.
    """

    def __init__(self, client: UnleashClient, max_entries: int = MAX_ENTRIES) -> None:
        self._client = client
        # The SDK has no public way to count an evaluation it did not make; its engine
        # does (the same calls get_variant makes), so exposure survives the memo.
        self._engine = client._engine
        self._max_entries = max_entries
        self._numbers = itertools.count(1)
        self._revision = _Revision(next(self._numbers), None, settled=False)

    @property
    def revision(self) -> int:
        """The current revision's number; a new one at every ``unsettle``/``settle``."""
        return self._revision.number

    @property
    def plan(self) -> MemoPlan | None:
        """The current revision's plan; ``None`` while unsettled or not memoizable."""
        return self._revision.plan

    @property
    def settled(self) -> bool:
        """Whether ``settle`` was called since the last ``unsettle``."""
        return self._revision.settled

    def __len__(self) -> int:
        return len(self._revision.entries)

    def unsettle(self) -> None:
        """New features are about to reach the engine: evaluate directly until ``settle``."""
        self._revision = _Revision(next(self._numbers), None, settled=False)

    def settle(self) -> MemoPlan:
        """The engine has taken its features: start a new revision planned from them."""
        plan = plan_for(json.loads(self._engine.get_state()))
        self._revision = _Revision(
            next(self._numbers), plan if plan.memoizable else None, settled=True
        )
        return plan

    def variant(self, context: dict[str, Any]) -> str | None:
        """The flag's enabled variant for ``context``, or None; counted in the SDK's metrics."""
        return self.answer(context).name

    def answer(self, context: dict[str, Any]) -> Answer:
        revision = self._revision
        plan = revision.plan
        key = None if plan is None else plan.key(context)
        if key is None:
            return self._evaluate(context)
        answer = revision.entries.get(key)
        if answer is not None:
            self._engine.count_toggle(FLAG_NAME, answer.feature_enabled)
            self._engine.count_variant(FLAG_NAME, answer.variant_name)
            return answer
        answer = self._evaluate(context)
        # Unsettled after the evaluation began: it may have seen the next features.
        if self._revision is revision:
            if len(revision.entries) >= self._max_entries:
                revision.entries.clear()
            revision.entries[key] = answer
        return answer

    def _evaluate(self, context: dict[str, Any]) -> Answer:
        result = self._client.get_variant(FLAG_NAME, context)
        name = str(result.get("name", "disabled"))
        return Answer(
            name if result.get("enabled") else None, bool(result.get("feature_enabled")), name
        )
