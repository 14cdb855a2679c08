"""Per-request stage evaluation: once per clinic, then cached for the request."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Protocol

from appointments import metrics
from appointments.stages import Stage
from flags.source import FlagSource

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
            started = time.perf_counter()
            stage, decided_by = self._evaluate(clinic_id)
            metrics.FLAG_EVALUATIONS.labels(stage.value, decided_by).inc()
            if self._gate is not None:
                served, blockers = self._gate.serve(clinic_id, stage)
                if served is not stage:
                    metrics.STAGES_GATED.labels(stage.value, served.value).inc()
                    self._gated[clinic_id] = GatedStage(stage, served, blockers)
                    stage = served
            self._stages[clinic_id] = stage
            metrics.FLAG_EVALUATION_SECONDS.observe(time.perf_counter() - started)
        return stage

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

    def _evaluate(self, clinic_id: uuid.UUID) -> tuple[Stage, str]:
        if self._forced_stage is not None:
            return self._forced_stage, "schema"
        properties = {"clinicId": str(clinic_id)}
        if self._viewer.role is not None:
            properties["role"] = self._viewer.role
        context: dict[str, object] = {"properties": properties}
        if self._viewer.user_id is not None:
            context["userId"] = self._viewer.user_id
        try:
            name = self._source.variant(context)
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
