"""verify: approved and merged remediations must pass the checks of the playbook that made them
once Argo CD / Flux had time to apply them (agents/verify.py judges); if not, propose the revert."""

from __future__ import annotations

from functools import partial
from typing import Any

from langgraph.runtime import Runtime

from agents.deps import Deps, audit, now_of, retrying
from agents.edits import edited_files, relocate
from agents.prbody import revert_body, revert_title
from agents.state import CycleState, err
from agents.verify import REVERT_KEY, inverse_edits
from agents.verify import check as verify_check
from memory.records import Finding, revert_branch_name
from tools.anchors import head_trailer
from tools.errors import ToolError


def verify(state: CycleState, runtime: Runtime[Deps]) -> CycleState:
    deps = runtime.context
    now = now_of(state)
    v = deps.settings.verify
    seen = {f.fingerprint: f.evidence for f in (Finding.model_validate(x) for x in state.get("findings", []))}
    errors: list[dict[str, Any]] = []
    pr_ids: list[str] = []
    for inc in deps.store.list_incidents(statuses=["approved"]):
        merged = [p for p in deps.store.list_prs(statuses=["merged"]) if inc.id in p.incident_ids]
        if not merged:
            continue
        pr = merged[0]
        plan = deps.store.latest_plan(inc.id)
        playbook = deps.playbooks.get(plan.playbook) if plan is not None else None
        verdict, detail = verify_check(deps.store, inc, pr, playbook.checks if playbook is not None else (), now=now,
                                       grace=v.grace, seen=seen, default_cycles=v.failed_checks,
                                       worse_factor=v.worse_factor)
        if verdict in ("waiting", "done"):
            continue
        audit(deps, state, "verify", verdict, inc.id, pr=pr.branch, **detail)
        if verdict != "revert" or deps.dry_run:
            continue
        edits = inverse_edits(plan.edits) if plan is not None else []
        if not edits:
            errors.append(err("verify", inc.id, "remediation did not work but there is nothing to revert"))
            continue
        branch = revert_branch_name(pr.branch)
        edits, _, problem = relocate(deps, state, edits)
        if problem:
            errors.append(err("verify", inc.id, f"cannot place the revert: {problem}"))
            continue
        reason = str(detail.get("reason"))
        try:
            files = edited_files(deps, edits, must_exist=False)
            title = revert_title(pr)
            res = retrying(deps, f"publish {branch}", partial(
                deps.prs.publish, branch=branch, title=title, body=revert_body(pr, inc, edits, reason), files=files,
                message=f"{title}\n\nReverts {pr.branch} for incident {inc.id}: {reason}\n\n"
                        f"{head_trailer(*deps.store.audit.head())}",
                incident_ids=[inc.id], labels=("remediator", "revert"), existing=deps.store.get_pr_by_branch(branch)))
        except ToolError as e:
            errors.append(err("verify", branch, f"cannot open the revert PR: {e}"))
            continue
        deps.store.save_pr(res.pr.model_copy(update={"updated_at": now}))
        deps.store.set_kv(REVERT_KEY.format(inc.id), res.pr.id)
        deps.store.save_incident(inc.model_copy(update={"updated_at": now}))  # stays approved: no re-planning
        audit(deps, state, "verify", "revert_proposed", inc.id, branch=branch, original_pr=pr.id, revert_pr=res.pr.id)
        pr_ids.append(res.pr.id)
    return {"pr_ids": pr_ids, "errors": errors}
