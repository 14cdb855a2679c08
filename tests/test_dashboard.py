"""GET /migration: the server-rendered dashboard, read back as a table, on both databases."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments import directory
from appointments.activity import RECENT, WINDOW_MINUTES
from appointments.events import PendingEvents
from appointments.health import minute_of
from appointments.models import StageActivity
from appointments.seed import seed_demo
from appointments.stages import Stage
from tests.conftest import READ_CLINIC, Api, World, set_stages
from tests.test_backfill import book

REPORT = """
query {
  migrationReport { clinic { id } stage servedStage openMismatches fullyLinked total }
}
"""


@dataclass
class Cell:
    classes: set[str]
    chunks: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.chunks).split())


@dataclass
class Row:
    attrs: dict[str, str]
    cells: list[Cell] = field(default_factory=list)


@dataclass
class Table:
    headers: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)

    def column(self, row: Row, header: str) -> Cell:
        assert len(row.cells) == len(self.headers), row
        return row.cells[self.headers.index(header)]

    def by_attr(self, name: str) -> dict[str, Row]:
        return {row.attrs[name]: row for row in self.rows}


class TableParser(HTMLParser):
    """Every <table id=…>: its header texts and its body rows, cell by cell."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, Table] = {}
        self._table: Table | None = None
        self._in_head = False
        self._row: Row | None = None
        self._cell: Cell | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "table":
            self._table = self.tables.setdefault(values.get("id", ""), Table())
        elif tag == "thead":
            self._in_head = True
        elif tag == "tr" and self._table is not None and not self._in_head:
            self._row = Row(values)
            self._table.rows.append(self._row)
        elif tag in {"td", "th"}:
            self._cell = Cell(set(values.get("class", "").split()))
            if self._row is not None:
                self._row.cells.append(self._cell)
        elif self._cell is not None:
            self._cell.tags.append(tag)
            if tag in {"br", "li"}:
                self._cell.chunks.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        elif tag == "thead":
            self._in_head = False
        elif tag == "tr":
            self._row = None
        elif tag in {"td", "th"}:
            if self._in_head and self._table is not None and self._cell is not None:
                self._table.headers.append(self._cell.text)
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.chunks.append(data)


def parse_tables(page: str) -> dict[str, Table]:
    parser = TableParser()
    parser.feed(page)
    parser.close()
    return parser.tables


async def dashboard(api: Api) -> dict[str, Table]:
    response = await api.client.get("/migration")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    return parse_tables(response.text)


async def graphql_reports(api: Api) -> dict[str, dict[str, Any]]:
    data = await api.data(REPORT)
    return {report["clinic"]["id"]: report for report in data["migrationReport"]}


async def test_each_clinic_has_a_row_with_its_stages_coverage_and_blockers(
    api: Api, world: World, sessions: async_sessionmaker[AsyncSession], flags_file: Path
) -> None:
    await book(sessions, world, Stage.DUAL_WRITE, 6)
    async with sessions() as session, session.begin():
        markup = await directory.create_clinic(session, "<b>x</b>")
    set_stages(flags_file, {world.clinic_a.id: Stage.SHADOW, world.clinic_b.id: Stage.LIVE})
    await api.data(READ_CLINIC, {"clinicId": str(world.clinic_a.id)})

    response = await api.client.get("/migration")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<b>x</b>" not in response.text
    assert "&lt;b&gt;x&lt;/b&gt;" in response.text
    clinics = parse_tables(response.text)["clinics"]
    order = [row.attrs["data-clinic-id"] for row in clinics.rows]
    a, b, odd = str(world.clinic_a.id), str(world.clinic_b.id), str(markup.id)
    assert sorted(order) == sorted([a, b, odd])
    assert order.index(a) < order.index(b)
    rows = clinics.by_attr("data-clinic-id")
    reports = await graphql_reports(api)

    def cell(clinic: str, header: str) -> str:
        return clinics.column(rows[clinic], header).text

    assert cell(a, "Clinic") == f"Clinic A {a}"
    assert (cell(a, "Requested (flag)"), cell(a, "Served")) == ("shadow", "shadow")
    assert cell(a, "Backfill coverage") == "33.3% (2 / 6)"
    assert (cell(a, "Unlinked doctor"), cell(a, "Unlinked patient")) == ("2", "3")
    assert cell(a, "Inconsistent") == "0"
    assert cell(a, "Open mismatches") == str(reports[a]["openMismatches"])
    assert reports[a]["openMismatches"] > 0
    assert cell(a, "Next stage") == "live"
    assert cell(a, "Readiness") == (
        "2 appointments have no clinic doctor link 3 appointments have no clinic patient link"
    )
    assert cell(b, "Clinic") == f"Clinic B {b}"
    assert (cell(b, "Requested (flag)"), cell(b, "Served")) == ("live", "live")
    assert cell(b, "Backfill coverage") == "n/a (0 / 0)"
    assert (cell(b, "Next stage"), cell(b, "Readiness")) == ("rampdown", "ready")
    assert cell(odd, "Clinic") == f"<b>x</b> {odd}"
    assert "b" not in clinics.column(rows[odd], "Clinic").tags
    assert cell(odd, "Requested (flag)") == "dual_write"

    activity = parse_tables(response.text)["activity"]
    assert activity.headers == ["Stage", "Reads", "Writes"]
    by_stage = {row.cells[0].text: row for row in activity.rows}
    assert list(by_stage)[: len(Stage)] == [stage.value for stage in Stage]
    assert list(by_stage)[-1] == "total"
    assert int(activity.column(by_stage["shadow"], "Reads").text) >= 12
    assert int(activity.column(by_stage["dual_write"], "Writes").text) >= 6


class TestReadinessGates:
    @pytest.fixture
    def app_settings(self) -> dict[str, Any]:
        return {"readiness_gates": True}

    async def test_a_gated_clinic_shows_the_lower_served_stage_highlighted(
        self, api: Api, world: World, sessions: async_sessionmaker[AsyncSession], flags_file: Path
    ) -> None:
        await book(sessions, world, Stage.DUAL_WRITE, 6)
        set_stages(flags_file, {world.clinic_a.id: Stage.LIVE, world.clinic_b.id: Stage.LIVE})
        await api.services.refresh_readiness()

        clinics = (await dashboard(api))["clinics"]

        rows = clinics.by_attr("data-clinic-id")
        reports = await graphql_reports(api)
        gated = clinics.column(rows[str(world.clinic_a.id)], "Served")
        assert gated.text == "shadow gated: not live"
        assert "gated" in gated.classes
        assert reports[str(world.clinic_a.id)]["servedStage"] == "SHADOW"
        served = clinics.column(rows[str(world.clinic_b.id)], "Served")
        assert (served.text, "gated" in served.classes) == ("live", False)
        assert clinics.column(rows[str(world.clinic_a.id)], "Requested (flag)").text == "live"


async def test_the_demo_seed_is_not_counted_as_traffic(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """`clinic serve --demo` seeds in the process that serves: its 300 writes are history,
    not activity, neither on the dashboard nor in the Prometheus counters."""

    def writes_counted() -> float:
        return sum(
            sample.value
            for family in REGISTRY.collect()
            for sample in family.samples
            if sample.name == "clinic_appointment_writes_total"
        )

    activity, counted = RECENT.totals(), writes_counted()
    async with sessions() as session, session.begin():
        summary = await seed_demo(session, PendingEvents(), 5)

    assert summary.appointments == 30
    assert RECENT.totals() == activity
    assert writes_counted() == counted


async def test_activity_is_the_whole_fleets_from_the_database(
    api: Api, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """What another instance flushed counts on this one's dashboard; older minutes do not."""
    await api.services.flush_reads()
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        await session.execute(delete(StageActivity))
        session.add_all(
            [
                StageActivity(minute=minute_of(now), kind="read", stage="live", count=1000),
                StageActivity(minute=minute_of(now), kind="write", stage="live", count=7),
                StageActivity(
                    minute=minute_of(now - timedelta(minutes=WINDOW_MINUTES + 1)),
                    kind="read",
                    stage="live",
                    count=5000,
                ),
            ]
        )

    activity = (await dashboard(api))["activity"]

    by_stage = {row.cells[0].text: row for row in activity.rows}
    assert activity.column(by_stage["live"], "Reads").text == "1000"
    assert activity.column(by_stage["live"], "Writes").text == "7"
    assert activity.column(by_stage["total"], "Reads").text == "1000"
