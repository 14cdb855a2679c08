"""The schema's date, time and JSON scalars, with their wire format stated.

Strawberry's own ``Date`` and ``DateTime`` say only "isoformat"; a client
generating types needs the contract. Their values and parsing stay
Strawberry's (``isoformat``; ISO 8601 parsing): only the description and
``@specifiedBy`` are ours.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from strawberry.scalars import JSON
from strawberry.schema.types.base_scalars import DateDefinition, DateTimeDefinition
from strawberry.schema.types.scalar import DEFAULT_SCALAR_REGISTRY
from strawberry.types.scalar import ScalarDefinition

DATE_TIME_SPEC = "https://scalars.graphql.org/andimarek/date-time.html"
DATE_SPEC = "https://scalars.graphql.org/andimarek/local-date.html"
JSON_SPEC = "https://www.rfc-editor.org/rfc/rfc8259"

DATE_TIME = dataclasses.replace(
    DateTimeDefinition,
    description=(
        "An instant: RFC 3339 date and time with its offset, as"
        " `2030-12-03T09:00:00+00:00` (answers always carry the offset; UTC from this"
        " service; fractional seconds only when not zero, as microseconds:"
        " `2030-12-03T09:00:00.120000+00:00`). Inputs need an offset too (`Z`, `+01:00`);"
        " one without is refused."
    ),
    specified_by_url=DATE_TIME_SPEC,
)
DATE = dataclasses.replace(
    DateDefinition,
    description="A calendar date, ISO 8601 `YYYY-MM-DD`, as `1980-01-31`; no time, no zone.",
    specified_by_url=DATE_SPEC,
)
JSON_VALUE = dataclasses.replace(
    DEFAULT_SCALAR_REGISTRY[JSON],
    description=(
        "Any JSON value (RFC 8259): an object, array, string, number, boolean or null,"
        " sent as itself (not as a string)."
    ),
    specified_by_url=JSON_SPEC,
)

SCALAR_OVERRIDES: dict[object, ScalarDefinition] = {
    dt.datetime: DATE_TIME,
    dt.date: DATE,
    JSON: JSON_VALUE,
}
