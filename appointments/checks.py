"""Checks every input value passes before it reaches the database."""

from __future__ import annotations

from datetime import UTC, datetime

from appointments.errors import DomainError, ErrorCode

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def check_moment(value: datetime, field: str) -> datetime:
    """An aware time between 1900 and 2200 (beyond, conversions to UTC can overflow)."""
    if value.tzinfo is None:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "give the time with a UTC offset, e.g. 2026-01-05T09:00Z",
            field,
        )
    try:
        in_range = EARLIEST <= value.astimezone(UTC) < LATEST
    except OverflowError:
        in_range = False
    if not in_range:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"{field} must be between {EARLIEST.year} and {LATEST.year}",
            field,
        )
    return value


def check_text(value: str, field: str) -> str:
    """Text PostgreSQL can store: no NUL character."""
    if "\x00" in value:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"{field} must not contain NUL characters", field
        )
    return value
