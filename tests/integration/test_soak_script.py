"""bench/soak.py runs and prints its figures (a short run: the real one is 500 cycles)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench_scripts import load_bench

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


def test_a_short_soak_with_faults_meets_every_figure(tmp_path: Path) -> None:
    """Three workspaces: no publish fault, a rejected push, a kill right after a push; cycle faults in each."""
    proc = subprocess.run([sys.executable, str(SOAK), "--faults", "--cycles", "12", "--epoch", "4", "--json",
                           "--state", str(tmp_path / "soak")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    f = json.loads(proc.stdout)
    assert f["cycles"] == 12 and f["killed_cycles_resumed"] == 1 and f["unexpected_outcomes"] == []
    assert {"push_rejected", "killed_after_push", "killed_in_decision", "prometheus_down"} <= set(f["faults_by_kind"])
    assert f["duplicate_prs"] == f["decisions_lost"] == f["secrets_leaked"] == 0 and f["decisions_acknowledged"] > 0


def test_the_leak_check_finds_a_secret_in_a_file_a_name_and_git_history(tmp_path: Path) -> None:
    faults = load_bench("soak_faults")
    log = tmp_path / "soak.log"
    log.write_text("nothing here\n")
    assert faults._leaks(tmp_path, log) == []
    (tmp_path / "state.db").write_bytes(b"\x00" + faults.CANARY.encode())
    (tmp_path / f"clone-{faults.CANARY}").mkdir()
    repo = tmp_path / "r"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "a.txt").write_text(faults.CANARY)
    subprocess.run(["git", "-C", str(repo), "add", "a.txt"], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-qm", "x"], check=True)
    (repo / "a.txt").unlink()
    found = faults._leaks(tmp_path, log)
    assert "file state.db" in found and any(w.startswith("name ") for w in found)
    assert "git history r/.git" in found
