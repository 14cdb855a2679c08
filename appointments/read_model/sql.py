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

from typing import Any

from sqlalchemy import ColumnElement, String, and_, case, false, literal_column, not_, or_, true
from sqlalchemy.sql.elements import False_, True_

Expression = ColumnElement[Any]


def text_constant(value: str) -> Expression:
    """A string written into the statement (it never comes from a request's values)."""
    return literal_column("'" + value.replace("'", "''") + "'", String)


def constant(value: bool) -> Expression:
    return true() if value else false()


def when(condition: Expression, then: Expression, otherwise: Expression) -> Expression:
    """``CASE WHEN condition THEN then ELSE otherwise END``, or the branch a constant
    condition picks."""
    if isinstance(condition, True_):
        return then
    if isinstance(condition, False_):
        return otherwise
    return case((condition, then), else_=otherwise)


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
