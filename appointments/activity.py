"""Recent activity of this process: reads and writes per stage over the last minutes.

Prometheus counters answer "how many since start" across every worker; the
dashboard wants "how many lately" without a Prometheus server, so each process
also keeps per-minute buckets for a short while.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

WINDOW_MINUTES = 15


@dataclass
class RecentActivity:
    minutes: int = WINDOW_MINUTES
    clock: Callable[[], float] = time.time
    _buckets: deque[tuple[int, Counter[tuple[str, str]]]] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, stage: str, count: int = 1) -> None:
        """Count reads or writes (``kind``) served in ``stage``."""
        minute = int(self.clock() // 60)
        with self._lock:
            if not self._buckets or self._buckets[-1][0] != minute:
                self._buckets.append((minute, Counter()))
            self._buckets[-1][1][(kind, stage)] += count
            while self._buckets and self._buckets[0][0] <= minute - self.minutes:
                self._buckets.popleft()

    def totals(self) -> Counter[tuple[str, str]]:
        """(kind, stage) counts over the last ``minutes`` minutes."""
        oldest = int(self.clock() // 60) - self.minutes
        total: Counter[tuple[str, str]] = Counter()
        with self._lock:
            for minute, counts in self._buckets:
                if minute > oldest:
                    total.update(counts)
        return total


RECENT = RecentActivity()
