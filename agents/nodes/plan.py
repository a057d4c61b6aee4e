"""plan: each open incident touched this cycle gets a RemediationPlan (playbook + parameters +
rationale) from the LLM planner (which falls back to the deterministic one) or the
deterministic planner. An accepted plan with an open PR is kept while its incident lasts."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial
from typing import Any

from langgraph.runtime import Runtime

from agents.deps import Deps, audit, now_of
from agents.history import plan_context
from agents.incidents import open_pr_of
from agents.logs import each_incident
from agents.planners.deterministic import plan as deterministic_plan
from agents.planners.tools import PlannerTools
from agents.state import CycleState, err
from memory.records import Incident
from tools.errors import ToolError
from tools.results import SignalResult

LLM_PLAN_REUSE = timedelta(hours=1)   # do not pay tokens twice an hour for the same incident


def plan(state: CycleState, runtime: Runtime[Deps]) -> CycleState:
    deps = runtime.context
    ctx = plan_context(deps, deps.views.get(state, deps.settings.gitops.policies_dir))
    plans = []
    errors: list[dict[str, Any]] = []
    now = now_of(state)
    for iid in each_incident(state.get("touched", []), str):
        inc = deps.store.get_incident(iid)
        if inc is None or inc.status not in ("open", "proposed"):
            continue
        prev = deps.store.latest_plan(iid)
        pr = open_pr_of(deps, inc)
        reuse_llm = prev is not None and prev.planner == "llm" and now - prev.created_at < LLM_PLAN_REUSE \
            and prev.guard_verdict != "deferred"
        if prev is not None and ((prev.guard_verdict == "accepted" and pr is not None) or reuse_llm):
            p = prev  # keep the open PR stable while its incident lasts
        else:
            if deps.planner is not None:
                tools = PlannerTools.from_context(ctx, query_signal=partial(query_signal, deps, now),
                                                  git_log=partial(git_log, deps),
                                                  similar_incidents=partial(similar_incidents, deps, inc))
                p = deps.planner.plan(inc, ctx, tools)
            else:
                p = deterministic_plan(inc, ctx)
            if p.planner_reason.startswith("llm fallback"):
                errors.append(err("plan", inc.id, p.planner_reason))
            deps.store.save_plan(p)
            audit(deps, state, "plan", "planned", inc.id, plan_id=p.id, playbook=p.playbook, planner=p.planner,
                  planner_reason=p.planner_reason, params=p.params, rationale=p.rationale)
        plans.append(p.model_dump(mode="json"))
    return {"plans": plans, "errors": errors}


def query_signal(deps: Deps, now: datetime, *, service: str, signal: str, window_minutes: int) -> SignalResult | None:
    """Read-only tool for the LLM planner: one signal of one workload over a window ending now."""
    ns, _, name = service.partition("/")
    w = deps.views.current.workloads.get(service) if deps.views.current is not None else None
    kind = w.kind if w is not None else "Deployment"
    step = int(max(60, deps.settings.prometheus.scrape_interval.total_seconds()))
    start = now - timedelta(minutes=max(step // 60, min(int(window_minutes), 7 * 24 * 60)))
    m = deps.metrics
    try:
        if signal == "cost":
            return m.workload_cost(namespace=ns, name=name, start=start, end=now, step_s=step, kind=kind)
        if signal == "replicas":
            return m.workload_replicas(namespace=ns, name=name, start=start, end=now, step_s=step, kind=kind)
        if signal == "requests":
            return m.request_rate(namespace=ns, service=name, start=start, end=now, step_s=step)
        if signal == "gpu_util":
            return m.gpu_utilisation(namespace=ns, name=name, start=start, end=now, step_s=step, kind=kind)
    except ToolError:
        return None
    return None


def git_log(deps: Deps, *, file: str, limit: int) -> list[dict[str, Any]]:
    """Read-only tool for the LLM planner: recent commits of a workload's manifest file (the same
    tool the evals offer)."""
    return [{"commit": c.sha[:12], "at": c.at.isoformat().replace("+00:00", "Z"), "author": c.author,
             "message": c.subject} for c in deps.repo.file_log(path=file, limit=limit)]


def similar_incidents(deps: Deps, current: Incident, *, kind: str | None, service: str | None,
                      limit: int = 5) -> list[dict[str, Any]]:
    """Read-only tool for the LLM planner: past incidents and how they ended, most similar to the
    incident being planned first. ``kind`` / ``service`` filter when given (None: any); similarity
    is the same kind, the same service, then the overlap of the evidence's fields; ties: newest."""
    def score(i: Incident) -> tuple[float, float]:
        keys, mine = set(i.evidence), set(current.evidence)
        shape = len(keys & mine) / len(keys | mine) if keys | mine else 0.0
        return (2.0 * (i.kind == current.kind) + 1.0 * (i.service == current.service) + shape,
                i.opened_at.timestamp())

    candidates = [i for i in deps.store.list_incidents() if i.id != current.id
                  and (not kind or i.kind == kind) and (not service or i.service == service)]
    out = []
    for i in sorted(candidates, key=score, reverse=True)[:max(0, limit)]:
        p = deps.store.latest_plan(i.id)
        d = deps.store.list_decisions(incident_id=i.id)
        out.append({"id": i.id, "kind": i.kind, "service": i.service, "opened_at": i.opened_at.isoformat(),
                    "playbook": p.playbook if p else None, "verdict": d[0].verdict if d else None,
                    "outcome": i.status, "summary": i.summary[:200]})
    return out
