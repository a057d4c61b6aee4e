"""Detectors: pure functions of arrays; behaviour on the shapes of trouble the daemon must tell apart."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.workloads import Budget
from tools.detectors.budget import BudgetInput, detect_budget_breach
from tools.detectors.common import InputStats, counter_increase
from tools.detectors.cost import CostSettings, WorkloadSeries, detect_cost_anomalies
from tools.detectors.drift import CounterSeries, DriftInput, detect_drift, js_distance
from tools.detectors.fairness import FairnessInput, detect_fairness
from tools.detectors.oob import detect_oob_writes
from tools.results import AuditEvent

STEP = 120
DAY = 86400
N = 7 * DAY // STEP
NOW = 1_795_775_700.0
TS = NOW - STEP * np.arange(N)[::-1]
S = CostSettings(min_duration_s=900)


def seasonal(level: float = 3.0, amp: float = 0.2, noise: float = 0.02, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    phase = 2 * np.pi * (TS % DAY) / DAY
    return level * (1 + amp * np.sin(phase)) * (1 + noise * rng.standard_normal(N))


def run(cost: np.ndarray, **kw: object) -> list:
    stats = InputStats()
    out = detect_cost_anomalies([WorkloadSeries(service="ns/w", file="w.yaml", ts=TS, cost=cost, **kw)], S, stats)
    return out


def test_seasonal_noise_is_not_an_anomaly() -> None:
    assert run(seasonal()) == []


def test_sustained_jump_for_six_hours_is_found_with_evidence() -> None:
    c = seasonal()
    c[-6 * 3600 // STEP:] *= 3
    (f,) = run(c)
    assert f.kind == "cost_anomaly" and f.service == "ns/w" and f.severity == "critical"
    ev = f.evidence
    assert 2.6 < ev["ratio"] < 3.4 and ev["window"]["minutes"] == pytest.approx(360, abs=4)
    lo, hi = ev["expected_range_usd_per_hour"]
    assert lo < ev["expected_usd_per_hour"] < hi < ev["cost_usd_per_hour"]


def test_sustained_rise_below_max_replicas_like_a_request_raised_in_git() -> None:
    c = seasonal()
    c[-8 * 3600 // STEP:] *= 1.6
    (f,) = run(c)
    assert f.severity == "warning" and 1.45 < f.evidence["ratio"] < 1.75


def test_slow_creep_over_days_is_found() -> None:
    c = seasonal()
    ramp = np.clip((TS - (NOW - 3 * DAY)) / (3 * DAY), 0, 1)
    c *= 1 + 1.5 * ramp
    (f,) = run(c)
    assert f.evidence["ratio"] > 1.5


def test_node_price_change_raises_cost_for_a_day() -> None:
    c = seasonal()
    c[-DAY // STEP:] *= 1.5
    assert len(run(c)) == 1


@pytest.mark.parametrize("minutes", [4, 10])
def test_spike_shorter_than_min_duration_is_noise(minutes: int) -> None:
    c = seasonal()
    c[-(minutes * 60 // STEP):] *= 3
    assert run(c) == []


def test_excursion_that_ended_is_not_current() -> None:
    c = seasonal()
    c[-3 * 3600 // STEP: -3600 // STEP] *= 3
    assert run(c) == []


def test_rise_explained_by_traffic_is_not_an_anomaly() -> None:
    c = seasonal()
    rps = seasonal(level=20, seed=1)
    c[-6 * 3600 // STEP:] *= 2.5
    rps[-6 * 3600 // STEP:] *= 2.5
    assert run(c, request_rate=rps) == []
    rps_flat = seasonal(level=20, seed=1)
    assert len(run(c, request_rate=rps_flat)) == 1


def test_gaps_and_missing_tail() -> None:
    c = seasonal()
    c[-6 * 3600 // STEP:] *= 3
    c[100:400] = np.nan
    c[-20] = np.nan
    assert len(run(c)) == 1
    gone = c.copy()
    gone[-30:] = np.nan  # the workload stopped reporting an hour ago
    assert run(gone) == []


@pytest.mark.parametrize("extra,found", [(1, False), (2, True)])
def test_one_autoscaler_step_above_the_usual_replicas_is_not_an_anomaly(extra: int, found: bool) -> None:
    """An HPA at 2 replicas that runs 3 for an hour costs x1.5: autoscaling granularity, not an incident
    (seen in a scenario on a 2-3 replica gateway); 2 more replicas than usual at this hour still is one."""
    reps = np.full(N, 2.0)
    reps[(TS % DAY) > DAY - 3600 * 2] = 3.0           # every evening one more replica for two hours: usual
    reps[-3600 // STEP:] = 2.0 + extra                 # the last hour, at a time of day that usually runs 2
    cost = 0.04 * reps
    stats = InputStats()
    out = detect_cost_anomalies([WorkloadSeries(service="web/gw", file=None, ts=TS, cost=cost, replicas=reps)], S, stats)
    assert bool(out) is found
    if not found:
        assert any("at most 1 replica(s) above the usual count" in r for r in stats.rejected)
    # the same cost rise without a replica change (a price or request change) is an anomaly
    assert detect_cost_anomalies([WorkloadSeries(service="web/gw", file=None, ts=TS, cost=cost,
                                                 replicas=np.full(N, 2.0))], S, InputStats())


def test_gpu_utilisation_during_the_excursion_is_evidence() -> None:
    c = seasonal()
    c[-6 * 3600 // STEP:] *= 3
    util = np.where(np.arange(N) < N - 6 * 3600 // STEP, 72.0, 24.0)
    (f,) = run(c, gpu_util=util, gpu_util_alarm_ts=float(TS[-6 * 3600 // STEP]))
    ev = f.evidence
    assert ev["gpu_util_percent"] == 24.0 and ev["gpu_util_expected_percent"] == 72.0
    assert ev["gpu_util_alarm_at"].endswith("Z")
    (g,) = run(c, gpu_util=util, gpu_util_alarm_ts=float(TS[0]))   # an old utilisation alarm is not this one
    assert "gpu_util_alarm_at" not in g.evidence
    # without GPUs, or with unusable utilisation data, the cost finding is unchanged
    for bad in (None, np.full(N, np.nan), np.full(3, 50.0), "abc", np.full((2, N), 50.0)):
        (h,) = run(c, gpu_util=bad)
        assert not {k for k in h.evidence if k.startswith("gpu_util")}, bad


@pytest.mark.parametrize("bad", [
    np.array([]), np.array([1.0]), np.full(N, np.nan), np.full((2, N), 1.0), "abc", np.full(N, np.inf),
])
def test_bad_input_no_crash_no_finding(bad: object) -> None:
    stats = InputStats()
    ts = TS if not (isinstance(bad, np.ndarray) and bad.ndim == 1 and bad.size < 2) else TS[: np.size(bad)]
    out = detect_cost_anomalies([WorkloadSeries(service="ns/w", file=None, ts=ts, cost=bad)], S, stats)
    assert out == []


def test_bad_input_is_counted() -> None:
    stats = InputStats()
    detect_cost_anomalies([WorkloadSeries(service="ns/w", file=None, ts=TS[:1], cost=[1.0])], S, stats)
    assert stats.rejected and "ns/w" in stats.rejected[0]


@settings(max_examples=40, deadline=None)
@given(scale=st.floats(min_value=1e-3, max_value=1e4), jump=st.sampled_from([1.0, 3.0]), seed=st.integers(0, 50))
def test_scale_invariance(scale: float, jump: float, seed: int) -> None:
    c = seasonal(seed=seed)
    c[-6 * 3600 // STEP:] *= jump
    assert len(run(c)) == len(run(c * scale))


@settings(max_examples=30, deadline=None)
@given(level=st.floats(min_value=0.01, max_value=1e5), amp=st.floats(min_value=0, max_value=0.9))
def test_constant_or_purely_seasonal_series_never_alarm(level: float, amp: float) -> None:
    assert run(seasonal(level=level, amp=amp, noise=0.0)) == []


# ----------------------------------------------------------------------------- budget

def test_budget_projection_and_evidence() -> None:
    costs = {"ns/a": (TS, np.full(N, 10.0)), "ns/b": (TS, np.full(N, 5.0))}
    b = BudgetInput(name="b", service="ns/*", monthly_usd=12000, alert_at_percent=80, action="alert", costs=costs)
    f = detect_budget_breach(b, now=NOW)
    assert f is not None and f.kind == "budget_breach"
    assert f.evidence["projected_monthly_usd"] == pytest.approx(15 * 730)
    assert f.evidence["top_contributors"][0]["workload"] == "ns/a"
    under = BudgetInput(name="b", service="ns/*", monthly_usd=20000, alert_at_percent=80, action="alert", costs=costs)
    assert detect_budget_breach(under, now=NOW) is None  # 10950 < 16000


def test_budget_service_names() -> None:
    def service(raw: dict[str, object]) -> str:
        return Budget.model_validate({"monthly_usd": 1, **raw}).service
    assert service({"name": "x", "selector": {"namespace": "ml"}}) == "ml/*"
    assert service({"name": "x", "selector": {"service": "ml/a"}}) == "ml/a"
    assert service({"name": "gpu-team", "selector": {"labels": {"team": "a"}}}) == "gpu-team"


def test_budget_bad_numbers_are_rejected() -> None:
    stats = InputStats()
    b = BudgetInput(name="b", service="ns/*", monthly_usd=0, alert_at_percent=80, action="alert", costs={})
    assert detect_budget_breach(b, now=NOW, stats=stats) is None and stats.rejected


# ----------------------------------------------------------------------------- drift

@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=1e6), min_size=2, max_size=8),
       st.lists(st.floats(min_value=0.0, max_value=1e6), min_size=2, max_size=8))
def test_js_distance_is_a_bounded_symmetric_distance(a: list[float], b: list[float]) -> None:
    n = min(len(a), len(b))
    p, q = np.array(a[:n]) + 1e-9, np.array(b[:n]) + 1e-9
    d = js_distance(p, q)
    assert 0.0 <= d <= 1.0
    assert d == pytest.approx(js_distance(q, p), abs=1e-9)
    assert js_distance(p, p) == pytest.approx(0.0, abs=1e-6)


def test_js_distance_known_value() -> None:
    assert js_distance(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)


def _counters(version: str, dist: dict[str, float], start: float, rate: float, base: float = 0.0) -> list[CounterSeries]:
    out = []
    for cls, p in dist.items():
        v = np.where(TS >= start, base + np.maximum(0, TS - start) * rate * p, np.nan)
        out.append(CounterSeries({"model_version": version, "class": cls}, TS, v))
    return out


def test_drift_after_rollout_is_found_against_previous_version() -> None:
    rollout = NOW - DAY
    old = {"a": 0.5, "b": 0.3, "c": 0.2}
    new = {"a": 0.2, "b": 0.3, "c": 0.5}
    counters = _counters("1.0", old, TS[0], 5.0, base=1000) + _counters("2.0", new, rollout, 5.0)
    for c in counters[:3]:
        c.values[TS > rollout] = np.nan  # old version stops when the new one rolls out
    d = DriftInput(service="ml/x", file="x.yaml", current_version="2.0", counters=counters, threshold=0.1,
                   baseline_ref="vl_model_v1", previous_version="1.0")
    f = detect_drift(d, now=NOW)
    assert f is not None and f.model_version == "2.0" and f.evidence["baseline_version"] == "1.0"
    assert f.evidence["baseline_source"] == "git_history" and f.evidence["distance"] > 0.2
    same = DriftInput(service="ml/x", file=None, current_version="2.0",
                      counters=_counters("1.0", old, TS[0], 5.0) + _counters("2.0", old, rollout, 5.0),
                      previous_version="1.0")
    assert detect_drift(same, now=NOW) is None


def test_drift_needs_enough_samples() -> None:
    rollout = NOW - 600
    counters = _counters("1.0", {"a": 0.5, "b": 0.5}, TS[0], 5.0) + _counters("2.0", {"a": 0.9, "b": 0.1}, rollout, 0.01)
    stats = InputStats()
    d = DriftInput(service="ml/x", file=None, current_version="2.0", counters=counters, previous_version="1.0")
    assert detect_drift(d, now=NOW, stats=stats) is None and stats.rejected


def test_counter_increase_handles_resets_and_gaps() -> None:
    assert counter_increase(np.array([5.0, 7.0, np.nan, 10.0, 2.0, 4.0])) == pytest.approx(2 + 3 + 2 + 2)


# ----------------------------------------------------------------------------- fairness

def _outcomes(version: str, rates: dict[str, tuple[float, float]], start: float) -> list[CounterSeries]:
    out = []
    for g, (rate, n_per_s) in rates.items():
        for outcome, share in (("positive", rate), ("negative", 1 - rate)):
            v = np.where(TS >= start, (TS - start) * n_per_s * share, np.nan)
            out.append(CounterSeries({"model_version": version, "attribute": "gender", "group": g,
                                      "outcome": outcome}, TS, v))
    return out


def test_fairness_parity_gap_is_found_and_tiny_groups_ignored() -> None:
    start = NOW - DAY
    f = detect_fairness(FairnessInput(service="ml/x", file=None, current_version="2", attributes=("gender",),
                                      counters=_outcomes("2", {"f": (0.30, 1.0), "m": (0.50, 1.0)}, start),
                                      threshold=0.05), now=NOW)
    assert f is not None and f.evidence["attribute"] == "gender" and f.evidence["dpd"] == pytest.approx(0.2, abs=0.01)
    tiny = _outcomes("2", {"f": (0.50, 1.0), "m": (0.50, 1.0), "x": (0.0, 0.0005)}, start)
    assert detect_fairness(FairnessInput(service="ml/x", file=None, current_version="2", attributes=("gender",),
                                         counters=tiny, threshold=0.05), now=NOW) is None


# ----------------------------------------------------------------------------- out-of-band writes

def ev(user: str, *, verb: str = "patch", resource: str = "deployments", sub: str = "scale", name: str = "api",
       code: int = 200) -> AuditEvent:
    return AuditEvent(audit_id="1", at=datetime(2026, 11, 27, 10, 0, tzinfo=UTC), verb=verb, user=user, groups=(),
                      user_agent="kubectl", source_ips=("10.0.0.1",), resource=resource, subresource=sub,
                      namespace="web", name=name, api_group="apps", request_uri="/apis/apps/v1/...", code=code,
                      request_object={"spec": {"replicas": 12}})


def test_out_of_band_scale_by_a_human_is_gitops_drift() -> None:
    managed = {("web", "api"): "apps/web/api.yaml"}
    (f,) = detect_oob_writes([ev("alice@example.com")], managed=managed, allowed_actors=[])
    assert f.kind == "gitops_drift" and f.service == "web/api" and "alice@example.com" in f.summary
    assert f.evidence["events"][0]["change"] == "replicas -> 12"


@pytest.mark.parametrize("event", [
    ev("system:serviceaccount:kube-system:horizontal-pod-autoscaler"),
    ev("alice@example.com", sub="status"),
    ev("alice@example.com", verb="get"),
    ev("alice@example.com", code=403),
    ev("alice@example.com", name="not-managed"),
    ev("alice@example.com", resource="secrets", sub=""),
])
def test_expected_or_harmless_events_are_not_drift(event: AuditEvent) -> None:
    managed = {("web", "api"): "apps/web/api.yaml"}
    actors = ["system:serviceaccount:kube-system:horizontal-pod-autoscaler"]
    assert detect_oob_writes([event], managed=managed, allowed_actors=actors) == []


def test_counters_predating_the_data_count_only_their_increase() -> None:
    """Regression: a baseline window starting before the data made a long-running counter's
    running total count as predictions, inventing drift."""
    rollout = NOW - DAY
    dist = {"a": 0.6, "b": 0.3, "c": 0.1}
    old = []
    for i, (cls, p) in enumerate(dist.items()):
        v = 1e7 * (1 + 4 * (i == 2)) + (TS - TS[0]) * 5.0 * p  # running totals unrelated to the class mix
        v[TS > rollout] = np.nan
        old.append(CounterSeries({"model_version": "1.0", "class": cls}, TS, v))
    d = DriftInput(service="ml/x", file=None, current_version="2.0",
                   counters=old + _counters("2.0", dist, rollout, 5.0), previous_version="1.0")
    assert detect_drift(d, now=NOW) is None
