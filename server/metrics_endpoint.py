"""Dead workers' gauges in the Prometheus exposition of every worker (server/endpoints.py).

Under ``PROMETHEUS_MULTIPROC_DIR`` each worker writes its values to files named
after its pid, and the exposition adds them up. A worker that died (killed, or
failed during start-up and replaced by the server) leaves its files behind:
its counters must still count, but its gauges would say what a process that is
gone last saw (a flag source not loaded yet). So before each exposition the live
gauge files of processes that no longer run are removed
(``multiprocess.mark_process_dead``), and the gauges use ``live*`` modes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from prometheus_client import (
    multiprocess,
)

LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]*_(\d+)\.db")
PROC = Path("/proc")


def forget_dead_processes(directory: Path) -> set[int]:
    """Remove the live gauge files of processes that no longer run; their pids."""
    pids = set()
    for path in directory.iterdir():
        match = LIVE_GAUGE_FILE.fullmatch(path.name)
        if match is not None:
            pids.add(int(match[1]))
    dead = {pid for pid in pids if not process_running(pid)}
    for pid in dead:
        multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
    return dead


def process_running(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (killed, not yet reaped by its parent) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not PROC.is_dir():
        return True
    try:
        status = (PROC / str(pid) / "stat").read_text(encoding="ascii")
    except OSError:
        return False
    return status.rsplit(")", 1)[-1].split()[0] != "Z"
