"""Rows as JSON and back: the stored result of an idempotent write, replayed as it was written."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import inspect

from appointments.models import Base


def snapshot(row: object) -> str:
    """The row's loaded columns as JSON, to give back on a replay as it was written."""
    if not isinstance(row, Base):
        raise TypeError(f"only mapped rows can be replayed, not {type(row).__name__}")
    state = inspect(row)
    columns = {
        attribute.key: canonical(state.dict[attribute.key])
        for attribute in state.mapper.column_attrs
        if attribute.key in state.dict
    }
    return json.dumps({"model": state.mapper.class_.__name__, "columns": columns})


def restore(stored: str) -> Base:
    """A detached copy of a snapshotted row."""
    document = json.loads(stored)
    mapper = _MAPPERS_BY_MODEL[document["model"]]
    values: dict[str, Any] = {}
    for attribute in mapper.column_attrs:
        if attribute.key not in document["columns"]:
            continue
        raw = document["columns"][attribute.key]
        values[attribute.key] = None if raw is None else _parse(attribute.columns[0].type, raw)
    row: Base = mapper.class_(**values)
    return row


def _parse(column_type: Any, raw: Any) -> Any:
    python_type = column_type.python_type
    if python_type is uuid.UUID:
        return uuid.UUID(raw)
    if python_type is datetime:
        return datetime.fromisoformat(raw)
    if python_type is date:
        return date.fromisoformat(raw)
    return raw


def canonical(value: Any) -> Any:
    """A JSON-ready form of a column value or input (ids and moments as text)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "__dataclass_fields__"):
        return {name: getattr(value, name) for name in value.__dataclass_fields__}
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


_MAPPERS_BY_MODEL = {mapper.class_.__name__: mapper for mapper in Base.registry.mappers}
