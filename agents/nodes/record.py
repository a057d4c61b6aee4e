"""record: store the audit-log cursor and the cycle's report (the run-once JSON contract)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from langgraph.runtime import Runtime

from agents.deps import Deps, audit, now_of
from agents.state import CURSOR_KEY, CycleState
from memory.records import ACTIVE_STATUSES, Finding


def record(state: CycleState, runtime: Runtime[Deps]) -> CycleState:
    deps = runtime.context
    if not deps.dry_run and state.get("audit_cursor") is not None:
        deps.store.set_kv(CURSOR_KEY, str(state["audit_cursor"]))
    report = build_report(deps, state)
    if not deps.dry_run:
        deps.store.save_cycle(cycle_id=state["cycle_id"], started_at=now_of(state), finished_at=datetime.now(UTC),
                              report=report)
    audit(deps, state, "record", "cycle_finished", state["cycle_id"], findings=len(report["findings"]),
          incidents=len(report["incidents"]), pull_requests=len(report["pull_requests"]),
          notifications=len(report["notifications"]), errors=len(report["errors"]))
    return {}


def build_report(deps: Deps, state: CycleState) -> dict[str, Any]:
    """The cycle's report: every incident and PR open or changed in this cycle."""
    store = deps.store
    touched = set(state.get("touched", []))
    incidents = {i.id: i for i in store.list_incidents(statuses=ACTIVE_STATUSES)}
    for iid in touched:
        i = store.get_incident(iid)
        if i is not None:
            incidents[i.id] = i
    prs = {p.id: p for p in store.list_prs(statuses=["open"])}
    for pid in state.get("pr_ids", []):
        p = store.get_pr(pid)
        if p is not None:
            prs[p.id] = p
    started = now_of(state)
    for p in store.list_prs():
        if p.updated_at >= started:
            prs[p.id] = p
    return {
        "cycle_id": state["cycle_id"],
        "started_at": state["started_at"],
        "findings": [Finding.model_validate(f).report() for f in state.get("findings", [])],
        "incidents": [i.report() for i in sorted(incidents.values(), key=lambda i: (i.opened_at, i.id))],
        "pull_requests": [p.report() for p in sorted(prs.values(), key=lambda p: (p.created_at, p.id))],
        "notifications": state.get("notifications", []),
        "errors": state.get("errors", []),
    }
