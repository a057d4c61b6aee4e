"""The guard is the only gate: plans from any planner are checked against playbooks and guardrails."""

from __future__ import annotations

from typing import Any

import pytest

from agents.guard import GuardContext, check
from agents.planners.deterministic import PlanContext, plan
from agents.workloads import Guardrails, build_workloads, load_budgets, load_guardrails
from memory.records import FieldEdit, Incident, RemediationPlan, fingerprint
from playbooks.loader import load_playbooks
from tools.results import ManifestDoc

BOOKS = load_playbooks()


def mis(name: str, *, labels: dict[str, str] | None = None, min_r: int = 2, max_r: int = 6,
        version: str = "2.1.0") -> ManifestDoc:
    body: dict[str, Any] = {"apiVersion": "ai.apexlogic.com/v1alpha1", "kind": "MultimodalInferenceService",
                            "metadata": {"name": name, "namespace": "ml", "labels": labels or {}},
                            "spec": {"modelRef": {"name": "m", "version": version, "path": f"models/m/v{version}"},
                                     "autoscaling": {"minReplicas": min_r, "maxReplicas": max_r}}}
    return ManifestDoc(file=f"apps/ml/{name}.yaml", index=0, kind="MultimodalInferenceService",
                       api_version=body["apiVersion"], name=name, namespace="ml", labels=labels or {}, body=body)


def incident(kind: str, service: str, **evidence: Any) -> Incident:
    return Incident(kind=kind, service=service, severity="warning", fingerprint=fingerprint(kind, service),
                    evidence=evidence)


def ctx_for(*docs: ManifestDoc, g: Guardrails | None = None, budgets: list[dict[str, Any]] | None = None,
            prev: dict[str, Any] | None = None) -> tuple[PlanContext, GuardContext]:
    wl = build_workloads(list(docs))
    g = g or Guardrails()
    typed, problems = load_budgets(budgets or [])
    assert not problems, problems
    return (PlanContext(workloads=wl, guardrails=g, budgets=typed, playbooks=BOOKS, previous_model=lambda w: prev),
            GuardContext(guardrails=g, playbooks=BOOKS, workloads=wl))


def cap_plan(inc: Incident, new: int, old: int = 6, name: str = "a") -> RemediationPlan:
    return RemediationPlan(incident_id=inc.id, playbook="cap_max_replicas", params={"targets": {f"ml/{name}": {"max_replicas": new}}},
                           edits=(FieldEdit(file=f"apps/ml/{name}.yaml", doc_kind="MultimodalInferenceService", doc_name=name,
                                            path=("spec", "autoscaling", "maxReplicas"), old=old, new=new),))


def test_cost_plan_caps_from_replica_history_and_passes_the_guard() -> None:
    pc, gc = ctx_for(mis("a"))
    inc = incident("cost_anomaly", "ml/a", replicas_before_p95=2.0, cost_usd_per_hour=8.0, expected_usd_per_hour=2.7,
                   ratio=3.0, window={"minutes": 360, "start": "x"})
    p = plan(inc, pc)
    assert p.playbook == "cap_max_replicas" and p.edits[0].new == 3 and p.edits[0].old == 6
    assert "p95 2" in p.rationale
    assert check(p, inc, gc).guard_verdict == "accepted"


@pytest.mark.parametrize("new,why", [(0, "floor"), (1, "max_decrease_percent"), (7, "raises")])
def test_guard_blocks_unsafe_replica_values(new: int, why: str) -> None:
    _, gc = ctx_for(mis("a"))
    inc = incident("cost_anomaly", "ml/a")
    out = check(cap_plan(inc, new), inc, gc)
    assert out.guard_verdict == "notify_only" and any(why in r for r in out.guard_reasons)


def test_guard_rejects_unknown_or_disallowed_playbooks() -> None:
    _, gc = ctx_for(mis("a"))
    inc = incident("cost_anomaly", "ml/a")
    bad = cap_plan(inc, 3).model_copy(update={"playbook": "run_shell"})
    assert check(bad, inc, gc).guard_verdict == "rejected"
    g = Guardrails(allowed_playbooks=["notify_only"])
    _, gc2 = ctx_for(mis("a"), g=g)
    assert check(cap_plan(inc, 3), inc, gc2).guard_verdict == "rejected"


def test_guard_protected_workload_is_notify_only() -> None:
    _, gc = ctx_for(mis("a", labels={"remediation.apexlogic.com/protected": "true"}))
    inc = incident("cost_anomaly", "ml/a")
    out = check(cap_plan(inc, 3), inc, gc)
    assert out.guard_verdict == "notify_only" and "protected" in out.guard_reasons[0]


def test_guard_blocks_edits_outside_the_target() -> None:
    _, gc = ctx_for(mis("a"), mis("b"))
    inc = incident("cost_anomaly", "ml/a")
    p = cap_plan(inc, 3)
    p = p.model_copy(update={"edits": p.edits + (FieldEdit(file="apps/ml/b.yaml", doc_kind="MultimodalInferenceService",
                                                           doc_name="b", path=("spec", "autoscaling", "maxReplicas"), old=6, new=3),)})
    assert check(p, inc, gc).guard_verdict == "notify_only"


def test_guard_defers_over_rate_limits() -> None:
    _, gc = ctx_for(mis("a"))
    inc = incident("cost_anomaly", "ml/a")
    gc.open_prs_other = 5
    out = check(cap_plan(inc, 3), inc, gc)
    assert out.guard_verdict == "deferred" and "max_open_prs" in out.guard_reasons[0]
    gc.has_open_pr = True  # updating its own PR is not a new PR
    assert check(cap_plan(inc, 3), inc, gc).guard_verdict == "accepted"


def test_budget_scale_down_touches_only_noncritical() -> None:
    budgets = [{"name": "gpu", "selector": {"namespace": "ml"}, "monthly_usd": 100, "action": "scale_down_noncritical"}]
    pc, gc = ctx_for(mis("crit", labels={"criticality": "critical"}), mis("cheap", labels={"criticality": "non-critical"}, min_r=3),
                     budgets=budgets)
    inc = incident("budget_breach", "ml/*", budget="gpu", top_contributors=[{"workload": "ml/crit", "usd_per_hour": 9}])
    p = plan(inc, pc)
    assert p.playbook == "scale_down_noncritical" and {e.file for e in p.edits} == {"apps/ml/cheap.yaml"}
    assert all(e.new < e.old for e in p.edits)
    assert check(p, inc, gc).guard_verdict == "accepted"
    # a plan that does touch the critical one is stopped by the guard
    crit = RemediationPlan(incident_id=inc.id, playbook="scale_down_noncritical",
                           params={"targets": {"ml/crit": {"min_replicas": 1, "max_replicas": 3}}},
                           edits=(FieldEdit(file="apps/ml/crit.yaml", doc_kind="MultimodalInferenceService", doc_name="crit",
                                            path=("spec", "autoscaling", "maxReplicas"), old=6, new=3),))
    assert check(crit, inc, gc).guard_verdict == "notify_only"


def test_rollback_plan_uses_previous_version_from_git() -> None:
    pc, gc = ctx_for(mis("a"), prev={"version": "2.0.0", "path": "models/m/v2.0.0", "commit": "abc"})
    inc = incident("model_drift", "ml/a", distance=0.3, threshold=0.1, baseline_version="2.0.0")
    p = plan(inc, pc)
    assert {(e.path[-1], e.new) for e in p.edits} == {("version", "2.0.0"), ("path", "models/m/v2.0.0")}
    assert check(p, inc, gc).guard_verdict == "accepted"


def test_gitops_drift_is_notify_only() -> None:
    pc, gc = ctx_for(mis("a"))
    inc = incident("gitops_drift", "ml/a", events=[{"verb": "patch", "user": "alice", "at": "t", "change": "replicas -> 12"}])
    p = plan(inc, pc)
    assert p.playbook == "revert_out_of_band_change" and not p.edits
    assert check(p, inc, gc).guard_verdict == "notify_only"


def test_guardrails_file_errors_fall_back_to_defaults() -> None:
    g, problems = load_guardrails({"replicas": {"floor": "many"}})
    assert g == Guardrails() and "guardrails.replicas.floor" in problems[0].message
    g2, _ = load_guardrails({"actors": {"controllers": ["system:serviceaccount:x:op"]}})
    assert "system:serviceaccount:x:op" in g2.allowed_actors
    assert "system:serviceaccount:argocd:argocd-application-controller" in g2.allowed_actors


def test_guard_keeps_max_at_or_above_min() -> None:
    _, gc = ctx_for(mis("a", min_r=4, max_r=6))
    inc = incident("cost_anomaly", "ml/a")
    out = check(cap_plan(inc, 3), inc, gc)
    assert out.guard_verdict == "notify_only" and "below minReplicas 4" in " ".join(out.guard_reasons)


def test_guard_keeps_targets_in_the_incident_scope() -> None:
    _, gc = ctx_for(mis("a"), mis("b"))
    gc.scope = {"ml/a"}
    inc = incident("cost_anomaly", "ml/a")
    out = check(cap_plan(inc, 3, name="b"), inc, gc)
    assert out.guard_verdict == "notify_only" and "outside the incident's scope" in " ".join(out.guard_reasons)


def test_guard_rollback_only_to_known_versions() -> None:
    pc, gc = ctx_for(mis("a"), prev={"version": "2.0.0", "path": "models/m/v2.0.0", "commit": "abc"})
    gc.rollback_versions = {"2.0.0"}
    inc = incident("model_drift", "ml/a", distance=0.3, threshold=0.1)
    good = plan(inc, pc)
    assert check(good, inc, gc).guard_verdict == "accepted"
    evil = good.model_copy(update={"params": {"targets": {"ml/a": {"version": "6.6.6"}}},
                                   "edits": tuple(e.model_copy(update={"new": "6.6.6"}) for e in good.edits
                                                  if e.path[-1] == "version")})
    out = check(evil, inc, gc)
    assert out.guard_verdict == "notify_only" and "6.6.6" in " ".join(out.guard_reasons)


def mis_requests(gpu: object = "2", cpu: object = "4", labels: dict[str, str] | None = None) -> ManifestDoc:
    d = mis("a", labels=labels)
    d.body["spec"]["resourceRequests"] = {"cpu": cpu, "memory": "16Gi", "gpu": gpu}
    return d


RAISED = {"commit": "abc123", "at": "2025-06-12T08:00:00Z", "file": "apps/ml/a.yaml", "path": "spec.resourceRequests",
          "raised": {"gpu": {"old": "1", "new": "2"}}}


def rightsize_plan(inc: Incident, **new: object) -> RemediationPlan:
    return RemediationPlan(incident_id=inc.id, playbook="rightsize_requests", params={"targets": {"ml/a": dict(new)}},
                           edits=tuple(FieldEdit(file="apps/ml/a.yaml", doc_kind="MultimodalInferenceService", doc_name="a",
                                                 path=("spec", "resourceRequests", k), old={"gpu": "2", "cpu": "4"}[k], new=v)
                                       for k, v in new.items()))


def test_cost_from_a_request_raised_in_git_is_rightsized_not_capped() -> None:
    pc, gc = ctx_for(mis_requests())
    gc.request_values = {"gpu": {"1", "2"}, "cpu": {"4"}, "memory": {"16Gi"}}
    inc = incident("cost_anomaly", "ml/a", replicas_before_p95=2.0, replicas_now=2.0, cost_usd_per_hour=5.2,
                   expected_usd_per_hour=2.8, ratio=1.86, window={"minutes": 300, "start": "x"}, request_change=RAISED)
    p = plan(inc, pc)
    assert p.playbook == "rightsize_requests"
    assert [(e.path, e.old, e.new) for e in p.edits] == [(("spec", "resourceRequests", "gpu"), "2", "1")]
    assert "commit abc123" in p.rationale and "gpu 1 -> 2" in p.rationale
    assert check(p, inc, gc).guard_verdict == "accepted"
    # the replicas rose as well: capping them is the remediation, as before
    rose = inc.model_copy(update={"evidence": {**inc.evidence, "replicas_now": 6.0}})
    assert plan(rose, pc).playbook == "cap_max_replicas"
    # replicas flat and no request raised in Git (a price change?): a lower cap would not lower the cost
    plain = inc.model_copy(update={"evidence": {k: v for k, v in inc.evidence.items() if k != "request_change"}})
    flat = plan(plain, pc)
    assert flat.playbook == "notify_only" and not flat.edits and "did not rise above the p95 2" in flat.rationale


def test_a_rise_of_the_cost_per_replica_is_rightsized_even_when_the_autoscaler_moved() -> None:
    """The cost detector found the rise per replica (a request raised in Git); the HPA happened to
    run more pods at some point of the window: the request is set back, no cap on replicas."""
    pc, gc = ctx_for(mis_requests())
    gc.request_values = {"gpu": {"1", "2"}, "cpu": {"4"}, "memory": {"16Gi"}}
    inc = incident("cost_anomaly", "ml/a", method="per_replica", replicas_before_p95=2.0, replicas_now=3.0,
                   cost_usd_per_hour=5.2, expected_usd_per_hour=2.8, ratio=1.86, window={"minutes": 300, "start": "x"},
                   request_change=RAISED)
    assert plan(inc, pc).playbook == "rightsize_requests"
    total = inc.model_copy(update={"evidence": {**inc.evidence, "method": "seasonal"}})
    assert plan(total, pc).playbook == "cap_max_replicas"
    plain = inc.model_copy(update={"evidence": {k: v for k, v in inc.evidence.items() if k != "request_change"}})
    assert plan(plain, pc).playbook == "notify_only"


@pytest.mark.parametrize("new,why", [
    ({"gpu": "3"}, "does not lower"), ({"gpu": "2"}, "does not lower"), ({"cpu": "1m"}, "not a value this request had"),
    ({"gpu": "lots"}, "Kubernetes quantity"), ({"gpu": 0}, "Kubernetes quantity"),
])
def test_guard_rightsize_only_lowers_to_a_value_from_git_history(new: dict[str, object], why: str) -> None:
    _, gc = ctx_for(mis_requests())
    gc.request_values = {"gpu": {"1", "2"}, "cpu": {"4"}}
    inc = incident("cost_anomaly", "ml/a", request_change=RAISED)
    out = check(rightsize_plan(inc, **new), inc, gc)
    assert out.guard_verdict == "notify_only" and any(why in r for r in out.guard_reasons), out.guard_reasons
    ok = check(rightsize_plan(inc, gpu="1"), inc, gc)
    assert ok.guard_verdict == "accepted"
    _, gp = ctx_for(mis_requests(labels={"remediation.apexlogic.com/protected": "true"}))
    assert check(rightsize_plan(inc, gpu="1"), inc, gp).guard_verdict == "notify_only"


def test_a_pr_playbook_without_checks_is_never_proposed() -> None:
    """Nothing would verify the change after a merge: the guard downgrades it and says why."""
    books = dict(load_playbooks())
    books["cap_max_replicas"] = books["cap_max_replicas"].model_copy(update={"checks": []})
    _, gc = ctx_for(mis("a"))
    inc = incident("cost_anomaly", "ml/a", ratio=3.0)
    assert check(cap_plan(inc, 3), inc, gc).guard_verdict == "accepted"   # with its checks
    gc.playbooks = books
    out = check(cap_plan(inc, 3), inc, gc)
    assert out.guard_verdict == "notify_only"
    assert any("has no checks" in r for r in out.guard_reasons)


def test_a_check_must_use_its_signals_condition() -> None:
    from pydantic import ValidationError

    from playbooks.schema import Check

    assert Check.model_validate({"signal": "drift", "condition": "below_threshold"}).kind == "model_drift"
    with pytest.raises(ValidationError, match="signal cost is checked with condition 'below_expected'"):
        Check.model_validate({"signal": "cost", "condition": "below_threshold"})
    with pytest.raises(ValidationError):
        Check.model_validate({"signal": "latency", "condition": "below_expected"})
