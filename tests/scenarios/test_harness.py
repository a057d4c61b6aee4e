"""The black-box scenario suite (real Prometheus backfilled, real bare Git remote), run through
the shared harness exactly as the outside bench runs it: `run-once --config FILE --json`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.scenario, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("REMEDIATOR_SHARED_DIR", REPO.parent / "shared"))
HARNESS = SHARED / "scenarios" / "run.py"
SUITES = {"dev": SHARED / "scenarios" / "dev", "extra": REPO / "tests" / "scenarios" / "extra"}


def _remediator() -> str:
    exe = Path(sys.executable).with_name("remediator")
    return str(exe) if exe.exists() else f"{sys.executable} -m agents.cli"


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_scenarios_pass(suite: str, tmp_path: Path) -> None:
    if not HARNESS.exists():
        pytest.skip(f"scenario harness not found at {HARNESS} (CI has ../shared beside the checkout)")
    if not (shutil.which("prometheus") and shutil.which("promtool")):
        pytest.fail("prometheus/promtool not installed: run .ci/run (it installs the Debian package)")
    folder = SUITES[suite]
    if not folder.exists() or not list(folder.glob("*.yaml")):
        pytest.skip(f"no scenarios in {folder}")
    proc = subprocess.run([sys.executable, str(HARNESS), "--remediator", _remediator(), "--tmpdir", str(tmp_path),
                           str(folder)], capture_output=True, text=True, timeout=1800)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
