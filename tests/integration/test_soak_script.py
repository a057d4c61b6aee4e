"""bench/soak.py runs and prints its figures (a short run: the real one is 500 cycles)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
SOAK = Path(__file__).resolve().parents[2] / "bench" / "soak.py"


def test_a_short_soak_prints_its_figures_and_passes(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(SOAK), "--cycles", "4", "--warmup", "2", "--json",
                           "--state", str(tmp_path / "soak")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    figures = json.loads(proc.stdout)
    assert figures["cycles"] == 4 and figures["audit_chain_ok"] is True and figures["duplicate_pr_branches"] == 0
    assert {"rss_mb", "fds", "threads", "state_mb", "seconds_per_cycle"} <= set(figures)


def test_bad_arguments_exit_2_naming_them() -> None:
    proc = subprocess.run([sys.executable, str(SOAK), "--cycles", "5", "--warmup", "9"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "--warmup" in proc.stderr
