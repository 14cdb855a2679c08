"""Backfill (legacy to new links) and reverse backfill (new to legacy), batch by batch.

Each batch is one short transaction over a keyset window of appointments:
set-based statements that join the window to the membership tables (creating
the missing memberships first when asked), then the checkpoint. No lock is held
between batches, and every UPDATE re-checks its condition on the row it
changes, so a write the service makes meanwhile is never overwritten. A crashed
run resumes from its checkpoint; a second run finds nothing to do. Batches are
sized to a time target and wait while the database is busy (``pacing``).

Modules: ``options`` (what a run is asked, reports and returns), ``statements``
(the SQL), ``pacing`` (batch size and throttle), ``preview`` (the dry run and
what is left), ``run`` (the loop and its checkpoint).
"""

from appointments.backfill.options import (
    DEFAULT_BATCH_SECONDS,
    DEFAULT_BATCH_SIZE,
    BackfillOptions,
    BackfillSummary,
    Direction,
    Progress,
    ProgressCallback,
)
from appointments.backfill.pacing import (
    BatchSizer,
    Load,
    LoadProbe,
    Pacing,
    ThrottleLimits,
    postgres_load,
)
from appointments.backfill.run import run_backfill

__all__ = [
    "DEFAULT_BATCH_SECONDS",
    "DEFAULT_BATCH_SIZE",
    "BackfillOptions",
    "BackfillSummary",
    "BatchSizer",
    "Direction",
    "Load",
    "LoadProbe",
    "Pacing",
    "Progress",
    "ProgressCallback",
    "ThrottleLimits",
    "postgres_load",
    "run_backfill",
]
