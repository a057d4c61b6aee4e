"""guard: each plan is checked against the guardrails (agents/guard.py); a plan the guard
refuses falls back to the deterministic planner's, which is checked the same way."""

from __future__ import annotations

import json
from datetime import timedelta
from functools import partial
from typing import Any

from langgraph.runtime import Runtime

from agents.compliance import PR_BREAKS_KEY, broken_by
from agents.deps import Deps, audit, now_of
from agents.guard import GuardContext
from agents.guard import check as guard_check
from agents.history import approved_model, plan_context, previous_model, request_history
from agents.incidents import open_pr_of, same_fingerprint
from agents.logs import each_incident
from agents.planners.deterministic import plan as deterministic_plan
from agents.planners.fallback import guard_or_fallback
from agents.state import CycleState, Views, err
from agents.workloads import Budget, Workload, incident_scope
from memory.records import FieldEdit, Incident, PullRequest, RemediationPlan


def guard(state: CycleState, runtime: Runtime[Deps]) -> CycleState:
    deps = runtime.context
    views = deps.views.get(state, deps.settings.gitops.policies_dir)
    g, workloads = views.guardrails, views.workloads
    now = now_of(state)
    out = []
    open_prs = deps.store.list_prs(statuses=["open"])
    recent = len([x for x in deps.store.list_prs() if now - x.created_at < timedelta(hours=1)])
    new_files: list[set[str]] = []  # PRs this cycle will open (plans accepted so far without a PR)
    plan_ctx = plan_context(deps, views)
    for pd in each_incident(state.get("plans", []), lambda d: str(d.get("incident_id"))):
        p = RemediationPlan.model_validate(pd)
        inc = deps.store.get_incident(p.incident_id)
        if inc is None:
            continue
        existing = open_pr_of(deps, inc) or next((x for x in open_prs if set(x.files) & set(p.files)), None)
        joins_new = any(f & set(p.files) for f in new_files)
        rejected = any(d.verdict == "reject" and now - d.at < timedelta(seconds=g.limits.cooldown_s)
                       for i in same_fingerprint(deps, inc) for d in deps.store.list_decisions(incident_id=i.id))
        ctx = GuardContext(guardrails=g, playbooks=deps.playbooks, workloads=workloads,
                           open_prs_other=len(open_prs) + len(new_files) - (1 if existing is not None else 0),
                           prs_last_hour=recent + len(new_files),
                           has_open_pr=existing is not None or joins_new, rejected_within_cooldown=rejected,
                           scope=_scope(inc, views.budgets, workloads),
                           rollback_versions=_rollback_versions(deps, inc, workloads, views.policies.models),
                           request_values=_request_values(deps, inc, p, workloads),
                           policy_breaks=partial(broken_by, docs=views.docs, pset=views.policies))
        checked = guard_or_fallback(p, inc, check=partial(guard_check, incident=inc, ctx=ctx),
                                    fallback=partial(deterministic_plan, inc, plan_ctx))
        if checked.id != p.id:
            deps.store.save_plan(checked)
        if checked.guard_verdict == "accepted" and existing is None and not joins_new:
            new_files.append(set(p.files))
        if (checked.guard_verdict, checked.guard_reasons) != (p.guard_verdict, p.guard_reasons):
            deps.store.save_plan(checked)
            audit(deps, state, "guard", checked.guard_verdict, inc.id, plan_id=p.id, reasons=list(checked.guard_reasons))
        out.append(checked.model_dump(mode="json"))
    errors = [e for pr in open_prs for e in _recheck_open_pr(deps, state, pr, views)]
    return {"plans": out, "errors": errors}


def _recheck_open_pr(deps: Deps, state: CycleState, pr: PullRequest, views: Views) -> list[dict[str, Any]]:
    """An open PR's edits evaluated again on this cycle's desired state and policies (main or the
    policies may have moved since it opened). Policies it would now break are audited when they
    change, reported each cycle, and kept for the approval path, which refuses to merge it."""
    edits: list[FieldEdit] = []
    for iid in pr.incident_ids:
        plan = deps.store.latest_plan(iid)
        if plan is not None and plan.edits:
            edits += [e for e in plan.edits if e not in edits]
    breaks = broken_by(edits, views.docs, views.policies) if edits else []
    key = PR_BREAKS_KEY.format(pr.id)
    if json.loads(deps.store.get_kv(key) or "[]") != breaks:
        deps.store.set_kv(key, json.dumps(breaks))
        audit(deps, state, "guard", "pr_breaks_policy" if breaks else "pr_passes_policies", pr.branch,
              pr_id=pr.id, breaks=breaks)
    return [err("guard", pr.branch, f"open PR would break compliance policy {b}; approving it is refused until the "
                                    "policy, the desired state or the PR changes (or reject it)") for b in breaks]


def _scope(inc: Incident, budgets: list[Budget], workloads: dict[str, Workload]) -> set[str]:
    """The services the plan may change: the incident's own (even when gone from Git), or those of
    its budget."""
    scope = {w.key for w in incident_scope(inc, budgets, workloads)}
    return scope if inc.kind == "budget_breach" else scope | {inc.service}


def _rollback_versions(deps: Deps, inc: Incident, workloads: dict[str, Workload],
                       models: list[dict[str, Any]]) -> set[str] | None:
    w = workloads.get(inc.service)
    if inc.kind == "policy_violation" and w is not None:   # only to the newest approved version in Git history
        approved = approved_model(deps, w, models)
        return {str(approved["version"])} if approved else set()
    if inc.kind not in ("model_drift", "fairness_violation") or w is None:
        return None
    prev = previous_model(deps, w)
    base = ((w.responsible_ai.get("driftDetection") or {}).get("baselineModelRef"))
    return {str(v) for v in ((prev or {}).get("version"), base) if v}


def _request_values(deps: Deps, inc: Incident, plan: RemediationPlan,
                    workloads: dict[str, Workload]) -> dict[str, set[str]] | None:
    """Where a rightsize may be checked (the plan is one, or the incident's deterministic fallback
    would be: a raised request in the evidence): the values each resource request of the workload
    had in Git history, the only values a rightsize may go back to. None otherwise (no Git walk)."""
    w = workloads.get(inc.service)
    if inc.kind != "cost_anomaly" or w is None or (
            plan.playbook != "rightsize_requests" and not inc.evidence.get("request_change")):
        return None
    out: dict[str, set[str]] = {}
    for _, _, requests in request_history(deps, w):
        for k, v in requests.items():
            out.setdefault(str(k), set()).add(str(v))
    return out
