"""Drift (JS / PSI / chi-square / KS), fairness (DPD / EOD with intervals) and budget forecasts:
gates, evidence, severity/confidence, bad input, and properties."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon

from tools.detectors.budget import BudgetInput, detect_budget_breach
from tools.detectors.common import InputStats, counter_increase_between
from tools.detectors.drift import (
    CounterSeries,
    DriftInput,
    assess_drift,
    chi_square,
    detect_drift,
    js_distance,
    js_distance_rows,
    ks_counts,
    metric_key,
    ordinal_order,
    psi,
    rollout_time,
)
from tools.detectors.fairness import FairnessInput, detect_fairness, rate_gap, wilson

STEP = 120.0
DAY = 86400.0
N = int(8 * DAY // STEP)
NOW = 1_795_775_700.0
TS = NOW - STEP * np.arange(N)[::-1]
ROLLOUT = NOW - DAY

OLD = {"a": 0.5, "b": 0.3, "c": 0.2}
NEW = {"a": 0.2, "b": 0.3, "c": 0.5}


def counters(version: str, dist: dict[str, float], start: float, rate: float, stop: float | None = None,
             base: float = 0.0) -> list[CounterSeries]:
    out = []
    for cls, p in dist.items():
        v = np.where(TS >= start, base + np.maximum(0, TS - start) * rate * p, np.nan)
        if stop is not None:
            v[TS > stop] = np.nan
        out.append(CounterSeries({"model_version": version, "class": cls}, TS, v))
    return out


def drift_input(new: dict[str, float] = NEW, rate: float = 5.0, **kw: object) -> DriftInput:
    cs = counters("1.0", OLD, TS[0], rate, stop=ROLLOUT, base=1000) + counters("2.0", new, ROLLOUT, rate)
    args: dict[str, object] = {"service": "ml/x", "file": "x.yaml", "current_version": "2.0", "counters": cs,
                               "previous_version": "1.0"}
    args.update(kw)
    return DriftInput(**args)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- statistics

def test_metric_names() -> None:
    assert metric_key("JensenShannonDivergence") == "js" and metric_key(None) == "js" and metric_key("") == "js"
    assert metric_key("psi") == "psi" and metric_key("Chi-Square") == "chi2" and metric_key("KS") == "ks"
    assert metric_key("Kolmogorov-Smirnov") == "ks" and metric_key("wasserstein") is None


def test_statistics_match_references() -> None:
    c = np.array([120.0, 300.0, 80.0, 500.0])
    b = np.array([200.0, 250.0, 150.0, 400.0])
    p, q = c / c.sum(), b / b.sum()
    assert float(js_distance_rows(p, q)) == pytest.approx(jensenshannon(p, q, base=2), abs=1e-12)
    assert float(js_distance_rows(p, q, base=math.e)) == pytest.approx(jensenshannon(p, q), abs=1e-12)
    assert js_distance(c, b) == pytest.approx(jensenshannon(p, q, base=2), abs=1e-12)
    assert psi(c, b) == pytest.approx(float(np.sum((p - q) * np.log(p / q))))
    stat, dof, pv = chi_square(c, b)
    ref = sps.chi2_contingency(np.vstack([c, b]), correction=False)
    assert (stat, dof) == (pytest.approx(ref[0]), ref[2]) and pv == pytest.approx(ref[1])
    d, kp = ks_counts(c, b)
    assert d == pytest.approx(float(np.max(np.abs(np.cumsum(p) - np.cumsum(q)))))
    assert 0 < kp < 1


def test_chi_square_pools_sparse_classes_and_handles_degenerate_tables() -> None:
    stat, dof, _ = chi_square(np.array([500.0, 500.0, 1.0, 0.0]), np.array([480.0, 520.0, 0.0, 2.0]))
    assert dof == 2 and stat >= 0          # the two rare classes become one
    assert chi_square(np.array([10.0]), np.array([5.0])) == (0.0, 0, 1.0)
    assert chi_square(np.array([0.0, 0.0]), np.array([5.0, 5.0])) == (0.0, 0, 1.0)


def test_ks_uses_numeric_order_of_score_buckets() -> None:
    assert ordinal_order(["10", "2", "0.5"]) == ["0.5", "2", "10"]
    assert ordinal_order(["b", "a", "1"]) == ["1", "a", "b"]
    assert ordinal_order(["nan", "1"]) == ["1", "nan"]


@pytest.mark.parametrize("metric", ["js", "psi", "chi2", "ks"])
def test_every_metric_flags_a_large_shift_and_not_identical_mixes(metric: str) -> None:
    a = assess_drift(np.array([2000.0, 3000.0, 5000.0]), np.array([5000.0, 3000.0, 2000.0]), metric=metric)
    assert a.drifted and a.severity == "critical" and 0.9 <= a.confidence <= 1.0
    same = assess_drift(np.array([500.0, 300.0, 200.0]), np.array([5000.0, 3000.0, 2000.0]), metric=metric)
    assert not same.drifted and same.js_distance == pytest.approx(0.0, abs=1e-9)


def test_p_value_tests_flag_small_shifts_on_big_samples_effect_sizes_do_not() -> None:
    cur, base = np.array([4700.0, 3100.0, 2200.0]) * 100, np.array([5000.0, 3000.0, 2000.0]) * 100
    assert not assess_drift(cur, base, metric="js").drifted       # JS ~0.03 < 0.1
    assert not assess_drift(cur, base, metric="psi").drifted
    chi = assess_drift(cur, base, metric="chi2")
    assert chi.drifted and chi.severity == "warning"                # significant, but a small effect


def test_effect_size_needs_significance_on_small_samples() -> None:
    # 10 classes, 200 predictions each side: JS distance is over 0.1 from sampling noise alone
    rng = np.random.default_rng(3)
    k, alarms = 10, 0
    for _ in range(50):
        c = rng.multinomial(200, np.full(k, 1 / k)).astype(float)
        b = rng.multinomial(200, np.full(k, 1 / k)).astype(float)
        a = assess_drift(c, b, metric="js", bootstrap=0)
        alarms += a.drifted
        assert a.js_distance > 0.05
    assert alarms <= 2


def test_bootstrap_is_deterministic_and_reports_the_noise_range() -> None:
    c, b = np.array([300.0, 500.0, 200.0]), np.array([420.0, 400.0, 180.0])
    a1, a2 = assess_drift(c, b), assess_drift(c, b)
    assert a1 == a2 and 0 < a1.noise_p95["jensen_shannon_distance"] < 0.1


# ----------------------------------------------------------------------------- drift detector

@pytest.mark.parametrize(("metric", "detector"), [
    ("JensenShannonDivergence", "drift.jensen_shannon"), ("PSI", "drift.psi"),
    ("ChiSquare", "drift.chi_square"), ("KS", "drift.ks"),
])
def test_drift_detector_per_metric_with_full_evidence(metric: str, detector: str) -> None:
    f = detect_drift(drift_input(metric=metric, threshold=None), now=NOW)
    assert f is not None and f.detector == detector and f.severity == "critical" and f.confidence > 0.9
    ev = f.evidence
    assert set(ev["statistics"]) == {"jensen_shannon_distance", "psi", "chi_square", "ks"}
    assert ev["distance"] == ev["statistics"]["jensen_shannon_distance"] > 0.2
    assert ev["current_window"]["samples"] > 0 and ev["baseline_window"]["samples"] > 0
    assert ev["baseline_version"] == "1.0" and ev["rollout_at"].startswith("20")
    assert len(ev["expected_range"]) == 2 and "gate" in ev


def test_drift_default_threshold_per_metric() -> None:
    small = {"a": 0.46, "b": 0.31, "c": 0.23}     # JS ~0.03
    assert detect_drift(drift_input(small, threshold=None), now=NOW) is None
    assert detect_drift(drift_input(small, threshold=None, metric="PSI"), now=NOW) is None
    f = detect_drift(drift_input(small, threshold=None, metric="ChiSquare"), now=NOW)
    assert f is not None and f.evidence["threshold"] == 0.01 and f.severity == "warning"


@pytest.mark.parametrize(("metric", "threshold"), [
    ("JensenShannonDivergence", float("nan")), ("JensenShannonDivergence", 1.5), ("PSI", -0.1),
    ("ChiSquare", 1.0), ("KS", 0.0), ("Wasserstein", 0.1), ("PSI", float("inf")),
])
def test_drift_bad_settings_are_counted_not_crashes(metric: str, threshold: float) -> None:
    stats = InputStats()
    assert detect_drift(drift_input(metric=metric, threshold=threshold), now=NOW, stats=stats) is None
    assert stats.rejected and stats.rejected[0].startswith("drift ml/x")


def test_drift_disabled_and_no_baseline() -> None:
    assert detect_drift(drift_input(enabled=False), now=NOW) is None
    assert detect_drift(drift_input(previous_version=None), now=NOW) is None
    assert detect_drift(drift_input(previous_version="2.0"), now=NOW) is None


def test_drift_baseline_ref_wins_when_its_series_exists() -> None:
    d = drift_input(baseline_ref="0.9", counters=counters("0.9", NEW, TS[0], 5.0, stop=ROLLOUT, base=10)
                    + counters("1.0", OLD, TS[0], 5.0, stop=ROLLOUT) + counters("2.0", NEW, ROLLOUT, 5.0))
    assert detect_drift(d, now=NOW) is None          # 2.0 looks like 0.9, the declared baseline
    f = detect_drift(drift_input(baseline_ref="0.9"), now=NOW)
    assert f is not None and f.evidence["baseline_source"] == "git_history"


BAD = [np.array([]), np.array([1.0]), np.full(N, np.nan), np.full((2, N), 1.0), "abc", np.full(N, np.inf),
       np.full(N - 1, 1.0), None, np.full(N, -5.0)]


@pytest.mark.parametrize("bad", BAD, ids=["empty", "one", "nan", "2d", "str", "inf", "short", "none", "neg"])
def test_drift_bad_series_no_crash_no_finding_counted(bad: object) -> None:
    stats = InputStats()
    cs = [CounterSeries({"model_version": v, "class": c}, TS, bad) for v in ("1.0", "2.0") for c in "ab"]
    d = DriftInput(service="ml/x", file=None, current_version="2.0", counters=cs, previous_version="1.0")
    assert detect_drift(d, now=NOW, stats=stats) is None
    assert len(stats.rejected) == 4 and "unusable" in stats.rejected[0]


def test_drift_bad_series_among_good_ones_is_skipped_and_counted() -> None:
    stats = InputStats()
    good = drift_input()
    d = drift_input(counters=[*good.counters, CounterSeries({"model_version": "2.0", "class": "z"}, TS[:1], [3.0])])
    f = detect_drift(d, now=NOW, stats=stats)
    assert f is not None and len(stats.rejected) == 1 and 'class="z"' in stats.rejected[0]


def test_drift_bad_timestamps_do_not_crash_even_in_the_first_series() -> None:
    good = drift_input()
    first = CounterSeries({"model_version": "2.0", "class": "a"}, TS[::-1], good.counters[3].values)
    f = detect_drift(drift_input(counters=[first, *good.counters]), now=NOW, stats=InputStats())
    assert f is not None


def test_drift_version_set_at_moves_rollout_for_series_predating_the_data() -> None:
    cur = [CounterSeries({"model_version": "2.0", "class": c}, TS, 5e6 + (TS - TS[0]) * 5.0 * p) for c, p in NEW.items()]
    assert rollout_time(cur, TS[0], TS[0] - DAY) == TS[0] - DAY        # the commit says when it started
    assert rollout_time(cur, TS[0], None) == TS[0]
    assert rollout_time(cur, TS[0] + DAY, TS[0]) == TS[0] + DAY        # first seen inside the data: trust it
    stats = InputStats()
    old = [CounterSeries({"model_version": "1.0", "class": c}, TS, 1e6 + (TS - TS[0]) * p) for c, p in OLD.items()]
    assert detect_drift(drift_input(counters=old + cur, version_set_at=TS[0] - DAY), now=NOW, stats=stats) is None
    assert "baseline 0" in stats.rejected[0]                           # nothing visible before that commit


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 10_000), min_size=2, max_size=8), st.integers(1, 50))
def test_scaled_identical_mix_never_drifts(counts: list[int], k: int) -> None:
    c = np.array(counts, dtype=float)
    for metric in ("js", "psi", "chi2", "ks"):
        a = assess_drift(c, c * k, metric=metric, bootstrap=20)
        assert not a.drifted and 0 <= a.confidence <= 1


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=2, max_size=6),
       st.lists(st.floats(0, 1e6, allow_nan=False), min_size=2, max_size=6), st.floats(1.0, 1e3))
@example(a=[36436.0, 0.0], b=[36437.0, 1e-05], k=3.0)  # found by hypothesis: distance ~4e-8
def test_effect_sizes_do_not_depend_on_volume(a: list[float], b: list[float], k: float) -> None:
    n = min(len(a), len(b))
    c, d = np.array(a[:n]) + 1.0, np.array(b[:n]) + 1.0
    x, y = assess_drift(c, d, bootstrap=0), assess_drift(c * k, d * k, bootstrap=0)
    # compared as divergences (distance squared): near identical distributions the distance is the
    # square root of a rounding-sized number, e.g. 3.8e-8 vs 4.0e-8 for divergences 1.4e-15 vs 1.6e-15
    assert x.js_distance**2 == pytest.approx(y.js_distance**2, rel=1e-9, abs=1e-12)
    assert x.psi == pytest.approx(y.psi, rel=1e-6, abs=1e-9)
    assert 0 <= x.js_distance <= 1 and x.psi >= 0 and 0 <= x.chi2_p <= 1 and 0 <= x.ks_p <= 1
    assert y.chi2_p <= x.chi2_p + 1e-9   # more evidence for the same difference: smaller p


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(float("nan"))),
                min_size=0, max_size=30),
       st.sampled_from(["JensenShannonDivergence", "PSI", "ChiSquare", "KS"]))
def test_arbitrary_garbage_never_crashes(values: list[float], metric: str) -> None:
    ts = NOW - 60.0 * np.arange(len(values))[::-1]
    cs = [CounterSeries({"model_version": v, "class": c}, ts, values) for v in ("1", "2") for c in "ab"]
    stats = InputStats()
    f = detect_drift(DriftInput(service="s", file=None, current_version="2", counters=cs, previous_version="1",
                                metric=metric, threshold=None, min_samples=1), now=NOW, stats=stats)
    assert f is None or f.kind == "model_drift"


def test_counter_regression_still_holds() -> None:
    """counter_increase_between keeps its behaviour for series that predate the data."""
    ts = np.arange(10.0)
    v = 1e6 + ts
    assert counter_increase_between(ts, v, -5, 9, data_start=0.0) == pytest.approx(9)
    assert counter_increase_between(ts, v, -5, 9) == pytest.approx(1e6 + 9)


# ----------------------------------------------------------------------------- fairness

def outcomes(version: str, groups: dict[str, dict[str, tuple[float, float]]], start: float,
             attribute: str = "gender") -> list[CounterSeries]:
    """groups: group -> label -> (positive rate, outcomes per second); label "" = no label."""
    out = []
    for g, by_label in groups.items():
        for label, (rate, per_s) in by_label.items():
            for outcome, share in (("positive", rate), ("negative", 1 - rate)):
                v = np.where(TS >= start, (TS - start) * per_s * share, np.nan)
                labels = {"model_version": version, "attribute": attribute, "group": g, "outcome": outcome}
                if label:
                    labels["label"] = label
                out.append(CounterSeries(labels, TS, v))
    return out


def fair(counters: list[CounterSeries], **kw: object) -> FairnessInput:
    args: dict[str, object] = {"service": "ml/x", "file": None, "current_version": "2", "attributes": ("gender",),
                               "counters": counters, "threshold": 0.05}
    args.update(kw)
    return FairnessInput(**args)  # type: ignore[arg-type]


def test_equalized_odds_found_where_parity_holds() -> None:
    groups = {"f": {"positive": (0.9, 0.5), "negative": (0.1, 0.5)},     # overall rate 0.5
              "m": {"positive": (0.7, 0.5), "negative": (0.3, 0.5)}}     # overall rate 0.5
    f = detect_fairness(fair(outcomes("2", groups, ROLLOUT)), now=NOW)
    assert f is not None and f.detector == "fairness.equalized_odds" and f.severity == "critical"
    ev = f.evidence
    assert ev["metric"] == "equalized_odds_difference" and ev["value"] == pytest.approx(0.2, abs=0.01)
    assert ev["dpd"] == pytest.approx(0.0, abs=0.01)
    assert set(ev["components"]) == {"true_positive_rate", "false_positive_rate"}
    assert f.confidence > 0.99 and ev["ci"][0] <= ev["value"] <= ev["ci"][1]
    only_dp = detect_fairness(fair(outcomes("2", groups, ROLLOUT), metrics=("demographic_parity",)), now=NOW)
    assert only_dp is None


def test_demographic_parity_gap_with_interval() -> None:
    f = detect_fairness(fair(outcomes("2", {"f": {"": (0.3, 1.0)}, "m": {"": (0.5, 1.0)}}, ROLLOUT)), now=NOW)
    assert f is not None and f.detector == "fairness.demographic_parity"
    assert f.evidence["dpd"] == pytest.approx(0.2, abs=0.01) and f.evidence["attribute"] == "gender"
    assert f.evidence["ci"][0] > 0.15 and f.evidence["rates"]["f"]["n"] > 80_000


def test_small_groups_with_a_noisy_gap_do_not_alarm() -> None:
    # two groups just over min_group with an 8-point gap: the interval spans zero
    start = NOW - 250 * STEP
    f = detect_fairness(fair(outcomes("2", {"f": {"": (0.42, 1 / STEP)}, "m": {"": (0.50, 1 / STEP)}}, start),
                             min_group=100), now=NOW)
    assert f is None
    gap = rate_gap({"f": (42.0, 100.0), "m": (50.0, 100.0)})
    assert gap is not None and gap.value == pytest.approx(0.08) and gap.lower < 0 < gap.upper


def test_tiny_groups_are_left_out_and_counted() -> None:
    stats = InputStats()
    groups = {"f": {"": (0.5, 1.0)}, "m": {"": (0.5, 1.0)}, "x": {"": (0.0, 0.0005)}}
    assert detect_fairness(fair(outcomes("2", groups, ROLLOUT)), now=NOW, stats=stats) is None
    assert any("gender=x" in r for r in stats.rejected)


def test_warning_when_interval_reaches_below_threshold() -> None:
    f = detect_fairness(fair(outcomes("2", {"f": {"": (0.40, 0.004)}, "m": {"": (0.51, 0.004)}}, ROLLOUT)), now=NOW)
    assert f is not None and f.severity == "warning" and 0 < f.evidence["ci"][0] < 0.05 < 0.1 < f.evidence["value"]
    assert 0.5 < f.confidence < 1


@pytest.mark.parametrize("bad", BAD, ids=["empty", "one", "nan", "2d", "str", "inf", "short", "none", "neg"])
def test_fairness_bad_series_no_crash_no_finding(bad: object) -> None:
    stats = InputStats()
    cs = [CounterSeries({"model_version": "2", "attribute": "gender", "group": g, "outcome": o}, TS, bad)
          for g in "fm" for o in ("positive", "negative")]
    assert detect_fairness(fair(cs), now=NOW, stats=stats) is None
    assert stats.rejected


@pytest.mark.parametrize("threshold", [0.0, -1.0, 1.5, float("nan")])
def test_fairness_bad_threshold_counted(threshold: float) -> None:
    stats = InputStats()
    cs = outcomes("2", {"f": {"": (0.3, 1.0)}, "m": {"": (0.5, 1.0)}}, ROLLOUT)
    assert detect_fairness(fair(cs, threshold=threshold), now=NOW, stats=stats) is None and stats.rejected


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5000), st.integers(1, 5000)), min_size=2, max_size=6),
       st.sampled_from([0.9, 0.95, 0.99]))
def test_rate_gap_interval_contains_the_estimate(cells: list[tuple[int, int]], level: float) -> None:
    counts = {f"g{i}": (float(min(p, n)), float(n)) for i, (p, n) in enumerate(cells)}
    gap = rate_gap(counts, level)
    assert gap is not None
    assert -1 <= gap.lower <= gap.value + 1e-12 and gap.value - 1e-12 <= gap.upper <= 1
    assert 0 <= gap.p_above(0.05) <= 1
    for pos, n in counts.values():
        lo, hi = wilson(pos, n)
        assert 0 <= lo <= pos / n + 1e-12 and pos / n - 1e-12 <= hi <= 1


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([100, 1000, 100_000]))
def test_equal_rates_never_alarm(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    counts = {g: (float(rng.binomial(n, 0.3)), float(n)) for g in "abc"}
    gap = rate_gap(counts)
    assert gap is not None
    assert not (gap.value > 0.05 and gap.lower > 0) or n <= 1000   # large groups: never a false alarm
    if n == 100_000:
        assert gap.value < 0.05


# ----------------------------------------------------------------------------- budgets

MONTH_NOW = datetime(2026, 11, 3, 12, 0, tzinfo=UTC).timestamp()
H = np.arange(7 * 24)[::-1]
HTS = MONTH_NOW - 3600.0 * H


def test_budget_month_to_date_and_forecast_interval() -> None:
    rng = np.random.default_rng(1)
    a = 10 + rng.normal(0, 0.5, H.size)
    costs = {"ns/a": (HTS, a), "ns/b": (HTS, np.full(H.size, 5.0))}
    f = detect_budget_breach(BudgetInput(name="b", service="ns/*", monthly_usd=12000, alert_at_percent=80,
                                         action="alert", costs=costs), now=MONTH_NOW)
    assert f is not None and f.severity == "warning"
    ev = f.evidence
    in_month = HTS > datetime(2026, 11, 1, tzinfo=UTC).timestamp()
    assert ev["month_to_date_usd"] == pytest.approx(float(a[in_month].sum() + 5.0 * in_month.sum()), rel=1e-3)
    lo, hi = ev["month_end_forecast_range_usd"]
    assert lo <= ev["month_end_forecast_usd"] <= hi and hi - lo > 0
    assert ev["run_rate_spread"]["method"] == "daily run rates" and ev["run_rate_spread"]["days"] == 7
    assert ev["top_contributors"][0]["workload"] == "ns/a" and "usd_per_hour_earlier_days" in ev["top_contributors"][0]
    assert ev["expected_range_usd_per_hour"][1] == pytest.approx(12000 * 0.8 / 730, abs=1e-3)
    assert 0.5 <= f.confidence <= 1.0


def test_budget_without_month_start_in_the_data_has_no_month_to_date() -> None:
    now = datetime(2026, 11, 27, 12, tzinfo=UTC).timestamp()
    costs = {"ns/a": (now - 3600.0 * H, np.full(H.size, 20.0))}
    f = detect_budget_breach(BudgetInput(name="b", service="ns/*", monthly_usd=10000, alert_at_percent=80,
                                         action="alert", costs=costs), now=now)
    assert f is not None and f.severity == "critical" and f.evidence["month_to_date_usd"] is None
    assert "month_to_date_note" in f.evidence and f.confidence == 1.0


def test_budget_under_two_days_uses_hourly_spread() -> None:
    ts = MONTH_NOW - 3600.0 * np.arange(30)[::-1]
    f = detect_budget_breach(BudgetInput(name="b", service="ns/*", monthly_usd=100, alert_at_percent=80,
                                         action="alert", costs={"ns/a": (ts, np.linspace(1, 2, 30))}), now=MONTH_NOW)
    assert f is not None and f.evidence["run_rate_spread"]["method"].startswith("hourly")


@pytest.mark.parametrize(("monthly", "alert"), [(float("nan"), 80), (float("inf"), 80), (100, float("nan")),
                                                (-5, 80), (100, 0), (100, 5000)])
def test_budget_bad_numbers_counted(monthly: float, alert: float) -> None:
    stats = InputStats()
    b = BudgetInput(name="b", service="ns/*", monthly_usd=monthly, alert_at_percent=alert, action="alert",
                    costs={"ns/a": (HTS, np.full(H.size, 50.0))})
    assert detect_budget_breach(b, now=MONTH_NOW, stats=stats) is None and stats.rejected


@pytest.mark.parametrize("bad", BAD, ids=["empty", "one", "nan", "2d", "str", "inf", "short", "none", "neg"])
def test_budget_bad_series_no_crash(bad: object) -> None:
    stats = InputStats()
    b = BudgetInput(name="b", service="ns/*", monthly_usd=1, alert_at_percent=80, action="alert",
                    costs={"ns/a": (HTS, bad), "ns/c": "junk"})  # type: ignore[dict-item]
    assert detect_budget_breach(b, now=MONTH_NOW, stats=stats) is None
    assert stats.rejected


@settings(max_examples=50, deadline=None)
@given(st.floats(0.0, 1e4), st.floats(1.0, 1e7), st.floats(1.0, 200.0))
def test_budget_trigger_is_the_projection(rate: float, monthly: float, alert: float) -> None:
    b = BudgetInput(name="b", service="ns/*", monthly_usd=monthly, alert_at_percent=alert, action="alert",
                    costs={"ns/a": (HTS, np.full(H.size, rate))})
    f = detect_budget_breach(b, now=MONTH_NOW)
    fires = 100.0 * rate * 730 / monthly >= alert
    assert (f is not None) == fires
    if f is not None:
        assert f.evidence["projected_monthly_usd"] == pytest.approx(rate * 730, abs=0.01)
        assert f.severity == ("critical" if rate * 730 >= monthly else "warning")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=0, max_size=30),
       st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=0, max_size=30))
def test_fairness_and_budget_garbage_never_crashes(a: list[float], b: list[float]) -> None:
    n = min(len(a), len(b))
    ts = NOW - 60.0 * np.arange(n)[::-1]
    cs = [CounterSeries({"model_version": "2", "attribute": "gender", "group": g, "outcome": o, "label": lab}, ts, v[:n])
          for g, v in (("f", a), ("m", b)) for o in ("positive", "negative") for lab in ("positive", "negative")]
    f = detect_fairness(fair(cs, min_group=1), now=NOW, stats=InputStats())
    assert f is None or f.kind == "fairness_violation"
    bb = BudgetInput(name="b", service="ns/*", monthly_usd=1.0, alert_at_percent=80, action="alert",
                     costs={"ns/a": (ts, a[:n]), "ns/b": (ts, b[:n])})
    g = detect_budget_breach(bb, now=NOW, stats=InputStats())
    assert g is None or g.kind == "budget_breach"
