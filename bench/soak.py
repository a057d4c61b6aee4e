"""Soak: many cycles in one process, the way the daemon runs them, on the demo's embedded data.

    python bench/soak.py --cycles 500 [--warmup 50] [--state DIR] [--json]
    python bench/soak.py --faults --cycles 500 [--epoch 10] [--fault-every 2] [--state DIR] [--json]

Each cycle is what a daemon tick does (fresh adapters, the shared store, the configured
checkpointer), evaluated a few seconds after the previous one on unchanged inputs (the steady
state of a daemon). Figures printed: wall time per cycle, RSS, open file descriptors and threads
after the warm-up and at the end, the size of the state (store + checkpoints), PRs and
decisions, and whether the audit chain verifies. Exit 1 when RSS grows more than 10 % after the
warm-up, file descriptors or threads grow, PR records duplicate, or the chain does not verify.

With ``--faults``, faults are injected while cycles run (bench/soak_faults.py says which and what
is checked): figures for faults injected, outcomes, duplicate PRs, decisions lost and secrets
leaked; exit 1 when any is off.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.checkpoint import open_checkpointer  # noqa: E402
from agents.compose import build_deps, open_store  # noqa: E402
from agents.config import validate_settings  # noqa: E402
from agents.demo import prepare_workspace  # noqa: E402
from agents.graph import run_cycle  # noqa: E402
from bench.soak_faults import faults_ok, run_faults  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def state_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.db*")) + sum(
        p.stat().st_size for p in folder.glob("checkpoints.sqlite*"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--state", type=Path, default=None, help="an empty folder (default: a temporary one)")
    ap.add_argument("--json", action="store_true", help="print only the figures as one JSON document")
    ap.add_argument("--faults", action="store_true", help="inject faults while cycles run (a fresh demo "
                    "workspace every --epoch cycles, so that there is always something to propose and decide)")
    ap.add_argument("--epoch", type=int, default=10, help="with --faults: cycles per workspace (default 10)")
    ap.add_argument("--fault-every", type=int, default=2, help="with --faults: a cycle fault every N cycles (default 2)")
    a = ap.parse_args(argv)
    if a.faults:
        if a.epoch < 2 or a.fault_every < 1 or a.cycles < 1:
            ap.error("--epoch must be at least 2, --fault-every and --cycles at least 1")
        root = a.state or Path(tempfile.mkdtemp(prefix="remediator-soak-faults-"))
        root.mkdir(parents=True, exist_ok=True)
        if any(root.iterdir()):
            ap.error(f"--state {root} is not empty; pick an empty or new folder")
        figures = run_faults(root, cycles=a.cycles, epoch=a.epoch, fault_every=a.fault_every,
                             progress=(lambda m: None) if a.json else (lambda m: print(m, file=sys.stderr)))
        print(json.dumps(figures, indent=None if a.json else 1))
        return 0 if faults_ok(figures) else 1
    if a.cycles < 2 or not 1 <= a.warmup < a.cycles:
        ap.error(f"--warmup must be at least 1 and below --cycles (got {a.warmup} of {a.cycles})")
    folder = a.state or Path(tempfile.mkdtemp(prefix="remediator-soak-"))
    now = datetime.now(UTC).replace(microsecond=0)
    cfg, cfg_path, _ = prepare_workspace(folder, now)
    settings = validate_settings(cfg, source=str(cfg_path))
    store = open_store(settings)
    marks: dict[str, float] = {}
    times: list[float] = []
    for c in range(a.cycles):
        t0 = time.perf_counter()
        deps = build_deps(settings, store=store, replay_shift_to=now, on_progress=lambda m: None)
        with open_checkpointer(settings) as cp:
            run_cycle(deps, cp, started_at=now + timedelta(seconds=c))
        times.append(time.perf_counter() - t0)
        if c + 1 == a.warmup:
            marks = {"rss_mb": rss_mb(), "fds": fds(), "threads": threading.active_count(),
                     "state_bytes": state_bytes(folder)}
        if not a.json and (c + 1) % 50 == 0:
            print(f"  {c + 1} cycles, RSS {rss_mb():.0f} MB, {fds()} fds, state {state_bytes(folder) / 1e6:.2f} MB",
                  file=sys.stderr)
    prs = store.list_prs()
    verify = store.audit.verify()
    end = {"rss_mb": rss_mb(), "fds": fds(), "threads": threading.active_count(), "state_bytes": state_bytes(folder)}
    figures = {
        "cycles": a.cycles, "warmup": a.warmup,
        "seconds_per_cycle": {"median": round(sorted(times)[len(times) // 2], 3), "max": round(max(times), 3)},
        "rss_mb": {"after_warmup": round(marks["rss_mb"], 1), "end": round(end["rss_mb"], 1),
                   "growth_percent": round(100 * (end["rss_mb"] / marks["rss_mb"] - 1), 1)},
        "fds": {"after_warmup": marks["fds"], "end": end["fds"]},
        "threads": {"after_warmup": marks["threads"], "end": end["threads"]},
        "state_mb": {"after_warmup": round(marks["state_bytes"] / 1e6, 2), "end": round(end["state_bytes"] / 1e6, 2)},
        "pull_requests": len(prs), "duplicate_pr_branches": len(prs) - len({p.branch for p in prs if p.status == "open"})
        - len([p for p in prs if p.status != "open"]),
        "decisions": len(store.list_decisions()), "audit_entries": verify.count, "audit_chain_ok": verify.ok,
    }
    store.close()
    print(json.dumps(figures, indent=None if a.json else 1))
    ok = (figures["rss_mb"]["growth_percent"] <= 10 and end["fds"] <= marks["fds"] + 2
          and end["threads"] <= marks["threads"] and figures["duplicate_pr_branches"] == 0 and verify.ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
