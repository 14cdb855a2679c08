"""What `clinic serve` checks before it starts the workers: that the database can be
opened. A missing database, a missing role or a server that cannot be reached is
said in one line, naming the database and what to do, instead of a traceback from
every worker's start-up."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import make_url
from sqlalchemy.engine import URL

from server.settings import Settings

EXIT_CANNOT_START = 3
CONNECT_TIMEOUT_SECONDS = 10
GUIDE = "docs/operations.md#from-zero-to-a-running-service"


class StartupError(Exception):
    pass


def check_startup(settings: Settings) -> None:
    """Raise ``StartupError`` with one line when the database cannot be opened."""
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        _check_sqlite(url)
    elif url.get_backend_name() == "postgresql":
        _check_postgresql(url)


def _check_sqlite(url: URL) -> None:
    database = url.database
    if not database or database == ":memory:":
        return
    path = Path(database)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        sqlite3.connect(path).close()
    except (OSError, sqlite3.Error) as error:
        raise StartupError(
            f"cannot open the SQLite database {path} ({error}): make its directory writable"
            f" or set CLINIC_DATABASE_URL (see {GUIDE})"
        ) from error


def _check_postgresql(url: URL) -> None:
    import psycopg

    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    name, role = url.database or "(none)", url.username or "(the login user)"
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        psycopg.connect(conninfo, connect_timeout=CONNECT_TIMEOUT_SECONDS).close()
    except psycopg.OperationalError as error:
        problem = str(error).strip().splitlines()[-1] if str(error).strip() else repr(error)
        if f'database "{name}" does not exist' in problem:
            fix = f"create it: createdb -h {url.host or 'localhost'} -O {role} {name}"
            raise StartupError(
                f'database "{name}" does not exist on {where}: {fix} (see {GUIDE})'
            ) from error
        if f'role "{role}" does not exist' in problem:
            raise StartupError(
                f'role "{role}" does not exist on {where} (database "{name}"): create it:'
                f" createuser -h {url.host or 'localhost'} {role} (see {GUIDE})"
            ) from error
        raise StartupError(
            f'cannot reach database "{name}" on {where} as {role}: {problem}; start PostgreSQL'
            f" there or set CLINIC_DATABASE_URL (see {GUIDE})"
        ) from error
