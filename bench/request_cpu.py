"""Benchmark: the service's CPU time per request, in process, for the cheap shapes.

    .venv/bin/python -m bench.request_cpu [--shapes one,list,typename] [--requests 1000]
    .venv/bin/python -m bench.request_cpu --shapes one --profile var/bench/one.prof

The app is started in process on the benchmark's quick database (as
``bench.opcodes`` does: 20,000 consistent appointments, the first clinic in
``shadow`` through a flags file, an admin's token), each shape is sent 50 times to
warm the caches, then ``--requests`` times one after another, on uvloop as the
service runs. Prints the process's CPU time per request for each shape. The
figure includes httpx's in-process transport (about a quarter of a millisecond),
the same for every version compared: run the old and the new code alternately and
compare medians. ``--profile`` writes a cProfile of the last shape's counted
requests (read it with ``python -m pstats``).

Shapes: ``one`` is ``appointment(id)`` with both field sets (``bench.shapes.SINGLE``),
``list`` the hot list
(100 rows, both field sets, ``bench.opcodes.HOT_QUERY``), ``typename`` is
``{ __typename }``, ``across`` the first 100 appointments of every clinic (no
clinic filter), the other clinics in every stage in turn (``bench.graphql.set_stage``).
"""

from __future__ import annotations

import argparse
import cProfile
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from appointments.stages import Stage
from bench.graphql import Fixture, load_fixture
from bench.opcodes import HOT_QUERY, admin_client, quick_database
from bench.shapes import ACROSS, SINGLE

WARM_UP = 50


def payload(shape: str, fixture: Fixture) -> dict[str, Any]:
    if shape == "one":
        return {"query": SINGLE, "variables": {"id": fixture.ids[0]}}
    if shape == "list":
        return {"query": HOT_QUERY, "variables": {"clinicId": fixture.clinic_id}}
    if shape == "typename":
        return {"query": "{ __typename }"}
    if shape == "across":
        return {"query": ACROSS, "variables": {"first": 100}}
    raise SystemExit(f"unknown shape {shape!r}: one, list, across or typename")


async def measure(
    url: str, fixture: Fixture, shapes: list[str], requests: int, profile: Path | None
) -> None:
    flags = Path(tempfile.mkdtemp()) / "flags.json"
    async with admin_client(
        url, flags, fixture.clinic_id, Stage.SHADOW, fixture.other_clinics
    ) as client:
        for shape in shapes:
            body = payload(shape, fixture)
            for _ in range(WARM_UP):
                answer = (await client.post("/graphql", json=body)).json()
                if "errors" in answer:
                    raise SystemExit(f"{shape} failed: {answer['errors']}")
            profiler = cProfile.Profile() if profile and shape == shapes[-1] else None
            started = time.process_time()
            if profiler is not None:
                profiler.enable()
            for _ in range(requests):
                await client.post("/graphql", json=body)
            if profiler is not None:
                profiler.disable()
            spent = time.process_time() - started
            print(f"{shape}: {spent / requests * 1000:.3f} ms CPU per request", flush=True)
            if profiler is not None and profile is not None:
                profile.parent.mkdir(parents=True, exist_ok=True)
                profiler.dump_stats(profile)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.request_cpu",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--shapes", default="one,list,typename")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--profile", type=Path, help="write a cProfile of the last shape here")
    options = parser.parse_args(argv)
    url = quick_database()
    fixture = load_fixture(url)
    shapes = [shape.strip() for shape in options.shapes.split(",") if shape.strip()]
    uvloop.run(measure(url, fixture, shapes, options.requests, options.profile))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
