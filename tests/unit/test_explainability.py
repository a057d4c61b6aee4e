"""Explainability coverage (tools/detectors/explainability.py): explained against served predictions
of the current version, against the declared samplingSize."""

from __future__ import annotations

import numpy as np

from tools.detectors.drift import CounterSeries
from tools.detectors.explainability import CoverageInput, detect_coverage

NOW = 1_800_000_000.0
TS = np.arange(NOW - 6 * 3600, NOW + 1, 60.0)


def counter(per_minute: float, *, stop_at: float | None = None, version: str = "2.0", **labels: str) -> CounterSeries:
    inc = np.full(TS.shape, per_minute)
    if stop_at is not None:
        inc[TS > stop_at] = 0
    return CounterSeries({"model_version": version, **labels}, TS, 1000 + np.cumsum(inc))


def coverage(served: float, explained_per_min: float | None, *, stop_at: float | None = None,
             sampling: int = 100) -> CoverageInput:
    return CoverageInput(service="ml/a", file="apps/a.yaml", version="2.0", sampling_size=sampling,
                         predictions=[counter(served, **{"class": "cat"})],
                         explanations=[] if explained_per_min is None else [counter(explained_per_min, stop_at=stop_at)])


def test_explanations_at_the_declared_rate_are_no_finding() -> None:
    assert detect_coverage(coverage(500.0, 5.0), now=NOW) is None      # 1 in 100, as declared
    assert detect_coverage(coverage(500.0, 2.0), now=NOW) is None      # 1 in 250: within the tolerance of 3


def test_a_service_that_stopped_explaining_is_a_policy_violation() -> None:
    f = detect_coverage(coverage(500.0, 5.0, stop_at=NOW - 2 * 3600), now=NOW)
    assert f is not None and f.kind == "policy_violation" and f.service == "ml/a"
    assert "stopped producing explanations (30000 predictions, none explained in 60 min)" in f.summary
    [v] = f.evidence["violations"]
    assert (v["policy"], v["reason"]) == ("explainability-coverage", "Stopped")
    assert f.evidence["explainability"]["declared_sampling_size"] == 100


def test_far_too_few_explanations_is_a_finding_and_too_little_traffic_or_no_metric_is_not() -> None:
    f = detect_coverage(coverage(500.0, 0.5), now=NOW)
    assert f is not None and "explains 0.10% of predictions, below 1 in 100 declared" in f.summary
    assert detect_coverage(coverage(10.0, 0.0), now=NOW) is None        # 600 served: 6 expected, too few to judge
    assert detect_coverage(coverage(500.0, None), now=NOW) is None      # the service never exported the metric
