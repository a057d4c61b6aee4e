"""The fault half of the soak (``python bench/soak.py --faults``): daemon-style cycles with faults
injected while they run, and the figures RELIABILITY.md quotes.

Every ``--epoch`` cycles the soak starts a fresh demo workspace (remote, store, audit log), so that
each epoch has incidents to propose and decide. Faults are injected by wrapping one adapter method
for one cycle (or one decision); each carries a canary secret in its message, the way a real
error carries a URL with a password or a token. After each completed cycle every incident waiting
for a decision is approved or rejected (alternately by epoch), as Slack or the CLI would.

Checked, and printed as figures: each cycle's outcome is the documented one for its fault
(aborted: nothing recorded; failed: recorded, next run fresh; killed: next run resumes that cycle;
completed: the fault is an ``errors`` entry); no branch has two PR records (duplicate PRs); every
decision a caller was told about is in the store and in the audit trail, once (decisions lost);
the canary appears nowhere: not in the logs (DEBUG, tracebacks included), not in any file the
daemon wrote (store, checkpoints, Git work directories, their config), not in any Git history,
not in a file or folder name (secrets leaked); each epoch's audit chain verifies.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agents.approvals import decide
from agents.checkpoint import open_checkpointer
from agents.cli import setup_logging
from agents.compose import build_deps, open_store
from agents.config import validate_settings
from agents.demo import prepare_workspace
from agents.deps import Deps
from agents.graph import INFLIGHT_KEY, run_cycle
from memory.store import Store
from tools.errors import CycleAborted, CycleFailed, PermanentError, TemporaryError

CANARY = "soakcanary7f3a9c41"   # a secret every injected fault carries; it must never be written anywhere


class SimulatedKill(BaseException):
    """The process dies here (kill -9): nothing after this point runs, no handler sees it."""


def _raise(exc: BaseException) -> Callable[..., Any]:
    def hook(real: Callable[..., Any], *a: Any, **k: Any) -> Any:
        raise exc
    return hook


def _after(exc: BaseException) -> Callable[..., Any]:
    def hook(real: Callable[..., Any], *a: Any, **k: Any) -> Any:
        real(*a, **k)
        raise exc
    return hook


@dataclass(frozen=True)
class Fault:
    name: str
    adapter: str             # the Deps field it wraps
    method: str
    hook: Callable[..., Any]
    expect: str              # aborted | failed | killed | completed


CYCLE_FAULTS = [
    Fault("prometheus_down", "metrics", "check", _raise(TemporaryError(
        f"connection refused: http://soak:{CANARY}@prometheus.invalid:9090/api/v1/query", delay=0.01)), "aborted"),
    Fault("git_remote_gone", "repo", "sync", _raise(TemporaryError(
        f"fatal: unable to access 'https://x-access-token:{CANARY}@git.invalid/gitops.git/'", delay=0.01)), "aborted"),
    Fault("query_rejected", "metrics", "workload_cost", _raise(PermanentError(
        f"bad_data: 1:7: parse error (api_key={CANARY})")), "completed"),
    Fault("stage_bug", "auditlog", "read", _raise(RuntimeError(
        f"unexpected reply from https://audit:{CANARY}@logs.invalid/v1")), "failed"),
]
PUBLISH_FAULTS = [
    Fault("push_rejected", "prs", "publish", _raise(PermanentError(
        f"! [remote rejected] pre-receive hook declined (Authorization: Bearer {CANARY})")), "completed"),
    Fault("killed_after_push", "prs", "publish", _after(SimulatedKill()), "killed"),
]
DECISION_FAULT = "killed_in_decision"


class Faulty:
    """An adapter whose ``method`` runs ``hook(real, ...)`` instead; ``fired`` counts the calls."""

    def __init__(self, inner: Any, method: str, hook: Callable[..., Any]) -> None:
        self._inner, self._method, self._hook, self.fired = inner, method, hook, 0

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._inner, name)
        if name != self._method:
            return real

        def call(*a: Any, **k: Any) -> Any:
            self.fired += 1
            return self._hook(real, *a, **k)
        return call


def _with_fault(deps: Deps, fault: Fault | None) -> tuple[Deps, Faulty | None]:
    if fault is None:
        return deps, None
    wrapped = Faulty(getattr(deps, fault.adapter), fault.method, fault.hook)
    return replace(deps, **{fault.adapter: wrapped}), wrapped


def _garbage(audit_log: Path) -> None:
    """Lines a real audit log can hold that are not events the daemon should count."""
    with audit_log.open("a") as f:
        f.write("not json at all\n")
        f.write('{"kind": "Event", "apiVersion": "audit.k8s.io/v2", "verb": "patch"}\n')
        f.write('{"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": []}\n')


def _cycle(deps: Deps, settings: Any, at: datetime) -> tuple[str, dict[str, Any] | None, BaseException | None]:
    try:
        with open_checkpointer(settings) as cp:
            return "completed", run_cycle(deps, cp, started_at=at), None
    except CycleFailed as e:
        return "failed", None, e
    except CycleAborted as e:
        return "aborted", None, e
    except SimulatedKill as e:
        return "killed", None, e


def _decide_all(deps: Deps, store: Store, verdict: str, kill: bool, acked: list[str]) -> int:
    """Decide every incident that has an open PR; with ``kill`` the first decision's process dies
    right after the PR was merged/closed, and the decision is asked again (as a retrying user would)."""
    fired = 0
    for pr in store.list_prs(statuses=["open"]):
        for inc_id in pr.incident_ids:
            inc = store.get_incident(inc_id)
            if inc is None or inc.status not in ("open", "proposed"):
                continue
            d = deps
            if kill and not fired:
                method = "merge" if verdict == "approve" else "close"
                d = replace(deps, prs=Faulty(deps.prs, method, _after(SimulatedKill())))
            try:
                acked.append(decide(d, incident_id=inc_id, verdict=verdict, actor="soak", source="cli").id)
            except SimulatedKill:
                fired += 1
                acked.append(decide(deps, incident_id=inc_id, verdict=verdict, actor="soak", source="cli").id)
    return fired


def _leaks(root: Path, log_file: Path) -> list[str]:
    where: list[str] = []
    for p in [root, *root.rglob("*")]:
        if CANARY in p.name:
            where.append(f"name {p}")
        if p.is_file() and not p.is_symlink() and CANARY.encode() in p.read_bytes():
            where.append(f"file {p.relative_to(root)}")
    for git_dir in {p.parent for p in root.rglob("HEAD") if (p.parent / "objects").is_dir()}:
        history = subprocess.run(["git", "--git-dir", str(git_dir), "log", "--all", "-p", "--format=%H %an %ae%n%B"],
                                 capture_output=True, text=True, errors="replace").stdout
        if CANARY in history:
            where.append(f"git history {git_dir.relative_to(root)}")
    if CANARY in log_file.read_text(errors="replace"):
        where.append("log")
    return where


def run_faults(root: Path, *, cycles: int, epoch: int, fault_every: int, progress: Callable[[str], None]) -> dict[str, Any]:
    log_file = root / "soak.log"
    setup_logging(verbose=True)   # DEBUG: the most a user can ask to see, tracebacks included
    stream = log_file.open("w")
    for h in logging.getLogger().handlers:
        if isinstance(h, logging.StreamHandler):
            h.setStream(stream)
    injected: Counter[str] = Counter()
    unexpected: list[str] = []
    outcomes: Counter[str] = Counter()
    acked: list[str] = []
    dup_prs = lost = twice = resumed = 0
    chains_ok = True
    audit_entries = 0
    t0 = time.perf_counter()
    rotation = 0
    epochs = (cycles + epoch - 1) // epoch
    for e in range(epochs):
        folder = root / f"epoch-{e:03d}"
        folder.mkdir()
        now = datetime.now(UTC).replace(microsecond=0)
        cfg, cfg_path, _ = prepare_workspace(folder, now)
        settings = validate_settings(cfg, source=str(cfg_path))
        store = open_store(settings)
        epoch_acked: list[str] = []
        killed_cycle = False
        for c in range(min(epoch, cycles - e * epoch)):
            base = replace(build_deps(settings, store=store, replay_shift_to=now, on_progress=lambda m: None),
                           retry_base_s=0.01)
            if c == 0:     # the epoch's first cycle publishes PRs: a fault at publish, or none
                fault = [None, *PUBLISH_FAULTS][e % (len(PUBLISH_FAULTS) + 1)]
            elif c % fault_every == 0 and not killed_cycle:
                fault = CYCLE_FAULTS[rotation % len(CYCLE_FAULTS)]
                rotation += 1
            else:
                fault = None
            if fault is None and c % fault_every == 1 and c > 1:
                _garbage(Path(settings.auditlog.paths[0]))
                injected["audit_garbage"] += 1
            deps, wrapped = _with_fault(base, fault)
            inflight = store.get_kv(INFLIGHT_KEY) if killed_cycle else ""
            outcome, report, err = _cycle(deps, settings, now + timedelta(seconds=c))
            outcomes[outcome] += 1
            killed_cycle = outcome == "killed"
            if inflight:   # the cycle after a kill must finish the killed one, not start afresh
                if report is not None and report["cycle_id"] == inflight:
                    resumed += 1
                else:
                    unexpected.append(f"epoch {e} cycle {c}: the killed cycle {inflight} was not resumed")
            fired = wrapped.fired if wrapped is not None else 0
            if fault is not None and fired:
                injected[fault.name] += 1
                if outcome != fault.expect:
                    unexpected.append(f"epoch {e} cycle {c}: {fault.name} gave {outcome} ({err}), not {fault.expect}")
                if outcome == "completed" and not (report or {}).get("errors"):
                    unexpected.append(f"epoch {e} cycle {c}: {fault.name} is not under errors")
            elif outcome != "completed":
                unexpected.append(f"epoch {e} cycle {c}: no fault fired but the cycle {outcome} ({err})")
            if outcome == "completed":
                n = _decide_all(base, store, "approve" if e % 2 == 0 else "reject",
                                kill=(len(epoch_acked) == 0 and e % 3 == 0), acked=epoch_acked)
                injected[DECISION_FAULT] += n
        prs = store.list_prs()
        dup_prs += len(prs) - len({p.branch for p in prs})
        decided = {d.id: d for d in store.list_decisions()}
        audited = Counter(a.data.get("decision_id") for a in store.audit.entries() if a.stage == "decision")
        lost += sum(1 for d in set(epoch_acked) if d not in decided or audited[d] != 1)
        twice += sum(1 for n in Counter(d.incident_id for d in decided.values()).values() if n > 1)
        v = store.audit.verify()
        chains_ok &= v.ok
        audit_entries += v.count
        acked += epoch_acked
        store.close()
        progress(f"  epoch {e + 1}/{epochs}: {sum(outcomes.values())} cycles, {sum(injected.values())} faults, "
                 f"{len(acked)} decisions, {time.perf_counter() - t0:.0f} s")
    stream.flush()
    leaks = _leaks(root, log_file)
    stream.close()
    return {
        "cycles": sum(outcomes.values()), "epochs": epochs, "outcomes": dict(outcomes),
        "faults_injected": sum(injected.values()), "faults_by_kind": dict(sorted(injected.items())),
        "killed_cycles_resumed": resumed, "unexpected_outcomes": unexpected,
        "duplicate_prs": dup_prs, "decisions_acknowledged": len(set(acked)), "decisions_lost": lost,
        "incidents_decided_twice": twice, "secrets_leaked": len(leaks), "leaks": leaks[:20],
        "audit_entries": audit_entries, "audit_chains_ok": chains_ok,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def faults_ok(f: dict[str, Any]) -> bool:
    return (not f["unexpected_outcomes"] and f["duplicate_prs"] == 0 and f["decisions_lost"] == 0
            and f["incidents_decided_twice"] == 0 and f["secrets_leaked"] == 0 and f["audit_chains_ok"]
            and f["faults_injected"] > 0)


__all__ = ["CANARY", "faults_ok", "run_faults"]
