"""Questions the cycle asks of the GitOps repository's history (read-only): the model version
before the current one, and the history of a workload's resource requests. Also the planners'
context, which carries the first of them."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from agents.deps import Deps
from agents.planners.deterministic import PlanContext
from agents.state import Views
from agents.workloads import Workload
from tools.errors import ToolError

log = logging.getLogger("remediator.cycle")

REQUESTS_PATH = ("spec", "resourceRequests")   # a MultimodalInferenceService's per-replica requests


def previous_model(deps: Deps, w: Workload) -> dict[str, Any] | None:
    """The model version before the current one in Git history, with its artifact path and the
    time the current version was committed."""
    current = str(w.model.get("version", ""))
    try:
        hist = deps.repo.field_history(path=w.file, doc_kind=w.kind, doc_name=w.doc.doc_name, field=("spec", "modelRef"))
    except ToolError as e:
        log.warning("git history of %s unavailable: %s", w.file, e)
        return None
    set_at = None
    for sha, at, value in hist:
        ref = value if isinstance(value, dict) else {}
        v = str(ref.get("version", "")) if ref else ""
        if v == current:
            set_at = at.timestamp()
            continue
        if v:
            return {"version": v, "path": ref.get("path"), "commit": sha, "set_at": set_at}
    return None


def request_history(deps: Deps, w: Workload) -> list[tuple[str, datetime, dict[str, Any]]]:
    """``(commit, committed_at, resourceRequests)`` of the workload's manifest, newest first."""
    if w.kind != "MultimodalInferenceService":
        return []
    try:
        hist = deps.repo.field_history(path=w.file, doc_kind=w.kind, doc_name=w.doc.doc_name, field=REQUESTS_PATH)
    except ToolError as e:
        log.warning("git history of %s unavailable: %s", w.file, e)
        return []
    return [(sha, at, v if isinstance(v, dict) else {}) for sha, at, v in hist]


def plan_context(deps: Deps, views: Views) -> PlanContext:
    """What a planner (and the guard's deterministic fallback) sees of this cycle."""
    return PlanContext(workloads=views.workloads, guardrails=views.guardrails, budgets=views.budgets,
                       playbooks=deps.playbooks, previous_model=lambda w: previous_model(deps, w))
