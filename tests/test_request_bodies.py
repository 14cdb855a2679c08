"""Request bodies the endpoint cannot run get a 4xx with a JSON ``errors`` body, never a 500.

Found by a black-box attacker run in production mode: bodies that are JSON but not an
object, bytes that are not UTF-8 (a compressed body), integers longer than Python
converts, and lone surrogate escapes (``"\\ud800"``) in any string each made the
service fail (HTTP 500, or a masked INTERNAL_ERROR once the text reached the
database). Every request here carries a valid token, as the attacker's did.
"""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.checks import check_text
from appointments.errors import DomainError, ErrorCode
from appointments.models import MigrationMismatch, MismatchField, MismatchStatus, UserRole
from appointments.stages import Stage
from server.auth import mint_token
from server.graphql_view import ClinicGraphQL
from server.settings import Settings
from tests.conftest import (
    Api,
    World,
    add_user,
    consistent_links,
    insert_appointment,
    open_api,
    set_stages,
    table_snapshot,
)

SECRET = "test-secret-0123456789-0123456789"
LONE = "\ud800"
CLINICS = "{ clinics { edges { node { name } } } }"


def production() -> dict[str, Any]:
    return {"production": True, "jwt_secret": SECRET, "introspection": False, "graphiql": False}


@pytest_asyncio.fixture
async def api(
    database_url: str, sessions: async_sessionmaker[AsyncSession], flags_file: Path
) -> AsyncIterator[Api]:
    """The app in production mode, its client sending a stored admin's token with every request.

    httpx's transport re-raises any exception that leaves the app: each test here also
    checks that none does.
    """
    admin = await add_user(sessions, UserRole.ADMIN)
    async with open_api(database_url, flags_file, **production()) as opened:
        token = mint_token(Settings(jwt_secret=SECRET), admin, UserRole.ADMIN, hours=1)
        opened.client.headers["Authorization"] = f"Bearer {token}"
        yield opened


async def post_raw(api: Api, body: bytes, **headers: str) -> tuple[int, dict[str, Any]]:
    response = await api.client.post(
        "/graphql", content=body, headers={"Content-Type": "application/json", **headers}
    )
    answer = response.json()
    assert isinstance(answer, dict), response.text
    return response.status_code, answer


def escaped(payload: dict[str, Any]) -> bytes:
    """JSON with every non-ASCII character escaped, so a lone surrogate can be sent."""
    return json.dumps(payload, ensure_ascii=True).encode()


def the_error(answer: dict[str, Any]) -> dict[str, Any]:
    assert "data" not in answer, answer
    (error,) = answer["errors"]
    assert isinstance(error["message"], str), error
    assert error["message"], error
    return dict(error)


def huge_integer() -> bytes:
    return b"1" * 5000


BadBody = tuple[str, bytes, dict[str, str], int]

BAD_BODY_CASES: list[BadBody] = [
    ("a-string", b'"x"', {}, 400),
    ("a-number", b"42", {}, 400),
    ("null", b"null", {}, 400),
    ("true", b"true", {}, 400),
    ("an-empty-list", b"[]", {}, 400),
    ("a-batch", b'[{"query": "{ __typename }"}]', {}, 400),
    ("truncated-json", b'{"query": "{ __typename }"', {}, 400),
    ("invalid-utf-8", b'{"query": "\xff\xfe"}', {}, 400),
    ("a-byte-order-mark", b"\xef\xbb\xbf{}", {}, 400),
    ("nan", b'{"query": "{ __typename }", "variables": {"n": NaN}}', {}, 400),
    ("nested-beyond-recursion", b"[" * 50_000, {}, 400),
    ("gzip-without-its-header", gzip.compress(b'{"query": "{ __typename }"}'), {}, 400),
    ("gzip", gzip.compress(b'{"query": "{ __typename }"}'), {"Content-Encoding": "gzip"}, 415),
    ("any-content-encoding", b'{"query": "{ __typename }"}', {"Content-Encoding": "br"}, 415),
    (
        "a-5000-digit-integer-variable",
        b'{"query": "query($n: Int) { clinics(first: $n) { edges { cursor } } }", '
        b'"variables": {"n": ' + huge_integer() + b"}}",
        {},
        400,
    ),
    (
        "a-5000-digit-integer-literal",
        b'{"query": "{ clinics(first: ' + huge_integer() + b') { edges { cursor } } }"}',
        {},
        400,
    ),
    ("operationName-a-number", b'{"query": "{ __typename }", "operationName": 42}', {}, 400),
    ("query-a-number", b'{"query": 42}', {}, 400),
    ("variables-a-list", b'{"query": "{ __typename }", "variables": []}', {}, 400),
]


BAD_BODIES = [pytest.param(*case[1:], id=case[0]) for case in BAD_BODY_CASES]


@pytest.mark.parametrize(("body", "headers", "status"), BAD_BODIES)
async def test_a_body_that_is_not_a_runnable_request_gets_a_4xx_with_json_errors(
    api: Api, body: bytes, headers: dict[str, str], status: int
) -> None:
    answered, answer = await post_raw(api, body, **headers)

    assert answered == status, answer
    error = the_error(answer)
    assert error["extensions"]["code"] in {"INVALID_INPUT", "BAD_REQUEST", "UNSUPPORTED_MEDIA_TYPE"}
    for leak in ("Traceback", "sys.set_int_max_str_digits", "UnicodeDecodeError", "Exception"):
        assert leak not in json.dumps(answer)


async def test_the_body_checks_name_what_is_wrong(api: Api) -> None:
    cases = {
        b"[]": "must be a JSON object",
        b'{"query": "\xff"}': "not UTF-8",
        b'{"query": "{ __typename }", "variables": {"n": ' + huge_integer() + b"}}": "digits",
    }
    for body, said in cases.items():
        status, answer = await post_raw(api, body)

        assert status == 400
        assert said in the_error(answer)["message"]
        assert the_error(answer)["extensions"]["code"] == "INVALID_INPUT"


async def test_an_integer_literal_within_the_digit_limit_is_graphql_cores_to_refuse(
    api: Api,
) -> None:
    body = await api.post("{ clinics(first: " + "9" * 4300 + ") { edges { cursor } } }")

    (error,) = body["errors"]
    assert "Int cannot represent non 32-bit signed integer" in error["message"]
    assert "extensions" not in error


async def test_after_bad_bodies_the_same_client_is_answered_normally(
    api: Api, world: World
) -> None:
    for _name, bad, headers, status in BAD_BODY_CASES:
        answered, _answer = await post_raw(api, bad, **headers)
        assert answered == status

    body = await api.data(CLINICS)

    assert [edge["node"]["name"] for edge in body["clinics"]["edges"]] == ["Clinic A", "Clinic B"]


async def test_an_exception_escaping_the_view_is_contained_as_a_masked_500(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_args: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(ClinicGraphQL, "parse_http_body", broken)
    response = await api.client.post(
        "/graphql", json={"query": CLINICS}, headers={"X-Request-ID": "trace-9"}
    )
    monkeypatch.undo()
    after = await api.client.post("/graphql", json={"query": "{ __typename }"})

    assert response.status_code == 500
    assert response.json()["errors"][0]["extensions"] == {
        "code": "INTERNAL_ERROR",
        "requestId": "trace-9",
    }
    assert "secret internals" not in response.text
    assert after.status_code == 200
    assert after.json()["data"] == {"__typename": "Query"}


# Lone surrogates: each of these reached the database driver, which cannot encode it.


async def seed_mismatch(sessions: async_sessionmaker[AsyncSession], world: World) -> str:
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        appointment = await insert_appointment(session, world, 9, **consistent_links(world))
    mismatch = MigrationMismatch(
        id=uuid.uuid4(),
        appointment_id=appointment,
        clinic_id=world.clinic_a.id,
        field=MismatchField.DOCTOR.value,
        legacy_value=world.doctor.id,
        new_value=None,
        stage=Stage.SHADOW.value,
        first_seen_at=now,
        last_seen_at=now,
        times_seen=1,
        status=MismatchStatus.OPEN.value,
    )
    async with sessions() as session, session.begin():
        session.add(mismatch)
    return str(mismatch.id)


Request = Callable[[World, str], dict[str, Any]]

SURROGATE_REQUESTS: list[Any] = [
    pytest.param(
        lambda w, _m: {
            "query": "mutation($input: CreateAppointmentInput!) "
            "{ result: createAppointment(input: $input) { __typename } }",
            "variables": {
                "input": {
                    "clinicId": str(w.clinic_a.id),
                    "startsAt": "2026-12-01T09:00:00Z",
                    "endsAt": "2026-12-01T09:30:00Z",
                    "doctorId": str(w.doctor.id),
                    "patientId": str(w.patient.id),
                    "reason": f"a{LONE}b",
                }
            },
        },
        "variables.input.reason",
        id="createAppointment-reason",
    ),
    pytest.param(
        lambda _w, _m: {
            "query": "mutation($input: CreatePatientInput!) "
            "{ result: createPatient(input: $input) { __typename } }",
            "variables": {"input": {"fullName": f"Ann {LONE}"}},
        },
        "variables.input.fullName",
        id="createPatient-fullName",
    ),
    pytest.param(
        lambda _w, _m: {
            "query": "mutation($input: CreateUserInput!) "
            "{ result: createUser(input: $input) { __typename } }",
            "variables": {
                "input": {"name": "Ann", "email": f"{LONE}@example.org", "role": "STAFF"}
            },
        },
        "variables.input.email",
        id="createUser-email",
    ),
    pytest.param(
        lambda _w, mismatch: {
            "query": "mutation($input: SetMismatchStatusInput!) "
            "{ result: setMismatchStatus(input: $input) { __typename } }",
            "variables": {"input": {"id": mismatch, "status": "IGNORED", "comment": LONE}},
        },
        "variables.input.comment",
        id="setMismatchStatus-comment",
    ),
    pytest.param(
        lambda _w, _m: {
            "query": "query($after: String) { appointments(after: $after) { edges { cursor } } }",
            "variables": {"after": LONE},
        },
        "variables.after",
        id="appointments-after-variable",
    ),
    pytest.param(
        lambda _w, _m: {"query": f'{{ appointments(after: "{LONE}") {{ edges {{ cursor }} }} }}'},
        "query",
        id="appointments-after-inline",
    ),
    pytest.param(
        lambda _w, _m: {
            "query": f'mutation {{ result: createClinic(name: "{LONE}") {{ __typename }} }}'
        },
        "query",
        id="createClinic-name-inline",
    ),
    pytest.param(
        lambda _w, _m: {"query": CLINICS, "operationName": LONE},
        "operationName",
        id="operationName",
    ),
    pytest.param(
        lambda _w, _m: {"query": CLINICS, "variables": {LONE: 1}},
        "a member name in variables",
        id="a-variable-name",
    ),
]


@pytest.mark.parametrize(("request_body", "field"), SURROGATE_REQUESTS)
async def test_a_lone_surrogate_anywhere_is_invalid_input_naming_where(
    api: Api,
    world: World,
    sessions: async_sessionmaker[AsyncSession],
    flags_file: Path,
    request_body: Request,
    field: str,
) -> None:
    set_stages(flags_file, {world.clinic_a.id: Stage.DUAL_WRITE})
    mismatch = await seed_mismatch(sessions, world)
    before = await table_snapshot(sessions)

    status, answer = await post_raw(api, escaped(request_body(world, mismatch)))

    assert status == 400, answer
    error = the_error(answer)
    assert error["extensions"] == {"code": "INVALID_INPUT", "field": field}
    assert field in error["message"]
    assert await table_snapshot(sessions) == before


async def test_an_upper_case_surrogate_escape_is_found_and_a_valid_pair_is_text(
    api: Api, world: World
) -> None:
    lone = b'{"query": "query($x: String) { clinics(after: $x) { edges { cursor } } }", '
    lone += b'"variables": {"x": "\\uDBFF"}}'
    pair = b'{"query": "mutation { createClinic(name: \\"Clinic \\ud83d\\ude00\\") '
    pair += b'{ __typename } }"}'

    refused, refusal = await post_raw(api, lone)
    accepted, created = await post_raw(api, pair)

    assert refused == 400
    assert the_error(refusal)["extensions"] == {"code": "INVALID_INPUT", "field": "variables.x"}
    assert accepted == 200
    assert created["data"] == {"createClinic": {"__typename": "ClinicSuccess"}}
    names = [e["node"]["name"] for e in (await api.data(CLINICS))["clinics"]["edges"]]
    assert "Clinic \U0001f600" in names


def cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode()


async def test_a_lone_surrogate_inside_a_cursor_is_a_typed_error(api: Api, world: World) -> None:
    # The body is plain ASCII; the surrogate is a JSON escape inside the cursor's base64.
    document = (
        f'{{ clinics(after: "{cursor([LONE, str(uuid.uuid4())])}") {{ edges {{ cursor }} }} }}'
    )

    body = await api.post(document)

    (error,) = body["errors"]
    assert error["extensions"]["code"] == ErrorCode.INVALID_INPUT.value
    assert error["extensions"]["field"] == "after"


async def test_a_cursor_nested_beyond_recursion_is_a_typed_error(api: Api) -> None:
    deep = base64.urlsafe_b64encode(b"[" * 30_000).decode()

    body = await api.post(f'{{ clinics(after: "{deep}") {{ edges {{ cursor }} }} }}')

    (error,) = body["errors"]
    assert error["extensions"]["code"] == ErrorCode.INVALID_INPUT.value


def test_check_text_refuses_a_lone_surrogate_from_any_caller() -> None:
    with pytest.raises(DomainError) as refused:
        check_text(f"a{LONE}", "reason")

    assert refused.value.code is ErrorCode.INVALID_INPUT
    assert refused.value.field == "reason"
    assert check_text("Zoë 医生", "reason") == "Zoë 医生"


# Several operations in one document: which one runs?

TWO_OPERATIONS = """
query Read { clinics { edges { node { name } } } }
mutation Write { createClinic(name: "Written") { __typename } }
"""


async def test_several_operations_without_an_operation_name_are_refused(
    api: Api, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    before = await table_snapshot(sessions)

    response = await api.client.post("/graphql", json={"query": TWO_OPERATIONS})

    assert response.status_code == 400
    error = the_error(response.json())
    assert error["message"] == "Must provide operation name if query contains multiple operations."
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert await table_snapshot(sessions) == before


async def test_the_named_operation_of_several_runs(api: Api, world: World) -> None:
    response = await api.client.post(
        "/graphql", json={"query": TWO_OPERATIONS, "operationName": "Read"}
    )
    unknown = await api.client.post(
        "/graphql", json={"query": TWO_OPERATIONS, "operationName": "Other"}
    )

    assert response.status_code == 200
    assert [e["node"]["name"] for e in response.json()["data"]["clinics"]["edges"]] == [
        "Clinic A",
        "Clinic B",
    ]
    assert unknown.status_code == 400
    assert the_error(unknown.json())["message"] == 'Unknown operation named "Other".'


async def test_a_single_operation_runs_without_an_operation_name(api: Api, world: World) -> None:
    body = await api.data("query Only { clinics { edges { node { name } } } }")

    assert len(body["clinics"]["edges"]) == 2


async def test_the_production_app_refuses_an_anonymous_request_before_reading_the_body(
    database_url: str, flags_file: Path, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with open_api(database_url, flags_file, **production()) as anonymous:
        response = await anonymous.client.post(
            "/graphql", content=b"[]", headers={"Content-Type": "application/json"}
        )

    assert response.status_code == 401
