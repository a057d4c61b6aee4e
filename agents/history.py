"""Questions the cycle asks of the GitOps repository's history (read-only): the model version
before the current one, and the history of a workload's resource requests. Also the planners'
context, which carries the first of them."""

from __future__ import annotations

import json
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


def history_place(w: Workload, field: tuple[str, ...]) -> tuple[str, str, str, tuple[str | int, ...]]:
    """``(file, kind, name, path)`` whose Git history is the history of the deployed mapping ``field``
    of the workload: the overlay patch document that sets its keys when one such document sets all
    the keys an overlay sets (a resources or model patch), else the workload's own document."""
    places = set()
    for key, (file, kind, name, path) in w.doc.set_in.items():
        keys = json.loads(key)
        if keys[:-1] == list(field) and kind == w.kind and len(path) >= 1:
            places.add((file, kind, name, tuple(path[:-1])))
    if len(places) == 1:
        return places.pop()
    return w.file, w.kind, w.doc.doc_name, field


def field_history(deps: Deps, w: Workload, field: tuple[str, ...]) -> list[tuple[str, datetime, object]] | None:
    """``(commit, committed_at, value)`` of the workload's mapping ``field`` where it is set
    (``history_place``), newest first; None when the history cannot be read (logged)."""
    file, kind, name, path = history_place(w, field)
    try:
        return deps.repo.field_history(path=file, doc_kind=kind, doc_name=name, field=path)
    except ToolError as e:
        log.warning("git history of %s unavailable: %s", file, e)
        return None


def previous_model(deps: Deps, w: Workload) -> dict[str, Any] | None:
    """The model version before the current one in Git history, with its artifact path and the
    time the current version was committed."""
    current = str(w.model.get("version", ""))
    hist = field_history(deps, w, ("spec", "modelRef"))
    if hist is None:
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


def approved_model(deps: Deps, w: Workload, models: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest model version in Git history (not the current one) that ``policies/models.yaml``
    approves for the workload's model: what a rollback to "the last approved version" goes to."""
    name, current = str(w.model.get("name", "")), str(w.model.get("version", ""))
    approved = {str(m.get("version")) for m in models if str(m.get("name")) == name}
    hist = field_history(deps, w, ("spec", "modelRef")) if approved else None
    for sha, _, value in hist or []:
        ref = value if isinstance(value, dict) else {}
        v = str(ref.get("version", ""))
        if v and v != current and v in approved:
            return {"version": v, "path": ref.get("path"), "commit": sha}
    return None


def request_history(deps: Deps, w: Workload) -> list[tuple[str, datetime, dict[str, Any]]]:
    """``(commit, committed_at, resourceRequests)`` where the workload's requests are set (its
    manifest, or the overlay patch that sets them), newest first."""
    hist = field_history(deps, w, REQUESTS_PATH) if w.kind == "MultimodalInferenceService" else None
    return [(sha, at, v if isinstance(v, dict) else {}) for sha, at, v in hist or []]


def plan_context(deps: Deps, views: Views) -> PlanContext:
    """What a planner (and the guard's deterministic fallback) sees of this cycle."""
    return PlanContext(workloads=views.workloads, guardrails=views.guardrails, budgets=views.budgets,
                       playbooks=deps.playbooks, previous_model=lambda w: previous_model(deps, w),
                       approved_model=lambda w: approved_model(deps, w, views.policies.models))
