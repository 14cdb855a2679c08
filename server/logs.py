"""Logging: one line per event, JSON when not on a terminal, with the request id on every line."""

from __future__ import annotations

import json
import logging
import logging.config
import sys
from datetime import UTC, datetime
from typing import Any

from schema.request_id import request_id

_STANDARD_ATTRIBUTES = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "color_message",
    "taskName",
}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRIBUTES}


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in _fields(record).items() if v is not None})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = {k: v for k, v in _fields(record).items() if v is not None}
        if fields:
            line += " " + " ".join(f"{key}={value}" for key, value in sorted(fields.items()))
        return line


def logging_config(level: str, log_format: str = "auto") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` document; uvicorn applies it in every worker process."""
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    formatter: dict[str, Any] = (
        {"()": JsonFormatter}
        if use_json
        else {"()": KeyValueFormatter, "fmt": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"default": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "filters": ["request_id"],
                "formatter": "default",
            }
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            "uvicorn": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.access": {"level": level, "handlers": [], "propagate": True},
            # The Unleash SDK logs a warning on every failed poll: keep only its errors.
            "UnleashClient": {"level": "ERROR"},
            # The SDK's scheduler says INFO on every poll, alembic on every plugin it loads.
            "apscheduler": {"level": "WARNING"},
            "alembic.runtime.plugins": {"level": "WARNING"},
        },
    }


def configure_logging(level: str, log_format: str = "auto") -> None:
    logging.config.dictConfig(logging_config(level, log_format))


def configure_logging_once(level: str, log_format: str = "auto") -> bool:
    """``configure_logging``, unless logging is configured already; whether it configured.

    Configured means the root logger has a handler: ``clinic serve`` (and the
    ``log_config`` it gives uvicorn's workers), a ``--log-config`` of uvicorn's that
    sets one up, or a test runner capturing logs. Plain ``uvicorn ... --factory``
    configures only its own loggers, so the application's lines would otherwise go
    out as bare text without the request id; here they, and uvicorn's, become ours.

    uvicorn's ``--no-access-log`` leaves ``uvicorn.access`` with no handler and not
    propagating, which is how its HTTP protocols decide not to log each request; that
    choice is kept (the access logger is routed to ours only when uvicorn logs access).
    """
    if logging.getLogger().handlers:
        return False
    access = logging.getLogger("uvicorn.access")
    access_log_off = not access.handlers and not access.propagate
    configure_logging(level, log_format)
    if access_log_off:
        access.propagate = False
    return True
