"""Expected failures of domain operations, each with a stable code."""

from __future__ import annotations

import enum

from appointments.stages import Stage


class ErrorCode(enum.StrEnum):
    NOT_FOUND = "NOT_FOUND"
    MALFORMED_ID = "MALFORMED_ID"
    INVALID_INPUT = "INVALID_INPUT"
    INVALID_TIME_RANGE = "INVALID_TIME_RANGE"
    MEMBERSHIP_MISSING = "MEMBERSHIP_MISSING"
    MEMBERSHIP_INACTIVE = "MEMBERSHIP_INACTIVE"
    CROSS_CLINIC_REFERENCE = "CROSS_CLINIC_REFERENCE"
    CONFLICTING_REFERENCES = "CONFLICTING_REFERENCES"
    STAGE_FORBIDS_INPUT = "STAGE_FORBIDS_INPUT"
    WRONG_ROLE = "WRONG_ROLE"
    INVALID_STATUS_TRANSITION = "INVALID_STATUS_TRANSITION"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FORBIDDEN = "FORBIDDEN"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    IDEMPOTENCY_KEY_IN_USE = "IDEMPOTENCY_KEY_IN_USE"
    LAST_ADMIN = "LAST_ADMIN"


class DomainError(Exception):
    """A rejected operation. The database is left unchanged by whoever raises it."""

    def __init__(
        self, code: ErrorCode, message: str, field: str | None = None, *, stage: Stage | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.stage = stage
