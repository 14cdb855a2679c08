"""`clinic ledger list|show|set-status`: the GraphQL ledger's filters and rules, from a terminal."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.stages import Stage
from tests.conftest import READ_CLINIC, Api, Mess, World, ledger_rows, set_stages

OPEN_IN_CLINIC = """
query($clinic: ID) {
  migrationMismatches(filter: {clinicId: $clinic, status: OPEN}, first: 100) {
    edges { node { id field } }
  }
}
"""


@pytest.fixture
async def open_entries(api: Api, world: World, mess: Mess, flags_file: Path) -> list[str]:
    """The ledger after a shadow read of clinic A's messy rows: GraphQL's open entries."""
    set_stages(flags_file, {world.clinic_a.id: Stage.SHADOW})
    await api.data(READ_CLINIC, {"clinicId": str(world.clinic_a.id)})
    data = await api.data(OPEN_IN_CLINIC, {"clinic": str(world.clinic_a.id)})
    return [edge["node"]["id"] for edge in data["migrationMismatches"]["edges"]]


async def test_list_answers_what_the_graphql_ledger_answers_page_by_page(
    clinic_command: Any, open_entries: list[str], world: World
) -> None:
    clinic = str(world.clinic_a.id)
    status, out, _ = await clinic_command(
        "ledger", "list", "--clinic", clinic, "--status", "open", "--json"
    )
    first_status, first_out, _ = await clinic_command(
        "ledger", "list", "--clinic", clinic, "--status", "open", "--first", "1", "--json"
    )
    first_page = json.loads(first_out)
    rest_status, rest_out, _ = await clinic_command(
        "ledger",
        "list",
        "--status",
        "open",
        "--clinic",
        clinic,
        "--after",
        first_page["endCursor"],
        "--json",
    )
    by_field, _, _ = await clinic_command("ledger", "list", "--field", "patient_clinic", "--json")

    assert (status, first_status, rest_status) == (0, 0, 0)
    assert len(open_entries) >= 3
    assert [entry["id"] for entry in json.loads(out)["entries"]] == open_entries
    assert first_page["hasNextPage"] is True
    paged = [entry["id"] for entry in first_page["entries"] + json.loads(rest_out)["entries"]]
    assert paged == open_entries
    assert by_field == 0


async def test_list_refuses_what_graphql_refuses(clinic_command: Any) -> None:
    too_many = await clinic_command("ledger", "list", "--first", "101")
    bad_cursor = await clinic_command("ledger", "list", "--after", "not-a-cursor")

    assert too_many[0] == 1
    assert "first must be between 0 and 100" in too_many[2]
    assert bad_cursor[0] == 1


async def test_a_bad_filter_is_refused_as_the_guide_says(clinic_command: Any) -> None:
    field = await clinic_command("ledger", "list", "--field", "nonsense")
    status = await clinic_command("ledger", "list", "--status", "closed")

    assert field[0] == 1
    assert field[2].startswith("error: --field 'nonsense' is not one of: doctor, patient,")
    assert status[0] == 1
    assert status[2] == "error: --status 'closed' is not one of: open, ignored, fixed\n"


async def test_first_zero_says_more_exist_without_a_cursor(
    clinic_command: Any, open_entries: list[str]
) -> None:
    status, out, _ = await clinic_command("ledger", "list", "--first", "0")

    assert status == 0
    assert out == "0 entries; more with --first 1 or more\n"


async def test_show_and_set_status_triage_an_entry_saying_who_and_why(
    clinic_command: Any, open_entries: list[str], sessions: async_sessionmaker[AsyncSession]
) -> None:
    entry = open_entries[0]
    shown_status, shown, _ = await clinic_command("ledger", "show", entry, "--json")
    triaged = await clinic_command(
        "ledger", "set-status", entry, "ignored", "--comment", " test data ", "--actor", "qa-bob"
    )

    assert shown_status == 0
    assert json.loads(shown)["status"] == "open"
    assert triaged[0] == 0
    rows = {str(row.id): row for row in (await ledger_rows(sessions)).values()}
    row = rows[entry]
    assert (row.status, row.status_changed_by, row.status_comment) == (
        "ignored",
        "qa-bob",
        "test data",
    )


async def test_set_status_refuses_an_unknown_entry_and_a_long_comment_and_changes_nothing(
    clinic_command: Any, open_entries: list[str], sessions: async_sessionmaker[AsyncSession]
) -> None:
    before = {key: row.status for key, row in (await ledger_rows(sessions)).items()}
    unknown = await clinic_command("ledger", "set-status", str(uuid.uuid4()), "fixed")
    too_long = await clinic_command(
        "ledger", "set-status", open_entries[0], "fixed", "--comment", "x" * 2001
    )
    missing = await clinic_command("ledger", "show", str(uuid.uuid4()))

    assert (unknown[0], missing[0]) == (2, 2)
    assert "no mismatch has this id" in unknown[2]
    assert too_long[0] == 1
    assert "at most 2000 characters" in too_long[2]
    assert {key: row.status for key, row in (await ledger_rows(sessions)).items()} == before
