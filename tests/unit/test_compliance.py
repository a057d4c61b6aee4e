"""Compliance policies in CEL: each shipped default on a passing and a failing manifest; a
repository's overrides and opt-in; bad policies named with file, policy and expression; the guard
refusing a remediation that would break a policy."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.compliance import broken_by, findings_of, objects_of, policy_set, shipped_policy_files
from memory.records import FieldEdit
from tools.detectors.compliance import evaluate
from tools.results import ManifestDoc

MIS: dict[str, Any] = yaml.safe_load("""
apiVersion: ai.apexlogic.com/v1alpha1
kind: MultimodalInferenceService
metadata: {name: captioner, namespace: ml-serving, labels: {team: vision, cost-center: cc-7}}
spec:
  modelRef: {name: captioner, version: "2.0.1"}
  resourceRequests: {cpu: "4", memory: 16Gi, gpu: "1"}
  autoscaling: {minReplicas: 1, maxReplicas: 4}
  monitoring: {enabled: true, port: 8080}
  responsibleAI:
    explainability: {enabled: true, method: SHAP, samplingSize: 100}
    fairness: {enabled: true, protectedAttributes: [gender], threshold: 0.05}
    driftDetection: {enabled: true, baselineModelRef: "2.0.0", metric: JensenShannonDivergence, threshold: 0.1}
""")
MODELS = "models:\n  - {name: captioner, version: \"2.0.1\", approvedBy: ml-review, date: 2026-11-02}\n"


def doc(body: dict[str, Any]) -> ManifestDoc:
    meta = body["metadata"]
    return ManifestDoc(file="apps/captioner.yaml", index=0, kind=body["kind"], api_version=body["apiVersion"],
                       name=meta["name"], namespace=meta.get("namespace", "default"), labels=dict(meta.get("labels", {})),
                       body=body)


def statuses(body: dict[str, Any], extra: dict[str, str] | None = None) -> dict[str, str]:
    pset = policy_set({**shipped_policy_files(), "policies/models.yaml": MODELS, **(extra or {})}, "policies")
    assert pset.problems == []
    return {r.policy: r.status for r in evaluate(pset.policies, objects_of([doc(body)]), pset.models)}


def changed(path: str, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(MIS)
    node = body
    keys = path.split(".")
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    if value is None:
        node.pop(keys[-1], None)
    else:
        node[keys[-1]] = value
    return body


def test_a_compliant_manifest_passes_every_default_policy() -> None:
    assert statuses(MIS) == {p: "pass" for p in ("approved-model-version", "drift-monitored", "explainability-enabled",
                                                 "fairness-monitored", "gpu-within-quota", "monitoring-enabled",
                                                 "required-labels")}


@pytest.mark.parametrize(("policy", "path", "value"), [
    ("fairness-monitored", "spec.responsibleAI.fairness.enabled", False),
    ("fairness-monitored", "spec.responsibleAI.fairness.threshold", 0.3),
    ("drift-monitored", "spec.responsibleAI.driftDetection.threshold", 0.5),
    ("drift-monitored", "spec.responsibleAI.driftDetection.baselineModelRef", None),
    ("explainability-enabled", "spec.responsibleAI.explainability.method", "Magic"),
    ("explainability-enabled", "spec.responsibleAI.explainability.samplingSize", 0),
    ("monitoring-enabled", "spec.monitoring.enabled", False),
    ("gpu-within-quota", "spec.autoscaling.maxReplicas", 40),
    ("required-labels", "metadata.labels", {"team": "vision"}),
    ("approved-model-version", "spec.modelRef.version", "2.1.0"),
])
def test_each_default_policy_fails_its_failing_manifest(policy: str, path: str, value: Any) -> None:
    got = statuses(changed(path, value))
    assert got[policy] == "fail" and [p for p, s in got.items() if s != "pass"] == [policy]


def test_not_applicable_where_nothing_is_declared() -> None:
    got = statuses(changed("spec.responsibleAI.fairness.protectedAttributes", []))
    assert "fairness-monitored" not in got            # no protected attributes: nothing to check
    pset = policy_set(shipped_policy_files(), "policies")   # no models.yaml: no approved list to check against
    assert "approved-model-version" not in {r.policy for r in evaluate(pset.policies, objects_of([doc(MIS)]))}


def test_the_repository_overrides_disables_and_opts_in_by_name() -> None:
    repo = {"policies/compliance/ours.yaml": """
apiVersion: remediator.apexlogic.com/v1alpha1
kind: CompliancePolicy
metadata: {name: gpu-within-quota}
spec:
  validationActions: [Warn]
  severity: critical
  matchConstraints: {kinds: [MultimodalInferenceService]}
  params: {default: 2}
  validations:
    - expression: "int(object.spec.resourceRequests.gpu) * int(object.spec.autoscaling.maxReplicas) <= params.default"
      messageExpression: "'too many GPUs: ' + string(int(object.spec.resourceRequests.gpu) * int(object.spec.autoscaling.maxReplicas))"
---
apiVersion: remediator.apexlogic.com/v1alpha1
kind: CompliancePolicy
metadata: {name: monitoring-enabled}
spec: {disabled: true, validations: [{expression: "true"}]}
"""}
    pset = policy_set({**shipped_policy_files(), **repo}, "policies")
    results = evaluate(pset.policies, objects_of([doc(MIS)]), pset.models)
    assert "monitoring-enabled" not in {r.policy for r in results}
    [f] = findings_of(results, pset.policies)
    assert (f.kind, f.service, f.severity) == ("policy_violation", "ml-serving/captioner", "critical")
    [v] = f.evidence["violations"]
    assert v["policy"] == "gpu-within-quota" and v["message"] == "too many GPUs: 4" and "params.default" in v["expression"]
    assert findings_of(evaluate(policy_set(shipped_policy_files(), "policies").policies, objects_of([doc(
        changed("spec.monitoring.enabled", False))])), policy_set(shipped_policy_files(), "policies").policies) == []


def test_bad_policies_are_named_and_the_others_still_apply() -> None:
    repo = {"policies/compliance/broken.yaml": "kind: CompliancePolicy\nmetadata: {name: broken}\nspec:\n"
                                               "  validations: [{expression: \"object.spec.((\"}]\n---\n"
                                               "kind: CompliancePolicy\nmetadata: {name: nobool}\nspec:\n"
                                               "  validations: [{expression: \"1 + 2\"}]\n---\n"
                                               "kind: CompliancePolicy\nmetadata: {name: shapeless}\nspec: {}\n",
            "policies/compliance/unparsable.yaml": "kind: [CompliancePolicy\n",
            "policies/models.yaml": "models: 5\n"}
    pset = policy_set({**shipped_policy_files(), **repo}, "policies")
    text = "\n".join(str(p) for p in pset.problems)
    assert "policies/compliance/broken.yaml: policy broken: an expression does not compile" in text
    assert "policies/compliance/broken.yaml: policy shapeless: spec.validations: Field required" in text
    assert "policies/compliance/unparsable.yaml: does not parse" in text
    assert "policies/models.yaml: `models:` must be a list" in text
    results = {r.policy: r for r in evaluate(pset.policies, objects_of([doc(MIS)]), pset.models)}
    assert results["nobool"].status == "error" and "not a bool" in results["nobool"].message
    assert results["nobool"].expression == "1 + 2" and results["nobool"].policy_file == "policies/compliance/broken.yaml"
    assert results["fairness-monitored"].status == "pass"


def test_the_guard_refuses_a_remediation_that_would_break_a_policy() -> None:
    from agents.guard import GuardContext, check
    from agents.workloads import Guardrails, build_workloads
    from memory.records import Incident, RemediationPlan
    from playbooks.loader import load_playbooks

    d = doc(copy.deepcopy(MIS))
    pset = policy_set({**shipped_policy_files(), "policies/models.yaml": MODELS}, "policies")
    workloads = build_workloads([d])
    inc = Incident(kind="model_drift", service=d.key, severity="critical", fingerprint="f")

    def plan(version: str) -> RemediationPlan:
        return RemediationPlan(incident_id=inc.id, playbook="rollback_model_version",
                               params={"targets": {d.key: {"version": version}}},
                               edits=(FieldEdit(file=d.file, doc_kind=d.kind, doc_name=d.name,
                                                path=("spec", "modelRef", "version"), old="2.0.1", new=version),))
    ctx = GuardContext(guardrails=Guardrails(), playbooks=load_playbooks(), workloads=workloads,
                       rollback_versions={"2.0.0"},
                       policy_breaks=lambda edits: broken_by(edits, [d], pset))
    refused = check(plan("2.0.0"), inc, ctx)   # 2.0.0 is not in the approved list
    assert refused.guard_verdict == "notify_only"
    assert any("would break compliance policy approved-model-version on MultimodalInferenceService ml-serving/captioner"
               in r for r in refused.guard_reasons)
    ok = policy_set({**shipped_policy_files(), "policies/models.yaml": MODELS + "  - {name: captioner, version: \"2.0.0\"}\n"},
                    "policies")
    ctx.policy_breaks = lambda edits: broken_by(edits, [d], ok)
    assert check(plan("2.0.0"), inc, ctx).guard_verdict == "accepted"


def test_the_posture_says_since_when_each_status_holds() -> None:
    from datetime import UTC, datetime, timedelta

    from agents.compliance import posture_since

    t0 = datetime(2026, 12, 1, tzinfo=UTC)

    def cycle(hours: int, fair: str, labels: str) -> dict[str, Any]:
        return {"started_at": t0 + timedelta(hours=hours), "report": {"compliance": [
            {"service": "ml/a", "object": "MultimodalInferenceService ml/a", "policy": "fairness-monitored",
             "status": fair, **({"message": "off"} if fair == "fail" else {})},
            {"service": "ml/a", "object": "MultimodalInferenceService ml/a", "policy": "required-labels",
             "status": labels}]}}
    newest_first = [cycle(3, "fail", "pass"), cycle(2, "fail", "pass"), cycle(1, "pass", "pass"),
                    {"started_at": t0, "report": {"errors": []}}]   # a cycle from before compliance existed
    rows = {r["policy"]: r for r in posture_since(newest_first)}
    assert (rows["fairness-monitored"]["status"], rows["fairness-monitored"]["since"]) == (
        "fail", (t0 + timedelta(hours=2)).isoformat())
    assert rows["required-labels"]["since"] == (t0 + timedelta(hours=1)).isoformat()
    assert posture_since([{"started_at": t0, "report": {}}]) == []


def test_an_unapproved_model_version_is_rolled_back_to_the_newest_approved_one_in_git_history() -> None:
    from agents.guard import GuardContext, check
    from agents.planners.deterministic import PlanContext, plan
    from agents.workloads import Guardrails, build_workloads
    from memory.records import Incident
    from playbooks.loader import load_playbooks

    body = copy.deepcopy(MIS)
    body["spec"]["modelRef"]["version"] = "2.1.0"
    d = doc(body)
    workloads = build_workloads([d])
    pset = policy_set({**shipped_policy_files(), "policies/models.yaml": MODELS}, "policies")
    results = evaluate(pset.policies, objects_of([d]), pset.models)
    violation = {"policy": "approved-model-version", "message": "model captioner 2.1.0 is not in the approved list",
                 "file": d.file}
    assert [r.message for r in results if r.status == "fail"] == [violation["message"]]
    inc = Incident(kind="policy_violation", service=d.key, severity="critical", fingerprint="f",
                   evidence={"violations": [violation, {"policy": "required-labels", "message": "no owner"}]})
    history = [("c3", "2.1.0"), ("c2", "2.0.5"), ("c1", "2.0.1")]   # newest first; only 2.0.1 is approved

    def approved(w: object) -> dict[str, str] | None:
        v = next(((sha, v) for sha, v in history[1:] if v == "2.0.1"), None)
        return {"version": v[1], "path": f"models/captioner/v{v[1]}", "commit": v[0]} if v else None
    ctx = PlanContext(workloads=workloads, guardrails=Guardrails(), budgets=[], playbooks=load_playbooks(),
                      previous_model=lambda w: None, approved_model=approved)
    p = plan(inc, ctx)
    assert p.playbook == "rollback_model_version" and p.params["targets"][d.key]["version"] == "2.0.1"
    assert [(e.path, e.old, e.new) for e in p.edits] == [(("spec", "modelRef", "version"), "2.1.0", "2.0.1")]
    assert "newest approved version in Git history" in p.rationale and "Still for a human: no owner" in p.rationale
    guard = GuardContext(guardrails=Guardrails(), playbooks=load_playbooks(), workloads=workloads,
                         rollback_versions={"2.0.1"}, policy_breaks=lambda edits: broken_by(edits, [d], pset))
    assert check(p, inc, guard).guard_verdict == "accepted"
    guard.rollback_versions = {"2.0.5"}   # anything but the approved version found in history: refused
    assert check(p, inc, guard).guard_verdict == "notify_only"
    no_history = PlanContext(workloads=workloads, guardrails=Guardrails(), budgets=[], playbooks=load_playbooks(),
                             previous_model=lambda w: None)
    assert plan(inc, no_history).playbook == "notify_only"


def test_the_newest_approved_version_is_read_from_git_history() -> None:
    from datetime import UTC, datetime

    from agents.history import approved_model
    from agents.workloads import build_workloads
    from tests.fakes.cycle import FakeRepo, make_deps

    body = copy.deepcopy(MIS)
    body["spec"]["modelRef"]["version"] = "2.1.0"
    [w] = build_workloads([doc(body)]).values()
    at = datetime(2026, 11, 1, tzinfo=UTC)
    hist = [("c3", at, {"name": "captioner", "version": "2.1.0"}), ("c2", at, {"name": "captioner", "version": "2.0.5"}),
            ("c1", at, {"name": "captioner", "version": "2.0.1", "path": "models/captioner/v2.0.1"})]
    deps = make_deps(repo=FakeRepo(field_history=hist))
    models = [{"name": "captioner", "version": "2.0.1"}, {"name": "other", "version": "2.0.5"}]
    assert approved_model(deps, w, models) == {"version": "2.0.1", "path": "models/captioner/v2.0.1", "commit": "c1"}
    assert approved_model(deps, w, [{"name": "other", "version": "2.0.5"}]) is None


LABELS_OPT_IN = """apiVersion: remediator.apexlogic.com/v1alpha1
kind: CompliancePolicy
metadata: {name: required-labels}
spec:
  validationActions: [Warn]
  matchConstraints: {kinds: [MultimodalInferenceService, Deployment]}
  params: {owner: [team, owner], costCenter: cost-center,
           values: {cost-center: {"*": cc-1000, ml-serving: cc-1042}, team: {web: web-platform}}}
  validations:
"""


def _labels_policy() -> str:
    """The shipped required-labels validations (with their fixes) under a repository's parameters."""
    shipped = next(d for t in shipped_policy_files().values() for d in yaml.safe_load_all(t)
                   if d["metadata"]["name"] == "required-labels")
    return LABELS_OPT_IN + "".join("    " + line + "\n" for line in
                                   yaml.safe_dump(shipped["spec"]["validations"], sort_keys=False).splitlines())


@pytest.mark.parametrize(("namespace", "labels", "fixes"), [
    ("ml-serving", {"team": "vision"}, [{"label": "cost-center", "value": "cc-1042"}]),   # by namespace
    ("search", {"owner": "search"}, [{"label": "cost-center", "value": "cc-1000"}]),       # "*": any namespace
    ("web", {"app": "x"}, [{"label": "team", "value": "web-platform"}, {"label": "cost-center", "value": "cc-1000"}]),
    ("search", {"app": "x"}, [{"label": "cost-center", "value": "cc-1000"}]),             # no team value: a human
])
def test_a_missing_required_label_carries_the_value_the_policy_gives(
        namespace: str, labels: dict[str, str], fixes: list[dict[str, str]]) -> None:
    body = copy.deepcopy(MIS)
    body["metadata"].update(namespace=namespace, labels=labels)
    pset = policy_set({**shipped_policy_files(), "policies/compliance/labels.yaml": _labels_policy()}, "policies")
    assert pset.problems == []
    [f] = findings_of(evaluate(pset.policies, objects_of([doc(body)]), pset.models), pset.policies)
    [v] = [v for v in f.evidence["violations"] if v["policy"] == "required-labels"]
    assert v["fixes"] == fixes


def test_without_a_value_in_the_parameters_a_missing_label_has_no_fix() -> None:
    body = copy.deepcopy(MIS)
    body["metadata"]["labels"] = {"team": "vision"}
    pset = policy_set(shipped_policy_files(), "policies")
    [r] = [r for r in evaluate(pset.policies, objects_of([doc(body)]), pset.models) if r.policy == "required-labels"]
    assert r.status == "fail" and r.fixes == ()


def _label_plan(body: dict[str, Any], violations: list[dict[str, Any]]) -> tuple[Any, Any, Any]:
    from agents.guard import GuardContext
    from agents.planners.deterministic import PlanContext, plan
    from agents.workloads import Guardrails, build_workloads
    from memory.records import Incident
    from playbooks.loader import load_playbooks

    d = doc(body)
    workloads = build_workloads([d])
    inc = Incident(kind="policy_violation", service=d.key, severity="info", fingerprint="f",
                   evidence={"violations": violations})
    ctx = PlanContext(workloads=workloads, guardrails=Guardrails(), budgets=[], playbooks=load_playbooks(),
                      previous_model=lambda w: None)
    pset = policy_set(shipped_policy_files(), "policies")
    guard = GuardContext(guardrails=Guardrails(), playbooks=load_playbooks(), workloads=workloads,
                         policy_breaks=lambda edits: broken_by(edits, [d], pset))
    return plan(inc, ctx), inc, guard


def test_a_missing_required_label_gets_a_pr_that_adds_it_and_the_guard_accepts_only_that() -> None:
    from agents.guard import check

    body = copy.deepcopy(MIS)
    body["metadata"]["labels"] = {"team": "vision"}
    violation = {"policy": "required-labels", "message": "no cost-center label", "file": "apps/captioner.yaml",
                 "fixes": [{"label": "cost-center", "value": "cc-1042"}]}
    p, inc, guard = _label_plan(body, [violation, {"policy": "monitoring-enabled", "message": "monitoring is off"}])
    assert p.playbook == "add_required_label"
    assert [(e.path, e.old, e.new) for e in p.edits] == [(("metadata", "labels", "cost-center"), None, "cc-1042")]
    assert "cost-center=cc-1042" in p.rationale and "Still for a human: monitoring is off" in p.rationale
    assert check(p, inc, guard).guard_verdict == "accepted"
    # an edit that overwrites a label, or writes anywhere else, is not one this playbook makes
    for bad in (p.edits[0].model_copy(update={"old": "cc-7"}),
                p.edits[0].model_copy(update={"path": ("metadata", "annotations", "cost-center")})):
        verdict = check(p.model_copy(update={"edits": (bad,)}), inc, guard)
        assert verdict.guard_verdict == "rejected" or verdict.guard_verdict == "notify_only"
        assert any("is not one playbook add_required_label makes" in r for r in verdict.guard_reasons)
    # a value that is not a Kubernetes label value is refused
    bad_value = p.model_copy(update={"params": {"targets": {inc.service: {"labels": {"cost-center": "cc 1042!"}}}}})
    assert any("not a Kubernetes label value" in r for r in check(bad_value, inc, guard).guard_reasons)


def test_a_label_fix_is_notify_only_where_it_cannot_be_placed() -> None:
    violation = {"policy": "required-labels", "message": "no cost-center label",
                 "fixes": [{"label": "cost-center", "value": "cc-1042"}]}
    body = copy.deepcopy(MIS)
    del body["metadata"]["labels"]
    p, _, _ = _label_plan(body, [violation])
    assert p.playbook == "notify_only" and "no metadata.labels mapping" in p.rationale
    no_fix = {k: v for k, v in violation.items() if k != "fixes"}
    p, _, _ = _label_plan(copy.deepcopy(MIS), [no_fix])
    assert p.playbook == "notify_only"


def test_a_label_fix_is_verified_by_the_violations_it_answered_only() -> None:
    from agents.verify import failing_checks
    from memory.records import Incident, fingerprint
    from playbooks.loader import load_playbooks

    checks = load_playbooks()["add_required_label"].checks
    fixed = {"policy": "required-labels", "reason": "NoCostCenter", "fixes": [{"label": "cost-center", "value": "c"}]}
    inc = Incident(kind="policy_violation", service="ml-serving/captioner", severity="info", fingerprint="f",
                   evidence={"violations": [fixed, {"policy": "monitoring-enabled", "reason": "MonitoringDisabled"}]})
    fp = fingerprint("policy_violation", inc.service, None)
    still = {fp: {"violations": [{"policy": "required-labels", "reason": "NoCostCenter"}]}}
    others_only = {fp: {"violations": [{"policy": "monitoring-enabled", "reason": "MonitoringDisabled"}]}}
    assert [c.signal for c in failing_checks(inc, checks, still)] == ["policy"]
    assert failing_checks(inc, checks, others_only) == []   # what a human must fix does not count against the PR
    assert failing_checks(inc, checks, {}) == []


@settings(max_examples=60, deadline=None)
@given(name=st.from_regex(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,40}[A-Za-z0-9])?", fullmatch=True),
       prefix=st.sampled_from(["", "example.com/", "apexlogic.com/", "a.b-c.io/"]),
       bad=st.sampled_from([" ", "!", "/", ":", "é", "\n"]))
def test_label_syntax_is_kubernetes_own(name: str, prefix: str, bad: str) -> None:
    from playbooks.schema import label_problems

    assert label_problems("labels", {prefix + name: name}) == []
    assert label_problems("labels", {prefix + name: name[:30] + bad + name[30:]})       # a value with a bad character
    assert label_problems("labels", {prefix + name: "x" * 64})                           # a value over 63
    assert label_problems("labels", {"-" + name: name}) and label_problems("labels", {})
