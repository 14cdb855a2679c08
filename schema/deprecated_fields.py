"""The deprecated fields an operation selects, and counting them per client.

The deprecated fields are those the schema marks (``deprecation_reason``), named
by schema coordinate (``Appointment.doctor``). An operation's are found by
walking its selection against the schema: through fragments and inline
fragments, by field name whatever the alias. A field under ``@skip``/``@include``
counts unless a literal condition leaves it out (one on a variable may read it).
The walk is done once per (query text, operation name) and kept in an LRU.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from graphql import (
    BooleanValueNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    SelectionSetNode,
    get_named_type,
    get_operation_ast,
)
from strawberry.extensions import SchemaExtension

from appointments.bounded_cache import BoundedCache
from appointments.field_usage import Operation
from appointments.persisted_documents import sha256_of
from schema.context import RequestContext
from schema.fragments import first_spread

CLIENT_NAME_HEADER = "apollographql-client-name"
CLIENT_VERSION_HEADER = "apollographql-client-version"


def deprecated_fields(schema: GraphQLSchema) -> dict[str, str]:
    """Every deprecated field of the schema's object and interface types: its coordinate and
    deprecation reason, in the schema's order."""
    found: dict[str, str] = {}
    for type_name, named in schema.type_map.items():
        if type_name.startswith("__") or not isinstance(
            named, GraphQLObjectType | GraphQLInterfaceType
        ):
            continue
        for field_name, field in named.fields.items():
            if field.deprecation_reason is not None:
                found[f"{type_name}.{field_name}"] = field.deprecation_reason
    return found


def selected_deprecated_fields(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None
) -> tuple[str, ...]:
    """The coordinates of the deprecated fields the operation selects, sorted, each once."""
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return ()
    root = schema.get_root_type(operation.operation)
    if root is None:
        return ()
    fragments = {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    found: set[str] = set()
    _walk(operation.selection_set, root, schema, fragments, found, set())
    return tuple(sorted(found))


def _walk(
    selection_set: SelectionSetNode,
    parent: GraphQLNamedType | None,
    schema: GraphQLSchema,
    fragments: Mapping[str, FragmentDefinitionNode],
    found: set[str],
    spread: set[str],
) -> None:
    for selection in selection_set.selections:
        if _left_out(selection):
            continue
        if isinstance(selection, FieldNode):
            if not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
                continue
            field = parent.fields.get(selection.name.value)
            if field is None:
                continue
            if field.deprecation_reason is not None:
                found.add(f"{parent.name}.{selection.name.value}")
            if selection.selection_set is not None:
                child = get_named_type(field.type)
                _walk(selection.selection_set, child, schema, fragments, found, spread)
        elif isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition
            target = parent if condition is None else schema.get_type(condition.name.value)
            _walk(selection.selection_set, target, schema, fragments, found, spread)
        elif isinstance(selection, FragmentSpreadNode):
            fragment = first_spread(selection, fragments, spread)
            if fragment is None:
                continue
            target = schema.get_type(fragment.type_condition.name.value)
            _walk(fragment.selection_set, target, schema, fragments, found, spread)


def _left_out(selection: FieldNode | InlineFragmentNode | FragmentSpreadNode | object) -> bool:
    for directive in getattr(selection, "directives", None) or ():
        name = directive.name.value
        if name not in ("skip", "include"):
            continue
        for argument in directive.arguments or ():
            value = argument.value
            literal = argument.name.value == "if" and isinstance(value, BooleanValueNode)
            if literal and value.value == (name == "skip"):
                return True
    return False


@dataclass(frozen=True, slots=True)
class DeprecatedSelection:
    """The deprecated fields one operation selects, and the operation they are counted for."""

    fields: tuple[str, ...]
    operation: Operation


class DeprecatedSelections:
    """``selected_deprecated_fields`` per (query text, operation name), least recently used
    dropped beyond ``max_entries`` or ``max_characters`` of query text."""

    def __init__(self, max_entries: int, max_characters: int) -> None:
        self._found: BoundedCache[tuple[str, str | None], DeprecatedSelection] = BoundedCache(
            max_entries, max_characters
        )

    def of(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        query: str,
        operation_name: str | None,
    ) -> DeprecatedSelection:
        key = (query, operation_name)
        found = self._found.get(key)
        if found is None:
            fields = selected_deprecated_fields(schema, document, operation_name)
            operation = get_operation_ast(document, operation_name)
            name = operation.name.value if operation is not None and operation.name else ""
            found = DeprecatedSelection(fields, Operation(name, sha256_of(query) if fields else ""))
            self._found.put(key, found, len(query))
        return found


class DeprecatedFieldUsage(SchemaExtension):
    """Counts each executed operation once per deprecated field it selects, for the client
    named by the request's ``apollographql-client-name`` and ``-version`` headers."""

    def __init__(self, selections: DeprecatedSelections) -> None:
        self.selections = selections

    def on_execute(self) -> Iterator[None]:
        execution = self.execution_context
        context = execution.context
        document = execution.graphql_document
        if (
            isinstance(context, RequestContext)
            and context.usage is not None
            and document is not None
            and execution.query is not None
        ):
            # Strawberry's own extensions reach graphql-core's schema this way too.
            schema = execution.schema._schema
            found = self.selections.of(schema, document, execution.query, execution.operation_name)
            record_deprecated_usage(context, found)
        yield


def record_deprecated_usage(context: RequestContext, found: DeprecatedSelection) -> None:
    """Count the operation once per deprecated field it selects, for the request's client."""
    if found.fields and context.usage is not None:
        headers = context.request.headers
        context.usage.record(
            headers.get(CLIENT_NAME_HEADER),
            headers.get(CLIENT_VERSION_HEADER),
            found.fields,
            found.operation,
        )
