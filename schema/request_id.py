"""The current request's id, for log lines and masked errors (set by the HTTP middleware)."""

from __future__ import annotations

import contextvars

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
