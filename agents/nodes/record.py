"""record: store the audit-log cursor, anchor the audit chain head in the GitOps remote when it is
due, and store the cycle's report (the run-once JSON contract)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import partial
from typing import Any

from langgraph.runtime import Runtime

from agents.deps import Deps, audit, now_of, retrying
from agents.state import ANCHOR_KEY, CARRY_KEY, CURSOR_KEY, CycleState, err
from memory.records import ACTIVE_STATUSES, Finding
from tools.errors import ToolError


def record(state: CycleState, runtime: Runtime[Deps]) -> CycleState:
    deps = runtime.context
    if not deps.dry_run and state.get("audit_cursor") is not None:
        deps.store.set_kv(CURSOR_KEY, str(state["audit_cursor"]))
        deps.store.set_kv(CARRY_KEY, json.dumps(state.get("audit_carry", [])))   # with the cursor that passed them
    errors = anchor(deps, state)
    report = build_report(deps, {**state, "errors": [*state.get("errors", []), *errors]} if errors else state)
    if not deps.dry_run:
        deps.store.save_cycle(cycle_id=state["cycle_id"], started_at=now_of(state), finished_at=datetime.now(UTC),
                              report=report)
    audit(deps, state, "record", "cycle_finished", state["cycle_id"], findings=len(report["findings"]),
          incidents=len(report["incidents"]), pull_requests=len(report["pull_requests"]),
          notifications=len(report["notifications"]), errors=len(report["errors"]))
    return {"errors": errors} if errors else {}


def anchor(deps: Deps, state: CycleState) -> list[dict[str, Any]]:
    """Copy the audit chain head to the GitOps remote when it moved and ``audit.anchor_interval``
    has passed since the last anchor (never in a dry run). A failure is an error of the report."""
    if deps.anchors is None or deps.dry_run:
        return []
    now = now_of(state)
    seq, digest = deps.store.audit.head()
    last = json.loads(deps.store.get_kv(ANCHOR_KEY) or "{}")
    if seq == 0 or last.get("seq") == seq or (
            "at" in last and now - datetime.fromisoformat(last["at"]) < deps.settings.audit.anchor_interval):
        return []
    try:
        commit = retrying(deps, f"audit anchor in {deps.anchors.location}",
                          partial(deps.anchors.write, seq=seq, digest=digest, at=now))
    except ToolError as e:
        audit(deps, state, "record", "anchor_failed", deps.anchors.location, seq=seq, error=str(e))
        return [err("record", deps.anchors.location, f"cannot anchor the audit chain head (entry {seq}): {e}")]
    deps.store.set_kv(ANCHOR_KEY, json.dumps({"seq": seq, "hash": digest, "at": now.isoformat(), "commit": commit}))
    audit(deps, state, "record", "anchored", commit, seq=seq, hash=digest, location=deps.anchors.location)
    deps.on_progress(f"audit chain head (entry {seq}) anchored in {deps.anchors.location} as {commit[:12]}")
    return []


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
        "compliance": state.get("compliance", []),
    }
