"""Appointment fields answered by the read model: the selection below the field,
collected from the operation, and the JSON the database built, spliced in as it is.

Each root field's read (``read_appointment``, ``read_appointments``) takes the
request's context, the selection below the field and the field's arguments as
Strawberry converts them. Both executors call it: a compiled operation
(schema/plans.py) with the selection its plan collected once, graphql-core through
the field's resolver. It returns an ``orjson.Fragment`` (the field's JSON); the
graphql-core executor takes it without completing it
(``schema.execution.ReleasingExecutor``), and the response encoder copies its bytes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import orjson
from graphql import GraphQLResolveInfo

from appointments.db import Reader
from appointments.errors import DomainError, ErrorCode
from appointments.models import Appointment
from appointments.queries import APPOINTMENT_ORDER, AppointmentFilter
from appointments.read_model.runner import ServedPage
from appointments.read_model.sources import SelectedField, Selection, TypeName
from schema.context import RequestContext
from schema.errors import parse_id, query_error
from schema.inputs import AppointmentFilterInput
from schema.selection import UnsupportedSelectionError, catalog, collect

ROOT_READ = "clinic.root_read"
"""Metadata of a ``Query`` field answered by one of the reads below: the read itself,
which a compiled operation calls with the field's converted arguments."""

PlannedSelection = Callable[[], Selection]
"""The selection below a root field: the plan's, collected once, or collected on call."""


def selection_below(info: GraphQLResolveInfo[Any], type_name: str) -> Selection:
    variables: dict[str, Any] = info.variable_values  # type: ignore[assignment]
    return collect(info.field_nodes, type_name, info.fragments, variables, catalog(info.schema))


async def read_appointment(
    context: RequestContext, selection: PlannedSelection, *, id: str
) -> orjson.Fragment | None:
    """``Query.appointment``: the appointment's JSON, or None when the viewer cannot see it."""
    try:
        appointment_id = parse_id(id, "id")
    except DomainError as error:
        raise query_error(error) from None
    return await appointment_by_id(context, selection(), appointment_id)


async def read_appointments(
    context: RequestContext,
    selection: PlannedSelection,
    *,
    filter: AppointmentFilterInput | None = None,
    first: int | None = None,
    after: str | None = None,
) -> orjson.Fragment:
    """``Query.appointments``: the connection's JSON (a typed query error for bad input)."""
    try:
        where = (filter or AppointmentFilterInput()).to_filter()
        try:
            connection = selection()
        except UnsupportedSelectionError as error:
            raise DomainError(
                ErrorCode.INVALID_INPUT, f"appointments cannot be read with {error}"
            ) from None
        return await appointment_list(context, connection, where, first, after)
    except DomainError as error:
        raise query_error(error) from None


async def appointment_list(
    context: RequestContext,
    connection: Selection,
    where: AppointmentFilter,
    first: int | None,
    after: str | None,
) -> orjson.Fragment:
    """The connection's JSON: one page, read once for each distinct node selection (one,
    unless aliases of ``edges`` select different fields of the node)."""
    nodes = {
        node.children
        for edges in connection
        if edges.name == "edges"
        for node in edges.children
        if node.name == "node"
    } or {(_TYPENAME,)}
    access = await context.access()
    reads = context.reads
    pages: dict[Selection, ServedPage] = {}
    for node_selection in nodes:

        async def read(reader: Reader, node: Selection = node_selection) -> ServedPage:
            return await reads.page(reader, node, access, where, first, after)

        pages[node_selection] = await context.db.read(read)
    return orjson.Fragment(orjson.dumps(_connection(connection, pages)))


async def appointment_by_id(
    context: RequestContext,
    selection: Selection,
    appointment_id: uuid.UUID,
    clinic_id: uuid.UUID | None = None,
) -> orjson.Fragment | None:
    access = await context.access()
    reads = context.reads
    node = await context.db.read(
        lambda reader: reads.one(reader, selection, access, appointment_id, clinic_id)
    )
    return None if node is None else orjson.Fragment(node)


async def appointment_snapshot(
    context: RequestContext, info: GraphQLResolveInfo[Any], row: Appointment
) -> orjson.Fragment | None:
    """A replayed appointment, as its idempotency key stored it."""
    selection = selection_below(info, "Appointment")
    access = await context.access()
    reads = context.reads
    node = await context.db.read(lambda reader: reads.snapshot(reader, selection, access, row))
    return None if node is None else orjson.Fragment(node)


def _connection(selection: Selection, pages: dict[Selection, ServedPage]) -> dict[str, Any]:
    page = next(iter(pages.values()))
    answer: dict[str, Any] = {}
    for field in selection:
        if field.name == "__typename":
            answer[field.key] = "AppointmentConnection"
        elif field.name == "edges":
            answer[field.key] = _edges(field.children, pages)
        elif field.name == "pageInfo":
            end = APPOINTMENT_ORDER.encode(page.rows[-1]) if page.rows else None
            answer[field.key] = {
                child.key: (
                    "PageInfo"
                    if child.name == "__typename"
                    else page.has_next_page
                    if child.name == "hasNextPage"
                    else end
                )
                for child in field.children
            }
    return answer


def _edges(selection: Selection, pages: dict[Selection, ServedPage]) -> list[dict[str, Any]]:
    rows = next(iter(pages.values())).rows
    fields = [
        (field.key, field.name, None if field.name != "node" else pages[field.children].rows)
        for field in selection
    ]
    edges: list[dict[str, Any]] = []
    for position, row in enumerate(rows):
        edge: dict[str, Any] = {}
        for key, name, nodes in fields:
            if name == "__typename":
                edge[key] = "AppointmentEdge"
            elif name == "cursor":
                edge[key] = APPOINTMENT_ORDER.encode(row)
            elif nodes is not None:
                edge[key] = orjson.Fragment(nodes[position].node) if position < len(nodes) else None
        edges.append(edge)
    return edges


_TYPENAME = SelectedField("__typename", "__typename", TypeName("Appointment"), ())
