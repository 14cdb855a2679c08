"""The fields an operation selects below one field, as graphql-core would execute them.

A selection is collected once per (document, operation, variables that decide
``@skip``/``@include``) into a tree of ``SelectedField`` by response key:
fragments and inline fragments flattened, aliases kept, fields with one
response key merged, what ``@skip`` or ``@include`` leaves out left out. Only
fragments on the selected object type itself are followed: the read model
selects concrete types (``Appointment`` and the objects it reaches). Each
selected field carries the source its type declares (``read_model.sources``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLField,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    SelectionSetNode,
    Undefined,
    get_named_type,
    value_from_ast,
)
from strawberry.schema.schema_converter import GraphQLCoreConverter

from appointments.read_model.sources import (
    READ_SOURCE,
    Column,
    Format,
    SelectedField,
    Selection,
    Source,
    TypeName,
)
from schema.fragments import first_spread


class UnsupportedSelectionError(Exception):
    """The selection uses something the read model does not serve (the message says what)."""


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """What a field returns (the object type's name, None for a leaf) and its source."""

    child_type: str | None
    source: Source | None


Catalog = Mapping[tuple[str, str], FieldSpec]

_CONDITION = GraphQLNonNull(GraphQLBoolean)
_FORMATS = {
    "ID": Format.UUID,
    "DateTime": Format.MOMENT,
    "Date": Format.DATE,
    "Boolean": Format.BOOLEAN,
}


@lru_cache(maxsize=8)
def catalog(schema: GraphQLSchema) -> Catalog:
    """Every object field of the schema by (type name, field name)."""
    found: dict[tuple[str, str], FieldSpec] = {}
    for type_ in schema.type_map.values():
        if isinstance(type_, GraphQLObjectType) and not type_.name.startswith("__"):
            for name, field in type_.fields.items():
                found[(type_.name, name)] = _spec(field)
    return found


def _spec(field: GraphQLField) -> FieldSpec:
    definition = (field.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
    metadata = getattr(definition, "metadata", None) or {}
    declared: Source | None = metadata.get(READ_SOURCE)
    named = get_named_type(field.type)
    if isinstance(named, GraphQLObjectType):
        return FieldSpec(named.name, declared)
    if declared is None and definition is not None:
        format_ = Format.ENUM if isinstance(named, GraphQLEnumType) else Format.PLAIN
        declared = Column(definition.python_name, _FORMATS.get(named.name, format_))
    return FieldSpec(None, declared)


def collect(
    nodes: Sequence[FieldNode],
    type_name: str,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
    fields: Catalog,
) -> Selection:
    """The sub-selection of ``nodes`` (fields of one response key) on ``type_name``."""
    grouped: dict[str, list[FieldNode]] = {}
    for node in nodes:
        if node.selection_set is not None:
            _visit(node.selection_set, type_name, fragments, variables, grouped, set())
    selected: list[SelectedField] = []
    for key, same_key in grouped.items():
        name = same_key[0].name.value
        if name == "__typename":
            selected.append(SelectedField(key, name, TypeName(type_name), ()))
            continue
        spec = fields[(type_name, name)]
        children = (
            ()
            if spec.child_type is None
            else collect(same_key, spec.child_type, fragments, variables, fields)
        )
        selected.append(SelectedField(key, name, spec.source, children))
    return tuple(selected)


def _visit(
    selection_set: SelectionSetNode,
    type_name: str,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
    grouped: dict[str, list[FieldNode]],
    visited: set[str],
) -> None:
    for selection in selection_set.selections:
        if not _included(selection, variables):
            continue
        if isinstance(selection, FieldNode):
            key = selection.alias.value if selection.alias else selection.name.value
            grouped.setdefault(key, []).append(selection)
        elif isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition
            if condition is None or condition.name.value == type_name:
                _visit(selection.selection_set, type_name, fragments, variables, grouped, visited)
        elif isinstance(selection, FragmentSpreadNode):
            fragment = first_spread(selection, fragments, visited)
            if fragment is None or fragment.type_condition.name.value != type_name:
                continue
            _visit(fragment.selection_set, type_name, fragments, variables, grouped, visited)


def _included(
    node: FieldNode | InlineFragmentNode | FragmentSpreadNode | Any, variables: Mapping[str, Any]
) -> bool:
    included = True
    for directive in node.directives or ():
        name = directive.name.value
        if name not in ("skip", "include"):
            raise UnsupportedSelectionError(f"@{name}")
        argument = next(iter(directive.arguments or ()), None)
        condition = (
            Undefined
            if argument is None
            else value_from_ast(argument.value, _CONDITION, dict(variables))
        )
        if condition is Undefined:
            raise UnsupportedSelectionError(f"@{name} without a condition")
        if (name == "skip") == bool(condition):
            included = False
    return included
