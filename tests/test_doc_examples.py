"""Every GraphQL example in README.md and docs/*.md runs against the demo data, as shown.

The convention (docs/README.md says it for writers):

- a ```` ```graphql ```` block holds one operation (fragments allowed), nothing else;
- a ```` ```json variables ```` block after it gives its variables, and a
  ```` ```json headers ```` block its extra HTTP headers (e.g. ``Idempotency-Key``);
- a ```` ```json answer ```` block after it is its answer: each top-level member it
  shows (``data``, ``errors``, ``extensions``) must equal the response's, where the
  string ``"..."`` stands for any one value (an id drawn at write time, a moment,
  which lies around the day the demo was seeded);
- without an answer block, the example must answer without ``errors``.

A labelled block belongs to the nearest ``graphql`` block before it. The examples of
one document run in order, as a reader would send them from GraphiQL, against fresh
demo data (``clinic seed``: ``appointments.seed.seed_demo`` and the demo flags
file), on SQLite and on PostgreSQL, through the real app in dev mode (an anonymous
request from this machine is the demo admin).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psycopg
import pytest
import pytest_asyncio
from graphql import OperationDefinitionNode, parse
from sqlalchemy import make_url

import migrations
from appointments.db import create_engine, create_session_factory
from appointments.events import PendingEvents
from appointments.seed import DEMO_ROLLOUT, demo_clinic_stages, seed_demo
from flags.document import build_document, write_document
from tests.conftest import DEFAULT_POSTGRES_URL, open_api, unavailable

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
WILDCARD = "..."
FENCE = re.compile(r"^```(\S*)(?:[ \t]+(\S+))?[ \t]*$")
LABELS = {"variables", "headers", "answer"}


SHELL_LABELS = {None, "sqlite", "postgresql", "not-run"}
NOT_RUN_REASON = "# not run by the doc tests: "


@dataclass
class Example:
    where: str
    query: str
    variables: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    answer: dict[str, Any] | None = None


@dataclass
class Shell:
    """A ```` ```sh ```` block: run on both databases, on one (``label`` ``sqlite`` or
    ``postgresql``), or not at all (``not-run``, its first line saying why)."""

    where: str
    script: str
    label: str | None

    def runs_on(self, database: str) -> bool:
        return self.label is None or self.label == database


def examples_in(path: Path) -> list[Example]:
    """The document's GraphQL examples, each with its labelled blocks."""
    return [step for step in steps_in(path) if isinstance(step, Example)]


def steps_in(path: Path) -> list[Example | Shell]:
    """The document's GraphQL examples and shell blocks, in order."""
    steps: list[Example | Shell] = []
    examples: list[Example] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    number = 0
    while number < len(lines):
        opening = FENCE.match(lines[number])
        number += 1
        if opening is None or not opening.group(1):
            continue
        start = number
        while number < len(lines) and lines[number].strip() != "```":
            number += 1
        body = "\n".join(lines[start:number])
        number += 1
        language, label = opening.group(1), opening.group(2)
        where = f"{path.relative_to(ROOT)}:{start}"
        if language == "graphql":
            examples.append(Example(where, body))
            steps.append(examples[-1])
        elif language == "sh":
            assert label in SHELL_LABELS, f"{where}: unknown shell block label {label!r}"
            if label == "not-run":
                assert body.startswith(NOT_RUN_REASON), f"{where}: say why it is not run"
            steps.append(Shell(where, body, label))
        elif language == "json" and label in LABELS:
            assert examples, f"{where}: a json {label} block with no graphql block before it"
            value = json.loads(body)
            if label == "answer":
                examples[-1].answer = value
            else:
                setattr(examples[-1], label, value)
    return steps


def difference(expected: Any, actual: Any, path: str = "") -> str | None:
    """Where ``actual`` differs from ``expected`` (``"..."`` matching anything), or None."""
    if expected == WILDCARD:
        return None
    if isinstance(expected, dict):
        if not isinstance(actual, dict) or expected.keys() != actual.keys():
            shown = sorted(actual) if isinstance(actual, dict) else actual
            return f"{path or 'answer'}: expected members {sorted(expected)}, got {shown}"
        for key, value in expected.items():
            found = difference(value, actual[key], f"{path}.{key}" if path else key)
            if found is not None:
                return found
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(expected) != len(actual):
            return f"{path}: expected {len(expected)} items, got {actual!r}"
        for index, (wanted, got) in enumerate(zip(expected, actual, strict=True)):
            found = difference(wanted, got, f"{path}[{index}]")
            if found is not None:
                return found
        return None
    return None if expected == actual else f"{path}: expected {expected!r}, got {actual!r}"


def problem_with(example: Example, body: dict[str, Any]) -> str | None:
    if "errors" in body and (example.answer is None or "errors" not in example.answer):
        return f"answered with errors: {body['errors']}"
    if example.answer is None:
        return None
    shown = {key: body.get(key) for key in example.answer}
    return difference(example.answer, shown)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def demo_databases(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DemoDatabases]:
    """Seeds the demo once per database kind; hands out fresh copies of it."""
    directory = tmp_path_factory.mktemp("docs")
    if request.param == "sqlite":
        databases: DemoDatabases = SqliteCopies(directory)
    else:
        databases = PostgresCopies(os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    try:
        databases.seed()
        yield databases
    finally:
        databases.close()


class DemoDatabases(Protocol):
    def seed(self) -> None:
        """Create the template and load the demo into it."""

    def copy(self) -> str:
        """The URL of a new database holding the template's data."""

    def close(self) -> None:
        """Drop what was created."""


async def seed(url: str) -> None:
    engine = create_engine(url)
    try:
        await migrations.upgrade(engine)
        async with create_session_factory(engine)() as session, session.begin():
            await seed_demo(session, PendingEvents())
    finally:
        await engine.dispose()


class SqliteCopies:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.template = directory / "demo.sqlite3"

    def seed(self) -> None:
        asyncio.run(seed(f"sqlite+aiosqlite:///{self.template}"))

    def copy(self) -> str:
        copied = self.directory / f"{uuid.uuid4().hex}.sqlite3"
        shutil.copyfile(self.template, copied)
        return f"sqlite+aiosqlite:///{copied}"

    def close(self) -> None:
        return


class PostgresCopies:
    """A seeded template database; each copy is ``CREATE DATABASE ... TEMPLATE`` of it."""

    def __init__(self, base_url: str) -> None:
        self.url = make_url(base_url)
        self.admin = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.template = f"clinic_docs_{uuid.uuid4().hex[:10]}"
        self.created: list[str] = []

    def _execute(self, statement: str) -> None:
        with psycopg.connect(self.admin, autocommit=True, connect_timeout=5) as connection:
            connection.execute(statement)

    def seed(self) -> None:
        try:
            self._execute(f'CREATE DATABASE "{self.template}"')
        except psycopg.OperationalError as error:
            unavailable(f"PostgreSQL is unreachable: {error}")
        self.created.append(self.template)
        url = self.url.set(database=self.template).render_as_string(hide_password=False)
        asyncio.run(seed(url))

    def copy(self) -> str:
        name = f"{self.template}_{len(self.created)}"
        self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        self.created.append(name)
        return self.url.set(database=name).render_as_string(hide_password=False)

    def close(self) -> None:
        for name in reversed(self.created):
            self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest_asyncio.fixture
async def demo_url(demo_databases: DemoDatabases) -> AsyncIterator[str]:
    yield demo_databases.copy()


def test_every_document_states_its_examples_by_the_convention() -> None:
    examples = [example for path in DOCUMENTS for example in examples_in(path)]

    assert len(examples) >= 20
    for example in examples:
        document = parse(example.query)
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        assert len(operations) == 1, f"{example.where}: one operation per graphql block"


LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#+\s+(.*)$", re.MULTILINE)
CODE_BLOCK = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def anchor_of(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_readme_is_short_and_every_link_resolves_inside_the_repository() -> None:
    texts = {path: CODE_BLOCK.sub("", path.read_text(encoding="utf-8")) for path in DOCUMENTS}
    anchors = {path: {anchor_of(h) for h in HEADING.findall(text)} for path, text in texts.items()}
    broken = []
    for path, text in texts.items():
        assert "../shared" not in path.read_text(encoding="utf-8"), path
        for link in LINK.findall(text):
            if link.startswith(("http://", "https://")):
                continue
            target_name, _, anchor = link.partition("#")
            target = (path.parent / target_name).resolve() if target_name else path
            if not target.is_relative_to(ROOT) or not target.exists():
                broken.append(f"{path.name}: {link}")
            elif anchor and anchor not in anchors.get(target, set()):
                broken.append(f"{path.name}: {link} (no such heading)")

    assert broken == []
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 250


def test_every_shell_block_runs_or_says_why_not() -> None:
    blocks = [step for path in DOCUMENTS for step in steps_in(path) if isinstance(step, Shell)]

    assert len([block for block in blocks if block.label != "not-run"]) >= 5
    assert all(
        block.script.startswith(NOT_RUN_REASON) == (block.label == "not-run") for block in blocks
    )


def shell_environment(demo_url: str, flags_file: Path) -> dict[str, str]:
    """What a reader's terminal has: the demo database and flags file as the examples use
    them; on PostgreSQL, the server's address and scratch names for a role and database."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CLINIC_", "UNLEASH_", "PG"))
    }
    environment |= {
        "CLINIC_DATABASE_URL": demo_url,
        "CLINIC_FLAGS_FILE": str(flags_file),
        "CLINIC_LOG_FORMAT": "text",
    }
    url = make_url(demo_url)
    if url.get_backend_name() == "postgresql":
        scratch = uuid.uuid4().hex[:10]
        environment |= {
            "PGHOST": url.host or "127.0.0.1",
            "PGPORT": str(url.port or 5432),
            "PGUSER": url.username or "postgres",
            "ROLE": f"clinic_docs_role_{scratch}",
            "DATABASE": f"clinic_docs_zero_{scratch}",
        }
    return environment


def run_shell(block: Shell, directory: Path, environment: dict[str, str]) -> str | None:
    finished = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + block.script],
        cwd=directory,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if finished.returncode == 0:
        return None
    return f"exit {finished.returncode}\n{finished.stdout[-2000:]}\n{finished.stderr[-3000:]}"


def drop_scratch_role(demo_url: str, environment: dict[str, str]) -> None:
    if "ROLE" not in environment:
        return
    admin = make_url(demo_url).set(drivername="postgresql", database="postgres")
    with psycopg.connect(
        admin.render_as_string(hide_password=False), autocommit=True, connect_timeout=5
    ) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{environment["DATABASE"]}" WITH (FORCE)')
        connection.execute(f'DROP ROLE IF EXISTS "{environment["ROLE"]}"')


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda path: path.name)
async def test_the_documents_examples_answer_as_shown_on_the_demo_data(
    path: Path, demo_url: str, tmp_path: Path
) -> None:
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    flags_file = tmp_path / "var" / "flags.json"
    flags_file.parent.mkdir()
    write_document(flags_file, build_document(demo_clinic_stages(), [DEMO_ROLLOUT]))
    database = make_url(demo_url).get_backend_name()
    environment = shell_environment(demo_url, flags_file)
    problems: list[str] = []
    async with open_api(demo_url, flags_file) as api:
        for example in steps_in(path):
            if isinstance(example, Shell):
                if not example.runs_on(database):
                    continue
                try:
                    failed = await asyncio.to_thread(run_shell, example, tmp_path, environment)
                finally:
                    await asyncio.to_thread(drop_scratch_role, demo_url, environment)
                if failed is not None:
                    problems.append(f"{example.where}: {failed}")
                continue
            response = await api.client.post(
                "/graphql",
                json={"query": example.query, "variables": example.variables},
                headers=example.headers,
            )
            if response.status_code != 200:
                problems.append(f"{example.where}: HTTP {response.status_code} {response.text}")
                continue
            problem = problem_with(example, response.json())
            if problem is not None:
                problems.append(f"{example.where}: {problem}")

    assert problems == []
