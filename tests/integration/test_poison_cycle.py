"""A stage that raises ends its cycle: the failure is recorded (audit, the cycle's report) and the
next run starts a fresh cycle on fresh inputs, instead of resuming the crashed one forever. A bad
budget in Git never gets that far: it is an entry under `errors`."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from agents.checkpoint import sqlite_checkpointer
from agents.compose import build_deps, checkpoint_path
from agents.config import load_settings
from agents.demo import prepare_workspace
from agents.graph import INFLIGHT_KEY, run_cycle
from memory.store import Store
from tests.console import remediator
from tools.errors import CycleFailed

pytestmark = pytest.mark.integration




class _Crashing:
    """A metrics source whose cost query raises something nobody expected (a bug, a bad sample)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def workload_cost(self, **kw: Any) -> Any:
        raise OverflowError("int too large to convert to float")


def test_a_stage_that_raises_ends_the_cycle_and_the_next_run_is_fresh(tmp_path: Path) -> None:
    _, cfg, _ = prepare_workspace(tmp_path, datetime.now(UTC).replace(microsecond=0))
    settings = load_settings(cfg)
    deps = build_deps(settings)
    with sqlite_checkpointer(checkpoint_path(settings)) as cp, pytest.raises(CycleFailed, match="stage detect"):
        run_cycle(replace(deps, metrics=_Crashing(deps.metrics)), cp)
    store = Store.open(settings.memory.url)
    assert store.get_kv(INFLIGHT_KEY) == ""
    [failed] = [e for e in store.audit.entries() if e.action == "failed"]
    assert failed.data["stage"] == "detect" and "OverflowError" in failed.data["error"]
    [cycle] = store.list_cycles()
    assert cycle["report"]["errors"][0]["stage"] == "detect"
    store.close()

    proc = remediator("run-once", "--config", str(cfg), "--json")   # fixed: a fresh cycle, not the crashed one
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["cycle_id"] != failed.cycle_id and report["incidents"]
    assert "resuming" not in proc.stderr


class _Leaky(_Crashing):
    def workload_cost(self, **kw: Any) -> Any:
        raise RuntimeError("GET https://soak:hunter2-canary@prometheus.example/api/v1/query_range: bad reply")


def test_a_stage_failure_keeps_no_secret_anywhere(tmp_path: Path) -> None:
    """LangGraph keeps a failed node's exception in the checkpoint; what it keeps is scrubbed."""
    _, cfg, _ = prepare_workspace(tmp_path, datetime.now(UTC).replace(microsecond=0))
    settings = load_settings(cfg)
    deps = build_deps(settings)
    with sqlite_checkpointer(checkpoint_path(settings)) as cp, pytest.raises(CycleFailed) as failed:
        run_cycle(replace(deps, metrics=_Leaky(deps.metrics)), cp)
    assert "RuntimeError: GET https://***@prometheus.example" in str(failed.value)
    deps.store.close()
    written = [p for p in tmp_path.rglob("*") if p.is_file() and b"hunter2-canary" in p.read_bytes()]
    assert written == []


def test_the_cli_says_which_stage_failed_and_exits_1(tmp_path: Path) -> None:
    doc, cfg, _ = prepare_workspace(tmp_path, datetime.now(UTC).replace(microsecond=0))
    doc["prometheus"]["replay_file"] = str(tmp_path / "missing.om")   # unreadable input: an ordinary error
    cfg.write_text(yaml.safe_dump(doc))
    proc = remediator("run-once", "--config", str(cfg), "--json")
    assert proc.returncode in (1, 2) and "Traceback" not in proc.stderr


def test_a_bad_budget_in_git_is_an_error_entry_not_a_crash(tmp_path: Path) -> None:
    _, cfg, remote = prepare_workspace(tmp_path, datetime.now(UTC).replace(microsecond=0))
    work = tmp_path / "human"
    env = {**os.environ, "GIT_AUTHOR_NAME": "h", "GIT_AUTHOR_EMAIL": "h@x", "GIT_COMMITTER_NAME": "h",
           "GIT_COMMITTER_EMAIL": "h@x"}
    subprocess.run(["git", "clone", "-q", str(remote), str(work)], check=True, env=env)
    budgets = work / "policies" / "budgets.yaml"
    doc = yaml.safe_load(budgets.read_text())
    doc["budgets"] += [{"name": "typo", "selector": {"namespace": "ml-serving"}, "monthly_usd": 100, "resources": "gpu"},
                       {"name": "nonsense", "selector": 5, "monthly_usd": 100}]
    budgets.write_text(yaml.safe_dump(doc))
    for args in (["add", "-A"], ["commit", "-q", "-m", "budgets: two broken entries"], ["push", "-q", "origin", "HEAD:main"]):
        subprocess.run(["git", *args], cwd=work, check=True, env=env)

    first = remediator("run-once", "--config", str(cfg), "--json")
    assert first.returncode == 0, first.stderr[-2000:]
    report = json.loads(first.stdout)
    problems = [e for e in report["errors"] if e["source"].endswith("budgets.yaml")]
    assert {("typo" in e["message"], "nonsense" in e["message"]) for e in problems} == {(True, False), (False, True)}
    assert report["incidents"]   # the rest of the cycle ran
    second = remediator("run-once", "--config", str(cfg), "--json")
    assert second.returncode == 0 and json.loads(second.stdout)["cycle_id"] != report["cycle_id"]


def test_checkpoints_of_old_cycles_are_pruned(tmp_path: Path) -> None:
    doc, cfg, _ = prepare_workspace(tmp_path, datetime.now(UTC).replace(microsecond=0))
    doc["memory"]["keep_cycle_checkpoints"] = 2
    cfg.write_text(yaml.safe_dump(doc))
    settings = load_settings(cfg)
    ids = []
    with sqlite_checkpointer(checkpoint_path(settings)) as cp:
        for _ in range(4):
            ids.append(run_cycle(build_deps(settings), cp)["cycle_id"])
        threads = {c.config["configurable"]["thread_id"] for c in cp.list(None)}
    cycle_threads = {t for t in threads if t.startswith("cyc-")}
    assert cycle_threads == set(ids[-2:])                  # only the 2 most recent cycles keep checkpoints
    assert any(t.startswith("approval:") for t in threads)  # approval threads wait for their decision
