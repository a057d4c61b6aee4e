"""correlate: findings become incidents (one per fingerprint while it is active); incidents no
longer seen resolve once quiet for long enough, and their open PR is closed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from langgraph.runtime import Runtime

from agents.deps import Deps, audit, now_of
from agents.state import CycleState, err
from memory.records import ACTIVE_STATUSES, Finding, Incident
from tools.errors import ToolError


def correlate(state: CycleState, runtime: Runtime[Deps]) -> CycleState:
    deps = runtime.context
    now = now_of(state)
    store = deps.store
    touched: list[str] = []
    errors: list[dict[str, Any]] = []
    outcomes: list[dict[str, str]] = []
    seen: set[str] = set()
    for fd in state.get("findings", []):
        f = Finding.model_validate(fd)
        fp = f.fingerprint
        seen.add(fp)
        inc = store.find_active_incident(fp)
        if inc is None:
            inc = Incident(kind=f.kind, service=f.service, severity=f.severity, fingerprint=fp, summary=f.summary,
                           evidence=f.evidence, model_version=f.model_version, file=f.file,
                           opened_at=now, updated_at=now, last_seen_at=now)
            store.save_incident(inc)
            audit(deps, state, "correlate", "incident_opened", inc.id, kind=inc.kind, service=inc.service,
                  fingerprint=fp, severity=inc.severity, summary=inc.summary)
        else:
            inc = inc.model_copy(update={"severity": f.severity, "summary": f.summary, "evidence": f.evidence,
                                         "last_seen_at": now, "updated_at": now})
            store.save_incident(inc)
            audit(deps, state, "correlate", "incident_seen_again", inc.id, fingerprint=fp, severity=inc.severity)
        touched.append(inc.id)

    # incidents no longer seen: resolved once quiet for long enough (and their open PR closed)
    min_quiet = deps.settings.detection.quiet_before_resolve
    g = deps.views.get(state, deps.settings.gitops.policies_dir).guardrails
    evaluated = set(state.get("evaluated", []))
    for inc in store.list_incidents(statuses=ACTIVE_STATUSES):
        if inc.fingerprint in seen:
            continue
        if inc.kind != "gitops_drift" and f"{inc.kind}|{inc.service}" not in evaluated:
            continue  # no data this cycle (query failed, workload gone): absence of a finding proves nothing
        if inc.status == "approved" and any(
                inc.id in p.incident_ids and now - p.updated_at < deps.settings.verify.grace
                for p in store.list_prs(statuses=["merged"])):
            continue  # merged moments ago: verification judges it once Argo CD / Flux had time to apply it
        quiet = timedelta(seconds=g.limits.cooldown_s) if inc.kind == "gitops_drift" else min_quiet
        if now - inc.last_seen_at < quiet:
            continue
        for pr in store.list_prs(statuses=["open"]):
            others = [store.get_incident(i) for i in pr.incident_ids if i != inc.id]
            if any(o is not None and o.active and o.fingerprint in seen for o in others):
                continue  # the PR still answers another live incident
            if inc.id in pr.incident_ids and not deps.dry_run:
                try:
                    closed = deps.prs.close(pr=pr, comment=f"{inc.kind} on {inc.service} resolved before merge; closing.")
                    closed = closed.model_copy(update={"updated_at": now})
                    store.save_pr(closed)
                    outcomes.append({"pr_id": closed.id, "text": f"Closed by remediator: {inc.kind} on {inc.service} "
                                     f"resolved before merge ({now:%Y-%m-%d %H:%M}Z). Nothing to approve."})
                    audit(deps, state, "correlate", "pr_closed", closed.id, branch=closed.branch,
                          reason=f"{inc.id} resolved before merge")
                except ToolError as e:
                    errors.append(err("correlate", pr.branch, f"cannot close PR of resolved incident: {e}"))
        store.save_incident(inc.model_copy(update={"status": "resolved", "resolved_at": now, "updated_at": now}))
        audit(deps, state, "correlate", "incident_resolved", inc.id, reason=f"not seen since {inc.last_seen_at.isoformat()}")
        touched.append(inc.id)
    return {"touched": touched, "errors": errors, "slack_outcomes": outcomes}
