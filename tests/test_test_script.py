"""scripts/test never silently runs nothing: a browser install that fails (here: the
package lock held by another process) skips the browser tests outside CI, with one
line saying why, and fails the run in CI; apt-get waits for the lock, bounded."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCKED = "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (apt-get)"


def fake_tools(directory: Path) -> Path:
    """``apt-get`` that records its arguments and finds the lock held; ``sudo`` that runs
    its command."""
    calls = directory / "apt-get.calls"
    (directory / "apt-get").write_text(
        f'#!/bin/sh\necho "$*" >> {calls}\necho "{LOCKED}" >&2\nexit 100\n', encoding="utf-8"
    )
    (directory / "sudo").write_text('#!/bin/sh\nexec "$@"\n', encoding="utf-8")
    for tool in ("apt-get", "sudo"):
        (directory / tool).chmod(0o755)
    return calls


def install_or_skip(tmp_path: Path, **environment: str) -> subprocess.CompletedProcess[str]:
    fake_tools(tmp_path)
    base = {k: v for k, v in os.environ.items() if k not in ("CI", "CLINIC_SKIP_BROWSER")}
    return subprocess.run(
        [
            "bash",
            "-c",
            "set -euo pipefail; source scripts/lib/browser.sh; install_browser_or_skip;"
            ' echo "skip=${CLINIC_SKIP_BROWSER:-}"',
        ],
        cwd=ROOT,
        env=base
        | {
            "PATH": f"{tmp_path}:{os.environ['PATH']}",
            "CLINIC_CHROMIUM": str(tmp_path / "no-chromium"),
            "CLINIC_APT_LOCK_SECONDS": "7",
        }
        | environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_outside_ci_a_failed_install_skips_the_browser_tests_in_one_line(
    tmp_path: Path,
) -> None:
    finished = install_or_skip(tmp_path)

    assert finished.returncode == 0, finished.stderr
    assert finished.stdout == "skip=1\n"
    assert finished.stderr == (
        f"scripts/test: Chromium could not be installed ({LOCKED}): the browser tests are skipped\n"
    )
    calls = (tmp_path / "apt-get.calls").read_text(encoding="utf-8").splitlines()
    assert calls == ["-o DPkg::Lock::Timeout=7 update -qq"]


def test_in_ci_a_failed_install_fails_the_run(tmp_path: Path) -> None:
    finished = install_or_skip(tmp_path, CI="true", CLINIC_SKIP_BROWSER="1")

    assert finished.returncode != 0
    assert finished.stdout == ""
    assert LOCKED in finished.stderr
    assert finished.stderr.endswith("Chromium could not be installed (output above); CI needs it\n")


def test_an_installed_browser_is_left_alone(tmp_path: Path) -> None:
    chromium = tmp_path / "chromium"
    chromium.write_text("#!/bin/sh\n", encoding="utf-8")
    chromium.chmod(0o755)

    finished = install_or_skip(tmp_path, CLINIC_CHROMIUM=str(chromium))

    assert (finished.returncode, finished.stdout, finished.stderr) == (0, "skip=\n", "")
    assert not (tmp_path / "apt-get.calls").exists()
