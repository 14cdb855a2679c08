"""The chaos run, CI-sized: concurrent writers, stage moves, killed connections and a restart
of the run's own database lose nothing, and no retry waits for a claim to expire."""

from __future__ import annotations

import os

import psycopg
from sqlalchemy import make_url

from bench.chaos import ChaosOptions, run_chaos
from tests.conftest import DEFAULT_POSTGRES_URL, unavailable


async def test_no_acknowledged_write_is_lost_and_every_row_stays_consistent() -> None:
    url = os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    admin = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(admin, connect_timeout=5):
            pass
    except psycopg.OperationalError as error:
        unavailable(f"the chaos run needs PostgreSQL at {url}: {error}")

    report = await run_chaos(
        ChaosOptions(
            database_url=url,
            writers=8,
            writes_per_writer=25,
            kill_every=6,
            restart_every=60,
            restarts=1,
        )
    )

    print("\n".join(report.lines()))
    assert report.kills > 0, "the run must actually kill connections"
    assert report.restarts == 1
    assert report.longest_delay_after_restart < 5, "writes in flight at the restart held up"
    assert report.longest_retry_delay < 30, "a retry waited for the 60 s claim timeout"
    assert report.stage_moves > 0
    assert report.retried > 0, "killed connections must have made some attempts fail"
    assert report.attempted == report.acknowledged + report.failed_cleanly + report.unresolved
    assert report.unresolved == 0, report.problems
    assert (report.lost, report.duplicated) == (0, 0), report.problems
    assert (report.inconsistent, report.unreadable) == (0, 0), report.problems
