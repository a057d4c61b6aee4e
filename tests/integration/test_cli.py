"""The CLI contracts end to end on real git remotes, with the demo's replayed metrics:
run-once --json, idempotency, resume after a kill, daemon SIGTERM, exit codes, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import git
import pytest
import yaml

from agents.checkpoint import sqlite_checkpointer
from agents.compose import build_deps, checkpoint_path
from agents.config import load_settings
from agents.demo import prepare_workspace
from agents.graph import INFLIGHT_KEY, run_cycle
from memory.store import Store

pytestmark = pytest.mark.integration
REPORT_KEYS = {"cycle_id", "started_at", "findings", "incidents", "pull_requests", "notifications", "errors",
               "compliance"}


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agents.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=timeout)


@pytest.fixture()
def workspace(tmp_path: Path) -> tuple[Path, Path]:
    now = datetime.now(UTC).replace(microsecond=0)
    (tmp_path / "ws").mkdir()
    _, cfg, remote = prepare_workspace(tmp_path / "ws", now)
    return cfg, remote


def branches(remote: Path) -> dict[str, str]:
    return {h.name: h.commit.hexsha for h in git.Repo(remote).heads if h.name.startswith("remediator/")}


def report(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert set(doc) == REPORT_KEYS
    return doc


def test_run_once_json_twice_is_idempotent(workspace: tuple[Path, Path]) -> None:
    cfg, remote = workspace
    r1 = report(cli("run-once", "--config", str(cfg), "--json"))
    kinds = {(i["kind"], i["service"]) for i in r1["incidents"]}
    assert {("cost_anomaly", "ml-serving/image-captioner"), ("model_drift", "ml-serving/visual-search"),
            ("gitops_drift", "web/checkout-api")} <= kinds
    assert not any(i["service"] == "ml-serving/vision-language-model" for i in r1["incidents"])
    assert [n["incident_id"] for n in r1["notifications"]]  # the out-of-band scale is notify-only
    prs1 = {p["id"]: p["branch"] for p in r1["pull_requests"]}
    assert len(prs1) == 2 and all(b.startswith("remediator/") for b in prs1.values())
    for p in r1["pull_requests"]:
        assert p["url"].startswith("local://") and p["status"] == "open" and p["incident_ids"]
    heads1 = branches(remote)
    assert set(heads1) == set(prs1.values())
    for b in heads1:  # one commit ahead of main, touching one manifest
        repo = git.Repo(remote)
        assert repo.git.rev_list("--count", f"main..{b}") == "1"
        assert len(repo.git.diff("--name-only", f"main...{b}").split()) == 1

    r2 = report(cli("run-once", "--config", str(cfg), "--json"))
    assert {p["id"] for p in r2["pull_requests"]} == set(prs1)
    assert {i["id"] for i in r2["incidents"] if i["kind"] != "gitops_drift"} <= {i["id"] for i in r1["incidents"]}
    assert branches(remote) == heads1  # no branch moved
    assert r2["notifications"] == []  # not notified twice

    v = cli("audit", "verify", "--config", str(cfg), "--json")
    assert v.returncode == 0 and json.loads(v.stdout)["ok"]


def test_dry_run_pushes_nothing(workspace: tuple[Path, Path]) -> None:
    cfg, remote = workspace
    proc = cli("run-once", "--config", str(cfg), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "would publish remediator/" in proc.stderr
    assert branches(remote) == {}


class _KilledAfterPush(BaseException):
    pass


def test_killed_mid_cycle_resumes_without_second_pr(workspace: tuple[Path, Path]) -> None:
    cfg, remote = workspace
    settings = load_settings(cfg)
    deps = build_deps(settings)
    real = deps.prs.publish

    def publish_then_die(**kw: Any):  # the process dies right after the push, before anything is recorded
        real(**kw)
        raise _KilledAfterPush()

    deps.prs.publish = publish_then_die  # type: ignore[method-assign]
    with sqlite_checkpointer(checkpoint_path(settings)) as cp, pytest.raises(_KilledAfterPush):
        run_cycle(deps, cp)
    first_heads = branches(remote)
    assert len(first_heads) == 1
    inflight = Store.open(settings.memory.url).get_kv(INFLIGHT_KEY)
    assert inflight

    r = report(cli("run-once", "--config", str(cfg), "--json"))
    assert r["cycle_id"] == inflight  # the same cycle, resumed
    heads = branches(remote)
    assert len(heads) == 2 and {b: heads[b] for b in first_heads} == first_heads
    assert len({p["branch"] for p in r["pull_requests"]}) == len(r["pull_requests"]) == 2
    store = Store.open(settings.memory.url)
    assert len(store.list_prs()) == 2 and store.audit.verify().ok


def test_daemon_sigterm_finishes_cycle_and_exits_zero(workspace: tuple[Path, Path]) -> None:
    cfg, remote = workspace
    p = subprocess.Popen([sys.executable, "-m", "agents.cli", "daemon", "--config", str(cfg)], stderr=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        deadline = time.time() + 60
        assert p.stderr is not None
        while time.time() < deadline:
            line = p.stderr.readline()
            if "observe:" in line:  # a cycle is in flight
                p.send_signal(signal.SIGTERM)
                break
        rc = p.wait(60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert rc == 0
    store = Store.open(load_settings(cfg).memory.url)
    entries = list(store.audit.entries())
    actions = [(e.stage, e.action) for e in entries]
    assert ("record", "cycle_finished") in actions and actions[-1] == ("daemon", "stopped")
    started = {e.cycle_id for e in entries if e.action == "started"}
    finished = {e.cycle_id for e in entries if e.action == "cycle_finished"}
    assert started == finished and store.audit.verify().ok
    assert len(branches(remote)) == 2


def test_bad_config_exit_2_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("prometheus: {url: http://127.0.0.1:9, timout_s: 3}\ngitops: {remote: /x.git}\n")
    proc = cli("run-once", "--config", str(cfg), "--json")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "prometheus.timout_s" in proc.stderr and "Traceback" not in proc.stderr
    cfg.write_text("gitops: {remote: /x.git}\nscheduler: {interval: 5 minutes}\n")
    proc = cli("run-once", "--config", str(cfg))
    assert proc.returncode == 2 and "scheduler.interval" in proc.stderr and "Traceback" not in proc.stderr


def _config(ws: Path, tmp_path: Path, **over: dict[str, Any]) -> Path:
    cfg = yaml.safe_load(ws.read_text())
    for k, v in over.items():
        cfg[k].update(v)
    p = tmp_path / "over.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_unreachable_prometheus_exit_1_names_url(workspace: tuple[Path, Path], tmp_path: Path) -> None:
    cfg, _ = workspace
    bad = _config(cfg, tmp_path, prometheus={"replay_file": None, "url": "http://127.0.0.1:9", "timeout_s": 2, "retries": 1})
    proc = cli("run-once", "--config", str(bad), "--json")
    assert proc.returncode == 1 and proc.stdout == "", proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "http://127.0.0.1:9" in last and "Traceback" not in proc.stderr


def test_unreachable_git_remote_exit_1_names_it(workspace: tuple[Path, Path], tmp_path: Path) -> None:
    cfg, _ = workspace
    bad = _config(cfg, tmp_path, gitops={"remote": str(tmp_path / "missing.git")})
    proc = cli("run-once", "--config", str(bad), "--json")
    assert proc.returncode == 1 and proc.stdout == ""
    assert "missing.git" in proc.stderr.strip().splitlines()[-1] and "Traceback" not in proc.stderr


def test_malformed_manifest_is_reported_and_cycle_goes_on(workspace: tuple[Path, Path], tmp_path: Path) -> None:
    cfg, remote = workspace
    work = tmp_path / "clone"
    repo = git.Repo.clone_from(str(remote), work)
    (work / "apps" / "web" / "checkout-api.yaml").write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: [oops\n")
    repo.git.add("-A")
    repo.git.commit("-m", "break a manifest", env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
                                                    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"})
    repo.git.push("origin", "main")
    r = report(cli("run-once", "--config", str(cfg), "--json"))
    errs = [e for e in r["errors"] if "checkout-api.yaml" in e["source"]]
    assert errs and errs[0]["stage"] == "observe" and "(line 4)" in errs[0]["message"]
    assert {p["branch"].split("/")[1] for p in r["pull_requests"]} == {"cost-anomaly", "model-drift"}


def test_demo_from_any_directory_writes_only_its_state_folder(tmp_path: Path) -> None:
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    state = tmp_path / "state"
    proc = cli("demo", "--state-dir", str(state), "--cycles", "2", cwd=cwd, env={"HOME": str(tmp_path / "home")})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"state folder {state}" in out and "cost_anomaly" in out and "model_drift" in out
    assert "+    maxReplicas: 3" in out and '+    version: "2.0.0"' in out
    assert "remediator incidents list --config" in out
    assert list(cwd.iterdir()) == [] and not (tmp_path / "home").exists()
    again = cli("demo", "--state-dir", str(cwd.parent / "elsewhere2"), cwd=cwd)
    assert again.returncode == 0
    refuse = cli("demo", "--state-dir", str(tmp_path), cwd=cwd)  # not empty, not ours
    assert refuse.returncode == 2 and "not empty" in refuse.stderr


def test_incidents_and_decisions_commands(workspace: tuple[Path, Path]) -> None:
    cfg, remote = workspace
    r = report(cli("run-once", "--config", str(cfg), "--json"))
    cost = next(i for i in r["incidents"] if i["kind"] == "cost_anomaly")
    ls = cli("incidents", "list", "--config", str(cfg), "--json")
    assert ls.returncode == 0 and cost["id"] in {i["id"] for i in json.loads(ls.stdout)}
    show = cli("incidents", "show", cost["id"], "--config", str(cfg))
    assert show.returncode == 0 and "cap_max_replicas" in show.stdout and "why:" in show.stdout
    ok = cli("decisions", "approve", cost["id"], "--config", str(cfg), "--actor", "carol", "--json")
    assert ok.returncode == 0, ok.stderr
    d = json.loads(ok.stdout)
    assert d["verdict"] == "approve" and d["actor"] == "carol"
    main_text = git.Repo(remote).git.show("main:apps/ml-serving/image-captioner.yaml")
    assert "maxReplicas: 3" in main_text  # merged through the local provider
    again = cli("decisions", "approve", cost["id"], "--config", str(cfg), "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["id"] == d["id"]  # idempotent
    missing = cli("incidents", "show", "inc-nope", "--config", str(cfg))
    assert missing.returncode == 2 and "no incident" in missing.stderr


def test_compliance_shows_the_posture_from_the_stored_cycles(tmp_path) -> None:
    from datetime import UTC, datetime

    import yaml as _yaml

    from memory.store import Store
    from tests.console import remediator

    db = tmp_path / "state.db"
    store = Store.open(f"sqlite:///{db}")
    report = {"cycle_id": "cyc-1", "compliance": [
        {"service": "ml/a", "object": "MultimodalInferenceService ml/a", "policy": "required-labels", "status": "fail",
         "severity": "info", "message": "no cost-center label", "expression": "x"},
        {"service": "ml/a", "object": "MultimodalInferenceService ml/a", "policy": "monitoring-enabled",
         "status": "pass", "severity": "info"}]}
    store.save_cycle(cycle_id="cyc-1", started_at=datetime(2026, 12, 1, tzinfo=UTC), finished_at=None, report=report)
    store.close()
    cfg = tmp_path / "remediator.yaml"
    cfg.write_text(_yaml.safe_dump({"gitops": {"remote": str(tmp_path / "none.git")}, "memory": {"url": f"sqlite:///{db}"}}))
    proc = remediator("compliance", "--config", str(cfg), "--failing", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "fail   ml/a                                     required-labels            since 2026-12-01T00:00Z  "
        "no cost-center label"]
    rows = json.loads(remediator("compliance", "--config", str(cfg), "--json", timeout=60).stdout)
    assert [(r["policy"], r["status"]) for r in rows] == [("required-labels", "fail"), ("monitoring-enabled", "pass")]
