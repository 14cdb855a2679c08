"""What the autopilot needs of the flag, wherever it lives (Unleash, or the local file).

The flag implementations (``flags.stage_writers``) implement ``StageWriter``;
the domain depends on this interface only.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from appointments.stages import Stage


@dataclass(frozen=True, slots=True)
class FlagView:
    """The flag as it is now, for a set of clinics."""

    stages: Mapping[uuid.UUID, Stage]
    """The stage the flag gives each clinic (evaluated as the service evaluates it)."""
    switched_off: str | None = None
    """Why the flag is switched off (the kill switch), or None when it is on."""
    claims: Mapping[uuid.UUID, str] = field(default_factory=dict)
    """Clinics a strategy our tools did not make targets, with that strategy described."""


class FlagWriteRefusedError(RuntimeError):
    """Nothing was written to the flag; the message says why in a product owner's words."""


class FlagSwitchedOffError(FlagWriteRefusedError):
    """The flag (or its environment) is switched off: the kill switch wins."""


class ClinicClaimedError(FlagWriteRefusedError):
    """A strategy our tools did not make decides the clinic's stage."""


class StageWriter(Protocol):
    """Where the flag lives: what it gives each clinic now, and how to move one clinic."""

    @property
    def observer(self) -> str:
        """The actor of a change seen in the flag but made elsewhere (``unleash``,
        ``flags-file``)."""
        ...

    def read(self, clinic_ids: Iterable[uuid.UUID]) -> FlagView:
        """The flag now; raises when it cannot be read."""
        ...

    def set_stage(self, clinic_id: uuid.UUID, stage: Stage) -> None:
        """Give ``clinic_id`` ``stage`` with one atomic write that changes nothing any other
        clinic is served. Raises ``FlagWriteRefusedError`` (nothing written) when the flag is
        switched off or the clinic is claimed; any other error leaves the outcome unknown
        until the flag is read again."""
        ...
