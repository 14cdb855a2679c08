"""Reading and setting one clinic's stage in the flag, wherever the flag lives.

Two places hold the migration flag: the local flags file and an Unleash
server (through its Admin API). Both are read as a client-features document and
evaluated in process by the Unleash engine, as the service evaluates them, and a
clinic is moved by writing its own pin (``flags.pins``) in one atomic step, the
same write ``clinic flags set-stage`` makes. Both are
``appointments.rollout.flag.StageWriter``s.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from appointments.rollout.flag import FlagView
from appointments.stages import Stage
from flags import FLAG_NAME
from flags.document import (
    Document,
    build_document,
    locked,
    migration_feature,
    read_document,
    set_clinic_stage,
    switched_off,
    write_document,
)
from flags.pins import Strategy, claims
from flags.source import Evaluator, bootstrapped_client
from flags.stages import StageResolver, Viewer
from flags.unleash_admin import FlagMissingError, UnleashAdmin

APP_NAME = "clinic-rollout"


class _DocumentSource:
    """A flag source evaluating one document, for ``StageResolver``."""

    def __init__(self, document: Document) -> None:
        self._client = bootstrapped_client(APP_NAME, json.dumps(document))

    def variant(self, context: dict[str, Any]) -> str | None:
        result = self._client.get_variant(FLAG_NAME, context)
        return str(result["name"]) if result.get("enabled") else None

    def evaluator(self) -> Evaluator:
        return self.variant

    def describe(self) -> dict[str, Any]:
        return {"source": "document", "loaded": True}

    def close(self) -> None:
        return None


def evaluate(
    document: Document, clinic_ids: Iterable[uuid.UUID], default_stage: Stage
) -> dict[uuid.UUID, Stage]:
    """The stage ``document`` gives each clinic, as the service's evaluation would."""
    resolver = StageResolver(_DocumentSource(document), default_stage, Viewer())
    return {clinic_id: resolver(clinic_id) for clinic_id in clinic_ids}


class FlagsFileStageWriter:
    """The local flags file (``CLINIC_FLAGS_FILE``). A move replaces the file at once
    (temp file and rename) under the file's writer lock, editing one clinic's pin."""

    observer = "flags-file"

    def __init__(self, path: Path, default_stage: Stage) -> None:
        self._path = path
        self._default_stage = default_stage

    def read(self, clinic_ids: Iterable[uuid.UUID]) -> FlagView:
        wanted = list(clinic_ids)
        if not self._path.exists():
            return FlagView(dict.fromkeys(wanted, self._default_stage))
        document = read_document(self._path)
        feature = migration_feature(document) or {}
        return FlagView(
            evaluate(document, wanted, self._default_stage),
            switched_off(document),
            _claims(feature.get("strategies", []), wanted),
        )

    def set_stage(self, clinic_id: uuid.UUID, stage: Stage) -> None:
        """Pin the clinic; a missing file is created."""
        with locked(self._path):
            document = read_document(self._path) if self._path.exists() else build_document({})
            write_document(self._path, set_clinic_stage(document, str(clinic_id), stage))


class UnleashStageWriter:
    """The flag in an Unleash server, read and written through its Admin API."""

    observer = "unleash"

    def __init__(self, admin: UnleashAdmin, default_stage: Stage) -> None:
        self._admin = admin
        self._default_stage = default_stage

    def read(self, clinic_ids: Iterable[uuid.UUID]) -> FlagView:
        wanted = list(clinic_ids)
        try:
            flag = self._admin.flag()
        except FlagMissingError as error:
            return FlagView(dict.fromkeys(wanted, self._default_stage), str(error))
        return FlagView(
            evaluate(self._admin.flag_document(flag), wanted, self._default_stage),
            flag.switched_off,
            _claims(flag.active, wanted),
        )

    def set_stage(self, clinic_id: uuid.UUID, stage: Stage) -> None:
        """One Admin API call on the clinic's own pin (``UnleashAdmin.pin``)."""
        self._admin.pin(str(clinic_id), stage)


def _claims(
    strategies: Sequence[Strategy], clinic_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, str]:
    found = claims(strategies, [str(c) for c in clinic_ids])
    return {clinic_id: found[str(clinic_id)] for clinic_id in clinic_ids if str(clinic_id) in found}
