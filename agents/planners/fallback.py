"""The guard decides; when it blocks an LLM plan, the deterministic plan replaces it."""

from __future__ import annotations

from collections.abc import Callable

from memory.records import Incident, RemediationPlan


def guard_or_fallback(plan: RemediationPlan, incident: Incident, *, check: Callable[[RemediationPlan], RemediationPlan],
                      fallback: Callable[[], RemediationPlan]) -> RemediationPlan:
    """Run the guard; when it blocks an LLM plan (rejected, or downgraded to notify-only for a
    broken rule), the deterministic plan is guarded instead and says why it replaced the LLM's.
    A deferral (rate limit) or an accepted plan is returned as is."""
    checked = check(plan)
    blocked = checked.guard_verdict == "rejected" or (
        checked.guard_verdict == "notify_only" and checked.guard_reasons not in (("notify playbook",),))
    if plan.planner != "llm" or not blocked:
        return checked
    det = fallback()
    why = "; ".join(checked.guard_reasons)[:300]
    params = dict(det.params)
    if "llm_usage" in plan.params:
        params["llm_usage"] = plan.params["llm_usage"]
    det = det.model_copy(update={
        "planner": "deterministic", "params": params,
        "planner_reason": f"llm fallback: the guard blocked the LLM plan ({plan.playbook}: {checked.guard_verdict}: "
                          f"{why}); deterministic planner decided"})
    return check(det)
