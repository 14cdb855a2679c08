"""JSON values in SQL, the same on PostgreSQL and SQLite (JSON1).

Each function returns an SQL expression whose value is JSON text (or NULL for a
JSON null), formatted as the GraphQL schema serialises the value: ids as
hyphenated lower-case UUIDs, moments as RFC 3339 in UTC with an explicit
``+00:00`` (fractional seconds, as microseconds, only when not zero), dates as
``YYYY-MM-DD``, enums by member name.

The text is compact, as the rest of the response is: SQLite's ``json_object``
writes it so, but PostgreSQL's ``json_build_object`` writes ``{"id" : "…", …}``
(and ``jsonb``, which does not, orders keys by length). So on PostgreSQL an object
is text put together with ``||``: its keys written into the statement, each value
as its JSON text (``to_json``, or the formatted text quoted where it can need no
escaping), SQL NULL as ``null``, nested objects and arrays inserted as they are.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    String,
    Text,
    case,
    cast,
    func,
    null,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSON as PG_JSON
from sqlalchemy.sql.elements import Case, False_, Null, True_, TypeCoerce
from sqlalchemy.sql.schema import Column, Table
from sqlalchemy.sql.selectable import Alias
from sqlalchemy.types import JSON, NullType

from appointments.read_model.sources import Format
from appointments.read_model.sql import concatenated, constant_text, text_constant, when

Expression = ColumnElement[Any]


class _PresentJson(PG_JSON):
    """JSON text that is never SQL NULL (an object, an array, a non-null column)."""


_JSON_TEXT = PG_JSON()
"""The type of a PostgreSQL expression whose value is JSON text, or NULL for null."""
_PRESENT = _PresentJson()


@dataclass(frozen=True, slots=True)
class JsonSql:
    """Builds JSON expressions for one database (``postgresql`` or ``sqlite``)."""

    dialect: str

    @property
    def postgres(self) -> bool:
        return self.dialect == "postgresql"

    def object(self, pairs: Sequence[tuple[str, Expression]]) -> Expression:
        """The JSON object of the pairs, keys in the order given."""
        if not self.postgres:
            arguments: list[Any] = []
            for key, value in pairs:
                arguments += [text_constant(key), value]
            return func.json_object(*arguments, type_=JSON)
        parts: list[str | Expression] = []
        for position, (key, value) in enumerate(pairs):
            parts += [("," if position else "{") + _quoted(key) + ":", _value_text(value)]
        parts.append("}" if pairs else "{}")
        return concatenated(parts, _PRESENT)

    def formatted(self, column: Expression, format_: Format) -> Expression:
        """A column's value as the field's GraphQL type serialises it."""
        value: Expression
        if format_ is Format.PLAIN:
            if not self.postgres:
                return column
            constant = constant_text(column)
            if constant is not None:
                return _json_constant(_quoted(constant))
            value = type_coerce(_json_text(column), _JSON_TEXT)
        else:
            formats = {
                Format.UUID: self.uuid,
                Format.MOMENT: self.moment,
                Format.DATE: self.date,
                Format.ENUM: self.enum_name,
                Format.BOOLEAN: self.boolean,
                Format.ORIGIN: self.origin,
            }
            value = formats[format_](column)
        if self.postgres and _not_null_column(column) and not isinstance(value.type, _PresentJson):
            return type_coerce(value, _PRESENT)
        return value

    def nested(self, subquery: Expression) -> Expression:
        """A subquery's JSON value inside another object (SQLite's JSON1 sees a subquery's
        value as text until ``json()`` reads it; on PostgreSQL it is text already, and
        NULL when the subquery finds no row)."""
        if self.postgres:
            return type_coerce(subquery, _JSON_TEXT)
        return func.json(subquery, type_=JSON)

    def constant(self, value: str) -> Expression:
        if self.postgres:
            return _json_constant(_quoted(value))
        return text_constant(value)

    def uuid(self, column: Expression) -> Expression:
        if self.postgres:
            return concatenated(['"', cast(column, String), '"'], _JSON_TEXT)
        hex_text = func.lower(type_coerce(column, String))
        parts = [func.substr(hex_text, start, length) for start, length in _UUID_PARTS]
        joined: Expression = parts[0]
        for part in parts[1:]:
            joined = joined + text_constant("-") + part
        return case((column.is_(None), null()), else_=joined)

    def moment(self, column: Expression) -> Expression:
        if self.postgres:
            utc = func.timezone(text_constant("UTC"), column)
            # Microseconds always, then dropped where they are zero.
            text = func.to_char(utc, text_constant('YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'))
            trimmed = func.replace(text, text_constant(".000000+"), text_constant("+"))
            return concatenated(['"', trimmed, '"'], _JSON_TEXT)
        stored = type_coerce(column, String)
        whole = func.substr(stored, 1, 19)
        shown = case((func.substr(stored, 21) == text_constant("000000"), whole), else_=stored)
        return func.replace(shown, text_constant(" "), text_constant("T")) + text_constant("+00:00")

    def date(self, column: Expression) -> Expression:
        if self.postgres:
            calendar = func.to_char(column, text_constant("YYYY-MM-DD"))
            return concatenated(['"', calendar, '"'], _JSON_TEXT)
        return type_coerce(column, String)

    def enum_name(self, column: Expression) -> Expression:
        if self.postgres:
            name = constant_text(column)
            if name is not None:
                return _json_constant(_quoted(name.upper()))
            return concatenated(['"', func.upper(type_coerce(column, String)), '"'], _JSON_TEXT)
        return func.upper(type_coerce(column, String))

    def origin(self, new_origin: Expression) -> Expression:
        """The origin a condition picks: ``NEW`` when true, else ``LEGACY``."""
        if self.postgres:
            return when(new_origin, _json_constant('"NEW"'), _json_constant('"LEGACY"'))
        return when(new_origin, text_constant("NEW"), text_constant("LEGACY"))

    def boolean(self, condition: Expression) -> Expression:
        if self.postgres:
            if isinstance(condition, True_ | False_):
                return _json_constant("true" if isinstance(condition, True_) else "false")
            return type_coerce(cast(type_coerce(condition, Boolean), Text), _JSON_TEXT)
        return case(
            (condition.is_(None), null()),
            (condition, func.json(text_constant("true"))),
            else_=func.json(text_constant("false")),
        )

    def array(self, items: Sequence[Expression]) -> Expression:
        """A JSON array of the items that are not NULL, in order."""
        if self.postgres:
            listed = [
                func.coalesce(concatenated([_json_text(item), ","], Text()), text_constant(""))
                for item in items
                if not isinstance(item, Null)
            ]
            if not listed:
                return _json_constant("[]")
            inside = func.rtrim(concatenated(listed, Text()), text_constant(","))
            return concatenated(["[", inside, "]"], _PRESENT)
        joined: Expression = text_constant("")
        comma = text_constant(",")
        for item in items:
            joined = joined + func.coalesce(type_coerce(item, String) + comma, text_constant(""))
        text = text_constant("[") + func.rtrim(joined, comma) + text_constant("]")
        return func.json(text, type_=JSON)


def _quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _json_constant(json_text: str) -> Expression:
    return text_constant(json_text, _PRESENT)


def _json_text(value: Expression) -> Expression:
    """A PostgreSQL value as JSON text (NULL for NULL): as it is when it is JSON text
    already (``JsonSql``'s own expressions), otherwise through ``to_json``."""
    if isinstance(value.type, JSON):
        return value
    if isinstance(value.type, NullType):
        # A NULL constant, which ``to_json`` takes only with a type.
        return cast(func.to_json(cast(value, Text)), Text)
    return cast(func.to_json(value), Text)


def _value_text(value: Expression) -> str | Expression:
    """A PostgreSQL object's value as JSON text, never NULL (a constant as a string)."""
    if isinstance(value, Null):
        return "null"
    constant = constant_text(value)
    if constant is not None:
        return constant if isinstance(value.type, JSON) else _quoted(constant)
    if _never_null(value):
        return value
    return func.coalesce(_json_text(value), text_constant("null"))


def _not_null_column(column: Expression) -> bool:
    """Whether the column is a table's, declared NOT NULL. A subquery's column says it
    is NOT NULL when its source is, even across an outer join: it is not trusted."""
    if not isinstance(column, Column) or column.nullable:
        return False
    table = column.table
    return isinstance(table, Table) or (
        isinstance(table, Alias) and isinstance(table.element, Table)
    )


def _never_null(value: Expression) -> bool:
    """Whether a PostgreSQL value is JSON text that is never NULL: typed so, and not a
    ``CASE`` (which takes the type of the branch it may not pick)."""
    if not isinstance(value.type, _PresentJson):
        return False
    while isinstance(value, TypeCoerce):
        value = value.clause
    return not isinstance(value, Case)


_UUID_PARTS = ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))
