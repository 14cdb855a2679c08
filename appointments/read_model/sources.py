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
  rules rather than read from columns.

The fields below the migration state declare what of the stage rules they show
(``served``): ``PolicyValue`` (the row's stage policy), ``MigrationSide`` (an
object of one side's values), ``SideValue`` (one of that side's values),
``Consistency`` (no difference on the sides in view), ``Differences`` (a list,
one object per difference) and ``DifferenceValue`` (one of a difference's values).
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
    ORIGIN = "origin"
    """A condition written as the origin it picks: ``NEW`` when true, else ``LEGACY``."""


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
class PolicyValue:
    """A value of the row's stage policy (``served.RowPolicy``), by attribute name."""

    name: Literal["stage", "new_authoritative", "compared"]
    format: Format


@dataclass(frozen=True, slots=True)
class MigrationSide:
    """The object showing ``side``'s values: the fields below it see that side only."""

    side: Side


@dataclass(frozen=True, slots=True)
class SideValue:
    """A value of the side in view (``served.SideValues``, by attribute name); ``masked``:
    null where it names a membership the viewer may not see."""

    name: str
    format: Format
    masked: bool = False


@dataclass(frozen=True, slots=True)
class Consistency:
    """Whether the sides in view (both, or one below ``MigrationSide``) have no difference."""


@dataclass(frozen=True, slots=True)
class Differences:
    """The list of the differences of the sides in view, one object each."""


@dataclass(frozen=True, slots=True)
class DifferenceValue:
    """A value of the difference in view: its ``field`` (a ledger field's name),
    ``legacy_value`` or ``new_value`` (masked: null where it names a membership's
    clinic or person the viewer may not see)."""

    name: Literal["field", "legacy_value", "new_value"]
    format: Format
    masked: bool = False


@dataclass(frozen=True, slots=True)
class TypeName:
    name: str


MigrationSource = (
    PolicyValue | MigrationSide | SideValue | Consistency | Differences | DifferenceValue
)
Source = Column | Reference | Served | MigrationState | MigrationSource | TypeName


def reads(source: Reference | Served | MigrationState | MigrationSource) -> Mapping[str, Any]:
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
