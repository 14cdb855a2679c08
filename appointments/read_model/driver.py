"""A read model statement run on the database driver's own connection.

SQLAlchemy compiles the statement once per shape (``DriverStatement.of``): its SQL
for the dialect, its parameters in the order the driver takes them, and the type
conversions of each parameter and result column, as SQLAlchemy itself applies
them. A request then binds its values and runs the SQL on the driver's side of its
pooled connection (``appointments.read_connection``; psycopg's ``AsyncConnection``,
aiosqlite's ``Connection``): none of SQLAlchemy's per-execution work (cache key,
execution context, result wrapping). The connection's settings hold as for any
statement on it, the ``statement_timeout`` applies; psycopg prepares the statement
on its first execution on a connection (few statements, run again and again), never
when the connection's ``prepare_threshold`` is None. On PostgreSQL the SQL is
rewritten once with PostgreSQL's own placeholders (``$1``) and run on psycopg's raw
cursor, which sends it as it is: psycopg's ordinary cursor converts ``%(name)s``
placeholders on every execution, and for a statement over 4,096 characters (a list
across clinics) it does so without its cache. Listeners of
``before_cursor_execute`` and ``after_cursor_execute`` see the statement as they see
SQLAlchemy's, and a driver error is raised as SQLAlchemy raises it (a ``DBAPIError``,
the connection invalidated when it is gone).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncRawCursor
from sqlalchemy import Select
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.util import greenlet_spawn

Processor = Callable[[Any], Any]
_REQUIRED = object()
_NAMED_PLACEHOLDER = re.compile(r"%\(([^)]+)\)s|%%")


@dataclass(frozen=True, slots=True)
class _Parameter:
    name: str
    """The key of the request's values (and of the SQL's placeholder, named styles)."""
    default: Any
    processor: Processor | None


@dataclass(frozen=True, slots=True)
class DriverStatement:
    """A statement's SQL for one dialect and how its values are converted."""

    sql: str
    parameters: tuple[_Parameter, ...]
    """In placeholder order (SQLite's ``?``: a parameter used twice is there twice;
    PostgreSQL's ``$n``: once, at its number)."""
    positional: bool
    results: tuple[tuple[int, Processor], ...]
    """The result columns that need converting, and how."""
    postgres: bool

    @classmethod
    def of(cls, statement: Select[Any], dialect: Dialect) -> DriverStatement:
        compiled = statement.compile(dialect=dialect)
        if "__[POSTCOMPILE_" in compiled.string:
            raise ValueError("a read statement's SQL must not change per execution")
        by_name = {name: bind for bind, name in compiled.bind_names.items()}
        sql = compiled.string
        postgres = dialect.name == "postgresql"
        order: Sequence[str] = (
            (compiled.positiontup or []) if compiled.positional else list(by_name)
        )
        positional = compiled.positional
        if postgres and not positional:
            sql, order = _numbered(sql)
            positional = True
        parameters = tuple(
            _Parameter(
                name,
                _REQUIRED if by_name[name].required else by_name[name].effective_value,
                by_name[name].type.dialect_impl(dialect).bind_processor(dialect),
            )
            for name in order
        )
        results = tuple(
            (n, processor)
            for n, column in enumerate(statement.selected_columns)
            if (processor := column.type.dialect_impl(dialect).result_processor(dialect, None))
        )
        return cls(sql, parameters, positional, results, postgres)

    def bind(self, values: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        """The request's ``values`` as the driver takes them (a missing one raises)."""
        bound = []
        for parameter in self.parameters:
            value = values.get(parameter.name, parameter.default)
            if value is _REQUIRED:
                raise KeyError(f"no value for the parameter {parameter.name!r}")
            if parameter.processor is not None:
                value = parameter.processor(value)
            bound.append((parameter.name, value))
        if self.positional:
            return [value for _, value in bound]
        return dict(bound)

    async def run(self, connection: Connection, values: Mapping[str, Any]) -> list[Any]:
        """The statement's rows (tuples, converted as SQLAlchemy converts them), run on
        ``connection``'s driver connection (checked out: its ``connection`` is there)."""
        parameters = self.bind(values)
        driver: Any = connection.connection.driver_connection
        dispatch = connection.dispatch
        sql = self.sql
        if self.postgres:
            cursor = AsyncRawCursor(driver)
            # Its own few statements, run again and again: prepared at once, unless the
            # connection never prepares (a threshold of None).
            prepare = True if driver.prepare_threshold is not None else None
        else:
            cursor = await driver.cursor()
        try:
            if dispatch.before_cursor_execute:
                dispatch.before_cursor_execute(connection, cursor, sql, parameters, None, False)
            if self.postgres:
                await cursor.execute(sql, parameters, prepare=prepare, binary=True)
            else:
                await cursor.execute(sql, parameters)
            rows: list[Any] = await cursor.fetchall()
            if dispatch.after_cursor_execute:
                dispatch.after_cursor_execute(connection, cursor, sql, parameters, None, False)
        except connection.dialect.loaded_dbapi.Error as error:
            await _raise_as_sqlalchemy(connection, driver, sql, parameters, error)
        finally:
            await cursor.close()
        if self.results:
            rows = [self._converted(row) for row in rows]
        return rows

    def _converted(self, row: tuple[Any, ...]) -> list[Any]:
        values = list(row)
        for n, processor in self.results:
            values[n] = processor(values[n])
        return values


def _numbered(sql: str) -> tuple[str, list[str]]:
    """``sql`` with each ``%(name)s`` made ``$n`` (a name used twice keeps its number) and
    ``%%`` made ``%``; and the names in number order."""
    numbers: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "%"
        return f"${numbers.setdefault(name, len(numbers) + 1)}"

    return _NAMED_PLACEHOLDER.sub(number, sql), list(numbers)


async def _raise_as_sqlalchemy(
    connection: Connection, driver: Any, sql: str, parameters: Any, error: Exception
) -> None:
    dialect = connection.dialect
    gone = dialect.is_disconnect(error, driver, None)  # type: ignore[arg-type]
    if gone:
        await greenlet_spawn(connection.invalidate, error)
    wrapped = DBAPIError.instance(
        sql,
        parameters,
        error,
        dialect.loaded_dbapi.Error,
        connection_invalidated=gone,
        dialect=dialect,
    )
    raise wrapped from error
