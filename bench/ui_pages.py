"""Render times of the review UI's pages over a store of many incidents.

Seeds a SQLite store with N incidents (default 500; every kind and status, evidence with a 48-point
series, a plan each, a PR for half of them, decisions, about 6 audit entries each) and the cycle
reports of the last cycles (their findings and compliance posture), serves the real app
(`agents.http.create_app`) with uvicorn on loopback, and times each page over HTTP.

    python bench/ui_pages.py                    # 500 incidents, 20 cycles, 20 requests per page
    python bench/ui_pages.py --incidents 2000 --requests 10 --json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from agents.compose import build_deps  # noqa: E402
from agents.config import validate_settings  # noqa: E402
from agents.http import create_app  # noqa: E402
from agents.probes import BackgroundServer, listen  # noqa: E402
from memory.records import (  # noqa: E402
    Decision,
    FieldEdit,
    Incident,
    IncidentKind,
    PullRequest,
    RemediationPlan,
)
from memory.store import Store  # noqa: E402

KINDS = get_args(IncidentKind)
STATUSES = ("open", "proposed", "approved", "rejected", "resolved", "closed")


def seed(store: Store, n: int, cycles: int, now: datetime, rnd: random.Random) -> list[str]:
    ids = []
    findings = []
    posture = []
    for k in range(n):
        kind = KINDS[k % len(KINDS)]
        service = f"ns{k % 7}/svc-{k:04d}"
        t0 = (now - timedelta(days=7)).timestamp()
        base = rnd.uniform(1, 10)
        pts = [[t0 + i * 12600, round(base * (3 if i > 40 else 1) * rnd.uniform(0.95, 1.05), 4)] for i in range(48)]
        evidence = {"window": {"start": (now - timedelta(hours=6)).isoformat(), "end": now.isoformat(), "minutes": 360},
                    "cost_usd_per_hour": base * 3, "expected_usd_per_hour": base,
                    "expected_range_usd_per_hour": [base * 0.9, base * 1.3], "ratio": 3.0,
                    "extra_usd_per_month": round(base * 2 * 730, 2), "replicas_now": 6, "points": pts}
        status = STATUSES[k % len(STATUSES)]
        inc = Incident(kind=kind, service=service, severity=("info", "warning", "critical")[k % 3], status=status,
                       fingerprint=f"{k:08x}", summary=f"{service} costs ${base * 3:.2f}/h, x3.00 its expected",
                       evidence=evidence, file=f"apps/{service}.yaml",
                       opened_at=now - timedelta(minutes=k), last_seen_at=now - timedelta(minutes=k // 2))
        store.save_incident(inc)
        ids.append(inc.id)
        plan = RemediationPlan(incident_id=inc.id, playbook="cap_max_replicas", rationale="cap it " * 20,
                               guard_verdict="accepted",
                               edits=(FieldEdit(file=inc.file or "", doc_kind="Deployment", doc_name=service,
                                                path=("spec", "replicas"), old=6, new=3),))
        store.save_plan(plan)
        store.audit.append(stage="correlate", action="incident_opened", subject=inc.id, data={"kind": kind})
        store.audit.append(stage="plan", action="planned", subject=inc.id, data={"plan_id": plan.id})
        store.audit.append(stage="guard", action="accepted", subject=inc.id, data={"plan_id": plan.id})
        if k % 2 == 0:
            pr = PullRequest(branch=f"remediator/x/{service.replace('/', '-')}-{k:08x}", title=f"cap {service}",
                             body="## What remediator saw\n" + "evidence line\n" * 60, files=(inc.file or "",),
                             incident_ids=(inc.id,), url=f"local://remote#{k}",
                             status="merged" if status in ("approved", "resolved") else
                             "closed" if status in ("rejected", "closed") else "open")
            store.save_pr(pr)
            store.audit.append(stage="propose", action="pr_opened", subject=pr.id, data={"branch": pr.branch})
            if status in ("approved", "rejected"):
                store.save_decision(Decision(incident_id=inc.id, pr_id=pr.id, plan_id=plan.id,
                                             verdict="approve" if status == "approved" else "reject",
                                             actor="cli:bench", source="cli"))
                store.audit.append(stage="decision", action=status, subject=inc.id, data={"actor": "cli:bench"})
        findings.append({"kind": kind, "service": service, "severity": inc.severity, "summary": inc.summary,
                         "evidence": {k2: v for k2, v in evidence.items() if k2 != "points"}})
        for policy in ("fairness-monitored", "required-labels", "monitoring-enabled"):
            posture.append({"service": service, "object": f"Deployment/{service}", "policy": policy,
                            "status": rnd.choice(("pass", "pass", "fail")), "severity": "warning"})
    for c in range(cycles):
        started = now - timedelta(minutes=5 * c)
        store.save_cycle(cycle_id=f"cyc-bench-{c:04d}", started_at=started, finished_at=started + timedelta(seconds=30),
                         report={"cycle_id": f"cyc-bench-{c:04d}", "started_at": started.isoformat(),
                                 "findings": findings, "incidents": [], "pull_requests": [], "notifications": [],
                                 "errors": [], "compliance": posture})
    return ids


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--incidents", type=int, default=500)
    ap.add_argument("--cycles", type=int, default=20, help="stored cycle reports (each lists every finding)")
    ap.add_argument("--requests", type=int, default=20, help="requests per page")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if a.incidents < 1 or a.requests < 1 or a.cycles < 0:
        ap.error("--incidents and --requests must be >= 1, --cycles >= 0")
    with tempfile.TemporaryDirectory(prefix="remediator-ui-bench-") as tmp:
        settings = validate_settings({"gitops": {"remote": str(Path(tmp) / "remote.git")},
                                      "memory": {"url": f"sqlite:///{tmp}/state.db"}})
        store = Store.open(settings.memory.url)
        t0 = time.perf_counter()
        ids = seed(store, a.incidents, a.cycles, datetime.now(UTC), random.Random(17))
        seeded_s = time.perf_counter() - t0
        deps = build_deps(settings, store=store)
        app = create_app(lambda: deps, settings)
        server = BackgroundServer(app, listen("127.0.0.1", 0, key="bench"))
        server.start()
        url = f"http://{server.address}"
        pages = {"dashboard /ui/": "/ui/", "list, 50 a page": "/ui/incidents",
                 "list, 200 a page": "/ui/incidents?per_page=200",
                 "list, filtered": "/ui/incidents?kind=cost_anomaly&status=active&since=7d",
                 "list, last page": f"/ui/incidents?page={max(1, -(-a.incidents // 50))}",
                 "incident page": f"/ui/incidents/{ids[len(ids) // 2]}"}
        rows = []
        try:
            with httpx.Client(base_url=url, timeout=60) as c:
                for _ in range(50):   # wait for the server
                    try:
                        c.get("/healthz")
                        break
                    except httpx.TransportError:
                        time.sleep(0.1)
                for name, path in pages.items():
                    r = c.get(path)   # warm-up (and a check)
                    if r.status_code != 200:
                        raise SystemExit(f"{path}: HTTP {r.status_code}")
                    times = []
                    for i in range(a.requests):
                        p = f"/ui/incidents/{ids[(i * 37) % len(ids)]}" if name == "incident page" else path
                        t = time.perf_counter()
                        r = c.get(p)
                        times.append(time.perf_counter() - t)
                        assert r.status_code == 200
                    times.sort()
                    rows.append({"page": name, "path": path, "bytes": len(r.content),
                                 "median_ms": round(statistics.median(times) * 1000, 1),
                                 "p95_ms": round(times[min(len(times) - 1, int(0.95 * len(times)))] * 1000, 1),
                                 "max_ms": round(times[-1] * 1000, 1)})
        finally:
            server.stop()
            store.close()
    doc: dict[str, Any] = {"incidents": a.incidents, "cycles": a.cycles, "requests_per_page": a.requests,
                           "seed_s": round(seeded_s, 1), "threads": threading.active_count(), "pages": rows}
    if a.json:
        print(json.dumps(doc, indent=1))
    else:
        print(f"{a.incidents} incidents, {a.cycles} stored cycle reports, {a.requests} requests per page "
              f"(seeded in {seeded_s:.1f} s)")
        print(f"{'page':<20} {'median ms':>10} {'p95 ms':>8} {'max ms':>8} {'KiB':>6}")
        for r in rows:
            print(f"{r['page']:<20} {r['median_ms']:>10} {r['p95_ms']:>8} {r['max_ms']:>8} {r['bytes'] / 1024:>6.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
