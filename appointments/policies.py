"""Defaults and policies the settings name, importable without the database layer, so
that reading the settings (every `clinic` command does) costs no SQLAlchemy import."""

from __future__ import annotations

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
