"""Human decisions (CLI today; Slack and PR review feed the same function)."""

from __future__ import annotations

from datetime import UTC, datetime

from agents.config import ConfigError
from agents.cycle import Deps
from agents.verify import remember_reference
from memory.records import Decision
from tools.errors import ToolError


def decide(deps: Deps, *, incident_id: str, verdict: str, actor: str, source: str, reason: str = "") -> Decision:
    """Approve (merge the open PR) or reject (close it; not re-proposed within the cooldown).
    Idempotent: deciding an incident that is no longer awaiting a decision changes nothing
    and returns the earlier decision."""
    store = deps.store
    inc = store.get_incident(incident_id)
    if inc is None:
        raise ConfigError(f"no incident {incident_id!r}; see `remediator decisions list`")
    earlier = store.list_decisions(incident_id=inc.id)
    if inc.status in ("approved", "rejected", "resolved", "closed") and earlier:
        return earlier[0]
    prs = [p for p in store.list_prs(statuses=["open"]) if inc.id in p.incident_ids]
    plan = store.latest_plan(inc.id)
    now = datetime.now(UTC)
    pr = prs[0] if prs else None
    try:
        if pr is not None:
            pr = deps.prs.merge(pr=pr) if verdict == "approve" else deps.prs.close(
                pr=pr, comment=f"Rejected by {actor}: {reason or 'no reason given'}")
            store.save_pr(pr)
    except ToolError as e:
        store.audit.append(stage="decision", action="failed", subject=inc.id,
                           data={"verdict": verdict, "actor": actor, "error": str(e)})
        raise
    d = Decision(incident_id=inc.id, pr_id=pr.id if pr else None, plan_id=plan.id if plan else None,
                 verdict="approve" if verdict == "approve" else "reject", actor=actor,
                 source=source, reason=reason, at=now)  # type: ignore[arg-type]
    store.save_decision(d)
    store.save_incident(inc.model_copy(update={"status": "approved" if verdict == "approve" else "rejected",
                                               "updated_at": now}))
    if verdict == "approve":
        remember_reference(store, inc, now)
    store.audit.append(stage="decision", action=d.verdict, subject=inc.id,
                       data={"decision_id": d.id, "actor": actor, "source": source, "pr": pr.branch if pr else None,
                             "pr_status": pr.status if pr else None, "reason": reason})
    return d
