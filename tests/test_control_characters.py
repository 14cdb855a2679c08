"""Control characters: refused at input in names, e-mails and comments (a typed error
naming the field, nothing written), and escaped in what the `clinic` command prints."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.models import MigrationMismatch
from appointments.stages import Stage
from server.terminal import escaped
from tests.conftest import READ_CLINIC, Api, Mess, World, set_stages, table_snapshot

HOSTILE = ["ok\x1b[2J\x1b]0;PWNED\x07", "bell\x07", "line\nbreak", "tab\there", "rtl\u202eevil"]

CREATE_USER = """
mutation($input: CreateUserInput!) {
  createUser(input: $input) { __typename ... on UserError { code field message } }
}
"""
CREATE_PATIENT = """
mutation($input: CreatePatientInput!) {
  createPatient(input: $input) { __typename ... on UserError { code field message } }
}
"""
CREATE_CLINIC = """
mutation($name: String!) {
  createClinic(name: $name) { __typename ... on UserError { code field message } }
}
"""
SET_STATUS = """
mutation($input: SetMismatchStatusInput!) {
  setMismatchStatus(input: $input) { __typename ... on UserError { code field message } }
}
"""


def refused(body: dict[str, Any], root: str, field: str) -> None:
    answer = body["data"][root]
    assert answer["__typename"] == "InvalidInputError", answer
    assert (answer["code"], answer["field"]) == ("INVALID_INPUT", field)
    assert "control characters" in answer["message"]


@pytest.mark.parametrize("value", HOSTILE)
async def test_names_and_emails_with_control_characters_are_refused(
    api: Api, world: World, sessions: async_sessionmaker[AsyncSession], value: str
) -> None:
    before = await table_snapshot(sessions)
    email = f"u{uuid.uuid4().hex[:8]}@example.org"

    user_name = await api.post(
        CREATE_USER, {"input": {"name": value, "email": email, "role": "STAFF"}}
    )
    user_email = await api.post(
        CREATE_USER, {"input": {"name": "Fine", "email": f"{value}{email}", "role": "STAFF"}}
    )
    patient = await api.post(CREATE_PATIENT, {"input": {"fullName": value}})
    clinic = await api.post(CREATE_CLINIC, {"name": value})

    refused(user_name, "createUser", "name")
    refused(user_email, "createUser", "email")
    refused(patient, "createPatient", "fullName")
    refused(clinic, "createClinic", "name")
    assert await table_snapshot(sessions) == before


async def ledger_entry(api: Api, world: World, flags_file: Path) -> str:
    set_stages(flags_file, {world.clinic_a.id: Stage.SHADOW})
    await api.data(READ_CLINIC, {"clinicId": str(world.clinic_a.id)})
    data = await api.data(
        "{ migrationMismatches(first: 1) { edges { node { id } } } }",
    )
    entry: str = data["migrationMismatches"]["edges"][0]["node"]["id"]
    return entry


@pytest.mark.parametrize("value", HOSTILE)
async def test_a_triage_comment_with_control_characters_is_refused(
    api: Api,
    world: World,
    mess: Mess,
    flags_file: Path,
    sessions: async_sessionmaker[AsyncSession],
    value: str,
) -> None:
    entry = await ledger_entry(api, world, flags_file)
    before = await table_snapshot(sessions)

    body = await api.post(
        SET_STATUS, {"input": {"id": entry, "status": "IGNORED", "comment": value}}
    )

    refused(body, "setMismatchStatus", "comment")
    assert await table_snapshot(sessions) == before


async def test_clinic_ledger_show_escapes_control_characters_stored_before(
    api: Api,
    world: World,
    mess: Mess,
    flags_file: Path,
    sessions: async_sessionmaker[AsyncSession],
    clinic_command: Any,
) -> None:
    entry = await ledger_entry(api, world, flags_file)
    comment = "ok\x1b[2J\x1b]0;PWNED\x07\u202edone\x9b"
    async with sessions() as session, session.begin():
        await session.execute(
            update(MigrationMismatch)
            .where(MigrationMismatch.id == uuid.UUID(entry))
            .values(status_comment=comment, status_changed_by="sql\x1b[31m")
        )

    status, out, _ = await clinic_command("ledger", "show", entry)
    json_status, json_out, _ = await clinic_command("ledger", "show", entry, "--json")
    listed_status, listed, _ = await clinic_command("ledger", "list")

    assert (status, json_status, listed_status) == (0, 0, 0)
    for printed in (out, json_out, listed):
        assert not any(ord(c) < 0x20 and c not in "\n\t" for c in printed), repr(printed)
        assert "\x9b" not in printed
        assert "\u202e" not in printed
    assert escaped(comment) in out
    assert "\\u001b[2J\\u001b]0;PWNED\\u0007\\u202edone\\u009b" in out
    assert json.loads(json_out)["status_comment"] == comment
