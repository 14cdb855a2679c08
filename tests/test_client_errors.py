"""Dates of birth within their documented range, and what a client's mistakes leave in
the log: a line below ERROR, not an operator's alarm."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.checks import EARLIEST_BIRTH
from tests.conftest import Api, table_snapshot

CREATE_PATIENT = """
mutation($input: CreatePatientInput!) {
  createPatient(input: $input) {
    __typename
    ... on PatientSuccess { patient { dateOfBirth } }
    ... on UserError { code field }
  }
}
"""


def today() -> str:
    return datetime.now(UTC).date().isoformat()


@pytest.mark.parametrize(
    "born",
    [
        "0001-01-01",
        "9999-12-31",
        "1899-12-31",
        (datetime.now(UTC).date() + timedelta(days=3)).isoformat(),
    ],
)
async def test_a_date_of_birth_out_of_range_is_refused(
    api: Api, sessions: async_sessionmaker[AsyncSession], born: str
) -> None:
    before = await table_snapshot(sessions)

    body = await api.data(CREATE_PATIENT, {"input": {"fullName": "Ann", "dateOfBirth": born}})

    assert body["createPatient"] == {
        "__typename": "InvalidInputError",
        "code": "INVALID_INPUT",
        "field": "dateOfBirth",
    }
    assert await table_snapshot(sessions) == before


@pytest.mark.parametrize("born", [EARLIEST_BIRTH.isoformat(), "1985-06-15", today()])
async def test_a_date_of_birth_in_range_is_kept(api: Api, born: str) -> None:
    body = await api.data(CREATE_PATIENT, {"input": {"fullName": "Ann", "dateOfBirth": born}})

    assert body["createPatient"] == {
        "__typename": "PatientSuccess",
        "patient": {"dateOfBirth": born},
    }


async def test_client_errors_are_logged_below_error(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="strawberry.execution")
    mistakes = [
        {"query": "{ clinics { edges { node { id } } "},
        {"query": "{ clinics { edges { node { nope } } } }"},
        {
            "query": "query($n: Int) { clinics(first: $n) { edges { node { id } } } }",
            "variables": {"n": "ten"},
        },
        {"query": "{ rolloutAudit(first: 0) { id } }"},
        {"query": '{ appointment(id: "not-an-id") { id } }'},
    ]
    for body in mistakes:
        response = await api.client.post("/graphql", json=body)
        assert response.json()["errors"], body

    logged = [r for r in caplog.records if r.name == "strawberry.execution"]
    assert [r for r in logged if r.levelno >= logging.ERROR] == []
    assert len([r for r in logged if r.levelno == logging.INFO]) >= len(mistakes)
