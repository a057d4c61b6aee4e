"""`remediator demo`: the whole loop on embedded data, no outside services.

Seeds a bare Git remote from config/demo (three commits whose dates are shifted so that the
last lies in the recent past), replays the bundled OpenMetrics (shifted to end now) and an
audit log (shifted likewise), runs cycles with the local PR provider and prints what happened.
Everything is written under one state folder, which it names.
"""

from __future__ import annotations

import json
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer
import yaml

from agents.auditcheck import verify_audit
from agents.checkpoint import sqlite_checkpointer
from agents.compose import build_deps, checkpoint_path
from agents.config import ConfigError, Settings, state_home, validate_settings
from agents.graph import run_cycle
from agents.report import report_lines
from agents.state import ANCHOR_KEY
from memory.store import Store
from tools.anchors import ANCHOR_REF
from tools.errors import printable
from tools.seed import Snapshot, branch_diff, list_branches, seed_bare_remote

DEMO_DATA = Path(__file__).resolve().parent.parent / "config" / "demo"
ANCHOR = datetime(2026, 11, 27, 12, 0, 30, tzinfo=UTC)   # the "now" the demo data was generated at
MARKER = ".remediator-demo"


def default_state_dir() -> Path:
    return state_home() / "remediator" / "demo"


def _prepare(state: Path) -> None:
    if state.exists() and any(state.iterdir()) and not (state / MARKER).exists():
        raise ConfigError(f"--state-dir {state} is not empty and was not made by `remediator demo`; "
                          "pick an empty or new folder")
    if state.exists():
        shutil.rmtree(state)
    state.mkdir(parents=True)
    (state / MARKER).write_text("made by `remediator demo`; safe to delete\n")


def _shift_audit(src: Path, dst: Path, delta: timedelta) -> int:
    n = 0
    with src.open() as fi, dst.open("w") as fo:
        for line in fi:
            ev = json.loads(line)
            for k in ("requestReceivedTimestamp", "stageTimestamp"):
                if k in ev:
                    t = datetime.fromisoformat(ev[k].replace("Z", "+00:00")) + delta
                    ev[k] = t.isoformat().replace("+00:00", "Z")
            fo.write(json.dumps(ev) + "\n")
            n += 1
    return n


def prepare_workspace(state: Path, now: datetime, out: Any = lambda *a, **k: None) -> tuple[dict[str, Any], Path, Path]:
    """Seed the demo's Git remote and audit log under ``state`` as if ``now`` were the data's
    "now"; write its config. Returns (config, config path, remote)."""
    delta = now - ANCHOR
    hist = yaml.safe_load((DEMO_DATA / "gitops" / "history.yaml").read_text())["commits"]
    snaps = [Snapshot(tree=DEMO_DATA / "gitops" / "commits" / c["dir"], message=c["message"],
                      author=f"{c['author']['name']} <{c['author']['email']}>",
                      date=now + timedelta(seconds=float(str(c["at"]).rstrip("s")))) for c in hist]
    remote = state / "gitops-remote.git"
    seed_bare_remote(remote, snaps)
    out(f"  seeded GitOps remote {remote} ({len(snaps)} commits)")
    audit = state / "audit.log"
    n = _shift_audit(DEMO_DATA / "audit.jsonl", audit, delta)
    out(f"  audit log {audit} ({n} events); metrics replayed from {DEMO_DATA / 'metrics.om.gz'}")
    cfg: dict[str, Any] = {
        "prometheus": {"replay_file": str(DEMO_DATA / "metrics.om.gz"), "replay_ends_now": True, "scrape_interval": "10m"},
        "gitops": {"remote": str(remote), "branch": "main", "provider": "local"},
        "auditlog": {"paths": [str(audit)], "initial_lookback": "2h"},
        "memory": {"url": f"sqlite:///{state / 'state.db'}"},
        "llm": {"provider": "none"},
        "slack": {"enabled": False},
        "scheduler": {"interval": "5m"},
        "detection": {"min_duration": "30m"},
        "audit": {"anchor_interval": "0s"},   # the demo anchors the audit chain head every cycle
    }
    cfg_path = state / "remediator.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return cfg, cfg_path, remote


def run_demo(state_dir: Path | None, *, cycles: int = 2, json_out: bool = False) -> None:
    def out(message: str = "") -> None:
        typer.echo(message, err=json_out)  # with --json, stdout carries only the JSON document

    state = (state_dir or default_state_dir()).expanduser().resolve()
    _prepare(state)
    now = datetime.now(UTC).replace(microsecond=0)
    out(f"remediator demo: state folder {state}")
    cfg, cfg_path, remote = prepare_workspace(state, now, out)
    settings = validate_settings(cfg, source=str(cfg_path))
    reports = []
    for c in range(1, cycles + 1):
        out(f"\n== cycle {c}/{cycles}")
        deps = build_deps(settings, on_progress=lambda m: out(f"  {m}"), replay_shift_to=now)
        with sqlite_checkpointer(checkpoint_path(settings)) as cp:
            rep = run_cycle(deps, cp, started_at=now + timedelta(seconds=c - 1))
        reports.append(rep)
        _summary(out, rep)
        deps.store.close()
    if json_out:
        sys.stdout.write(json.dumps(reports[-1], indent=1, default=str) + "\n")
    branches = list_branches(remote, "remediator/")
    out(f"\n== {len(branches)} PR branch(es) in {remote}")
    for b in branches:
        out(f"\n--- {b}  (git --git-dir={remote} diff main...{b})")
        out(branch_diff(remote, "main", b))
    _show_audit(out, settings)
    out("\nWhere to look next:")
    out(f"  remediator incidents list --config {cfg_path}")
    out(f"  remediator incidents show <incident-id> --config {cfg_path}     # evidence, plan, why")
    out(f"  remediator decisions approve <incident-id> --config {cfg_path}  # merges the PR into main")
    out(f"  remediator audit verify --config {cfg_path}")
    out(f"  remediator serve --config {cfg_path}     # the review UI (read-only) on http://127.0.0.1:8080/ui/")
    out(f"  git --git-dir={remote} log --all --oneline")


def _show_audit(out: Any, settings: Settings) -> None:
    """The anchor the last cycle wrote, and what `audit verify` says of the chain and the anchors."""
    store = Store.open_existing(settings.memory.url)
    try:
        last = json.loads(store.get_kv(ANCHOR_KEY) or "{}")
        if last:
            out(f"\n== audit chain head anchored in the GitOps remote ({ANCHOR_REF}): entry {last['seq']}, "
                f"sha256 {last['hash'][:16]}..., commit {last['commit'][:12]}")
        _, _, lines = verify_audit(settings, store)
        out("== remediator audit verify: " + "; ".join(lines))
    finally:
        store.close()


def _summary(out: Any, r: dict[str, Any]) -> None:
    for line in report_lines(r, indent="  "):
        out(printable(line))
