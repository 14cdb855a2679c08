"""A difference between the two origins of one side of an appointment.

The legacy origin is the person id stored on the appointment; the new origin is
the membership stored on it, with that membership's person and clinic. They
differ when the membership's person is not the legacy person, when the
membership belongs to another clinic, or when only one origin is present. The
read model finds them in SQL (``appointments.read_model.served``); the ledger
records them as these values.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from appointments.models import MismatchField


@dataclass(frozen=True, slots=True)
class Difference:
    field: MismatchField
    legacy_value: uuid.UUID | None
    new_value: uuid.UUID | None
