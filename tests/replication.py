"""A PostgreSQL primary and a streaming hot standby of their own, for the replica tests and
the replica benchmark.

The machine's PostgreSQL binaries (``initdb``, ``pg_ctl``, ``pg_basebackup -R``) make
both clusters in a temporary directory, on free loopback ports, trust authentication
for the ``postgres`` role; the shared server on 5432 is never touched. PostgreSQL
refuses to run as root: as root the clusters run as the ``postgres`` system user,
which owns the directory. Every wait is for an event (``pg_ctl -w``, a replayed WAL
position), each bounded.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

WAIT_SECONDS = 60.0
POLL_SECONDS = 0.02
# Small and unsafe on a crash, which a throwaway test cluster does not mind.
SETTINGS = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{sockets}'
shared_buffers = 16MB
max_connections = 60
fsync = off
full_page_writes = off
wal_level = replica
max_wal_senders = 4
hot_standby = on
hot_standby_feedback = on
wal_receiver_status_interval = 1s
"""


class ClusterStartError(RuntimeError):
    """The machine cannot start the clusters (no binaries, or one failed to start)."""


def postgres_binaries() -> Path:
    """The directory of the newest installed PostgreSQL's server binaries."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if not found:
        on_path = shutil.which("pg_ctl")
        if on_path is None:
            raise ClusterStartError("no PostgreSQL server binaries (pg_ctl) on this machine")
        return Path(on_path).parent
    return found[-1].parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def lsn_number(lsn: str) -> int:
    """A WAL position (``16/B374D848``) as a number."""
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


@dataclass
class ReplicatedCluster:
    """A primary and a standby streaming from it; ``*_url`` are SQLAlchemy URLs of
    ``database`` on each."""

    directory: Path
    primary_port: int
    standby_port: int
    database: str = "clinic"

    def url(self, port: int, database: str | None = None) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{port}/{database or self.database}"

    @property
    def primary_url(self) -> str:
        return self.url(self.primary_port)

    @property
    def standby_url(self) -> str:
        return self.url(self.standby_port)

    def connect(self, port: int) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host="127.0.0.1",
            port=port,
            user="postgres",
            dbname=self.database,
            autocommit=True,
            connect_timeout=5,
        )

    def primary_lsn(self) -> str:
        """A WAL position the standby reaches now: the end of a record written for it (the
        insert position of an idle primary can lie past a page header that no replay
        reaches until the next record)."""
        with self.connect(self.primary_port) as connection:
            row = connection.execute(
                "SELECT pg_logical_emit_message(false, 'clinic-test', '')::text"
            ).fetchone()
        assert row is not None
        return str(row[0])

    def wait_replayed(self, lsn: str | None = None) -> None:
        """Until the standby has replayed the primary's WAL up to ``lsn`` (default: now)."""
        self._wait_for("pg_last_wal_replay_lsn()", lsn)

    def wait_received(self, lsn: str | None = None) -> None:
        """Until the standby has received the primary's WAL up to ``lsn`` (replayed or not)."""
        self._wait_for("pg_last_wal_receive_lsn()", lsn)

    def _wait_for(self, position: str, lsn: str | None) -> None:
        target = lsn_number(lsn or self.primary_lsn())
        deadline = time.monotonic() + WAIT_SECONDS
        with self.connect(self.standby_port) as connection:
            while True:
                row = connection.execute(f"SELECT {position}::text").fetchone()
                if row is not None and row[0] is not None and lsn_number(str(row[0])) >= target:
                    return
                if time.monotonic() > deadline:
                    raise ClusterStartError(f"the standby did not reach {lsn} ({position})")
                time.sleep(POLL_SECONDS)

    def pause_replay(self) -> None:
        with self.connect(self.standby_port) as connection:
            connection.execute("SELECT pg_wal_replay_pause()")
            deadline = time.monotonic() + WAIT_SECONDS
            while True:
                row = connection.execute("SELECT pg_get_wal_replay_pause_state()").fetchone()
                if row is not None and row[0] == "paused":
                    return
                if time.monotonic() > deadline:
                    raise ClusterStartError("the standby's replay did not pause")
                time.sleep(POLL_SECONDS)

    def resume_replay(self) -> None:
        with self.connect(self.standby_port) as connection:
            connection.execute("SELECT pg_wal_replay_resume()")


class ClusterRunner:
    """Runs the PostgreSQL commands, as the ``postgres`` user when this process is root."""

    def __init__(self, binaries: Path) -> None:
        self.binaries = binaries
        self.as_postgres = os.geteuid() == 0

    def prefix(self) -> list[str]:
        return ["runuser", "-u", "postgres", "--"] if self.as_postgres else []

    def run(self, program: str, *arguments: str) -> None:
        command = [*self.prefix(), str(self.binaries / program), *arguments]
        done = subprocess.run(command, capture_output=True, text=True, timeout=WAIT_SECONDS)
        if done.returncode != 0:
            raise ClusterStartError(
                f"{program} failed ({done.returncode}): {done.stderr.strip()[-2000:]}"
            )

    def own(self, path: Path) -> None:
        if self.as_postgres:
            account = pwd.getpwnam("postgres")
            os.chown(path, account.pw_uid, account.pw_gid)

    def append(self, path: Path, text: str) -> None:
        with path.open("a") as settings:
            settings.write(text)


def start_cluster(database: str = "clinic") -> ReplicatedCluster:
    """Make and start a primary and a standby, with ``database`` created on the primary and
    replayed on the standby. Raises ``ClusterStartError`` (the clusters stopped and
    removed) when they cannot be started."""
    runner = ClusterRunner(postgres_binaries())
    directory = Path(tempfile.mkdtemp(prefix="clinic-replicas-"))
    os.chmod(directory, 0o755)
    runner.own(directory)
    cluster = ReplicatedCluster(directory, free_port(), free_port(), database)
    try:
        _start(runner, cluster)
    except BaseException:
        stop_cluster(cluster)
        raise
    return cluster


def _start(runner: ClusterRunner, cluster: ReplicatedCluster) -> None:
    primary, standby = cluster.directory / "primary", cluster.directory / "standby"
    runner.run(
        "initdb", "-D", str(primary), "-U", "postgres", "--auth=trust", "--no-sync",
        "-E", "UTF8", "--locale=C",
    )  # fmt: skip
    runner.append(
        primary / "postgresql.conf",
        SETTINGS.format(port=cluster.primary_port, sockets=cluster.directory),
    )
    runner.run("pg_ctl", "-D", str(primary), "-l", str(cluster.directory / "primary.log"),
               "-w", "-t", str(int(WAIT_SECONDS)), "start")  # fmt: skip
    with psycopg.connect(
        host="127.0.0.1", port=cluster.primary_port, user="postgres", dbname="postgres",
        autocommit=True, connect_timeout=5,
    ) as connection:  # fmt: skip
        connection.execute(f'CREATE DATABASE "{cluster.database}"')
    runner.run(
        "pg_basebackup", "-h", "127.0.0.1", "-p", str(cluster.primary_port), "-U", "postgres",
        "-D", str(standby), "-R", "-X", "stream", "--checkpoint=fast", "--no-sync",
    )  # fmt: skip
    runner.append(
        standby / "postgresql.conf",
        SETTINGS.format(port=cluster.standby_port, sockets=cluster.directory),
    )
    runner.run("pg_ctl", "-D", str(standby), "-l", str(cluster.directory / "standby.log"),
               "-w", "-t", str(int(WAIT_SECONDS)), "start")  # fmt: skip
    cluster.wait_replayed()


def stop_cluster(cluster: ReplicatedCluster) -> None:
    """Stop both servers (immediately: nothing in them is kept) and remove the directory."""
    runner = ClusterRunner(postgres_binaries())
    for name in ("standby", "primary"):
        data = cluster.directory / name
        if (data / "postmaster.pid").exists():
            with contextlib.suppress(ClusterStartError, subprocess.TimeoutExpired):
                runner.run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
    shutil.rmtree(cluster.directory, ignore_errors=True)


@contextlib.contextmanager
def replicated_cluster(database: str = "clinic") -> Iterator[ReplicatedCluster]:
    cluster = start_cluster(database)
    try:
        yield cluster
    finally:
        stop_cluster(cluster)
