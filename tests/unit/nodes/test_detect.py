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


class _Embeddings:
    """Samples by (uri, which, modality); anything else is missing, as the real adapter says it."""
    name = "fake embeddings"

    def __init__(self, samples: dict[tuple[str, str, str], Any]) -> None:
        self.samples = samples

    def load(self, *, uri: str, which: str, modality: str) -> Any:
        if (uri, which, modality) not in self.samples:
            raise PermanentError(f"no embedding sample at {uri}/{which}/{modality}.npy", source=uri)
        return self.samples[(uri, which, modality)]


def test_input_embedding_drift_names_the_modality_and_a_missing_sample_is_an_error_entry(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import agents.nodes.detect as node
    from tests.fakes.cycle import FakeRepo, mis

    batches: list[list[str]] = []
    real = node.run_many

    def counted(tests: Any, **kw: Any) -> Any:
        batches.append([f"{t.key} {t.modality}" for t in tests])
        return real(tests, **kw)
    monkeypatch.setattr(node, "run_many", counted)

    def with_embeddings(name: str, uri: str) -> Any:
        m = mis(name)
        m.body["spec"]["responsibleAI"] = {"driftDetection": {
            "enabled": True, "threshold": 0.1, "embeddings": {"uri": uri, "modalities": ["image", "text"]}}}
        return m
    rng = np.random.default_rng(5)
    shifted = rng.normal(size=(200, 16))
    shifted[:, :4] += 0.8
    samples = {("s3://emb/captioner", "reference", "image"): rng.normal(size=(200, 16)),
               ("s3://emb/captioner", "current", "image"): shifted,
               ("s3://emb/captioner", "reference", "text"): rng.normal(size=(200, 8)),
               ("s3://emb/captioner", "current", "text"): rng.normal(size=(200, 8)),
               ("s3://emb/asr", "reference", "image"): rng.normal(size=(200, 16)),
               ("s3://emb/asr", "current", "image"): rng.normal(size=(200, 16)),
               ("s3://emb/asr", "reference", "text"): rng.normal(size=(200, 8)),
               ("s3://emb/asr", "current", "text"): rng.normal(size=(200, 8)),
               ("s3://emb/tiny", "reference", "image"): rng.normal(size=(1, 16)),
               ("s3://emb/tiny", "current", "image"): rng.normal(size=(1, 16)),
               ("s3://emb/tiny", "reference", "text"): rng.normal(size=(1, 8)),
               ("s3://emb/tiny", "current", "text"): rng.normal(size=(1, 8))}
    metrics = FakeMetrics(workload_cost=flat(3.0), workload_replicas=flat(2.0), gpu_utilisation=flat(50.0),
                          request_rate=flat(5.0), prediction_counters=SignalResult(status="no_data", series=[]))
    deps = make_deps(settings=settings(), metrics=metrics, repo=FakeRepo(field_history=[]),
                     embeddings=_Embeddings(samples))
    out = run(detect, cycle_state(snapshot=snapshot([with_embeddings("captioner", "s3://emb/captioner"),
                                                     with_embeddings("ocr", "s3://emb/missing"),
                                                     with_embeddings("asr", "s3://emb/asr"),
                                                     with_embeddings("tiny", "s3://emb/tiny")])), deps)
    [f] = [Finding.model_validate(d) for d in out["findings"] if d["kind"] == "model_drift"]
    assert f.service == "ml-serving/captioner" and f.evidence["drifted_modalities"] == ["image"]
    assert "input embeddings drifted (image" in f.summary
    by = {e["modality"]: e for e in f.evidence["embedding_drift"]}
    assert by["image"]["drifted"] and not by["text"]["drifted"] and "fused" in by
    assert "model_drift|ml-serving/captioner" in out["evaluated"]
    missing, tiny = sorted((e for e in out["errors"] if "embedding" in e["message"]), key=lambda e: e["message"])
    assert "ml-serving/ocr" in missing["message"] and "s3://emb/missing/reference/image.npy" in missing["message"]
    assert "ml-serving/tiny" in tiny["message"] and "at least 2 rows" in tiny["message"]
    assert "model_drift|ml-serving/asr" in out["evaluated"] and "model_drift|ml-serving/tiny" not in out["evaluated"]
    # the cycle's tests ran as one batch: two services, two modalities and the fused embedding each
    assert batches == [[f"ml-serving/{s} {m}" for s in ("asr", "captioner") for m in ("image", "text", "fused")]]


@pytest.mark.parametrize("values,word", [
    ("inf", "infinite"), ("nan", "finite sample"), ("irregular", "irregular timestamps"),
])
def test_bad_cost_data_is_counted_in_the_cycle_report_never_a_finding_or_a_crash(values: str, word: str) -> None:
    def answer(*, start: Any, end: Any, step_s: int, **_: Any) -> SignalResult:
        ts = np.arange(start.timestamp(), end.timestamp() + 1, step_s, dtype=np.float64)
        v = np.full(ts.shape, 3.0)
        if values == "inf":
            v[::7] = np.inf
        elif values == "nan":
            v[:] = np.nan
        else:
            ts = ts + np.where(np.arange(ts.size) % 2 == 1, 0.4 * step_s, 0.0)
            ts[-1] = end.timestamp()
        return SignalResult(status="ok", series=[Series({}, ts, v)])

    metrics = FakeMetrics(workload_cost=answer, workload_replicas=flat(2.0), gpu_utilisation=flat(50.0))
    out = run(detect, cycle_state(snapshot=snapshot([DEPLOYMENT])), make_deps(settings=settings(), metrics=metrics))
    assert out["findings"] == []
    assert any(e["source"] == f"cost {KEY}" and word in e["message"] for e in out["errors"]), out["errors"]


def test_the_streaming_alarm_decides_also_when_workloads_have_histories_of_different_lengths() -> None:
    """The torch streaming detector scores the cycle's series as one batch; a workload younger than
    detection.history gives a shorter series, and the batch is then scored padded (from cold) rather
    than skipped, so the alarm still decides (it was skipped: the step was found by the same-hour
    test instead, with the streaming detector not consulted)."""
    young = manifest("Deployment", "young-tagger", api_version="apps/v1", spec={"replicas": 2})

    def answer(*, start: Any, end: Any, step_s: int, name: str, **_: Any) -> SignalResult:
        t0 = start.timestamp() if name == "batch-embedder" else end.timestamp() - 1.5 * 86400
        ts = np.arange(t0, end.timestamp() + 1, step_s, dtype=np.float64)
        v = np.full(ts.shape, 3.0)
        v[-60:] = 6.0                                      # x2 for the last hour
        return SignalResult(status="ok", series=[Series({}, ts, v)])

    def none(**_: Any) -> SignalResult:
        return SignalResult(status="ok", series=[])

    deps = make_deps(settings=make_settings(detection={"history": "2d"}),
                     metrics=FakeMetrics(workload_cost=answer, workload_replicas=none, gpu_utilisation=none))
    out = run(detect, cycle_state(snapshot=snapshot([DEPLOYMENT, young])), deps)
    found = {f.service: f for f in (Finding.model_validate(d) for d in out["findings"])}
    assert set(found) == {KEY, "ml-serving/young-tagger"}, out["errors"]
    assert {f.evidence["method"] for f in found.values()} == {"streaming"}
