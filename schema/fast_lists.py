"""The appointment list answered from a joined read, without per-field execution.

A page of 100 appointments with both field sets is about 2,000 GraphQL fields.
Executing them one by one (a resolver, a resolve info, a completion per field) is
most of what the service spends on its hottest request, and the answer is only
the joined read's records, copied into the shape the query asks for.

So for the ``appointments`` field, when every field below it is one this module
knows (the appointment's own fields, both link field sets and the people they
reach, cursors, page info, ``__typename``), the selection is compiled into a
function from a page of ``appointments.listing.ListedAppointment`` to the field's
result, and the executor takes that result as it is
(``schema.execution.Completed``). The function is generated Python source, one
dict display per object (as dataclasses and attrs generate their methods): a loop
over field descriptions costs several times more per field, and a list has about
2,000. Its bytecode is cached by source text. Fragments, aliases, merged fields
and ``@skip``/``@include`` are collected as graphql-core collects them. A
selection with anything else (``clinic``, ``migration``, a membership's clinic,
``@defer``, a fragment on an abstract type) is not compiled, and the field runs
through the ORM read path and the executor as before. Values are serialised as
the schema's scalars and enums serialise them; ``tests/test_fast_lists.py``
checks that both ways give the same response byte for byte, with the same
ledger, events and metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime
from functools import lru_cache
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
from appointments.models import AppointmentStatus, UserRole, as_utc
from appointments.queries import Page
from schema.prefetch import LINK_FIELDS


class _NotCompiledError(Exception):
    """The selection has a field or directive this module does not answer."""


def _enum_names(enum: type[AppointmentStatus] | type[UserRole]) -> dict[str, str]:
    return {member.value: member.name for member in enum}


_STATUS_NAMES = _enum_names(AppointmentStatus)
_ROLE_NAMES = _enum_names(UserRole)


def _moment(value: datetime) -> str:
    return as_utc(value).isoformat()


def _optional_date(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def _membership_person(side: ServedSide) -> Any:
    if side.person is None:
        raise LookupError("a membership's person is missing from the joined read")
    return side.person


def _served_membership(side: ServedSide) -> ServedSide | None:
    return None if side.link.membership is None else side


class _Object(NamedTuple):
    """A GraphQL object type this module answers, as Python expressions over ``v``, the
    source value: its leaves' values, its objects' sources (None for null), its lists'
    items."""

    leaves: dict[str, str]
    objects: dict[str, tuple[str, str]]
    lists: dict[str, tuple[str, str]]


_TYPES: dict[str, _Object] = {
    # Source: a listing.ListedAppointment.
    "Appointment": _Object(
        leaves={
            "id": "str(v.record.id)",
            "startsAt": "_moment(v.record.starts_at)",
            "endsAt": "_moment(v.record.ends_at)",
            "status": "_STATUS_NAMES[v.record.status]",
            "reason": "v.record.reason",
            "createdAt": "_moment(v.record.created_at)",
            "updatedAt": "_moment(v.record.updated_at)",
        },
        objects={
            "doctor": ("User", "v.doctor.person"),
            "patient": ("Patient", "v.patient.person"),
            "clinicDoctor": ("ClinicDoctor", "_served_membership(v.doctor)"),
            "clinicPatient": ("ClinicPatient", "_served_membership(v.patient)"),
        },
        lists={},
    ),
    # Source: a listing.UserRecord.
    "User": _Object(
        leaves={
            "id": "str(v.id)",
            "name": "v.name",
            "email": "v.email",
            "role": "_ROLE_NAMES[v.role]",
        },
        objects={},
        lists={},
    ),
    # Source: a listing.PatientRecord.
    "Patient": _Object(
        leaves={
            "id": "str(v.id)",
            "fullName": "v.full_name",
            "dateOfBirth": "_optional_date(v.date_of_birth)",
        },
        objects={},
        lists={},
    ),
    # Source: the listing.ServedSide of a link with a membership.
    "ClinicDoctor": _Object(
        leaves={
            "id": "str(v.link.membership.id)",
            "active": "v.link.membership.active",
            "createdAt": "_moment(v.link.membership.created_at)",
        },
        objects={"user": ("User", "_membership_person(v)")},
        lists={},
    ),
    "ClinicPatient": _Object(
        leaves={
            "id": "str(v.link.membership.id)",
            "createdAt": "_moment(v.link.membership.created_at)",
        },
        objects={"patient": ("Patient", "_membership_person(v)")},
        lists={},
    ),
    # Source: the Page.
    "AppointmentConnection": _Object(
        leaves={},
        objects={"pageInfo": ("PageInfo", "v")},
        lists={"edges": ("AppointmentEdge", "[(v, row) for row in v.rows]")},
    ),
    "PageInfo": _Object(
        leaves={"hasNextPage": "v.has_next_page", "endCursor": "v.end_cursor"},
        objects={},
        lists={},
    ),
    # Source: (page, row).
    "AppointmentEdge": _Object(
        leaves={"cursor": "v[0].cursor(v[1])"},
        objects={"node": ("Appointment", "v[1]")},
        lists={},
    ),
}

_HELPERS: dict[str, Any] = {
    "_moment": _moment,
    "_optional_date": _optional_date,
    "_membership_person": _membership_person,
    "_served_membership": _served_membership,
    "_STATUS_NAMES": _STATUS_NAMES,
    "_ROLE_NAMES": _ROLE_NAMES,
}


class CompiledList(NamedTuple):
    render: Callable[[Page[ListedAppointment]], dict[str, Any]]
    serves_links: bool
    """A link field is selected: the page's links must be served (and compared)."""


def compile_list(info: GraphQLResolveInfo[Any]) -> CompiledList | None:
    """The ``appointments`` field's result as a function of a joined page, or None when
    the selection asks for anything the joined read does not answer."""
    links: set[str] = set()
    functions: list[str] = []
    try:
        _compile(info, "AppointmentConnection", info.field_nodes, links, functions)
    except _NotCompiledError:
        return None
    return CompiledList(_renderer("\n".join(functions)), bool(links))


def _compile(
    info: GraphQLResolveInfo[Any],
    type_name: str,
    nodes: Sequence[FieldNode],
    links: set[str],
    functions: list[str],
) -> str:
    """Append the source of a function rendering one ``type_name`` object for the
    selection of ``nodes`` (its children's functions first); return its name.

    Only fixed expressions from ``_TYPES`` and ``repr`` of response keys (GraphQL
    names, checked by the parser) go into the source."""
    described = _TYPES[type_name]
    entries: list[str] = []
    for key, field_nodes in _collect(info, type_name, nodes).items():
        name = field_nodes[0].name.value
        if name == "__typename":
            value = repr(type_name)
        elif name in described.leaves:
            value = described.leaves[name]
        elif name in described.objects:
            if type_name == "Appointment" and name in LINK_FIELDS:
                links.add(name)
            child_type, source = described.objects[name]
            child = _compile(info, child_type, field_nodes, links, functions)
            value = f"None if (o := {source}) is None else {child}(o)"
        elif name in described.lists:
            child_type, items = described.lists[name]
            child = _compile(info, child_type, field_nodes, links, functions)
            value = f"[{child}(item) for item in {items}]"
        else:
            raise _NotCompiledError(name)
        entries.append(f"{key!r}: {value}")
    function = f"_render_{len(functions)}"
    functions.append(f"def {function}(v):\n    return {{{', '.join(entries)}}}\n")
    return function


@lru_cache(maxsize=256)
def _renderer(source: str) -> Callable[[Any], dict[str, Any]]:
    """The last function of ``source``; the same selection gives the same source, so a
    document is compiled to bytecode once, however many requests send it."""
    namespace = dict(_HELPERS)
    exec(compile(source, "<schema.fast_lists>", "exec"), namespace)  # noqa: S102
    name = source.rsplit("def ", 1)[1].split("(", 1)[0]
    function: Callable[[Any], dict[str, Any]] = namespace[name]
    return function


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
