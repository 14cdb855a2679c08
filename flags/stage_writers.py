"""Reading and setting one clinic's stage in the flag, wherever the flag lives.

Two places hold the migration flag: the local flags file and an Unleash
server (through its Admin API). Both are read as a client-features document and
evaluated in process by the Unleash engine, as the service evaluates them, and a
clinic is moved by pinning it (``flags.document.set_clinic_stage``), the same
edit ``clinic flags set-stage`` makes. Both are ``appointments.rollout.engine.StageWriter``s.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from appointments.stages import Stage
from flags import FLAG_NAME
from flags.document import (
    Document,
    build_document,
    read_document,
    set_clinic_stage,
    write_document,
)
from flags.source import bootstrapped_client
from flags.stages import StageResolver, Viewer
from flags.unleash_admin import UnleashAdmin

APP_NAME = "clinic-rollout"


class _DocumentSource:
    """A flag source evaluating one document, for ``StageResolver``."""

    def __init__(self, document: Document) -> None:
        self._client = bootstrapped_client(APP_NAME, json.dumps(document))

    def variant(self, context: dict[str, Any]) -> str | None:
        result = self._client.get_variant(FLAG_NAME, context)
        return str(result["name"]) if result.get("enabled") else None

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
    """The local flags file (``CLINIC_FLAGS_FILE``)."""

    observer = "flags-file"

    def __init__(self, path: Path, default_stage: Stage) -> None:
        self._path = path
        self._default_stage = default_stage

    def stages(self, clinic_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Stage]:
        return evaluate(read_document(self._path), clinic_ids, self._default_stage)

    def set_stage(self, clinic_id: uuid.UUID, stage: Stage) -> None:
        """Pin the clinic; a missing file is created."""
        document = read_document(self._path) if self._path.exists() else build_document({})
        write_document(self._path, set_clinic_stage(document, str(clinic_id), stage))


class UnleashStageWriter:
    """The flag in an Unleash server, read and written through its Admin API."""

    observer = "unleash"

    def __init__(self, admin: UnleashAdmin, default_stage: Stage) -> None:
        self._admin = admin
        self._default_stage = default_stage

    def stages(self, clinic_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Stage]:
        return evaluate(self._admin.export(), clinic_ids, self._default_stage)

    def set_stage(self, clinic_id: uuid.UUID, stage: Stage) -> None:
        """Pin the clinic in the server's current flag (read, edit, write back)."""
        document = set_clinic_stage(self._admin.export(), str(clinic_id), stage)
        self._admin.apply_document(document)
