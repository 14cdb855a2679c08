"""Small SQL builders that keep the read model's statements short.

A statement is compiled once per shape and then sent on every request: its
length and its parameter count are paid each time (psycopg converts the
placeholders of a statement longer than 4,096 bytes, or with more than 50
parameters, on every execution; PostgreSQL parses it until it is prepared). So
constants known when compiling are written into the SQL: strings as quoted
literals instead of parameters, and conditions that are constant for the stage
set (most reads serve one stage) folded away instead of ``CASE WHEN false``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ClauseList,
    ColumnElement,
    String,
    and_,
    case,
    false,
    literal_column,
    not_,
    or_,
    true,
    type_coerce,
)
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import ColumnClause, False_, True_
from sqlalchemy.types import NullType, TypeEngine

Expression = ColumnElement[Any]


def text_constant(value: str, type_: TypeEngine[Any] | None = None) -> Expression:
    """A string written into the statement (it never comes from a request's values)."""
    return literal_column("'" + value.replace("'", "''") + "'", type_ or String())


def constant_text(expression: Expression) -> str | None:
    """The string of a ``text_constant``, or None for any other expression."""
    if not isinstance(expression, ColumnClause) or not expression.is_literal:
        return None
    quoted = expression.name
    if len(quoted) < 2 or quoted[0] != "'" or quoted[-1] != "'":
        return None
    inner = quoted[1:-1]
    if "'" in inner.replace("''", ""):
        return None
    return inner.replace("''", "'")


def concatenated(parts: Sequence[str | Expression], type_: TypeEngine[Any]) -> Expression:
    """``a || b || ...`` of text, one flat list however many parts (strings are written
    as constants, adjacent ones joined)."""
    merged: list[str | Expression] = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        else:
            merged.append(part)
    clauses = [text_constant(part) if isinstance(part, str) else part for part in merged]
    if len(clauses) == 1:
        return type_coerce(clauses[0], type_)
    return type_coerce(ClauseList(*clauses, operator=operators.concat_op).self_group(), type_)


def constant(value: bool) -> Expression:
    return true() if value else false()


def when(condition: Expression, then: Expression, otherwise: Expression) -> Expression:
    """``CASE WHEN condition THEN then ELSE otherwise END``, or the branch a constant
    condition picks."""
    if isinstance(condition, True_):
        return then
    if isinstance(condition, False_):
        return otherwise
    chosen = case((condition, then), else_=otherwise)
    if isinstance(then.type, NullType):
        # The CASE takes its first branch's type; a null there would hide the other's.
        return type_coerce(chosen, otherwise.type)
    return chosen


def negate(condition: Expression) -> Expression:
    if isinstance(condition, True_):
        return false()
    if isinstance(condition, False_):
        return true()
    return not_(condition)


def all_of(*conditions: Expression) -> Expression:
    if any(isinstance(c, False_) for c in conditions):
        return false()
    left = [c for c in conditions if not isinstance(c, True_)]
    if not left:
        return true()
    return left[0] if len(left) == 1 else and_(*left)


def any_of(*conditions: Expression) -> Expression:
    if any(isinstance(c, True_) for c in conditions):
        return true()
    left = [c for c in conditions if not isinstance(c, False_)]
    if not left:
        return false()
    return left[0] if len(left) == 1 else or_(*left)
