"""plan: every open / proposed incident touched this cycle gets a plan (saved and audited); the
accepted plan of an incident with an open PR is kept. The deterministic planner reads no Git
history for a cost incident (the repo fake forbids it) and queries nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from agents.nodes.plan import plan
from memory.records import FieldEdit, Incident, PullRequest, RemediationPlan, branch_name, fingerprint
from tests.fakes.cycle import T0, cycle_state, make_deps, mis, run, snapshot

SERVICE = "ml-serving/image-captioner"
CAPTIONER = mis("image-captioner", min_replicas=2, max_replicas=6)
SNAP = snapshot([CAPTIONER])


def incident(status: str = "open", **evidence: Any) -> Incident:
    ev = {"ratio": 2.4, "replicas_before_p95": 2, "replicas_now": 6, **evidence}
    return Incident(kind="cost_anomaly", service=SERVICE, severity="warning", status=status,
                    fingerprint=fingerprint("cost_anomaly", SERVICE), summary="cost x2.4", evidence=ev,
                    opened_at=T0 - timedelta(hours=1), updated_at=T0, last_seen_at=T0)


def test_an_open_incident_gets_a_deterministic_plan_saved_and_audited() -> None:
    deps = make_deps()   # planner=None: the deterministic planner decides
    inc = incident()
    deps.store.save_incident(inc)
    state = cycle_state(snapshot=SNAP, touched=[inc.id])

    out = run(plan, state, deps)

    [p] = [RemediationPlan.model_validate(d) for d in out["plans"]]
    assert (p.incident_id, p.playbook, p.planner, p.guard_verdict) == (inc.id, "cap_max_replicas", "deterministic",
                                                                         "pending")
    # 1.25 x the p95 before the rise (2) -> 3, within max_decrease_percent (60 %) of 6
    assert [(e.file, e.path, e.old, e.new) for e in p.edits] == [
        (CAPTIONER.file, ("spec", "autoscaling", "maxReplicas"), 6, 3)]
    assert deps.store.latest_plan(inc.id) == p
    [entry] = [e for e in deps.store.audit.entries() if e.stage == "plan"]
    assert (entry.action, entry.subject, entry.data["plan_id"], entry.cycle_id) == (
        "planned", inc.id, p.id, state["cycle_id"])
    assert out["errors"] == []


def test_incidents_no_longer_open_or_proposed_get_no_plan() -> None:
    deps = make_deps()
    approved, resolved = incident(status="approved"), incident(status="resolved")
    for i in (approved, resolved):
        deps.store.save_incident(i)
    out = run(plan, cycle_state(snapshot=SNAP, touched=[approved.id, resolved.id, "inc-gone"]), deps)
    assert out == {"plans": [], "errors": []}
    assert deps.store.latest_plan(approved.id) is None and deps.store.latest_plan(resolved.id) is None
    assert not [e for e in deps.store.audit.entries() if e.stage == "plan"]


def test_the_accepted_plan_of_an_open_pr_is_kept_while_its_incident_lasts() -> None:
    deps = make_deps()
    inc = incident(status="proposed")
    kept = RemediationPlan(incident_id=inc.id, playbook="cap_max_replicas", guard_verdict="accepted",
                           edits=(FieldEdit(file=CAPTIONER.file, doc_kind="MultimodalInferenceService",
                                            doc_name="image-captioner", path=("spec", "autoscaling", "maxReplicas"),
                                            old=6, new=4),), created_at=T0 - timedelta(hours=2))
    deps.store.save_incident(inc)
    deps.store.save_plan(kept)
    deps.store.save_pr(PullRequest(branch=branch_name(inc.kind, inc.service, inc.fingerprint), title="Cap"))
    out = run(plan, cycle_state(snapshot=SNAP, touched=[inc.id]), deps)
    assert [d["id"] for d in out["plans"]] == [kept.id]
    assert not [e for e in deps.store.audit.entries() if e.stage == "plan"]


class FallbackPlanner:
    """An LLM planner that fell back to the deterministic planner."""

    def __init__(self) -> None:
        self.tools: Any = None

    def plan(self, incident: Incident, ctx: Any, tools: Any = None) -> RemediationPlan:
        self.tools = tools
        return RemediationPlan(incident_id=incident.id, playbook="notify_only", planner="deterministic",
                               planner_reason="llm fallback: endpoint unreachable")


def test_an_llm_fallback_is_reported_as_an_error_of_stage_plan() -> None:
    planner = FallbackPlanner()
    deps = make_deps(planner=planner)
    inc = incident()
    deps.store.save_incident(inc)
    out = run(plan, cycle_state(snapshot=SNAP, touched=[inc.id]), deps)
    assert out["errors"] == [{"stage": "plan", "source": inc.id, "message": "llm fallback: endpoint unreachable"}]
    assert planner.tools is not None and [d["playbook"] for d in out["plans"]] == ["notify_only"]
