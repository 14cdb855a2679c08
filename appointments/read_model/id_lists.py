"""A list of ids as one parameter: the statement's text is the same for any length.

An expanding ``IN`` renders one placeholder per value, so each length is another
statement to PostgreSQL (planned and prepared again) and SQLAlchemy rewrites the
text on every execution. ``in_ids`` binds the whole list once: on PostgreSQL as a
``uuid[]`` (``= ANY``), on SQLite as a JSON array read with ``json_each`` (a
``Uuid`` column stores its 32 hex digits there).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, String, Uuid, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import Boolean, TypeDecorator, TypeEngine


class IdList(TypeDecorator[list[uuid.UUID]]):
    """Ids bound as one value: a ``uuid[]`` on PostgreSQL, a JSON array of hex on SQLite."""

    impl = String
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> TypeEngine[Any]:
        implementation: TypeEngine[Any] = (
            ARRAY(Uuid()) if dialect.name == "postgresql" else String()
        )
        return implementation

    def process_bind_param(self, value: Iterable[uuid.UUID] | None, dialect: Any) -> Any:
        ids = list(value or ())
        if dialect.name == "postgresql":
            return ids
        return json.dumps([clinic.hex for clinic in ids])


class _InIds(ColumnElement[bool]):
    inherit_cache = True
    type = Boolean()
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("parameter", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, column: ColumnElement[Any], parameter: BindParameter[Any]) -> None:
        self.column = column
        self.parameter = parameter


@compiles(_InIds)
def _in_ids_default(element: _InIds, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    parameter = compiler.process(element.parameter, **kw)
    return f"{column} IN (SELECT value FROM json_each({parameter}))"  # noqa: S608 - compiled SQL


@compiles(_InIds, "postgresql")
def _in_ids_postgresql(element: _InIds, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    parameter = compiler.process(element.parameter, **kw)
    return f"{column} = ANY(CAST({parameter} AS UUID[]))"


def in_ids(column: ColumnElement[Any] | QueryableAttribute[Any], name: str) -> ColumnElement[bool]:
    """``column`` is one of the ids bound as ``name`` (a list of ``uuid.UUID``)."""
    expression = column.expression if isinstance(column, QueryableAttribute) else column
    return _InIds(expression, bindparam(name, type_=IdList()))
