"""Compliance and embedding drift through the real CLI on a real Git remote (the demo's data): a
repository that opts a policy in gets a policy_violation incident naming the policy and the
expression; a service whose input embeddings shifted gets a model_drift finding naming the
modality; the missing label the policy gives a value for is added by a one-line PR; the report
carries the posture and `remediator compliance` shows it."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from agents.demo import prepare_workspace
from tests.console import remediator

pytestmark = pytest.mark.integration

POLICY = """\
apiVersion: remediator.apexlogic.com/v1alpha1
kind: CompliancePolicy
metadata: {name: required-labels}
spec:
  severity: warning
  validationActions: [Warn]
  matchConstraints: {kinds: [MultimodalInferenceService]}
  params: {values: {ml-serving: cc-1042}}
  validations:
    - expression: "has(object.metadata.labels) && 'cost-center' in object.metadata.labels"
      message: no cost-center label
      reason: NoCostCenter
      fix:
        label: {keyExpression: "'cost-center'", valueExpression: "params.values[object.metadata.namespace]"}
"""


def push(work: Path, files: dict[str, str], message: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "h", "GIT_AUTHOR_EMAIL": "h@x", "GIT_COMMITTER_NAME": "h",
           "GIT_COMMITTER_EMAIL": "h@x"}
    for path, text in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
    subprocess.run(["git", "-C", str(work), "add", "-A"], check=True, env=env)
    subprocess.run(["git", "-C", str(work), "commit", "-qm", message], check=True, env=env)
    subprocess.run(["git", "-C", str(work), "push", "-q", "origin", "HEAD:main"], check=True, env=env)


def test_an_opted_in_policy_and_an_embedding_shift_are_found_and_shown(tmp_path: Path) -> None:
    _, cfg, remote = prepare_workspace(tmp_path, datetime.now(UTC).replace(microsecond=0))
    rng = np.random.default_rng(1)
    emb = tmp_path / "embeddings" / "captioner"
    for which in ("reference", "current"):
        (emb / which).mkdir(parents=True)
        image = rng.normal(size=(300, 32))
        if which == "current":
            image[:, :6] += 0.7
        np.save(emb / which / "image.npy", image)
        np.save(emb / which / "text.npy", rng.normal(size=(300, 16)))
    work = tmp_path / "human"
    subprocess.run(["git", "clone", "-q", str(remote), str(work)], check=True)
    path = "apps/ml-serving/image-captioner.yaml"
    text = (work / path).read_text().replace(
        "      threshold: 0.1\n",
        f"      threshold: 0.1\n      embeddings:\n        uri: {emb}\n        modalities: [image, text]\n", 1)
    assert "embeddings:" in text
    guardrails = (work / "policies/guardrails.yaml").read_text().replace(
        "    - rollback_model_version\n", "    - rollback_model_version\n    - add_required_label\n", 1)
    assert "add_required_label" in guardrails
    push(work, {"policies/compliance/labels.yaml": POLICY, path: text, "policies/guardrails.yaml": guardrails},
         "opt in a policy and its label fix; test embeddings")

    proc = remediator("run-once", "--config", str(cfg), "--json", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    violations = [f for f in report["findings"] if f["kind"] == "policy_violation"]
    assert {f["service"] for f in violations} >= {"ml-serving/image-captioner"}
    [v] = [f for f in violations if f["service"] == "ml-serving/image-captioner"][0]["evidence"]["violations"]
    assert (v["policy"], v["message"], v["policy_file"]) == ("required-labels", "no cost-center label",
                                                           "policies/compliance/labels.yaml")
    assert "'cost-center' in object.metadata.labels" in v["expression"]
    assert any(i["kind"] == "policy_violation" and i["service"] == "ml-serving/image-captioner"
               for i in report["incidents"])
    [drift] = [f for f in report["findings"] if f["kind"] == "model_drift" and f["service"] == "ml-serving/image-captioner"]
    assert drift["evidence"]["drifted_modalities"] == ["image"]
    posture = {(c["service"], c["policy"]): c["status"] for c in report["compliance"]}
    assert posture[("ml-serving/image-captioner", "required-labels")] == "fail"
    assert posture[("ml-serving/image-captioner", "explainability-enabled")] == "pass"

    # vision-language-model fails only this policy: a PR of its own; image-captioner's label joins
    # the PR of its cost incident (one PR per workload), and still only adds the one line
    [pr] = [p for p in report["pull_requests"] if p["branch"].startswith("remediator/policy-violation/")]
    assert "vision-language-model" in pr["branch"] and pr["title"].endswith("(cost-center=cc-1042 added)")
    vlm = "apps/ml-serving/vision-language-model.yaml"
    diff = subprocess.run(["git", "-C", str(remote), "diff", "main", pr["branch"], "--", vlm], check=True,
                          capture_output=True, text=True).stdout
    changed = [ln for ln in diff.splitlines() if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    assert changed == ["+    cost-center: cc-1042"], diff
    [cost_pr] = [p for p in report["pull_requests"] if p["branch"].startswith("remediator/cost-anomaly/")]
    diff = subprocess.run(["git", "-C", str(remote), "diff", "main", cost_pr["branch"], "--", path], check=True,
                          capture_output=True, text=True).stdout
    changed = [ln for ln in diff.splitlines() if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    assert "+    cost-center: cc-1042" in changed and len(changed) == 3, diff   # + maxReplicas (- and +)

    shown = remediator("compliance", "--config", str(cfg), "--failing", timeout=60)
    assert shown.returncode == 0 and "required-labels" in shown.stdout and "no cost-center label" in shown.stdout


FLOOR = """\
apiVersion: remediator.apexlogic.com/v1alpha1
kind: CompliancePolicy
metadata: {name: captioner-capacity-floor}
spec:
  severity: critical
  validationActions: [Deny]
  matchConstraints: {kinds: [MultimodalInferenceService]}
  matchConditions:
    - {name: captioner, expression: "object.metadata.name == 'image-captioner'"}
  validations:
    - expression: "int(object.spec.autoscaling.maxReplicas) >= 5"
      messageExpression: "'maxReplicas ' + string(object.spec.autoscaling.maxReplicas) + ' is below the floor of 5 agreed with the product team'"
      reason: BelowFloor
"""


def test_an_open_pr_that_a_new_policy_forbids_is_reported_and_cannot_be_approved(tmp_path: Path) -> None:
    _, cfg, remote = prepare_workspace(tmp_path, datetime.now(UTC).replace(microsecond=0))
    first = remediator("run-once", "--config", str(cfg), "--json", timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    [pr] = [p for p in json.loads(first.stdout)["pull_requests"] if p["branch"].startswith("remediator/cost-anomaly/")]
    [iid] = pr["incident_ids"]

    # after the PR opened, a human adds a policy that its cap (maxReplicas 6 -> 3) would break
    work = tmp_path / "human"
    subprocess.run(["git", "clone", "-q", str(remote), str(work)], check=True)
    push(work, {"policies/compliance/floor.yaml": FLOOR}, "capacity floor for the captioner")
    second = remediator("run-once", "--config", str(cfg), "--json", timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    errors = [e for e in json.loads(second.stdout)["errors"] if e["source"] == pr["branch"]]
    assert len(errors) == 1 and "would break compliance policy captioner-capacity-floor" in errors[0]["message"]
    assert "maxReplicas 3 is below the floor of 5" in errors[0]["message"]

    refused = remediator("decisions", "approve", iid, "--config", str(cfg), timeout=120)
    assert refused.returncode == 1 and "captioner-capacity-floor" in refused.stderr + refused.stdout
    main = subprocess.run(["git", "-C", str(remote), "show", "main:apps/ml-serving/image-captioner.yaml"],
                          check=True, capture_output=True, text=True).stdout
    assert "maxReplicas: 6" in main   # nothing merged

    # the policy goes; the next cycle clears the refusal and the approval merges the PR
    push(work, {"policies/compliance/floor.yaml": FLOOR.replace("severity: critical", "severity: critical\n  disabled: true")},
         "drop the floor")
    third = remediator("run-once", "--config", str(cfg), "--json", timeout=300)
    assert third.returncode == 0 and not [e for e in json.loads(third.stdout)["errors"] if e["source"] == pr["branch"]]
    ok = remediator("decisions", "approve", iid, "--config", str(cfg), timeout=120)
    assert ok.returncode == 0, ok.stderr[-2000:]
    main = subprocess.run(["git", "-C", str(remote), "show", "main:apps/ml-serving/image-captioner.yaml"],
                          check=True, capture_output=True, text=True).stdout
    assert "maxReplicas: 3" in main
