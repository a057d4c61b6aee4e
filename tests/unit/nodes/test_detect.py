"""detect: a failed query is an error of the report, never a finding; which kind|service had
data is recorded for correlate; detect reads metrics only (no PR, no Slack)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest

from agents.nodes.detect import detect
from memory.records import Finding
from tests.fakes.cycle import T0, FakeMetrics, cycle_state, make_deps, make_settings, manifest, run, snapshot
from tools.errors import PermanentError
from tools.results import Series, SignalResult

KEY = "ml-serving/batch-embedder"
DEPLOYMENT = manifest("Deployment", "batch-embedder", api_version="apps/v1", spec={"replicas": 2})


def flat(value: float) -> Any:
    """A scripted metrics answer: one flat series on the requested grid."""
    def answer(*, start: Any, end: Any, step_s: int, **_: Any) -> SignalResult:
        ts = np.arange(start.timestamp(), end.timestamp() + 1, step_s, dtype=np.float64)
        return SignalResult(status="ok", series=[Series({}, ts, np.full(ts.shape, value))])
    return answer


def settings() -> Any:
    return make_settings(detection={"history": "3h"})


@pytest.mark.parametrize("answer,message", [
    (PermanentError("bad PromQL", source="prom"), "bad PromQL"),
    (SignalResult(status="error", error="query timed out"), "query timed out"),
])
def test_a_failed_query_is_an_error_not_a_finding_and_not_evaluated(answer: object, message: str) -> None:
    metrics = FakeMetrics(workload_cost=answer)   # replicas / gpu / requests: not asked once cost failed
    deps = make_deps(settings=settings(), metrics=metrics)
    state = cycle_state(snapshot=snapshot([DEPLOYMENT]))

    out = run(detect, state, deps)

    assert out["findings"] == [] and out["evaluated"] == []
    assert out["errors"] == [{"stage": "detect", "source": f"cost {KEY}", "message": message}]
    [call] = metrics.called("workload_cost")
    assert (call["namespace"], call["name"], call["end"], call["start"]) == (
        "ml-serving", "batch-embedder", T0, T0 - timedelta(hours=3))
    [entry] = [e for e in deps.store.audit.entries() if e.stage == "detect"]
    assert (entry.action, entry.data["count"]) == ("findings", 0)


def test_a_workload_with_cost_data_is_evaluated_and_its_other_signals_are_read() -> None:
    metrics = FakeMetrics(workload_cost=flat(3.0), workload_replicas=flat(2.0), gpu_utilisation=flat(50.0))
    deps = make_deps(settings=settings(), metrics=metrics)   # request_rate forbidden: not an inference service
    out = run(detect, cycle_state(snapshot=snapshot([DEPLOYMENT])), deps)
    assert out["evaluated"] == [f"cost_anomaly|{KEY}"]
    assert out["findings"] == [] and out["errors"] == []
    assert len(metrics.called("workload_replicas")) == len(metrics.called("gpu_utilisation")) == 1


def test_an_out_of_band_write_to_a_git_managed_object_is_a_finding() -> None:
    config = manifest("ConfigMap", "image-captioner", api_version="v1")   # managed, not a workload: no queries
    events = [audit_event("alice"), audit_event("system:serviceaccount:argocd:argocd-application-controller")]
    deps = make_deps()   # metrics forbidden
    out = run(detect, cycle_state(snapshot=snapshot([config]), audit_events=events), deps)
    [f] = [Finding.model_validate(d) for d in out["findings"]]
    assert (f.kind, f.service, f.file) == ("gitops_drift", "ml-serving/image-captioner", config.file)
    assert "by alice" in f.summary
    assert out["evaluated"] == []


def test_an_actor_the_guardrails_allow_is_not_out_of_band() -> None:
    config = manifest("ConfigMap", "image-captioner", api_version="v1")
    snap = snapshot([config], guardrails={"actors": {"controllers": ["alice"]}})
    out = run(detect, cycle_state(snapshot=snap, audit_events=[audit_event("alice")]), make_deps())
    assert out["findings"] == []


def audit_event(user: str) -> dict[str, Any]:
    """An audit event as observe leaves it in the (checkpointed, JSON) state."""
    return {"audit_id": f"ev-{user}", "at": (T0 - timedelta(minutes=3)).isoformat(), "verb": "patch", "user": user,
            "groups": ["devs"], "user_agent": "kubectl", "source_ips": ["10.0.0.1"], "resource": "deployments",
            "subresource": "scale", "namespace": "ml-serving", "name": "image-captioner",
            "api_group": "apps", "request_uri": "/apis/apps/v1/namespaces/ml-serving/deployments/image-captioner",
            "code": 200, "request_object": {"spec": {"replicas": 9}}}
