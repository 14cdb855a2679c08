"""Benchmark: what one migration flag evaluation costs, warm and once per request.

    .venv/bin/python -m bench.flag_cost [--clinics 50] [--calls 2000]
    .venv/bin/python -m bench.flag_cost --pins 10 2000

A request evaluates the flag once per clinic (``flags.stages.StageResolver``),
between a few hundred thousand bytecodes of other work, so the evaluation runs
with cold processor caches. A loop that evaluates again and again measures it
warm, which is not what a request pays. This prints both, layer by layer:

- ``StageResolver`` (a new one per call, as per request): the context, the
  source, the Prometheus counter and the evaluation-time histogram;
- ``LocalFileFlagSource.variant``: the file's ``stat`` and the SDK's evaluation
  (through the flag memo, ``flags.memo``);
- ``UnleashClient.get_variant``: the SDK alone;
- ``os.stat`` of the flags file: what the local file source adds to it.

"Warm" is the mean of ``--calls`` calls in a row; "once per request" is the mean
of calls each made after touching about 40 MB of other objects, as a request's
own work does. The flags file serves a stage to ``--clinics`` clinics (one
strategy per stage with a ``clinicId IN`` constraint, as ``clinic flags set``
writes it), the context is a viewer with a user id and a role.

``--pins N [N ...]`` measures instead, for each N, one clinic's evaluation in a
flag with N pinned clinics in the per-clinic shape (one ``default`` strategy per
clinic, titled ``clinic-pin <id>``, its one constraint ``clinicId IN [id]``, its
one variant the stage; then a 30 % ``flexibleRollout`` on ``clinicId``), built
here: the SDK alone, and the memo (``flags.memo.FlagMemo``) answering, for a
pinned clinic (the middle one) and for an unpinned one (rollout, after every pin).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from appointments.stages import Stage
from flags import FLAG_NAME
from flags.document import build_document, write_document
from flags.memo import FlagMemo
from flags.source import LocalFileFlagSource, bootstrapped_client
from flags.stages import StageResolver, Viewer

STAGES = list(Stage)


class CacheEvictor:
    """Touches memory spread over many objects, as a request's own work does."""

    def __init__(self) -> None:
        self._objects = [object() for _ in range(600_000)]
        self._texts = {number: str(number) for number in range(200_000)}

    def __call__(self) -> int:
        touched = 0
        for item in self._objects[::2]:
            touched += id(item) & 1
        for number in range(0, 200_000, 3):
            touched += len(self._texts[number])
        return touched


def mean_microseconds(
    call: Callable[[], object], calls: int, before: Callable[[], object] | None
) -> float:
    total = 0.0
    for _ in range(calls):
        if before is not None:
            before()
        started = time.perf_counter()
        call()
        total += time.perf_counter() - started
    return total / calls * 1e6


def pinned_document(pins: int) -> dict[str, Any]:
    """A flag with ``pins`` clinics pinned one strategy each, then a percentage rollout."""
    strategies: list[dict[str, Any]] = [
        {
            "name": "default",
            "title": f"clinic-pin {uuid.UUID(int=n + 1)}",
            "parameters": {},
            "constraints": [
                {
                    "contextName": "clinicId",
                    "operator": "IN",
                    "values": [str(uuid.UUID(int=n + 1))],
                    "inverted": False,
                    "caseInsensitive": False,
                }
            ],
            "variants": [
                {
                    "name": STAGES[n % len(STAGES)].value,
                    "weight": 1000,
                    "weightType": "variable",
                    "stickiness": "default",
                }
            ],
        }
        for n in range(pins)
    ]
    strategies.append(
        {
            "name": "flexibleRollout",
            "parameters": {"rollout": "30", "stickiness": "clinicId", "groupId": FLAG_NAME},
            "constraints": [],
            "variants": [
                {
                    "name": Stage.SHADOW.value,
                    "weight": 1000,
                    "weightType": "variable",
                    "stickiness": "clinicId",
                }
            ],
        }
    )
    feature = {"name": FLAG_NAME, "enabled": True, "strategies": strategies, "variants": []}
    return {"version": 2, "features": [feature]}


def pins_report(pin_counts: list[int], calls: int, cold_calls: int) -> None:
    evict = CacheEvictor()
    print("one clinic's flag evaluation by pinned clinics (microseconds)")
    print(f"{'pins':>5} {'clinic':<9} {'evaluation':<32} {'warm':>8} {'once per request':>17}")
    viewer = Viewer(user_id=str(uuid.uuid4()), role="admin")
    for pins in pin_counts:
        document = pinned_document(pins)
        client = bootstrapped_client("flag-cost-bench", json.dumps(document))
        memo = FlagMemo(bootstrapped_client("flag-cost-bench", json.dumps(document)))
        if memo.settle().refusal is not None:
            raise RuntimeError("the pinned shape is not memoizable")
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "flags.json"
            write_document(path, document)
            source = LocalFileFlagSource(path, "flag-cost-bench")
            for label, clinic in (
                ("pinned", uuid.UUID(int=pins // 2 + 1)),
                ("unpinned", uuid.uuid4()),
            ):
                context: dict[str, Any] = {
                    "properties": {"clinicId": str(clinic), "role": "admin"},
                    "userId": viewer.user_id,
                }
                result = client.get_variant(FLAG_NAME, context)
                if memo.variant(context) != (result["name"] if result["enabled"] else None):
                    raise RuntimeError("the memo disagrees with the SDK")
                layers: list[tuple[str, Callable[[], object]]] = [
                    ("SDK get_variant (no memo)", partial(client.get_variant, FLAG_NAME, context)),
                    ("FlagMemo.variant", partial(memo.variant, context)),
                    ("StageResolver, file source, memo", partial(resolve, source, viewer, clinic)),
                ]
                for name, call in layers:
                    warm = mean_microseconds(call, calls, None)
                    cold = mean_microseconds(call, cold_calls, evict)
                    print(f"{pins:>5} {label:<9} {name:<32} {warm:>8.1f} {cold:>17.1f}")
            source.close()


def resolve(source: LocalFileFlagSource, viewer: Viewer, clinic: uuid.UUID) -> Stage:
    """One request's first question about a clinic's stage."""
    return StageResolver(source, Stage.DUAL_WRITE, viewer)(clinic)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clinics", type=int, default=50, help="clinics in the flags file")
    parser.add_argument("--calls", type=int, default=2000, help="warm calls per layer")
    parser.add_argument(
        "--cold-calls", type=int, default=300, help="calls per layer after evicting caches"
    )
    parser.add_argument(
        "--pins",
        type=int,
        nargs="+",
        help="instead: one clinic's cost with this many pinned clinics, SDK and memo",
    )
    arguments = parser.parse_args(argv)
    if arguments.pins:
        pins_report(arguments.pins, arguments.calls, arguments.cold_calls)
        return 0

    clinics = [uuid.uuid4() for _ in range(arguments.clinics)]
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "flags.json"
        write_document(
            path,
            build_document(
                {str(clinic): STAGES[n % len(STAGES)] for n, clinic in enumerate(clinics)}
            ),
        )
        source = LocalFileFlagSource(path, "flag-cost-bench")
        client = source._client  # the SDK client the source evaluates with
        assert client is not None, "the flags file did not load"
        viewer = Viewer(user_id=str(uuid.uuid4()), role="admin")
        clinic = clinics[len(clinics) // 2]
        context = {
            "properties": {"clinicId": str(clinic), "role": "admin"},
            "userId": viewer.user_id,
        }
        expected = STAGES[(len(clinics) // 2) % len(STAGES)]
        if StageResolver(source, Stage.DUAL_WRITE, viewer)(clinic) is not expected:
            raise RuntimeError("the flags file does not serve the expected stage")

        layers: list[tuple[str, Callable[[], object]]] = [
            (
                "StageResolver, one per request",
                lambda: StageResolver(source, Stage.DUAL_WRITE, viewer)(clinic),
            ),
            ("LocalFileFlagSource.variant", lambda: source.variant(context)),
            ("UnleashClient.get_variant", lambda: client.get_variant(FLAG_NAME, context)),
            ("os.stat of the flags file", lambda: os.stat(path)),
        ]
        evict = CacheEvictor()
        print(f"one flag evaluation, {arguments.clinics} clinics in the flags file (microseconds)")
        print(f"{'layer':<34} {'warm':>8} {'once per request':>17}")
        for name, call in layers:
            warm = mean_microseconds(call, arguments.calls, None)
            cold = mean_microseconds(call, arguments.cold_calls, evict)
            print(f"{name:<34} {warm:>8.1f} {cold:>17.1f}")
        source.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
