"""The appointment list answered from a joined read, without per-field execution.

A page of 100 appointments with both field sets is about 2,000 GraphQL fields.
Executing them one by one (a resolver, a resolve info, a completion per field) is
most of what the service spends on its hottest request, and the answer is only
the joined read's records, copied into the shape the query asks for.

So for the ``appointments`` field, when every field below it is one this module
knows (the appointment's own fields, both link field sets and the people they
reach, cursors, page info, ``__typename``), the selection is compiled once per
request into a function from a page of ``appointments.listing.ListedAppointment``
to the field's result, and the executor takes that result as it is
(``schema.execution.Completed``). Fragments, aliases, merged fields and
``@skip``/``@include`` are collected as graphql-core collects them. A selection
with anything else (``clinic``, ``migration``, a membership's clinic, ``@defer``,
a fragment on an abstract type) is not compiled, and the field runs through the
ORM read path and the executor as before. Values are serialised as the schema's
scalars and enums serialise them; ``tests/test_fast_lists.py`` checks that both
ways give the same response byte for byte, with the same ledger, events and
metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any, NamedTuple

from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLBoolean,
    GraphQLNonNull,
    GraphQLResolveInfo,
    InlineFragmentNode,
    SelectionSetNode,
    Undefined,
    value_from_ast,
)

from appointments.listing import ListedAppointment, ServedSide
from appointments.models import AppointmentStatus, UserRole
from appointments.queries import Page

Render = Callable[[Any], Any]


class _NotCompiledError(Exception):
    """The selection has a field or directive this module does not answer."""


def _enum_names(enum: type[AppointmentStatus] | type[UserRole]) -> dict[str, str]:
    return {member.value: member.name for member in enum}


_STATUS_NAMES = _enum_names(AppointmentStatus)
_ROLE_NAMES = _enum_names(UserRole)


def _moment(value: datetime | date) -> str:
    return value.isoformat()


def _optional_moment(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def _membership_person(side: ServedSide) -> Any:
    if side.person is None:
        raise LookupError("a membership's person is missing from the joined read")
    return side.person


def _served_membership(side: ServedSide) -> ServedSide | None:
    return None if side.link.membership is None else side


class _Object(NamedTuple):
    """A GraphQL object type this module answers: its leaves read from a source value,
    its object fields give the source of the child object (None for null)."""

    name: str
    leaves: dict[str, Render]
    objects: dict[str, tuple[str, Render]]
    lists: dict[str, tuple[str, Render]]


_TYPES: dict[str, _Object] = {
    # Source: a ListedAppointment.
    "Appointment": _Object(
        "Appointment",
        leaves={
            "id": lambda row: str(row.record.id),
            "startsAt": lambda row: _moment(row.record.starts_at),
            "endsAt": lambda row: _moment(row.record.ends_at),
            "status": lambda row: _STATUS_NAMES[row.record.status],
            "reason": lambda row: row.record.reason,
            "createdAt": lambda row: _moment(row.record.created_at),
            "updatedAt": lambda row: _moment(row.record.updated_at),
        },
        objects={
            "doctor": ("User", lambda row: row.doctor.person),
            "patient": ("Patient", lambda row: row.patient.person),
            "clinicDoctor": ("ClinicDoctor", lambda row: _served_membership(row.doctor)),
            "clinicPatient": ("ClinicPatient", lambda row: _served_membership(row.patient)),
        },
        lists={},
    ),
    # Source: a listing.UserRecord.
    "User": _Object(
        "User",
        leaves={
            "id": lambda user: str(user.id),
            "name": lambda user: user.name,
            "email": lambda user: user.email,
            "role": lambda user: _ROLE_NAMES[user.role],
        },
        objects={},
        lists={},
    ),
    # Source: a listing.PatientRecord.
    "Patient": _Object(
        "Patient",
        leaves={
            "id": lambda patient: str(patient.id),
            "fullName": lambda patient: patient.full_name,
            "dateOfBirth": lambda patient: _optional_moment(patient.date_of_birth),
        },
        objects={},
        lists={},
    ),
    # Source: the ServedSide whose link has a membership.
    "ClinicDoctor": _Object(
        "ClinicDoctor",
        leaves={
            "id": lambda side: str(side.link.membership.id),
            "active": lambda side: side.link.membership.active,
            "createdAt": lambda side: _moment(side.link.membership.created_at),
        },
        objects={"user": ("User", _membership_person)},
        lists={},
    ),
    "ClinicPatient": _Object(
        "ClinicPatient",
        leaves={
            "id": lambda side: str(side.link.membership.id),
            "createdAt": lambda side: _moment(side.link.membership.created_at),
        },
        objects={"patient": ("Patient", _membership_person)},
        lists={},
    ),
    # Source: the Page.
    "AppointmentConnection": _Object(
        "AppointmentConnection",
        leaves={},
        objects={"pageInfo": ("PageInfo", lambda page: page)},
        lists={"edges": ("AppointmentEdge", lambda page: [(page, row) for row in page.rows])},
    ),
    "PageInfo": _Object(
        "PageInfo",
        leaves={
            "hasNextPage": lambda page: page.has_next_page,
            "endCursor": lambda page: page.end_cursor,
        },
        objects={},
        lists={},
    ),
    # Source: (page, row).
    "AppointmentEdge": _Object(
        "AppointmentEdge",
        leaves={"cursor": lambda edge: edge[0].cursor(edge[1])},
        objects={"node": ("Appointment", lambda edge: edge[1])},
        lists={},
    ),
}


class CompiledList(NamedTuple):
    render: Callable[[Page[ListedAppointment]], dict[str, Any]]
    serves_links: bool
    """A link field is selected: the page's links must be served (and compared)."""


LINK_FIELDS = frozenset({"doctor", "patient", "clinicDoctor", "clinicPatient"})


def compile_list(info: GraphQLResolveInfo[Any]) -> CompiledList | None:
    """The ``appointments`` field's result as a function of a joined page, or None when
    the selection asks for anything the joined read does not answer."""
    links: set[str] = set()
    try:
        render = _compile(info, "AppointmentConnection", info.field_nodes, links)
    except _NotCompiledError:
        return None
    return CompiledList(render, bool(links))


def _compile(
    info: GraphQLResolveInfo[Any], type_name: str, nodes: Sequence[FieldNode], links: set[str]
) -> Render:
    described = _TYPES[type_name]
    steps: list[tuple[str, Render | None, Render | None, bool]] = []
    for key, field_nodes in _collect(info, type_name, nodes).items():
        name = field_nodes[0].name.value
        if name == "__typename":
            steps.append((key, _constant(type_name), None, False))
        elif name in described.leaves:
            steps.append((key, described.leaves[name], None, False))
        elif name in described.objects:
            if type_name == "Appointment" and name in LINK_FIELDS:
                links.add(name)
            child_type, source = described.objects[name]
            steps.append((key, source, _compile(info, child_type, field_nodes, links), False))
        elif name in described.lists:
            child_type, source = described.lists[name]
            steps.append((key, source, _compile(info, child_type, field_nodes, links), True))
        else:
            raise _NotCompiledError(name)
    return _renderer(tuple(steps))


def _constant(value: str) -> Render:
    return lambda _source: value


def _renderer(steps: tuple[tuple[str, Render | None, Render | None, bool], ...]) -> Render:
    def render(source: Any) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, read, child, is_list in steps:
            value = read(source)  # type: ignore[misc]
            if child is None or value is None:
                result[key] = value
            elif is_list:
                result[key] = [child(item) for item in value]
            else:
                result[key] = child(value)
        return result

    return render


def _collect(
    info: GraphQLResolveInfo[Any], type_name: str, nodes: Sequence[FieldNode]
) -> dict[str, list[FieldNode]]:
    """The sub-fields of ``nodes`` by response key, in graphql-core's order."""
    grouped: dict[str, list[FieldNode]] = {}
    visited: set[str] = set()
    for node in nodes:
        if node.selection_set is not None:
            _visit(info, type_name, node.selection_set, grouped, visited)
    return grouped


def _visit(
    info: GraphQLResolveInfo[Any],
    type_name: str,
    selection_set: SelectionSetNode,
    grouped: dict[str, list[FieldNode]],
    visited: set[str],
) -> None:
    for selection in selection_set.selections:
        if not isinstance(selection, FieldNode | InlineFragmentNode | FragmentSpreadNode):
            raise _NotCompiledError(type(selection).__name__)
        if not _included(info, selection):
            continue
        if isinstance(selection, FieldNode):
            key = selection.alias.value if selection.alias else selection.name.value
            grouped.setdefault(key, []).append(selection)
        elif isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition
            if condition is not None and condition.name.value != type_name:
                raise _NotCompiledError("fragment on another type")
            _visit(info, type_name, selection.selection_set, grouped, visited)
        else:
            fragment = info.fragments.get(selection.name.value)
            if fragment is None or fragment.type_condition.name.value != type_name:
                raise _NotCompiledError("fragment on another type")
            if fragment.variable_definitions:
                raise _NotCompiledError("fragment variables")
            if selection.name.value in visited:
                continue
            visited.add(selection.name.value)
            _visit(info, type_name, fragment.selection_set, grouped, visited)


def _included(
    info: GraphQLResolveInfo[Any], node: FieldNode | InlineFragmentNode | FragmentSpreadNode
) -> bool:
    if not node.directives:
        return True
    included = True
    # Strawberry gives resolvers the coerced variables as a plain dict.
    variables: dict[str, Any] = info.variable_values  # type: ignore[assignment]
    for directive in node.directives:
        name = directive.name.value
        arguments = directive.arguments or ()
        if name not in ("skip", "include") or len(arguments) != 1:
            raise _NotCompiledError(f"@{name}")
        condition = value_from_ast(arguments[0].value, _CONDITION, variables)
        if condition is Undefined:
            raise _NotCompiledError(f"@{name} condition")
        if (name == "skip") == bool(condition):
            included = False
    return included


_CONDITION = GraphQLNonNull(GraphQLBoolean)
