"""JSON values in SQL, the same on PostgreSQL (``json_build_object``) and SQLite (JSON1).

Each function returns an SQL expression whose value is JSON text (or NULL for a
JSON null), formatted as the GraphQL schema serialises the value: ids as
hyphenated lower-case UUIDs, moments as ISO 8601 in UTC with an explicit
``+00:00`` (fractional seconds only when not zero), dates as ``YYYY-MM-DD``,
enums by member name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    String,
    case,
    cast,
    func,
    null,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSON as PG_JSON
from sqlalchemy.types import JSON

from appointments.read_model.sources import Format
from appointments.read_model.sql import text_constant, when

Expression = ColumnElement[Any]


@dataclass(frozen=True, slots=True)
class JsonSql:
    """Builds JSON expressions for one database (``postgresql`` or ``sqlite``)."""

    dialect: str

    @property
    def postgres(self) -> bool:
        return self.dialect == "postgresql"

    def object(self, pairs: Sequence[tuple[str, Expression]]) -> Expression:
        arguments: list[Any] = []
        for key, value in pairs:
            arguments += [text_constant(key), value]
        if self.postgres:
            return func.json_build_object(*arguments, type_=PG_JSON)
        return func.json_object(*arguments, type_=JSON)

    def formatted(self, column: Expression, format_: Format) -> Expression:
        """A column's value as the field's GraphQL type serialises it."""
        if format_ is Format.PLAIN:
            return column
        formats = {
            Format.UUID: self.uuid,
            Format.MOMENT: self.moment,
            Format.DATE: self.date,
            Format.ENUM: self.enum_name,
            Format.BOOLEAN: self.boolean,
            Format.ORIGIN: self.origin,
        }
        return formats[format_](column)

    def nested(self, subquery: Expression) -> Expression:
        """A subquery's JSON value inside another object (SQLite's JSON1 sees a subquery's
        value as text until ``json()`` reads it)."""
        if self.postgres:
            return subquery
        return func.json(subquery, type_=JSON)

    def constant(self, value: str) -> Expression:
        return text_constant(value)

    def uuid(self, column: Expression) -> Expression:
        if self.postgres:
            return cast(column, String)
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
            return func.replace(text, text_constant(".000000+"), text_constant("+"))
        stored = type_coerce(column, String)
        whole = func.substr(stored, 1, 19)
        shown = case((func.substr(stored, 21) == text_constant("000000"), whole), else_=stored)
        return func.replace(shown, text_constant(" "), text_constant("T")) + text_constant("+00:00")

    def date(self, column: Expression) -> Expression:
        if self.postgres:
            return func.to_char(column, text_constant("YYYY-MM-DD"))
        return type_coerce(column, String)

    def enum_name(self, column: Expression) -> Expression:
        return func.upper(type_coerce(column, String))

    def origin(self, new_origin: Expression) -> Expression:
        """The origin a condition picks: ``NEW`` when true, else ``LEGACY``."""
        return when(new_origin, text_constant("NEW"), text_constant("LEGACY"))

    def boolean(self, condition: Expression) -> Expression:
        if self.postgres:
            return type_coerce(condition, Boolean)
        return case(
            (condition.is_(None), null()),
            (condition, func.json(text_constant("true"))),
            else_=func.json(text_constant("false")),
        )

    def array(self, items: Sequence[Expression]) -> Expression:
        """A JSON array of the items that are not NULL, in order."""
        joined: Expression = text_constant("")
        comma = text_constant(",")
        for item in items:
            joined = joined + func.coalesce(self._as_text(item) + comma, text_constant(""))
        text = text_constant("[") + func.rtrim(joined, comma) + text_constant("]")
        if self.postgres:
            return cast(text, PG_JSON)
        return func.json(text, type_=JSON)

    def _as_text(self, item: Expression) -> Expression:
        return cast(item, String) if self.postgres else type_coerce(item, String)


_UUID_PARTS = ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))
