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
from agents.planners.deterministic import plan as deterministic_plan
from agents.planners.tools import PlannerTools
from agents.state import CycleState, err
from tools.errors import ToolError
from tools.results import SignalResult

LLM_PLAN_REUSE = timedelta(hours=1)   # do not pay tokens twice an hour for the same incident


def plan(state: CycleState, runtime: Runtime[Deps]) -> CycleState:
    deps = runtime.context
    ctx = plan_context(deps, deps.views.get(state, deps.settings.gitops.policies_dir))
    plans = []
    errors: list[dict[str, Any]] = []
    now = now_of(state)
    for iid in state.get("touched", []):
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
                                                  similar_incidents=partial(similar_incidents, deps))
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
    step = int(max(60, deps.settings.prometheus.scrape_interval.total_seconds()))
    start = now - timedelta(minutes=max(step // 60, min(int(window_minutes), 7 * 24 * 60)))
    m = deps.metrics
    try:
        if signal == "cost":
            return m.workload_cost(namespace=ns, name=name, start=start, end=now, step_s=step)
        if signal == "replicas":
            return m.workload_replicas(namespace=ns, name=name, start=start, end=now, step_s=step)
        if signal == "requests":
            return m.request_rate(namespace=ns, service=name, start=start, end=now, step_s=step)
        if signal == "gpu_util":
            return m.gpu_utilisation(namespace=ns, name=name, start=start, end=now, step_s=step)
    except ToolError:
        return None
    return None


def similar_incidents(deps: Deps, *, kind: str, service: str, limit: int = 5) -> list[dict[str, Any]]:
    """Read-only tool for the LLM planner: past incidents of this kind/service and how they ended."""
    out = []
    for i in deps.store.list_incidents():
        if i.kind != kind or (service and i.service != service):
            continue
        p = deps.store.latest_plan(i.id)
        d = deps.store.list_decisions(incident_id=i.id)
        out.append({"id": i.id, "kind": i.kind, "service": i.service, "opened_at": i.opened_at.isoformat(),
                    "playbook": p.playbook if p else None, "verdict": d[0].verdict if d else None,
                    "outcome": i.status, "summary": i.summary[:200]})
        if len(out) >= limit:
            break
    return out
