"""Benchmark: one read model statement run through SQLAlchemy and on the driver.

    .venv/bin/python -m bench.read_driver [--executions 300]

On the benchmark's quick database: the hot list's statement (100 rows of the
first clinic, in ``shadow``) and ``appointment(id)``'s, each executed on one
connection through SQLAlchemy's ``AsyncConnection.execute`` (its compiled form
kept, as the read model kept it before run 16) and through
``read_model.driver.DriverStatement`` (what the read model runs now),
alternated. Checks both return the same rows, then prints the process's CPU
time per execution (median and mean): the database's own time is another
process's, so the figure is the Python side alone and moves less with the
machine's load than wall time does.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import uvloop
from graphql import FieldNode, OperationDefinitionNode, parse
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from appointments.layout import Layout
from appointments.queries import AppointmentFilter
from appointments.read_model import rows, runner
from appointments.read_model.driver import DriverStatement
from appointments.read_model.served import stage_parameters
from appointments.read_model.sources import Selection
from appointments.stages import Stage
from bench.graphql import load_fixture
from bench.opcodes import quick_database
from bench.shapes import LIST
from schema.schema import schema
from schema.selection import catalog, collect

Execution = Callable[[], Awaitable[list[Any]]]


def hot_node_selection() -> Selection:
    """The node selection of the hot list, collected as the resolver collects it."""
    operation = parse(LIST).definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    field: Any = operation.selection_set.selections[0]
    for name in ("edges", "node"):
        field = next(
            child
            for child in field.selection_set.selections
            if isinstance(child, FieldNode) and child.name.value == name
        )
    return collect([field], "Appointment", {}, {}, catalog(schema._schema))


async def measure(url: str, executions: int) -> dict[str, dict[str, list[float]]]:
    fixture = load_fixture(url)
    clinic = uuid.UUID(fixture.clinic_id)
    node = hot_node_selection()
    page, _ = rows.page(AppointmentFilter(clinic_id=clinic), 100, None, None)
    sources = {
        "list of 100": page,
        "appointment(id)": rows.by_id(uuid.UUID(fixture.ids[5]), clinic),
    }
    engine = create_async_engine(url, connect_args={"options": "-c TimeZone=UTC"})
    figures: dict[str, dict[str, list[float]]] = {}
    try:
        async with AsyncSession(engine) as session:
            connection = await session.connection()
            for label, source in sources.items():
                key = ("postgresql", node, (Stage.SHADOW,), Layout.EXPANDED, True, source.key)
                statement = runner._shape(key).read.statement
                stages = stage_parameters({clinic: Stage.SHADOW}, (Stage.SHADOW,))
                values = {**source.parameters, **stages}
                kept: dict[Any, Any] = {}
                driver = DriverStatement.of(statement, connection.dialect)

                async def via_sqlalchemy(
                    statement: Any = statement, values: Any = values, kept: Any = kept
                ) -> list[Any]:
                    options = {"compiled_cache": kept}
                    found = await connection.execute(statement, values, execution_options=options)
                    return [tuple(row) for row in found.all()]

                async def via_driver(driver: Any = driver, values: Any = values) -> list[Any]:
                    return [
                        tuple(row) for row in await driver.run(connection.sync_connection, values)
                    ]

                if await via_sqlalchemy() != await via_driver():
                    raise RuntimeError(f"{label}: the two ways return different rows")
                ways: dict[str, Execution] = {"SQLAlchemy": via_sqlalchemy, "driver": via_driver}
                figures[label] = {name: [] for name in ways}
                for _ in range(20):
                    for run in ways.values():
                        await run()
                for _ in range(executions):
                    for name, run in ways.items():
                        started = time.process_time()
                        await run()
                        figures[label][name].append(time.process_time() - started)
    finally:
        await engine.dispose()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.read_driver",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--executions", type=int, default=300, help="of each way, alternated")
    parser.add_argument("--database-url", help="default: the quick benchmark database")
    arguments = parser.parse_args(argv)
    url = arguments.database_url or quick_database()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as running:
        figures = running.run(measure(url, arguments.executions))
    for label, ways in figures.items():
        for name, seconds in ways.items():
            median, mean = statistics.median(seconds), statistics.fmean(seconds)
            print(
                f"{label:<16} {name:<10} CPU ms per execution:"
                f" median {median * 1000:.3f}, mean {mean * 1000:.3f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
