"""Per-request stage evaluation: once per clinic, then cached for the request; many clinics
at once with the flag source checked once."""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from appointments import metrics
from appointments.stages import Stage
from flags.source import Evaluator, FlagSource

logger = logging.getLogger("flags")


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is asking, as far as flag targeting needs to know."""

    user_id: str | None = None
    role: str | None = None


@dataclass(frozen=True, slots=True)
class GatedStage:
    requested: Stage
    served: Stage
    blockers: tuple[str, ...]


class StageGate(Protocol):
    def serve(self, clinic_id: uuid.UUID, requested: Stage) -> tuple[Stage, tuple[str, ...]]: ...


class StageResolver:
    """Evaluates the migration flag once per clinic for one request.

    Caching makes one response consistent: a flag flipped mid-request does not
    change the stage of a clinic the request has already used.
    """

    def __init__(
        self,
        source: FlagSource,
        default_stage: Stage,
        viewer: Viewer,
        forced_stage: Stage | None = None,
        gate: StageGate | None = None,
    ) -> None:
        self._source = source
        self._default_stage = default_stage
        self._viewer = viewer
        self._forced_stage = forced_stage
        self._gate = gate
        self._stages: dict[uuid.UUID, Stage] = {}
        self._served: set[uuid.UUID] = set()
        self._gated: dict[uuid.UUID, GatedStage] = {}

    def __call__(self, clinic_id: uuid.UUID) -> Stage:
        """The clinic's stage for this request, reported as served (``used``)."""
        stage = self.peek(clinic_id)
        self._served.add(clinic_id)
        return stage

    def peek(self, clinic_id: uuid.UUID) -> Stage:
        """The clinic's stage for this request, not reported as served: a list across
        clinics learns the stage of every clinic it may show, and reports those it shows."""
        stage = self._stages.get(clinic_id)
        if stage is None:
            self._evaluate_new((clinic_id,))
            stage = self._stages[clinic_id]
        return stage

    def peek_all(self, clinic_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Stage]:
        """``peek`` of each clinic, with the flag source checked once for all the clinics
        not evaluated yet this request rather than once per clinic."""
        wanted = list(clinic_ids)
        stages = self._stages
        self._evaluate_new(dict.fromkeys(c for c in wanted if c not in stages))
        return {clinic_id: stages[clinic_id] for clinic_id in wanted}

    def requested(self, clinic_id: uuid.UUID) -> Stage:
        """The stage the flag asks for, before readiness gates."""
        served = self(clinic_id)
        gated = self._gated.get(clinic_id)
        return served if gated is None else gated.requested

    @property
    def used(self) -> dict[uuid.UUID, Stage]:
        """The stage served to each clinic this request."""
        return {clinic: stage for clinic, stage in self._stages.items() if clinic in self._served}

    @property
    def gated(self) -> dict[uuid.UUID, GatedStage]:
        """Clinics served a lower stage than their flag asked for, and why."""
        return {clinic: gated for clinic, gated in self._gated.items() if clinic in self._served}

    def _evaluate_new(self, clinic_ids: Collection[uuid.UUID]) -> None:
        """Evaluates and gates each clinic, in order, for the rest of the request.

        Per clinic: one ``clinic_flag_evaluation_seconds`` observation (the time since
        the previous clinic's ended, so the source's check counts in the first) and one
        count in ``clinic_flag_evaluations_total`` and ``clinic_stages_gated_total``,
        added once per label set for the batch (also when the gate raises).
        """
        if not clinic_ids:
            return
        source = _CheckedOnce(self._source)
        decided: Counter[tuple[str, str]] = Counter()
        gated: Counter[tuple[str, str]] = Counter()
        started = time.perf_counter()
        try:
            for clinic_id in clinic_ids:
                stage, decided_by = self._evaluate(clinic_id, source)
                decided[stage.value, decided_by] += 1
                if self._gate is not None:
                    served, blockers = self._gate.serve(clinic_id, stage)
                    if served is not stage:
                        gated[stage.value, served.value] += 1
                        self._gated[clinic_id] = GatedStage(stage, served, blockers)
                        stage = served
                self._stages[clinic_id] = stage
                ended = time.perf_counter()
                metrics.FLAG_EVALUATION_SECONDS.observe(ended - started)
                started = ended
        finally:
            for (stage_value, decided_by), count in decided.items():
                metrics.FLAG_EVALUATIONS.labels(stage_value, decided_by).inc(count)
            for (requested, served_value), count in gated.items():
                metrics.STAGES_GATED.labels(requested, served_value).inc(count)

    def _evaluate(self, clinic_id: uuid.UUID, source: _CheckedOnce) -> tuple[Stage, str]:
        if self._forced_stage is not None:
            return self._forced_stage, "schema"
        properties = {"clinicId": str(clinic_id)}
        if self._viewer.role is not None:
            properties["role"] = self._viewer.role
        context: dict[str, object] = {"properties": properties}
        if self._viewer.user_id is not None:
            context["userId"] = self._viewer.user_id
        try:
            name = source.variant(context)
        except Exception:
            logger.exception("flag evaluation failed; serving the default stage")
            return self._default_stage, "error"
        if name is None:
            return self._default_stage, "default"
        try:
            return Stage.parse(name), "flag"
        except ValueError:
            logger.warning(
                "flag variant is not a stage; serving the default stage",
                extra={"variant": name, "clinic_id": str(clinic_id)},
            )
            return self._default_stage, "unknown_variant"


class _CheckedOnce:
    """A flag source checked once per batch: its evaluator is made at the first evaluation
    and serves the others. A failed check fails that evaluation only; the next one checks
    again, as it would have one clinic at a time."""

    __slots__ = ("_evaluator", "_source")

    def __init__(self, source: FlagSource) -> None:
        self._source = source
        self._evaluator: Evaluator | None = None

    def variant(self, context: dict[str, Any]) -> str | None:
        if self._evaluator is None:
            self._evaluator = self._source.evaluator()
        return self._evaluator(context)
