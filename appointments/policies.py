"""Defaults and policies the settings name, importable without the database layer, so
that reading the settings (every `clinic` command does) costs no SQLAlchemy import."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///var/clinic.sqlite3"
"""The embedded default: a SQLite file under var/ (``CLINIC_DATABASE_URL`` overrides it)."""

PSYCOPG_PREPARE_THRESHOLD = 5


@dataclass(frozen=True, slots=True)
class IdempotencyPolicy:
    """``retention``: how long keys and results are kept. ``claim_timeout`` (SQLite): after
    this a ``running`` claim is taken over, its holder presumed dead."""

    retention: timedelta = timedelta(hours=24)
    claim_timeout: timedelta = timedelta(seconds=60)


PERSISTED_CACHE_BYTES = 4_000_000
"""Persisted-query documents each process keeps in memory (``CLINIC_PERSISTED_CACHE_BYTES``)."""
PERSISTED_DOCUMENTS_MAX = 10_000
"""Persisted-query documents the table keeps (``CLINIC_PERSISTED_DOCUMENTS_MAX``)."""

UNKNOWN_CLIENT = "unknown"
OTHER_CLIENT = "other"
_LABEL = re.compile(r"[!-~](?:[ -~]{0,62}[!-~])?")


def label_of(value: str | None) -> str | None:
    """``value`` as a label (1 to 64 printable ASCII characters, no space at either end),
    ``unknown`` when missing or empty, None when malformed."""
    if not value:
        return UNKNOWN_CLIENT
    return value if _LABEL.fullmatch(value) else None
