"""Per-request stage evaluation: once per clinic, then cached for the request."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from appointments import metrics
from appointments.stages import Stage
from flags.source import FlagSource

logger = logging.getLogger("flags")


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is asking, as far as flag targeting needs to know."""

    user_id: str | None = None
    role: str | None = None


class StageResolver:
    """Evaluates the migration flag once per clinic for one request.

    Caching makes one response consistent: a flag flipped mid-request does not
    change the stage of a clinic the request has already used.
    """

    def __init__(self, source: FlagSource, default_stage: Stage, viewer: Viewer) -> None:
        self._source = source
        self._default_stage = default_stage
        self._viewer = viewer
        self._stages: dict[uuid.UUID, Stage] = {}

    def __call__(self, clinic_id: uuid.UUID) -> Stage:
        stage = self._stages.get(clinic_id)
        if stage is None:
            stage, decided_by = self._evaluate(clinic_id)
            metrics.FLAG_EVALUATIONS.labels(stage.value, decided_by).inc()
            self._stages[clinic_id] = stage
        return stage

    @property
    def used(self) -> dict[uuid.UUID, Stage]:
        return dict(self._stages)

    def _evaluate(self, clinic_id: uuid.UUID) -> tuple[Stage, str]:
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
