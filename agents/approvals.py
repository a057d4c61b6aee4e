"""Human decisions as a LangGraph human-in-the-loop thread per incident.

When a PR is opened, the incident's approval thread starts and pauses at ``interrupt()``
(checkpointed). A decision from any channel — Slack, a PR review / merge / close seen in the
Git host, or ``remediator decisions approve|reject`` — resumes it with
``Command(resume=decision)``; the ``apply`` node merges or closes the PR through the provider and
records the Decision and its audit entry. A process killed inside ``apply`` finishes it on the
next decision call; the decision id is fixed before resuming, so nothing is recorded twice.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command, interrupt

from agents.compliance import PR_BREAKS_KEY
from agents.config import ConfigError
from agents.deps import Checkpointer, Deps
from agents.logs import incident_scope
from agents.verify import remember_reference
from memory.records import Decision, PullRequest, new_id
from tools.errors import ToolError


class NothingToDecide(Exception):
    """A decision on an incident that has no pull request (a notify-only outcome): nothing to do."""


class ApprovalRefused(NothingToDecide):
    """An approval the last cycle's checks forbid (the PR would break a compliance policy): nothing merged."""


class ApprovalState(TypedDict, total=False):
    incident_id: str
    decision: dict[str, Any]
    decision_id: str


ApprovalGraph = CompiledStateGraph[ApprovalState, Deps, ApprovalState, ApprovalState]


def approval_thread(incident_id: str) -> Any:
    """The LangGraph config of an incident's approval thread."""
    return {"configurable": {"thread_id": f"approval:{incident_id}"}}


def await_decision(state: ApprovalState) -> ApprovalState:
    decision = interrupt({"incident_id": state["incident_id"], "awaiting": "approve or reject"})
    return {"decision": decision}


def apply(state: ApprovalState, runtime: Runtime[Deps]) -> ApprovalState:
    return {"decision_id": _apply(runtime.context, state["incident_id"], state["decision"]).id}


def build_approval_graph(checkpointer: Checkpointer) -> ApprovalGraph:
    g = StateGraph(ApprovalState, context_schema=Deps)
    g.add_node("await_decision", await_decision)
    g.add_node("apply", apply)
    g.add_edge(START, "await_decision")
    g.add_edge("await_decision", "apply")
    g.add_edge("apply", END)
    return g.compile(checkpointer=checkpointer)


def await_approval(deps: Deps, incident_id: str) -> None:
    """Start the incident's approval thread (it pauses at once, waiting for a decision)."""
    with deps.checkpoints() as cp:
        _start(deps, build_approval_graph(cp), incident_id)


def _start(deps: Deps, graph: ApprovalGraph, incident_id: str) -> None:
    if not graph.get_state(approval_thread(incident_id)).values:
        graph.invoke({"incident_id": incident_id}, approval_thread(incident_id), context=deps)


def decide(deps: Deps, *, incident_id: str, verdict: str, actor: str, source: str, reason: str = "") -> Decision:
    """Approve (merge the open PR, or label it where merges are left to humans) or reject (close it;
    not re-proposed within the cooldown). Idempotent: an incident no longer awaiting a decision
    returns its earlier decision and changes nothing. The one decision path of Slack, the CLI, the
    review UI and PR reviews."""
    with incident_scope(incident_id):
        return _decide(deps, incident_id=incident_id, verdict=verdict, actor=actor, source=source, reason=reason)


def _decide(deps: Deps, *, incident_id: str, verdict: str, actor: str, source: str, reason: str) -> Decision:
    if verdict not in ("approve", "reject"):
        raise ConfigError(f"verdict must be approve or reject, not {verdict!r}")
    store = deps.store
    inc = store.get_incident(incident_id)
    if inc is None:
        raise ConfigError(f"no incident {incident_id!r}; see `remediator decisions list`")
    earlier = store.list_decisions(incident_id=inc.id)
    if inc.status in ("approved", "rejected", "resolved", "closed") and earlier:
        return earlier[0]
    if inc.status in ("resolved", "closed"):
        raise ConfigError(f"incident {inc.id} is already {inc.status} (its PR was closed); nothing to "
                          f"{verdict}")
    pr = _pr_of(deps, inc.id)
    breaks = json.loads(store.get_kv(PR_BREAKS_KEY.format(pr.id)) or "[]") if pr is not None else []
    if verdict == "approve" and pr is not None and pr.status == "open" and breaks:
        raise ApprovalRefused(
            f"PR {pr.branch} would break compliance polic{'y' if len(breaks) == 1 else 'ies'} "
            f"{'; '.join(breaks)} (evaluated on the last cycle's desired state). It is not merged: reject it, or "
            "change the policy or the manifests and approve after the next cycle")
    if pr is None:
        raise NothingToDecide(
            f"incident {inc.id} ({inc.kind} on {inc.service}, {inc.status}) has no pull request: nothing to "
            f"{verdict}. Its plan was notify-only or not proposed yet; see `remediator incidents show {inc.id}`")
    decision = {"id": new_id("dec"), "verdict": verdict, "actor": actor, "source": source, "reason": reason,
                "at": datetime.now(UTC).isoformat()}
    with deps.checkpoints() as cp:
        return _resume(deps, build_approval_graph(cp), inc.id, decision)


def _resume(deps: Deps, graph: ApprovalGraph, incident_id: str, decision: dict[str, Any]) -> Decision:
    cfg = approval_thread(incident_id)
    _start(deps, graph, incident_id)
    snap = graph.get_state(cfg)
    if "apply" in snap.next:
        graph.invoke(None, cfg, context=deps)  # a decision was being applied when the process died: finish it
    elif snap.next:
        graph.invoke(Command(resume=decision), cfg, context=deps)
    values = graph.get_state(cfg).values
    d = deps.store.get_decision(values.get("decision_id", "")) if values.get("decision_id") else None
    if d is None:
        earlier = deps.store.list_decisions(incident_id=incident_id)
        if not earlier:
            raise ConfigError(f"incident {incident_id}: no decision could be recorded")
        d = earlier[0]
    return d


def _pr_of(deps: Deps, incident_id: str) -> PullRequest | None:
    prs = [p for p in deps.store.list_prs() if incident_id in p.incident_ids]
    return next((p for p in prs if p.status == "open"), None) or (prs[0] if prs else None)


def _apply(deps: Deps, incident_id: str, decision: dict[str, Any]) -> Decision:
    store = deps.store
    inc = store.get_incident(incident_id)
    if inc is None:
        raise ConfigError(f"no incident {incident_id!r}")
    existing = store.get_decision(decision["id"])
    if existing is not None:
        return existing
    verdict, actor, reason = decision["verdict"], decision["actor"], decision.get("reason", "")
    now = datetime.fromisoformat(decision["at"])
    pr = _pr_of(deps, inc.id)
    try:
        if pr is not None and pr.status == "open":
            pr = deps.prs.merge(pr=pr) if verdict == "approve" else deps.prs.close(
                pr=pr, comment=f"Rejected by {actor}: {reason or 'no reason given'}")
            store.save_pr(pr.model_copy(update={"updated_at": now}))
    except ToolError as e:
        store.audit.append(stage="decision", action="failed", subject=inc.id,
                           data={"verdict": verdict, "actor": actor, "error": str(e)})
        raise
    plan = store.latest_plan(inc.id)
    d = Decision(id=decision["id"], incident_id=inc.id, pr_id=pr.id if pr else None, plan_id=plan.id if plan else None,
                 verdict=verdict, actor=actor, source=decision["source"], reason=reason, at=now)
    store.save_decision(d)
    store.save_incident(inc.model_copy(update={"status": "approved" if verdict == "approve" else "rejected",
                                               "updated_at": now}))
    if verdict == "approve":
        playbook = deps.playbooks.get(plan.playbook) if plan is not None else None
        remember_reference(store, inc, now, playbook.checks if playbook is not None else ())
    store.audit.append(stage="decision", action=d.verdict, subject=inc.id,
                       data={"decision_id": d.id, "actor": actor, "source": d.source, "pr": pr.branch if pr else None,
                             "pr_status": pr.status if pr else None, "reason": reason})
    return d
