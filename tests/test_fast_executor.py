"""FastExecutor against graphql-core's stock executor: the same answers, to the byte.

Two apps over the same seeded database, one built with each executor, get the
same requests; their whole response bodies (data, errors with messages, paths and
locations, extensions) must be equal, in the same order. The queries cover the hot
list query, aliases, named and inline fragments, ``__typename``, ``@skip`` and
``@include`` with variables, nested lists and lists of scalars, abstract types;
then documents generated from the schema by hypothesis-graphql (queries only, in
stages that do not write the mismatch ledger, so that running one twice reads the
same rows). A small schema of its own covers what ours cannot produce: nulls on
non-null fields, resolvers and attributes that raise, null items in non-null
lists, values that fail to coerce, awaitables in plain attributes, field
extensions, permission classes and resolve-hook (middleware) extensions; object
attributes that are exceptions, awaitables or not objects at all; simple resolvers
that raise, return null for a non-null object or return an awaitable, and read
``info`` (path, field name, context).
"""

from __future__ import annotations

import enum
import gc
import json
import weakref
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import graphql
import pytest
import pytest_asyncio
import strawberry
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from hypothesis_graphql import queries
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from strawberry.dataloader import DataLoader
from strawberry.extensions import FieldExtension, SchemaExtension
from strawberry.permission import BasePermission
from strawberry.types import Info

from appointments import writes
from appointments.events import PendingEvents
from appointments.reads import fixed_stage
from appointments.stages import Stage
from bench.executor import HOT_QUERY
from schema.execution import FastExecutor, LeafPlan, ObjectPlan, plain_leaf, plan_field
from schema.schema import build_schema
from server.context import RequestContext
from tests.conftest import Api, Mess, World, open_api, set_stages
from tests.test_fuzz import SCHEMA_SDL, RealIds, scalar_values, seed_real_ids, steer

REQUEST_ID = {"X-Request-ID": "fast-executor-differential"}
# Stages whose reads do not touch the mismatch ledger: reading twice reads the same rows.
UNCOMPARED = [Stage.LEGACY, Stage.DUAL_WRITE, Stage.RAMPDOWN, Stage.COMPLETE]
EXAMPLES = 40


@dataclass
class Pair:
    stock: Api
    fast: Api
    world: World
    real: RealIds
    flags_file: Path

    async def both(
        self, query: str, variables: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        # Escaped JSON: generated strings may hold lone surrogates, which httpx cannot encode.
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        headers = {"Content-Type": "application/json", **REQUEST_ID}
        stock = await self.stock.client.post("/graphql", content=body, headers=headers)
        fast = await self.fast.client.post("/graphql", content=body, headers=headers)
        assert stock.status_code == fast.status_code
        stock_body: dict[str, Any] = stock.json()
        fast_body: dict[str, Any] = fast.json()
        return stock_body, fast_body

    async def same(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        stock, fast = await self.both(query, variables)
        # Equal dicts, and equal key order at every level (JSON objects are ordered here).
        assert fast == stock
        assert _ordered_keys(fast) == _ordered_keys(stock)
        return fast


def _ordered_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return [(key, _ordered_keys(item)) for key, item in value.items()]
    if isinstance(value, list):
        return [_ordered_keys(item) for item in value]
    return value


async def seed_more(sessions: async_sessionmaker[AsyncSession], world: World, count: int) -> None:
    """More appointments in clinic A, linked, unlinked and cancelled."""
    person = writes.PersonReference
    doctors = [world.doctor.id, world.other_doctor.id, world.doctor_without_membership.id]
    patients = [world.patient.id, world.other_patient.id, world.patient_without_membership.id]
    async with sessions() as session, session.begin():
        for n in range(count):
            starts_at = datetime(2026, 12, 5, 8, tzinfo=UTC) + timedelta(minutes=40 * n)
            appointment = await writes.create_appointment(
                session,
                fixed_stage(Stage.DUAL_WRITE),
                writes.NewAppointment(
                    clinic_id=world.clinic_a.id,
                    starts_at=starts_at,
                    ends_at=starts_at + timedelta(minutes=30),
                    doctor=person(doctors[n % 3]),
                    patient=person(patients[(n // 3) % 3]),
                    reason=None if n % 4 else f"Visit {n}",
                ),
                PendingEvents(),
            )
            if n % 5 == 0:
                await writes.cancel_appointment(session, appointment.id)


@pytest_asyncio.fixture
async def pair(
    database_url: str,
    sessions: async_sessionmaker[AsyncSession],
    world: World,
    flags_file: Path,
) -> AsyncIterator[Pair]:
    real = await seed_real_ids(sessions, world)
    await seed_more(sessions, world, 30)
    w = world
    set_stages(flags_file, {w.clinic_a.id: Stage.DUAL_WRITE, w.clinic_b.id: Stage.RAMPDOWN})
    async with (
        open_api(database_url, flags_file, fast_execution=False) as stock,
        open_api(database_url, flags_file, fast_execution=True) as fast,
    ):
        yield Pair(stock, fast, world, real, flags_file)


def test_the_real_schema_has_plain_fields_and_keeps_resolvers_on_the_stock_path() -> None:
    graphql_schema = build_schema()._schema
    appointment = graphql_schema.get_type("Appointment")
    report = graphql_schema.get_type("ClinicMigrationReport")
    assert isinstance(appointment, graphql.GraphQLObjectType)
    assert isinstance(report, graphql.GraphQLObjectType)

    starts_at = plain_leaf(appointment.fields["startsAt"])
    status = plain_leaf(appointment.fields["status"])
    blockers = plain_leaf(report.fields["blockers"])

    assert isinstance(starts_at, LeafPlan)
    assert starts_at.attribute == "starts_at"
    assert starts_at.non_null
    assert isinstance(status, LeafPlan)
    assert isinstance(blockers, LeafPlan)
    assert blockers.is_list
    assert blockers.item_non_null
    for resolved in ("doctor", "clinicDoctor", "migration", "clinic"):
        assert plain_leaf(appointment.fields[resolved]) is None


def test_the_real_schema_completes_link_fields_directly_and_async_resolvers_on_the_stock_path() -> (
    None
):
    graphql_schema = build_schema()._schema
    appointment = graphql_schema.get_type("Appointment")
    edge = graphql_schema.get_type("AppointmentEdge")
    assert isinstance(appointment, graphql.GraphQLObjectType)
    assert isinstance(edge, graphql.GraphQLObjectType)

    for link in ("doctor", "patient", "clinicDoctor", "clinicPatient", "clinic"):
        plan = plan_field(appointment.fields[link], Info)
        assert isinstance(plan, ObjectPlan), link
        assert plan.resolver is not None
        assert plan.resolver.info_parameter == "info"
    node = plan_field(edge.fields["node"], Info)
    assert isinstance(node, ObjectPlan)
    assert node.resolver is None
    assert node.non_null
    # Async resolvers and resolvers taking arguments keep Strawberry's own path.
    assert plan_field(appointment.fields["migration"], Info) is None
    query = graphql_schema.query_type
    assert query is not None
    assert plan_field(query.fields["appointment"], Info) is None
    # A schema with exception handlers: no resolver is called directly.
    assert plan_field(appointment.fields["doctor"], None) is None


SHAPES = """
query Shapes($clinicId: ID!, $withDoctor: Boolean!, $skipPatient: Boolean!) {
  list: appointments(first: 40, filter: {clinicId: $clinicId}) {
    __typename
    edges {
      cursor
      node {
        ...Basics
        ... on Appointment { when: startsAt status }
        ... @include(if: $withDoctor) { clinicDoctor { __typename id active createdAt } }
        doctor @include(if: $withDoctor) { __typename id name email role }
        patient @skip(if: $skipPatient) { fullName dateOfBirth }
        startsAt @skip(if: $withDoctor)
        clinicPatient { ... on ClinicPatient { id patient { ...Person } } }
      }
    }
    pageInfo { hasNextPage endCursor }
  }
  again: appointments(first: 3, filter: {clinicId: $clinicId}) {
    edges { node { id same: id __typename } }
  }
}

fragment Basics on Appointment { id startsAt endsAt reason createdAt updatedAt startsAt }
fragment Person on Patient { __typename id fullName }
"""

NESTED_LISTS = """
query Nested($clinicId: ID!, $id: ID!) {
  migrationReport(clinicId: $clinicId) {
    stage servedStage nextStage readyForNextStage blockers total fullyLinked
    doctor { linked linkable missingMembership legacyMissing inconsistent unlinked }
    clinic { name }
  }
  everyClinic: migrationReport { stage blockers clinic { id } }
  appointment(id: $id) {
    migration {
      stage authoritativeOrigin comparedStage consistent
      doctor { servedOrigin fellBack legacyPersonId newMembershipId consistent }
      differences { field legacyValue newValue }
    }
  }
  migrationMismatches(first: 10) {
    edges { node { field stage timesSeen status statusChangedBy clinic { name } } }
  }
  clinics { edges { node { __typename id name createdAt } } }
  users(role: DOCTOR) { edges { node { name role } } }
}
"""

UNION_ERRORS = """
mutation Refused($clinicId: ID!) {
  unknown: createAppointment(input: {
    clinicId: $clinicId, startsAt: "2026-12-01T09:00:00Z", endsAt: "2026-12-01T08:00:00Z",
    doctorId: "not-an-id", patientId: "not-an-id"
  }) {
    __typename
    ... on UserError { code field message }
    ... on AppointmentSuccess { appointment { id } }
  }
}
"""


async def test_the_hot_query(pair: Pair) -> None:
    body = await pair.same(HOT_QUERY, {"clinicId": str(pair.world.clinic_a.id)})

    assert len(body["data"]["appointments"]["edges"]) > 30


@pytest.mark.parametrize("fast_execution", [True, False], ids=["fast", "stock"])
async def test_a_request_is_freed_without_the_cyclic_garbage_collector(
    database_url: str,
    world: World,
    mess: Mess,
    flags_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    fast_execution: bool,
) -> None:
    """Everything a list request built (its context, loaders, records, compared links)
    goes when the request ends: either executor lets go of the context, so the cyclic
    collector is not needed to free it (it was, and scanning it took a tenth of the
    request's time)."""
    contexts: list[weakref.ref[RequestContext]] = []
    build = RequestContext.build

    def build_and_watch(*args: Any, **kwargs: Any) -> RequestContext:
        context = build(*args, **kwargs)
        contexts.append(weakref.ref(context))
        return context

    monkeypatch.setattr(RequestContext, "build", build_and_watch)
    set_stages(flags_file, {world.clinic_a.id: Stage.SHADOW})
    async with open_api(database_url, flags_file, fast_execution=fast_execution) as api:
        gc.collect()
        gc.disable()
        try:
            data = await api.data(HOT_QUERY, {"clinicId": str(world.clinic_a.id)})
            alive = [ref for ref in contexts if ref() is not None]
        finally:
            gc.enable()

    assert data["appointments"]["edges"]
    assert len(contexts) == 1
    assert alive == []


@pytest.mark.parametrize("with_doctor", [True, False])
@pytest.mark.parametrize("skip_patient", [True, False])
async def test_aliases_fragments_typename_and_directives(
    pair: Pair, with_doctor: bool, skip_patient: bool
) -> None:
    variables = {
        "clinicId": str(pair.world.clinic_a.id),
        "withDoctor": with_doctor,
        "skipPatient": skip_patient,
    }

    body = await pair.same(SHAPES, variables)

    node = body["data"]["list"]["edges"][0]["node"]
    assert ("doctor" in node) is with_doctor
    assert ("patient" in node) is not skip_patient


@pytest.mark.parametrize("stage", [Stage.DUAL_WRITE, Stage.COMPLETE])
async def test_nested_lists_lists_of_scalars_and_enums(pair: Pair, stage: Stage) -> None:
    set_stages(pair.flags_file, {pair.world.clinic_a.id: stage})
    variables = {"clinicId": str(pair.world.clinic_a.id), "id": pair.real.appointments[1]}

    body = await pair.same(NESTED_LISTS, variables)

    assert body["data"]["migrationReport"][0]["blockers"] is not None


async def test_typed_errors_through_a_union(pair: Pair) -> None:
    body = await pair.same(UNION_ERRORS, {"clinicId": str(pair.world.clinic_a.id)})

    assert body["data"]["unknown"]["__typename"] != "AppointmentSuccess"


async def test_rejected_documents(pair: Pair) -> None:
    await pair.same("{ appointments { edges { node { id nope } } } }")
    await pair.same("query ($x: Boolean!) { clinics { edges { node { id @skip(if: $x) } } } }")


# Generated documents. hypothesis-graphql writes plain selections; Decorate then adds,
# with drawn choices, what the executor must also get right: __typename, aliases,
# inline fragments and @skip/@include.


class Decorate(graphql.Visitor):
    def __init__(self, data: st.DataObject) -> None:
        super().__init__()
        self.data = data
        self.aliases = 0

    def chance(self, percent: int, label: str) -> bool:
        return self.data.draw(st.integers(0, 99), label=label) < percent

    def leave_selection_set(
        self, node: graphql.SelectionSetNode, *_: Any
    ) -> graphql.SelectionSetNode:
        selections: list[graphql.SelectionNode] = []
        for selection in node.selections:
            if isinstance(selection, graphql.FieldNode) and selection.selection_set is None:
                selection = self.decorate_leaf(selection)
            if self.chance(15, "wrap in an inline fragment"):
                selection = graphql.InlineFragmentNode(
                    selection_set=graphql.SelectionSetNode(selections=(selection,)),
                    directives=self.directives(),
                )
            selections.append(selection)
        if self.chance(30, "add __typename"):
            selections.append(graphql.FieldNode(name=graphql.NameNode(value="__typename")))
        return graphql.SelectionSetNode(selections=tuple(selections))

    def decorate_leaf(self, field: graphql.FieldNode) -> graphql.FieldNode:
        alias = field.alias
        if self.aliases < 10 and self.chance(15, "alias"):
            self.aliases += 1
            alias = graphql.NameNode(value=f"a{self.aliases}")
        return graphql.FieldNode(
            alias=alias,
            name=field.name,
            arguments=field.arguments,
            directives=(*(field.directives or ()), *self.directives()),
        )

    def directives(self) -> tuple[graphql.DirectiveNode, ...]:
        if not self.chance(20, "a @skip or @include"):
            return ()
        name = self.data.draw(st.sampled_from(["skip", "include"]), label="directive")
        value = self.data.draw(st.booleans(), label="if")
        argument = graphql.ArgumentNode(
            name=graphql.NameNode(value="if"), value=graphql.BooleanValueNode(value=value)
        )
        return (graphql.DirectiveNode(name=graphql.NameNode(value=name), arguments=(argument,)),)


@pytest.fixture
def generated(pair: Pair) -> st.SearchStrategy[graphql.DocumentNode]:
    def keep(document: graphql.DocumentNode) -> graphql.DocumentNode:
        return document

    return queries(SCHEMA_SDL, custom_scalars=scalar_values(pair.real), print_ast=keep)


@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_generated_queries_get_the_same_answers(
    pair: Pair, generated: st.SearchStrategy[graphql.DocumentNode], data: st.DataObject
) -> None:
    set_stages(
        pair.flags_file,
        {
            pair.world.clinic_a.id: data.draw(st.sampled_from(UNCOMPARED), label="stage of A"),
            pair.world.clinic_b.id: data.draw(st.sampled_from(UNCOMPARED), label="stage of B"),
        },
    )
    document = steer(data.draw(generated, label="document"), data, pair.real)
    decorated = graphql.visit(document, Decorate(data))
    assert isinstance(decorated, graphql.DocumentNode)
    query = graphql.print_ast(decorated)
    note(f"document:\n{query}")

    await pair.same(query)


# Semantics our schema cannot produce, on a schema of its own.


@strawberry.enum
class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Deny(BasePermission):
    message = "denied"

    def has_permission(self, source: Any, info: Info[Any, Any], **kwargs: Any) -> bool:
        return False


class Upper(FieldExtension):
    def resolve(self, next_: Any, source: Any, info: Info[Any, Any], **kwargs: Any) -> Any:
        return str(next_(source, info, **kwargs)).upper()


class Ready:
    """An awaitable that can be awaited any number of times, as a plain attribute."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, Any]:
        yield from ()
        return self.value


@strawberry.type
class Item:
    name: str
    nickname: str | None
    color: Color
    tags: list[str]
    maybe_tags: list[str | None] | None
    count: int
    broken: str = strawberry.field(default="")
    upper: str = strawberry.field(default="quiet", extensions=[Upper()])
    secret: str = strawberry.field(default="hidden", permission_classes=[Deny])

    @strawberry.field
    def loud(self) -> str:
        return self.name.upper()

    @strawberry.field
    async def later(self) -> str:
        return self.name

    @strawberry.field
    def fails(self) -> str | None:
        raise ValueError(f"{self.name} fails")

    @strawberry.field
    def fails_non_null(self) -> str:
        raise ValueError(f"{self.name} fails hard")

    @strawberry.field
    async def friend(self, info: Info[Any, Any]) -> Item | None:
        loader: DataLoader[str, Item | None] = info.context["loader"]
        return await loader.load(self.name)

    # Object fields: an attribute, and simple resolvers (sync, only self and info).
    partner: Item | None = None

    @strawberry.field
    def me(self) -> Item:
        return self

    @strawberry.field
    def where(self, info: Info[Any, Any]) -> str:
        return f"{info.path.as_list()} {info.field_name} {info.context['label']}"

    @strawberry.field
    def lost(self) -> Item:
        return None  # type: ignore[return-value]  # a resolver breaking its contract

    @strawberry.field
    def broken_friend(self) -> Item | None:
        raise ValueError(f"{self.name} has no friend")

    @strawberry.field
    def pending_friend(self, info: Info[Any, Any]) -> Item | None:
        loader: DataLoader[str, Item | None] = info.context["loader"]
        return loader.load(self.name)  # type: ignore[return-value]  # an awaitable, on purpose

    @strawberry.field
    def echo(self, times: int) -> str:
        return self.name * times

    @strawberry.field
    def parent_name(self, root: Item) -> str:
        return root.name


class BrokenItem(Item):
    """An Item whose ``broken`` attribute raises on read."""

    @property
    def broken(self) -> str:
        raise RuntimeError("attribute read failed")

    @broken.setter
    def broken(self, _value: str) -> None:
        pass


def item(label: str, **changes: Any) -> Item:
    values: dict[str, Any] = {
        "name": label,
        "nickname": None,
        "color": Color.RED,
        "tags": ["a", "b"],
        "maybe_tags": ["x", None],
        "count": 3,
    }
    values.update(changes)
    return Item(**values)


ITEMS = {
    "ok": item("ok", nickname="okay", color=Color.GREEN),
    "null_name": item("null_name", name=None),
    "null_tag": item("null_tag", tags=["a", None]),
    "tags_none": item("tags_none", tags=None, maybe_tags=None),
    "bad_count": item("bad_count", count="not a number"),
    "bad_color": item("bad_color", color="purple"),
    "awaitable": item("awaitable", nickname=Ready("awaited nickname"), name=Ready("awaited")),
    "exception": item("exception", nickname=ValueError("a value that is an exception")),
    "tuple_tags": item("tuple_tags", tags=("t", "u")),
    "string_tags": item("string_tags", tags="not a list"),
    "broken": BrokenItem(
        name="broken", nickname=None, color=Color.RED, tags=[], maybe_tags=[], count=1
    ),
}
ITEMS.update(
    {
        "paired": item("paired", partner=item("partner", partner=ITEMS["null_name"])),
        "partner_exception": item("partner_exception", partner=ValueError("no partner")),
        "partner_awaitable": item("partner_awaitable", partner=Ready(ITEMS["ok"])),
        "partner_not_an_object": item("partner_not_an_object", partner="a string"),
    }
)


@strawberry.type
class Root:
    @strawberry.field
    def items(self, names: list[str]) -> list[Item | None]:
        return [ITEMS[name] for name in names]

    @strawberry.field
    def strict_items(self, names: list[str]) -> list[Item]:
        return [ITEMS[name] for name in names]

    @strawberry.field
    def one(self, name: str) -> Item:
        return ITEMS[name]


class CountResolves(SchemaExtension):
    """A resolve hook: graphql-core runs it as middleware around every resolver."""

    def resolve(
        self,
        _next: Any,
        root: Any,
        info: graphql.GraphQLResolveInfo[Any],
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        return _next(root, info, *args, **kwargs)


def small_schema(fast: bool, middleware: bool = False) -> strawberry.Schema:
    return strawberry.Schema(
        query=Root,
        extensions=[CountResolves] if middleware else [],
        execution_context_class=FastExecutor if fast else None,
    )


SMALL_FIELDS = """
  __typename name nickname color tags maybeTags count upper loud later fails
  alias: name ...on Item { c2: color }
  friend { name tags friend { name } }
  partner { name partner { name count } } me { where self: me { name } } where
  brokenFriend { name } pendingFriend { name where } echo(times: 2) parentName
"""
SMALL_QUERIES = [
    pytest.param(f"{{ items(names: {names}) {{ {SMALL_FIELDS} }} }}", id=label)
    for label, names in [
        ("plain", '["ok", "tuple_tags"]'),
        ("null-on-non-null", '["ok", "null_name", "ok"]'),
        ("null-item-in-non-null-list", '["null_tag", "ok"]'),
        ("null-lists", '["tags_none"]'),
        ("uncoercible-int", '["bad_count", "ok"]'),
        ("uncoercible-enum", '["bad_color"]'),
        ("exception-as-value", '["exception"]'),
        ("string-for-a-list", '["string_tags"]'),
        ("attribute-raises", '["broken", "ok"]'),
        ("awaitable-attributes", '["awaitable", "ok"]'),
        ("object-attributes", '["paired", "partner_exception", "partner_awaitable"]'),
        ("object-attribute-not-an-object", '["partner_not_an_object"]'),
    ]
] + [
    pytest.param('{ strictItems(names: ["ok", "null_name"]) { name } }', id="propagates-to-list"),
    pytest.param('{ one(name: "null_name") { name color } }', id="propagates-to-root"),
    pytest.param('{ one(name: "ok") { failsNonNull name } }', id="resolver-raises-non-null"),
    pytest.param('{ one(name: "ok") { secret name } }', id="permission-class"),
    pytest.param('{ one(name: "broken") { broken } }', id="attribute-raises-non-null"),
    pytest.param('{ one(name: "ok") { lost { name } name } }', id="null-object-on-non-null"),
    pytest.param(
        '{ items(names: ["ok", "paired"]) { name me { lost { name } } } }',
        id="null-object-propagates-to-nullable-parent",
    ),
    pytest.param(
        """query ($yes: Boolean!) { items(names: ["ok", "null_tag"]) {
             name @include(if: $yes) tags @skip(if: $yes) ...F } }
           fragment F on Item { count tags @include(if: $yes) }""",
        id="directives-and-fragments",
    ),
]


async def small_results(
    query: str, *, middleware: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    answers = []
    for fast in (False, True):
        schema = small_schema(fast, middleware)
        context = {"loader": DataLoader(load_fn=_friends), "label": "context"}
        result = await schema.execute(query, variable_values={"yes": True}, context_value=context)
        answers.append(
            {
                "data": result.data,
                "errors": [error.formatted for error in result.errors or []],
            }
        )
    return answers[0], answers[1]


async def _friends(names: list[str]) -> list[Item | None]:
    return [ITEMS["ok"] if name != "ok" else None for name in names]


@pytest.mark.parametrize("query", SMALL_QUERIES)
@pytest.mark.parametrize("middleware", [False, True])
async def test_small_schema_semantics(query: str, middleware: bool) -> None:
    stock, fast = await small_results(query, middleware=middleware)

    assert fast == stock
    assert _ordered_keys(fast) == _ordered_keys(stock)


async def test_errors_keep_paths_and_null_propagation() -> None:
    stock, fast = await small_results('{ items(names: ["ok", "null_name"]) { name tags } }')

    assert fast == stock
    assert fast["data"] == {"items": [{"name": "ok", "tags": ["a", "b"]}, None]}
    assert [error["path"] for error in fast["errors"]] == [["items", 1, "name"]]
    assert fast["errors"][0]["message"] == "Cannot return null for non-nullable field Item.name."


class CountingExecutor(FastExecutor):
    calls = 0

    def execute_field(self, *args: Any, **kwargs: Any) -> Any:
        CountingExecutor.calls += 1
        return super().execute_field(*args, **kwargs)


async def test_plain_fields_skip_the_per_field_machinery() -> None:
    schema = strawberry.Schema(query=Root, execution_context_class=CountingExecutor)
    CountingExecutor.calls = 0

    result = await schema.execute(
        '{ items(names: ["ok", "paired"]) {'
        " name nickname color tags count __typename loud partner { name } me { name } } }",
        context_value={"loader": DataLoader(load_fn=_friends)},
    )

    assert not result.errors
    assert result.data == {
        "items": [
            {
                "name": name,
                "nickname": nickname,
                "color": color,
                "tags": ["a", "b"],
                "count": 3,
                "__typename": "Item",
                "loud": name.upper(),
                "partner": partner,
                "me": {"name": name},
            }
            for name, nickname, color, partner in (
                ("ok", "okay", "GREEN", None),
                ("paired", None, "RED", {"name": "partner"}),
            )
        ]
    }
    # Only `items` goes through execute_field: `loud` and `me` are simple resolvers,
    # `partner` an object attribute.
    assert CountingExecutor.calls == 1
