"""host_decisions: what humans did in the Git host since the last cycle. A PR merged or closed
there is recorded as the incident's decision; an approving review (GitHub / GitLab) counts as an
approval and lands the PR through the provider, as a Slack click would. Besides propose and the
approval thread, the only node that changes PRs."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agents.approvals import decide
from agents.deps import Deps, audit, now_of
from agents.state import CycleState, err
from memory.records import PullRequest
from tools.errors import ToolError


def host_decisions(state: CycleState, runtime: Runtime[Deps]) -> CycleState:
    deps = runtime.context
    now = now_of(state)
    errors: list[dict[str, Any]] = []
    outcomes: list[dict[str, str]] = []
    for pr in deps.store.list_prs(statuses=["open"]):
        try:
            fresh = deps.prs.refresh(pr=pr)
        except ToolError as e:
            errors.append(err("observe", pr.branch, f"cannot refresh PR: {e}"))
            continue
        if fresh.status == pr.status:
            _review_approvals(deps, fresh, errors)
            continue
        fresh = fresh.model_copy(update={"updated_at": now})
        deps.store.save_pr(fresh)
        outcomes.append({"pr_id": fresh.id, "text": f"PR {fresh.status} in the Git host ({now:%Y-%m-%d %H:%M}Z)."})
        verdict = "approve" if fresh.status == "merged" else "reject"
        for iid in fresh.incident_ids:
            inc = deps.store.get_incident(iid)
            if inc is None or not inc.active or inc.status == "approved":
                continue
            try:
                decide(deps, incident_id=iid, verdict=verdict, actor="git-host", source="pr_review",
                       reason=f"PR {fresh.status} in the Git host")
            except ToolError as e:
                errors.append(err("observe", pr.branch, f"cannot record the host's decision: {e}"))
        audit(deps, state, "observe", f"pr_{fresh.status}", pr.branch, pr_id=pr.id)
    return {"errors": errors, "slack_outcomes": outcomes}


def _review_approvals(deps: Deps, pr: PullRequest, errors: list[dict[str, Any]]) -> None:
    """An approving review without a request for changes lands the PR (one decision; the PR's
    other incidents follow on the next refresh)."""
    if pr.status != "open":
        return
    try:
        reviews = deps.prs.reviews(pr=pr)
    except ToolError as e:
        errors.append(err("observe", pr.branch, f"cannot read reviews: {e}"))
        return
    approvers = sorted({user for user, st in reviews if st == "APPROVED"})
    if not approvers or any(st == "CHANGES_REQUESTED" for _, st in reviews):
        return
    if deps.dry_run:   # landing it would merge in the remote
        deps.on_progress(f"dry-run: would land {pr.branch} (approving review by {', '.join(approvers)})")
        return
    for iid in pr.incident_ids:
        inc = deps.store.get_incident(iid)
        if inc is None or inc.status not in ("open", "proposed"):
            continue
        try:
            decide(deps, incident_id=iid, verdict="approve", actor=f"{deps.prs.name}:{approvers[0]}",
                   source="pr_review", reason=f"approving review by {', '.join(approvers)}")
        except ToolError as e:
            errors.append(err("observe", pr.branch, f"cannot apply the review approval: {e}"))
        break
