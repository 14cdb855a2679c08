"""Checks every input value passes before it reaches the database."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from appointments.errors import DomainError, ErrorCode

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
MAX_REASON_LENGTH = 2000
# C0 and C1 controls, DEL, line and paragraph separators, bidirectional overrides and
# isolates: what can move a terminal's cursor, change its screen or reorder a line.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_CONTROL_BUT_LINES = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


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


def is_unicode_text(value: str) -> bool:
    """Whether ``value`` is Unicode text, i.e. encodes as UTF-8: no lone surrogate.

    JSON can carry a lone surrogate (``"\\ud800"``) that no database driver can
    encode. The one rule for it: the request body check (server/request_body.py)
    refuses any such string anywhere in a request, and ``check_text`` refuses it
    from any other caller.
    """
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_text(value: str, field: str, *, lines: bool = False) -> str:
    """Text the databases can store and terminals can show: Unicode text
    (``is_unicode_text``), no control character (with ``lines``, newlines and tabs are
    allowed: free text such as a reason)."""
    if not is_unicode_text(value):
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"{field} must be Unicode text (it holds a lone surrogate escape)",
            field,
        )
    if "\x00" in value:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"{field} must not contain NUL characters", field
        )
    if (_CONTROL_BUT_LINES if lines else _CONTROL).search(value):
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"{field} must not contain control characters", field
        )
    return value


EARLIEST_BIRTH = date(1900, 1, 1)


def check_birth_date(value: date, field: str = "dateOfBirth") -> date:
    """A date of birth from ``EARLIEST_BIRTH`` to today (UTC, with a day's grace for
    time zones ahead of it)."""
    latest = datetime.now(UTC).date() + timedelta(days=1)
    if not EARLIEST_BIRTH <= value <= latest:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"{field} must be from {EARLIEST_BIRTH.isoformat()} to today",
            field,
        )
    return value


def check_time_range(starts_at: datetime, ends_at: datetime) -> None:
    """Both moments in range, and the end after the start."""
    check_moment(starts_at, "startsAt")
    check_moment(ends_at, "endsAt")
    if ends_at <= starts_at:
        raise DomainError(ErrorCode.INVALID_TIME_RANGE, "endsAt must be after startsAt", "endsAt")


def clean_reason(value: str | None) -> str | None:
    """The reason stripped, None when empty; at most ``MAX_REASON_LENGTH`` characters."""
    if value is None:
        return None
    cleaned = check_text(value, "reason", lines=True).strip()
    if len(cleaned) > MAX_REASON_LENGTH:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"reason must be at most {MAX_REASON_LENGTH} characters",
            "reason",
        )
    return cleaned or None
