"""Benchmark: one worker's memory while it serves many distinct documents.

    .venv/bin/python -m bench.memory [--documents 10000] [--database-url URL]

Starts the service as in production (uvicorn, one worker, ``CLINIC_PRODUCTION=true``,
a JWT secret made for this run) on the demo data (``clinic seed`` into a temporary
SQLite file, or into ``--database-url``), then sends, as the demo doctor, ``--documents``
distinct documents: appointment reads differing by aliases and by the fields they
select, as an attacker sweeping the caches would. Prints the worker's resident set
size (``VmRSS``) before, every tenth of the way, and after, then the same for one
document sent ``--repeats`` times. The budget is 200 MB per worker (see the operations
guide); it asserts nothing and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.graphql import free_port

BUDGET_MB = 200
APPOINTMENT_LEAVES = ("id", "startsAt", "endsAt", "status", "createdAt", "updatedAt")
OBJECTS = {
    "doctor": ("id", "name", "email", "role", "active"),
    "patient": ("id", "fullName", "dateOfBirth"),
    "clinic": ("id", "name"),
    "clinicDoctor": ("id", "active"),
    "clinicPatient": ("id",),
}


def document(generator: random.Random, number: int) -> str:
    """An appointment list read with its own aliases and its own choice of fields."""
    fields: list[str] = []
    for leaf in generator.sample(APPOINTMENT_LEAVES, generator.randint(1, 4)):
        alias = f"f{generator.randrange(10_000)}"
        fields.append(f"{alias}: {leaf}")
    for name in generator.sample(sorted(OBJECTS), generator.randint(1, 4)):
        chosen = generator.sample(OBJECTS[name], generator.randint(1, len(OBJECTS[name])))
        fields.append(f"{name} {{ {' '.join(chosen)} }}")
    first = generator.randint(1, 20)
    return (
        f"query Sweep{number} {{ a{number}: appointments(first: {first}) "
        f"{{ edges {{ node {{ {' '.join(fields)} }} }} }} }}"
    )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def clinic(environment: dict[str, str], *arguments: str) -> str:
    command = [str(Path(sys.executable).with_name("clinic")), *arguments]
    done = subprocess.run(  # noqa: S603 - our own console script
        command, env=environment, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


async def send_all(
    base: str, token: str, documents: list[str], pid: int, concurrency: int
) -> tuple[list[tuple[int, float]], int]:
    marks: list[tuple[int, float]] = []
    failures = 0
    step = max(1, len(documents) // 10)
    headers = {"Authorization": f"Bearer {token}"}
    queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
    for item in enumerate(documents, 1):
        queue.put_nowait(item)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal failures
        while not queue.empty():
            number, text = queue.get_nowait()
            response = await client.post("/graphql", json={"query": text}, headers=headers)
            if response.status_code != 200 or "errors" in response.json():
                failures += 1
            if number % step == 0:
                marks.append((number, rss_mb(pid)))

    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return sorted(marks), failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--database-url", help="default: a temporary SQLite file")
    parser.add_argument("--seed", type=int, default=24)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        environment = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("CLINIC_", "UNLEASH_"))},
            "CLINIC_DATABASE_URL": arguments.database_url
            or f"sqlite+aiosqlite:///{directory}/clinic.sqlite3",
            "CLINIC_FLAGS_FILE": f"{directory}/flags.json",
            "CLINIC_PRODUCTION": "true",
            "CLINIC_JWT_SECRET": secrets.token_urlsafe(32),
            "CLINIC_GRAPHIQL": "false",
            "CLINIC_LOG_LEVEL": "WARNING",
        }
        clinic(environment, "seed")
        token = clinic(environment, "token", "--demo", "doctor")
        port = free_port()
        command = [sys.executable, "-m", "uvicorn", "server.app:create_app", "--factory"]
        command += ["--port", str(port), "--loop", "uvloop", "--http", "httptools"]
        server = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command, env=environment, stderr=subprocess.DEVNULL
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    print("the service did not become ready", file=sys.stderr)
                    return 2
                time.sleep(0.2)
            generator = random.Random(arguments.seed)  # noqa: S311 - a workload, not a secret
            warm = [document(generator, 0)] * 50
            asyncio.run(send_all(base, token, warm, server.pid, 1))
            started = rss_mb(server.pid)
            documents = [document(generator, n) for n in range(1, arguments.documents + 1)]
            assert len(set(documents)) == len(documents)
            began = time.perf_counter()
            marks, failures = asyncio.run(
                send_all(base, token, documents, server.pid, arguments.concurrency)
            )
            seconds = time.perf_counter() - began
            repeated = [documents[0]] * arguments.repeats
            after_distinct = rss_mb(server.pid)
            asyncio.run(send_all(base, token, repeated, server.pid, arguments.concurrency))
            after_repeats = rss_mb(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"one worker, {arguments.documents:,} distinct documents as the demo doctor")
    print(f"{'documents':>10} {'RSS MB':>8}")
    print(f"{0:>10} {started:>8.1f}")
    for number, rss in marks:
        print(f"{number:>10,} {rss:>8.1f}")
    print(f"distinct documents: {failures} answered with errors, {seconds:.1f} s")
    print(f"after {arguments.repeats:,} repeats of one document: {after_repeats:.1f} MB")
    verdict = "holds" if max(after_distinct, after_repeats) <= BUDGET_MB else "MISSES"
    peak = max(after_distinct, after_repeats)
    print(f"budget {BUDGET_MB} MB per worker: {peak:.1f} MB, {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
