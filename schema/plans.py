"""Operations compiled once per process: each (document text, operation name) becomes an
``OperationPlan`` the first time it is asked for, kept in a bounded LRU.

A plan holds what does not change between requests of one operation: the parsed
and validated document, the operation chosen, the deprecated fields it selects
(and the operation they are counted for), and, when the operation is a query whose
every root field is answered by the read model (``read_model.ROOT_READ``) or is
``__typename``, one ``RootRead`` per root field with the selection below it
collected once. Such a plan runs without graphql-core (schema/planned_execution.py):
a request binds its variables, converts each field's arguments, and calls the
field's read, which evaluates the flags and runs the statement compiled for the
selection. Every other operation runs through graphql-core on the plan's document.

The key is the document's text: a dictionary hashes it once per request, which is
what a key of its SHA-256 would cost as well (persisted and trusted documents
arrive as the text they name).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    get_operation_ast,
)
from graphql.language import Visitor, visit
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.arguments import StrawberryArgument

from appointments.bounded_cache import BoundedCache
from appointments.read_model.sources import Selection
from schema.deprecated_fields import DeprecatedSelection, DeprecatedSelections
from schema.documents import cached_parse, cached_validation
from schema.read_model import ROOT_READ
from schema.selection import Catalog, UnsupportedSelectionError, catalog, collect
from schema.suggestions import suggestions_hidden, validate_document

RootReadFunction = Callable[..., Any]
"""A root field's read: (context, selection, **converted arguments) -> its JSON."""

Fragments = Mapping[str, FragmentDefinitionNode]


@dataclass(frozen=True, slots=True)
class RootRead:
    """One root field of a compiled operation."""

    key: str
    """The response key (the alias, or the field's name)."""
    nodes: tuple[FieldNode, ...]
    type_name: str
    """The object type below the field (``Query`` for ``__typename``)."""
    read: RootReadFunction | None
    """None for ``__typename``."""
    definition: GraphQLField | None
    arguments: tuple[StrawberryArgument, ...]
    selection: Selection | None
    """Collected once; None when a variable decides an ``@skip``/``@include`` below the
    field, or when the read refuses the selection (then collected per request, which
    raises the read's error)."""
    nullable: bool
    fields: Catalog

    def selection_for(self, variables: Mapping[str, Any], fragments: Fragments) -> Selection:
        """The selection below the field for a request with these coerced ``variables``."""
        if self.selection is not None:
            return self.selection
        return collect(self.nodes, self.type_name, fragments, variables, self.fields)


@dataclass(frozen=True, slots=True)
class OperationPlan:
    """An operation of a valid document, and how it runs."""

    document: DocumentNode
    operation: OperationDefinitionNode
    fragments: Fragments
    deprecated: DeprecatedSelection
    reads: tuple[RootRead, ...] | None
    """The compiled root fields, or None: graphql-core executes the operation."""


class OperationPlans:
    """The plans of one schema, by (document text, operation name), least recently used
    dropped beyond ``max_entries`` plans or ``max_characters`` of document text.

    Only valid operations have a plan: a document that does not parse or validate, or
    names no operation it holds, is answered by Strawberry's path, with its errors.
    """

    def __init__(
        self,
        schema: GraphQLSchema,
        parse_options: Mapping[str, Any],
        rules: tuple[type[ASTValidationRule], ...],
        deprecated: DeprecatedSelections,
        *,
        compile_reads: bool,
        max_entries: int,
        max_characters: int,
    ) -> None:
        self._schema = schema
        self._parse_options = parse_options
        self._rules = rules
        self._deprecated = deprecated
        self._compile_reads = compile_reads
        self._hide_suggestions = suggestions_hidden(schema)
        self._plans: BoundedCache[tuple[str, str | None], OperationPlan] = BoundedCache(
            max_entries, max_characters
        )

    def plan(self, query: str, operation_name: str | None) -> OperationPlan | None:
        """The operation's plan, built on first use; None when it has none (see above)."""
        key = (query, operation_name)
        found = self._plans.get(key)
        if found is None:
            found = self._build(query, operation_name)
            if found is not None:
                self._plans.put(key, found, len(query))
        return found

    def prepare(self, documents: Iterable[str]) -> None:
        """Plan every operation of ``documents`` (named ones by name, a lone one also
        without), so that their first requests cost what later ones do."""
        for text in documents:
            try:
                document = cached_parse(text, self._parse_options)
            except GraphQLError:
                continue
            operations = [
                node for node in document.definitions if isinstance(node, OperationDefinitionNode)
            ]
            names: list[str | None] = [node.name.value for node in operations if node.name]
            if len(operations) == 1:
                names.append(None)
            for name in names:
                self.plan(text, name)

    def _build(self, query: str, operation_name: str | None) -> OperationPlan | None:
        try:
            document = cached_parse(query, self._parse_options)
        except GraphQLError:
            return None
        errors = cached_validation(
            validate_document, self._schema, query, document, self._rules, self._hide_suggestions
        )
        operation = get_operation_ast(document, operation_name)
        if errors or operation is None:
            return None
        fragments = {
            node.name.value: node
            for node in document.definitions
            if isinstance(node, FragmentDefinitionNode)
        }
        return OperationPlan(
            document,
            operation,
            fragments,
            self._deprecated.of(self._schema, document, query, operation_name),
            self._compile(operation, fragments) if self._compile_reads else None,
        )

    def _compile(
        self, operation: OperationDefinitionNode, fragments: Fragments
    ) -> tuple[RootRead, ...] | None:
        """One ``RootRead`` per root field, or None when graphql-core must run the
        operation: not a query, a directive on it or on a root field, a fragment at the
        root, a response key given twice, or a root field the read model does not answer."""
        root = self._schema.query_type
        if operation.operation is not OperationType.QUERY or operation.directives or root is None:
            return None
        reads: list[RootRead] = []
        keys: set[str] = set()
        for node in operation.selection_set.selections:
            if not isinstance(node, FieldNode) or node.directives:
                return None
            key = node.alias.value if node.alias else node.name.value
            if key in keys:
                return None
            keys.add(key)
            read = self._root_read(root, key, node, fragments)
            if read is None:
                return None
            reads.append(read)
        return tuple(reads)

    def _root_read(
        self, root: GraphQLObjectType, key: str, node: FieldNode, fragments: Fragments
    ) -> RootRead | None:
        fields = catalog(self._schema)
        name = node.name.value
        if name == "__typename":
            return RootRead(key, (node,), root.name, None, None, (), (), False, fields)
        field = root.fields.get(name)
        if field is None:
            return None
        definition = (field.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
        read = (getattr(definition, "metadata", None) or {}).get(ROOT_READ)
        spec = fields.get((root.name, name))
        if definition is None or read is None or spec is None or spec.child_type is None:
            return None
        selection: Selection | None = None
        if not _variable_directives(node.selection_set, fragments):
            try:
                selection = collect((node,), spec.child_type, fragments, {}, fields)
            except UnsupportedSelectionError:
                selection = None
        return RootRead(
            key,
            (node,),
            spec.child_type,
            read,
            field,
            tuple(definition.arguments),
            selection,
            not isinstance(field.type, GraphQLNonNull),
            fields,
        )


def _variable_directives(selection_set: SelectionSetNode | None, fragments: Fragments) -> bool:
    """Whether a directive below ``selection_set`` (through the fragments it spreads)
    takes a variable, so that what is selected depends on the request."""
    if selection_set is None:
        return False
    found = _VariableDirectives()
    visit(selection_set, found)
    spread = set(found.spreads)
    pending = list(spread)
    while pending and not found.variable:
        fragment = fragments.get(pending.pop())
        if fragment is None:
            continue
        found.spreads.clear()
        visit(fragment.selection_set, found)
        for name in found.spreads:
            if name not in spread:
                spread.add(name)
                pending.append(name)
    return found.variable


class _VariableDirectives(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.variable = False
        self.spreads: list[str] = []
        self.inside_directive = 0

    def enter_directive(self, *_: Any) -> None:
        self.inside_directive += 1

    def leave_directive(self, *_: Any) -> None:
        self.inside_directive -= 1

    def enter_variable(self, node: VariableNode, *_: Any) -> None:
        if self.inside_directive:
            self.variable = True

    def enter_fragment_spread(self, node: FragmentSpreadNode, *_: Any) -> None:
        self.spreads.append(node.name.value)
