"""Where the read model finds each field's value: the declarations the GraphQL types
carry beside their fields, and the selection tree those declarations annotate.

A field declares its source with ``strawberry.field(metadata=reads(...))``. A
scalar field that declares none reads the column named like the field (its
Python name) of its object's row, formatted as its GraphQL type serialises it
(``Format``). An object field must declare how its row is reached:

- ``Reference(model, key)``: the row of ``model`` whose id is this row's ``key``
  column (a foreign key, so the object is never null);
- ``Served(side, part)``: the person or membership the clinic's stage serves for
  the appointment's doctor or patient (``served``), null when there is none;
- ``MigrationState()``: the appointment's migration state, derived from the stage
  rules; its fields are computed by name (``compiler``), not read from columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

from appointments.models import Base
from appointments.sides import Side

READ_SOURCE = "read_model.source"
"""The metadata key of a field's declared source."""


class Format(Enum):
    """How a column's value is written in the response (as the GraphQL scalar does)."""

    PLAIN = "plain"
    UUID = "uuid"
    MOMENT = "moment"
    DATE = "date"
    ENUM = "enum"
    BOOLEAN = "boolean"


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    format: Format


@dataclass(frozen=True, slots=True)
class Reference:
    model: type[Base]
    key: str


@dataclass(frozen=True, slots=True)
class Served:
    side: Side
    part: Literal["person", "membership"]


@dataclass(frozen=True, slots=True)
class MigrationState:
    pass


@dataclass(frozen=True, slots=True)
class TypeName:
    name: str


Source = Column | Reference | Served | MigrationState | TypeName


def reads(source: Reference | Served | MigrationState) -> Mapping[str, Any]:
    """The field metadata declaring ``source``."""
    return {READ_SOURCE: source}


@dataclass(frozen=True, slots=True)
class SelectedField:
    """A field an operation selects: its response key, its name, where its value comes
    from (None for fields the read model does not serve, such as a connection's), and
    what it selects below it.

    Selections key the compiled statements and a page's reads: the hash of a field
    (of its whole tree) is computed once."""

    key: str
    name: str
    source: Source | None
    children: Selection
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.key, self.name, self.source, self.children)))

    def __hash__(self) -> int:
        return self._hash


Selection = tuple[SelectedField, ...]


def shows_links(selection: Selection) -> bool:
    """Whether the selection shows what the stage serves (a link or the migration state)."""
    return any(isinstance(field.source, Served | MigrationState) for field in selection)
