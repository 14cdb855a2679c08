"""An executor that completes plain fields without the per-field machinery.

graphql-core resolves every field the same way: a ``Path``, a resolve info, the
resolver (Strawberry's attribute getter for a field without one of ours), then
``complete_value`` walking the type (non-null, list, leaf) before coercing the
value. For a list of 100 appointments that is thousands of fields whose answer is
just ``coerce(getattr(source, name))``.

``FastExecutor`` decides once per (parent type, field) whether a field is *plain*:
Strawberry's default attribute getter (no resolver, no field extension, no
permission class, no exception handler, no argument), returning a scalar or enum,
possibly non-null, possibly a list of them. Per request it plans each selection
set once (graphql-core already memoizes the collected sub-fields per parent type
and field nodes, so a list's rows share one grouped field set, and so one plan).
A plain field is then completed in the loop over the selection set: read the
attribute, coerce it with the type's ``coerce_output_value``. Anything the fast
path does not expect (null on a non-null field, an awaitable or exception as a
value, a coercion that fails, a list that is not a list) goes back to the stock
completion with the value already read, so errors, paths and null propagation are
graphql-core's own.

Object fields get the same treatment: a field returning one object of a concrete
type (no ``is_type_of``), read from an attribute or from a *simple resolver*, is
completed by collecting and executing its sub-selection directly, as graphql-core
does once it has the value. A simple resolver is a synchronous function of ours
taking only ``self`` and ``info`` (no argument, field extension, permission class
or exception handler): it is called with a Strawberry ``Info`` over graphql-core's
resolve info for that field and path, skipping Strawberry's generic argument
conversion and extension chain, which do nothing for it. Leaf fields with a simple
resolver are read the same way. A resolver's awaitable, an exception or a null on
a non-null field goes to the stock completion, as above. Every other field
(async resolvers, arguments, lists of objects, unions, ``@stream``) takes the
stock path, unchanged.

A resolver may also answer with its field's final result, already shaped for the
selection (``Completed``, from ``schema.fast_lists``): the executor takes it as it
is. A resolver only does so when the request's context says this executor runs
(``FastExecutor`` sets ``completed_results`` on a context that has it), because
graphql-core's stock executor would try to complete it as an object.

Schema extensions (error masking, the migration summary) run around execution and
are untouched. Extensions that act as middleware (a ``resolve`` hook) wrap every
resolver: when any is present, the fast path is off for that request.
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final, TypeAlias

from graphql import (
    ExecutionResult,
    ExperimentalIncrementalExecutionResults,
    GraphQLField,
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLSchema,
    TypeNameMetaFieldDef,
    is_leaf_type,
)
from graphql.execution.collect_fields import FieldDetailsList, GroupedFieldSet
from graphql.execution.executor import to_nodes
from graphql.pyutils import AwaitableOrValue, Path, Undefined, gather_with_cancel
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.field import StrawberryField
from strawberry.types.info import Info

from schema.suggestions import SuggestionlessExecutor

__all__ = [
    "FastExecutor",
    "LeafPlan",
    "ObjectPlan",
    "ReleasingExecutor",
    "SimpleResolver",
    "plain_leaf",
    "plan_field",
]

# Values that are neither awaitable nor exceptions, known without asking (the check is a
# Python call per field otherwise).
_PLAIN_VALUES: Final = frozenset({str, int, float, bool, datetime, date, uuid.UUID})
# Directives that only decide whether a field is collected: they never reach completion.
_COLLECTION_DIRECTIVES: Final = frozenset({"include", "skip"})


@dataclass(frozen=True, slots=True)
class SimpleResolver:
    """A synchronous resolver of ours taking only ``self`` and ``info``, called directly."""

    function: Callable[..., Any]
    info_parameter: str | None
    definition: StrawberryField
    info_class: type[Info[Any, Any]]

    def __call__(self, source: Any, info: GraphQLResolveInfo[Any]) -> Any:
        if self.info_parameter is None:
            return self.function(source)
        strawberry_info = self.info_class(_raw_info=info, _field=self.definition)
        return self.function(source, **{self.info_parameter: strawberry_info})


@dataclass(frozen=True, slots=True)
class LeafPlan:
    """How to complete one plain leaf: read ``attribute`` with ``getter`` (or call
    ``resolver``), then coerce."""

    field: GraphQLField
    attribute: str
    getter: Callable[[Any, str], Any]
    coerce: Callable[[Any], Any]
    non_null: bool
    is_list: bool
    item_non_null: bool
    resolver: SimpleResolver | None = None


@dataclass(frozen=True, slots=True)
class ObjectPlan:
    """How to complete a field returning one object of a concrete type."""

    field: GraphQLField
    attribute: str
    getter: Callable[[Any, str], Any]
    object_type: GraphQLObjectType
    non_null: bool
    resolver: SimpleResolver | None = None


class _TypeName:
    """Plan marker: ``__typename`` on an object type is the type's name."""


TYPENAME: Final = _TypeName()
# Per selection-set entry: response name, its field nodes, and how to complete it
# (None: the stock path).
_Decision: TypeAlias = LeafPlan | ObjectPlan | _TypeName | None
_Step: TypeAlias = tuple[str, FieldDetailsList, _Decision]
_Plan: TypeAlias = tuple[_Step, ...]

# Decisions per schema, per (parent type name, field name); made once, kept for the
# schema's lifetime.
_decisions: weakref.WeakKeyDictionary[GraphQLSchema, dict[tuple[str, str], _Decision]] = (
    weakref.WeakKeyDictionary()
)


def plain_leaf(field: GraphQLField) -> LeafPlan | None:
    """The plan for a plain attribute leaf, or None when it needs the stock path."""
    plan = plan_field(field, info_class=None)
    return plan if isinstance(plan, LeafPlan) and plan.resolver is None else None


def plan_field(
    field: GraphQLField, info_class: type[Info[Any, Any]] | None
) -> LeafPlan | ObjectPlan | None:
    """How to complete ``field`` directly, or None when it needs the stock path.

    ``info_class``: the schema's Strawberry ``Info`` class, or None to leave every
    resolver on the stock path (a schema with exception handlers, which wrap them).
    """
    definition = field.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
    if not isinstance(definition, StrawberryField):
        return None
    if definition.is_subscription or field.args or definition.extensions:
        return None
    resolver: SimpleResolver | None = None
    if definition.base_resolver is None:
        if not getattr(field.resolve, "_is_default", False):
            return None  # the default getter wrapped for an exception handler
    else:
        if info_class is None:
            return None
        resolver = _simple_resolver(definition, info_class)
        if resolver is None:
            return None
    return_type: GraphQLOutputType = field.type
    non_null = isinstance(return_type, GraphQLNonNull)
    if isinstance(return_type, GraphQLNonNull):
        return_type = return_type.of_type
    is_list = isinstance(return_type, GraphQLList)
    item_non_null = False
    if isinstance(return_type, GraphQLList):
        return_type = return_type.of_type
        item_non_null = isinstance(return_type, GraphQLNonNull)
        if isinstance(return_type, GraphQLNonNull):
            return_type = return_type.of_type
    if isinstance(return_type, GraphQLObjectType):
        if is_list or return_type.is_type_of is not None:
            return None
        return ObjectPlan(
            field=field,
            attribute=definition.python_name,
            getter=definition.default_resolver,
            object_type=return_type,
            non_null=non_null,
            resolver=resolver,
        )
    if not is_leaf_type(return_type):
        return None
    leaf: GraphQLLeafType = return_type
    return LeafPlan(
        field=field,
        attribute=definition.python_name,
        getter=definition.default_resolver,
        coerce=leaf.coerce_output_value,
        non_null=non_null,
        is_list=is_list,
        item_non_null=item_non_null,
        resolver=resolver,
    )


def _simple_resolver(
    definition: StrawberryField, info_class: type[Info[Any, Any]]
) -> SimpleResolver | None:
    resolver = definition.base_resolver
    assert resolver is not None
    if resolver.is_async or resolver.arguments or resolver.self_parameter is None:
        return None
    if resolver.root_parameter is not None or resolver.parent_parameter is not None:
        return None
    if not callable(resolver.wrapped_func):
        return None
    info_parameter = resolver.info_parameter
    return SimpleResolver(
        function=resolver.wrapped_func,
        info_parameter=None if info_parameter is None else info_parameter.name,
        definition=definition,
        info_class=info_class,
    )


@dataclass(frozen=True, slots=True)
class Completed:
    """A field's result, completed for its selection by the resolver (see the module)."""

    value: Any


class ReleasingExecutor(SuggestionlessExecutor):
    """Strawberry's executor, letting go of the request's context once the response is built.

    graphql-core's executor refers to itself (its async helpers are its own bound
    methods), so only Python's cyclic collector frees it, and with it everything
    reachable from the context: the page's records, links and loaders, about two
    thousand objects per list. Let go once the response is built, they are freed by
    reference counting when the request ends, and the collector has far less to scan
    (it took about a tenth of a list request's CPU time). An incremental response
    (``@defer``, ``@stream``) still needs the context for its later payloads, so it
    keeps it.
    """

    def build_response(
        self, data: dict[str, Any] | None
    ) -> ExecutionResult | ExperimentalIncrementalExecutionResults:
        response = super().build_response(data)
        if isinstance(response, ExecutionResult):
            self.release()
        return response

    def release(self) -> None:
        self.context_value = None


class FastExecutor(ReleasingExecutor):
    """Strawberry's executor, completing plain leaf fields directly (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        manager = self.middleware_manager
        # A middleware wraps every resolver, plain ones included: then no shortcut.
        self._fast = manager is None or not manager.middlewares
        if self._fast and hasattr(self.context_value, "completed_results"):
            self.context_value.completed_results = True
        self._plans: dict[tuple[GraphQLObjectType, int], tuple[GroupedFieldSet, _Plan]] = {}
        decisions = _decisions.get(self.schema)
        if decisions is None:
            decisions = _decisions[self.schema] = {}
        self._decisions = decisions
        strawberry_schema = getattr(self.schema, "_strawberry_schema", None)
        self._info_class: type[Info[Any, Any]] | None = (
            None
            if strawberry_schema is None or strawberry_schema.exception_handlers
            else strawberry_schema.config.info_class
        )

    def release(self) -> None:
        super().release()
        self._plans.clear()

    def complete_value(
        self,
        return_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo[Any],
        path: Path,
        result: Any,
        position_context: Any,
    ) -> AwaitableOrValue[Any]:
        if type(result) is Completed:
            return result.value
        return super().complete_value(
            return_type, field_details_list, info, path, result, position_context
        )

    def _decide(self, parent_type: GraphQLObjectType, field_name: str) -> _Decision:
        key = (parent_type.name, field_name)
        try:
            return self._decisions[key]
        except KeyError:
            pass
        field = self.schema.get_field(parent_type, field_name)
        decision: _Decision
        if field is None:
            decision = None  # stock execute_field skips it
        elif field is TypeNameMetaFieldDef:
            decision = TYPENAME
        else:
            decision = plan_field(field, self._info_class)
        self._decisions[key] = decision
        return decision

    def _plan(self, parent_type: GraphQLObjectType, grouped_field_set: GroupedFieldSet) -> _Plan:
        # Grouped field sets are memoized by graphql-core for the whole request, so
        # their identity is a key; the set is kept alive with its plan.
        key = (parent_type, id(grouped_field_set))
        cached = self._plans.get(key)
        if cached is not None:
            return cached[1]
        steps: list[_Step] = []
        for response_name, field_details_list in grouped_field_set.items():
            decision: _Decision = None
            if _only_collection_directives(field_details_list):
                decision = self._decide(parent_type, field_details_list[0].node.name.value)
            steps.append((response_name, field_details_list, decision))
        plan = tuple(steps)
        self._plans[key] = (grouped_field_set, plan)
        return plan

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: Any,
    ) -> AwaitableOrValue[dict[str, Any]]:
        """The stock ``execute_fields``, with plain fields completed in the loop."""
        if not self._fast:
            return super().execute_fields(
                parent_type, source_value, path, grouped_field_set, position_context
            )
        plan = self._plan(parent_type, grouped_field_set)
        results: dict[str, Any] = {}
        is_awaitable = self.is_awaitable
        awaitable_fields: list[str] = []
        append_awaitable = awaitable_fields.append
        type_name = parent_type.name
        try:
            for response_name, field_details_list, decision in plan:
                if decision is None:
                    result = self.execute_field(
                        parent_type,
                        source_value,
                        field_details_list,
                        Path(path, response_name, type_name),
                        position_context,
                    )
                    if result is Undefined:
                        continue
                elif decision is TYPENAME:
                    results[response_name] = type_name
                    continue
                elif isinstance(decision, ObjectPlan):
                    result = self._execute_object_field(
                        decision,
                        parent_type,
                        source_value,
                        field_details_list,
                        Path(path, response_name, type_name),
                        position_context,
                    )
                else:
                    assert isinstance(decision, LeafPlan)
                    info: GraphQLResolveInfo[Any] | None = None
                    try:
                        if decision.resolver is None:
                            value = decision.getter(source_value, decision.attribute)
                        else:
                            value, info = self._call_resolver(
                                decision,
                                parent_type,
                                source_value,
                                field_details_list,
                                Path(path, response_name, type_name),
                            )
                    except Exception as raw_error:
                        # As execute_field: the resolver raised.
                        self.handle_field_error(
                            raw_error,
                            decision.field.type,
                            field_details_list,
                            Path(path, response_name, type_name),
                        )
                        results[response_name] = None
                        continue
                    if value is None and not decision.non_null:
                        results[response_name] = None
                        continue
                    if not decision.is_list and value is not None:
                        try:
                            if type(value) in _PLAIN_VALUES or (
                                not is_awaitable(value) and not isinstance(value, Exception)
                            ):
                                coerced = decision.coerce(value)
                                if coerced is not None and coerced is not Undefined:
                                    results[response_name] = coerced
                                    continue
                        except Exception:  # noqa: S110 - the stock path reports it
                            pass
                    elif decision.is_list and type(value) in (list, tuple):
                        items = self._coerce_items(decision, value)
                        if items is not None:
                            results[response_name] = items
                            continue
                    # Anything unexpected: the stock completion of the value read.
                    result = self._complete_resolved(
                        parent_type,
                        decision.field,
                        field_details_list,
                        Path(path, response_name, type_name),
                        value,
                        position_context,
                        info,
                    )
                results[response_name] = result
                if type(result) is not dict and is_awaitable(result):
                    append_awaitable(response_name)
        except Exception:
            if awaitable_fields:
                self.settle_in_background([results[field] for field in awaitable_fields])
            raise

        if not awaitable_fields:
            return results

        async def get_results() -> dict[str, Any]:
            if len(awaitable_fields) == 1:
                field = awaitable_fields[0]
                results[field] = await results[field]
            else:
                awaited_results = await gather_with_cancel(
                    *(results[field] for field in awaitable_fields)
                )
                results.update(zip(awaitable_fields, awaited_results, strict=True))
            return results

        return get_results()

    def _execute_object_field(
        self,
        plan: ObjectPlan,
        parent_type: GraphQLObjectType,
        source_value: Any,
        field_details_list: FieldDetailsList,
        path: Path,
        position_context: Any,
    ) -> AwaitableOrValue[Any]:
        """The stock ``execute_field`` for one object, without its generic dispatch."""
        info: GraphQLResolveInfo[Any] | None = None
        try:
            if plan.resolver is None:
                value = plan.getter(source_value, plan.attribute)
            else:
                value, info = self._call_resolver(
                    plan, parent_type, source_value, field_details_list, path
                )
        except Exception as raw_error:
            self.handle_field_error(raw_error, plan.field.type, field_details_list, path)
            return None
        if value is None:
            if not plan.non_null:
                return None
        elif not self.is_awaitable(value) and not isinstance(value, Exception):
            try:
                grouped_field_set, new_defer_usages, _ = self.collect_subfields(
                    plan.object_type, field_details_list
                )
                if new_defer_usages or position_context is not None:
                    completed = self.execute_collected_subfields(
                        plan.object_type,
                        value,
                        path,
                        grouped_field_set,
                        new_defer_usages,
                        position_context,
                    )
                else:  # what execute_collected_subfields does without @defer
                    completed = self.execute_fields(
                        plan.object_type, value, path, grouped_field_set, None
                    )
            except Exception as raw_error:
                self.handle_field_error(raw_error, plan.field.type, field_details_list, path)
                return None
            if type(completed) is not dict and self.is_awaitable(completed):
                return self._await_completed(completed, plan.field, field_details_list, path)
            return completed
        # Null on a non-null field, an awaitable or an exception: the stock completion.
        return self._complete_resolved(
            parent_type, plan.field, field_details_list, path, value, position_context, info
        )

    def _call_resolver(
        self,
        plan: LeafPlan | ObjectPlan,
        parent_type: GraphQLObjectType,
        source_value: Any,
        field_details_list: FieldDetailsList,
        path: Path,
    ) -> tuple[Any, GraphQLResolveInfo[Any]]:
        """The simple resolver's answer, and the resolve info built for it."""
        assert plan.resolver is not None
        info = self.build_resolve_info(plan.field, to_nodes(field_details_list), parent_type, path)
        return plan.resolver(source_value, info), info

    async def _await_completed(
        self,
        completed: Awaitable[Any],
        field_def: GraphQLField,
        field_details_list: FieldDetailsList,
        path: Path,
    ) -> Any:
        try:
            return await completed
        except Exception as raw_error:
            self.handle_field_error(raw_error, field_def.type, field_details_list, path)
            return None

    def _coerce_items(self, decision: LeafPlan, items: list[Any] | tuple[Any, ...]) -> Any:
        """The coerced items of a list of leaves, or None if any needs the stock path."""
        is_awaitable = self.is_awaitable
        coerce = decision.coerce
        completed: list[Any] = []
        append = completed.append
        try:
            for item in items:
                if item is None:
                    if decision.item_non_null:
                        return None
                    append(None)
                    continue
                if is_awaitable(item) or isinstance(item, Exception):
                    return None
                coerced = coerce(item)
                if coerced is None or coerced is Undefined:
                    return None
                append(coerced)
        except Exception:
            return None
        return completed

    def _complete_resolved(
        self,
        parent_type: GraphQLObjectType,
        field_def: GraphQLField,
        field_details_list: FieldDetailsList,
        path: Path,
        result: Any,
        position_context: Any,
        info: GraphQLResolveInfo[Any] | None = None,
    ) -> AwaitableOrValue[Any]:
        """The part of the stock ``execute_field`` after the resolver returned ``result``."""
        return_type = field_def.type
        if info is None:
            info = self.build_resolve_info(
                field_def, to_nodes(field_details_list), parent_type, path
            )
        try:
            if self.is_awaitable(result):
                return self.complete_awaitable_value(
                    return_type, field_details_list, info, path, result, position_context
                )
            completed = self.complete_value(
                return_type, field_details_list, info, path, result, position_context
            )
            if self.is_awaitable(completed):

                async def await_completed() -> Any:
                    try:
                        return await completed
                    except Exception as raw_error:
                        self.handle_field_error(raw_error, return_type, field_details_list, path)
                        return None

                return await_completed()
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, field_details_list, path)
            return None
        return completed


def _only_collection_directives(field_details_list: FieldDetailsList) -> bool:
    """No argument and no directive but @skip/@include (e.g. @stream) on any of the nodes."""
    for details in field_details_list:
        node = details.node
        if node.arguments:
            return False
        for directive in node.directives or ():
            if directive.name.value not in _COLLECTION_DIRECTIVES:
                return False
    return True
