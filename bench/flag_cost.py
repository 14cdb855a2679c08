"""Benchmark: what one migration flag evaluation costs, warm and once per request.

    .venv/bin/python -m bench.flag_cost [--clinics 50] [--calls 2000]

A request evaluates the flag once per clinic (``flags.stages.StageResolver``),
between a few hundred thousand bytecodes of other work, so the evaluation runs
with cold processor caches. A loop that evaluates again and again measures it
warm, which is not what a request pays. This prints both, layer by layer:

- ``StageResolver`` (a new one per call, as per request): the context, the
  source, the Prometheus counter and the evaluation-time histogram;
- ``LocalFileFlagSource.variant``: the file's ``stat`` and the SDK's evaluation;
- ``UnleashClient.get_variant``: the SDK alone;
- ``os.stat`` of the flags file: what the local file source adds to it.

"Warm" is the mean of ``--calls`` calls in a row; "once per request" is the mean
of calls each made after touching about 40 MB of other objects, as a request's
own work does. The flags file serves a stage to ``--clinics`` clinics (one
strategy per stage with a ``clinicId IN`` constraint, as ``clinic flags set``
writes it), the context is a viewer with a user id and a role.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from appointments.stages import Stage
from flags import FLAG_NAME
from flags.document import build_document, write_document
from flags.source import LocalFileFlagSource
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clinics", type=int, default=50, help="clinics in the flags file")
    parser.add_argument("--calls", type=int, default=2000, help="warm calls per layer")
    parser.add_argument(
        "--cold-calls", type=int, default=300, help="calls per layer after evicting caches"
    )
    arguments = parser.parse_args(argv)

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
