"""Benchmark: how long the `clinic` command takes to answer.

    .venv/bin/python -m bench.cli [--runs 7]

Runs each command as a user does, a new process every time, in a scratch
directory holding the demo data (``clinic seed``: SQLite and the flags file),
and prints the fastest, the median and the slowest wall-clock time of
``--runs`` runs, the heavy modules a run imported (the app, the schema, alembic,
uvicorn: none, since only the command asked for is imported), and the machine's
load average, which these figures follow closely. The targets (issue 27):
`clinic --help` under 0.3 s, `clinic flags show` under 1 s. `clinic flags show`
cannot go below the import of SQLAlchemy and the Unleash SDK (the "floor" line).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLINIC = str(Path(sys.executable).with_name("clinic"))
COMMANDS = (
    ("clinic --help", ["--help"]),
    ("clinic flags show", ["flags", "show"]),
    ("clinic flags validate", ["flags", "validate"]),
    ("clinic ledger list --first 5", ["ledger", "list", "--first", "5"]),
)
HEAVY = ("strawberry", "alembic", "schema.schema", "server.app", "uvicorn")


def timed(arguments: list[str], directory: Path, environment: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        [CLINIC, *arguments],
        cwd=directory,
        env=environment,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def heavy_imports(arguments: list[str], directory: Path, environment: dict[str, str]) -> list[str]:
    """The heavy modules (the app, the schema, alembic, uvicorn) the command imported."""
    report = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "server.cli", *arguments],
        cwd=directory,
        env=environment | {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    names = {line.rsplit("|", 1)[-1].strip() for line in report.splitlines() if "|" in line}
    return sorted(name for name in names if name in HEAVY)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    options = parser.parse_args()
    floor = [
        sys.executable,
        "-c",
        "import sqlalchemy.orm, sqlalchemy.ext.asyncio, aiosqlite, UnleashClient, httpx",
    ]
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CLINIC_", "UNLEASH_"))
    }
    with tempfile.TemporaryDirectory(prefix="clinic-bench-cli-") as scratch:
        directory = Path(scratch)
        subprocess.run(
            [CLINIC, "seed"], cwd=directory, env=environment, check=True, capture_output=True
        )
        load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
        print(f"{os.cpu_count()} cores, load average {load}")
        print(f"{'command':<34} {'fastest':>8} {'median':>8} {'slowest':>8}  heavy imports")
        runs = []
        for _ in range(options.runs):
            started = time.perf_counter()
            subprocess.run(floor, check=True)
            runs.append(time.perf_counter() - started)
        print(
            f"{'floor: import sqlalchemy, Unleash':<34} {min(runs):>7.3f}s"
            f" {statistics.median(runs):>7.3f}s {max(runs):>7.3f}s"
        )
        for label, arguments in COMMANDS:
            timed(arguments, directory, environment)  # warm the file system cache
            runs = [timed(arguments, directory, environment) for _ in range(options.runs)]
            heavy = ", ".join(heavy_imports(arguments, directory, environment)) or "none"
            print(
                f"{label:<34} {min(runs):>7.3f}s {statistics.median(runs):>7.3f}s"
                f" {max(runs):>7.3f}s  {heavy}"
            )


if __name__ == "__main__":
    main()
