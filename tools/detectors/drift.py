"""Model drift on the prediction-class distribution.

The current model version's class counts since its rollout (at most the last 24 h) are compared
with the baseline's over the 7 days before the rollout. Baseline = the ``baselineModelRef``
version when such a series exists, else the previous version in Git history.

Four statistics are computed every time and all of them go into the evidence; the manifest's
``responsibleAI.driftDetection.metric`` names the one that gates, and ``threshold`` applies to it:

=========================  ===========================================  =======================
metric                     gating statistic                             finding when
=========================  ===========================================  =======================
JensenShannonDivergence    Jensen-Shannon *distance*, base 2, in [0, 1] distance > threshold (default 0.1)
(the default)              (sqrt of the divergence, as DESIGN.md says)  and chi-square p < ``significance``
PSI                        population stability index (natural log,     PSI > threshold (default 0.1)
                           empty classes floored at 1e-4)               and chi-square p < ``significance``
ChiSquare                  chi-square test of homogeneity, 2 x classes  p-value < threshold (default 0.01)
KS                         two-sample Kolmogorov-Smirnov over the       p-value < threshold (default 0.01)
                           classes in order (numeric when they parse)
=========================  ===========================================  =======================

So for ChiSquare and KS ``threshold`` is a significance level, not an effect size. Those tests
tell *whether* the distributions differ, not by how much: with a day of traffic they flag any
difference, however small. The effect-size metrics (JS, PSI) also have to pass the chi-square
test at ``significance`` (default 0.01), so sampling noise in a small window cannot alarm.
Both sides also need ``min_samples`` predictions.

Severity: critical when the gating effect size is at least twice its threshold (for the p-value
tests: when the JS distance is at least 0.2), else warning. Confidence: for JS and PSI the share
of parametric-bootstrap resamples in which the statistic stays above the threshold; for the tests,
1 - p. The evidence carries every statistic, the windows, both distributions and the range that
sampling noise alone produces at these sample sizes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from scipy import special  # the distribution functions scipy.stats wraps, without its ~1 s import

from memory.records import Finding, Severity
from tools.detectors.common import (
    Array,
    InputStats,
    clean_counter,
    clean_series,
    counter_increase_between,
    data_start,
    describe_labels,
    first_sample_time,
    median_step,
)

DAY_S = 86400.0
PSI_FLOOR = 1e-4                 # Evidently's floor for empty bins
CHI2_MIN_EXPECTED = 5.0          # classes expected below this are pooled before the chi-square test
CRITICAL_JS_FOR_TESTS = 0.2      # severity of a p-value-gated finding comes from the effect size
BOOTSTRAP = 200
MAX_COUNT = 1e15             # more predictions than this in a window is a broken counter
MAX_RESAMPLE = 1e9           # bootstrap sample-size cap (noise is negligible beyond; multinomial needs a C long)

METRIC_ALIASES = {
    "jensenshannondivergence": "js", "jensenshannondistance": "js", "jensenshannon": "js", "js": "js",
    "jsd": "js", "psi": "psi", "populationstabilityindex": "psi", "chisquare": "chi2", "chisquared": "chi2",
    "chi2": "chi2", "ks": "ks", "kolmogorovsmirnov": "ks",
}
DEFAULT_THRESHOLD = {"js": 0.1, "psi": 0.1, "chi2": 0.01, "ks": 0.01}
DETECTOR = {"js": "drift.jensen_shannon", "psi": "drift.psi", "chi2": "drift.chi_square", "ks": "drift.ks"}
STAT_NAME = {"js": "jensen_shannon_distance", "psi": "psi", "chi2": "chi_square_p_value", "ks": "ks_p_value"}


@dataclass(frozen=True)
class CounterSeries:
    labels: dict[str, str]
    ts: object
    values: object


@dataclass(frozen=True)
class DriftInput:
    service: str
    file: str | None
    current_version: str
    counters: list[CounterSeries]          # inference_predictions_total by model_version, class
    threshold: float | None = 0.1          # None: the metric's default (DEFAULT_THRESHOLD)
    enabled: bool = True
    baseline_ref: str | None = None
    previous_version: str | None = None    # from Git history
    version_set_at: float | None = None    # commit time of the change that set current_version
    min_samples: int = 200
    class_label: str = "class"
    extra: dict[str, object] = field(default_factory=dict)
    metric: str | None = "JensenShannonDivergence"   # driftDetection.metric; None: the default (JS)
    significance: float = 0.01             # chi-square p a JS / PSI finding must also be below
    bootstrap: int = BOOTSTRAP             # resamples for confidence and the noise range (0: skip)


@dataclass(frozen=True)
class DriftAssessment:
    """Every statistic for one pair of class-count vectors, and the verdict of the gating one."""

    metric: str                  # js | psi | chi2 | ks
    statistic: float             # the gating statistic: distance, PSI or p-value
    threshold: float
    drifted: bool
    severity: Severity
    confidence: float
    js_distance: float
    psi: float
    chi2: float
    chi2_dof: int
    chi2_p: float
    ks: float
    ks_p: float
    noise_p95: dict[str, float]  # what sampling noise alone gives at these sample sizes (95th pct)


def metric_key(name: str | None) -> str | None:
    """``js | psi | chi2 | ks`` for a manifest's metric name (case and punctuation ignored); None if unknown."""
    if name is None or not str(name).strip():
        return "js"
    return METRIC_ALIASES.get(re.sub(r"[^a-z0-9]", "", str(name).lower()))


def threshold_ok(metric: str, threshold: float) -> bool:
    if not math.isfinite(threshold):
        return False
    if metric == "js":
        return 0 < threshold <= 1
    if metric == "psi":
        return threshold > 0
    return 0 < threshold < 1


# ----------------------------------------------------------------------------- statistics

def js_distance(p: Array, q: Array) -> float:
    """Jensen-Shannon distance with base-2 logs: sqrt of the JS divergence, in [0, 1]."""
    p = p / p.sum()
    q = q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: Array, b: Array) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / b[nz])))

    d = 0.5 * kl(p, m) + 0.5 * kl(q, m)
    return math.sqrt(max(0.0, min(1.0, d)))


def js_distance_rows(p: Array, q: Array, base: float = 2.0) -> Array:
    """Row-wise JS distance of proportion arrays (last axis = classes); ``base=math.e`` is scipy's
    and Evidently's default (a base-e distance is sqrt(ln 2) = 0.833 times the base-2 one)."""
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kp = np.where(p > 0, p * np.log(p / m), 0.0).sum(axis=-1)
        kq = np.where(q > 0, q * np.log(q / m), 0.0).sum(axis=-1)
    div = (0.5 * kp + 0.5 * kq) / math.log(base)
    return np.asarray(np.sqrt(np.clip(div, 0.0, math.log(2) / math.log(base))), dtype=np.float64)


def psi_rows(p: Array, q: Array) -> Array:
    """Row-wise population stability index of proportion arrays (natural log, floor 1e-4)."""
    a = np.maximum(p, PSI_FLOOR)
    b = np.maximum(q, PSI_FLOOR)
    return np.asarray(((a - b) * np.log(a / b)).sum(axis=-1), dtype=np.float64)


def psi(p: Array, q: Array) -> float:
    """Population stability index of two count (or proportion) vectors."""
    return float(psi_rows(p / p.sum(), q / q.sum()))


def chi_square(current: Array, baseline: Array) -> tuple[float, int, float]:
    """Chi-square test of homogeneity on the 2 x classes table: (statistic, dof, p-value). Classes
    expected fewer than 5 times in a row are pooled into one, as the test's approximation needs."""
    table = np.vstack([current, baseline])
    table = table[:, table.sum(axis=0) > 0]
    n = table.sum()
    if table.shape[1] < 2 or n <= 0 or np.any(table.sum(axis=1) <= 0):
        return 0.0, 0, 1.0
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / n
    small = np.any(expected < CHI2_MIN_EXPECTED, axis=0)
    if small.any():
        table = np.hstack([table[:, ~small], table[:, small].sum(axis=1, keepdims=True)])
        expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / n
    k = table.shape[1]
    if k < 2:
        return 0.0, 0, 1.0
    stat = float(((table - expected) ** 2 / expected).sum())
    return stat, k - 1, float(special.chdtrc(k - 1, stat))


def ks_counts(current: Array, baseline: Array) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov on counts over ordered classes: (D, asymptotic p-value). On a
    discrete scale the test is conservative (the p-value is too large, never too small)."""
    n, m = float(current.sum()), float(baseline.sum())
    if n <= 0 or m <= 0:
        return 0.0, 1.0
    d = float(np.max(np.abs(np.cumsum(current) / n - np.cumsum(baseline) / m)))
    en = n * m / (n + m)
    return d, float(min(1.0, max(0.0, special.kolmogorov(math.sqrt(en) * d))))


def ordinal_order(classes: list[str]) -> list[str]:
    """Classes in numeric order when every name parses as a number (score buckets), else sorted."""
    try:
        keyed = [(float(c), c) for c in classes]
    except ValueError:
        return sorted(classes)
    if not all(math.isfinite(k) for k, _ in keyed):
        return sorted(classes)
    return [c for _, c in sorted(keyed)]


def _gate_rows(metric: str, p: Array, q: Array) -> Array:
    return js_distance_rows(p, q) if metric == "js" else psi_rows(p, q)


def gate(metric: str, threshold: float, significance: float, *, js: float, psi: float, chi2_p: float,
         ks_p: float) -> tuple[float, bool, bool]:
    """The decision rule: (gating statistic, drifted, critical) for one metric, from all statistics."""
    if metric == "js":
        return js, js > threshold and chi2_p < significance, js >= 2 * threshold
    if metric == "psi":
        return psi, psi > threshold and chi2_p < significance, psi >= 2 * threshold
    p = chi2_p if metric == "chi2" else ks_p
    return p, p < threshold, js >= CRITICAL_JS_FOR_TESTS


def assess_drift(current: Array, baseline: Array, *, metric: str = "js", threshold: float | None = None,
                 significance: float = 0.01, bootstrap: int = BOOTSTRAP, seed: int = 0) -> DriftAssessment:
    """Compare two class-count vectors (same class order; for KS, the ordinal order). Pure and
    deterministic (the bootstrap uses a fixed seed). Sample-size minimums are the caller's."""
    thr = DEFAULT_THRESHOLD[metric] if threshold is None else float(threshold)
    c = np.asarray(current, dtype=np.float64).ravel()
    b = np.asarray(baseline, dtype=np.float64).ravel()
    if c.shape != b.shape:
        raise ValueError("current and baseline need the same classes")
    c = np.where(np.isfinite(c) & (c > 0), c, 0.0)
    b = np.where(np.isfinite(b) & (b > 0), b, 0.0)
    n_c, n_b = float(c.sum()), float(b.sum())
    if n_c <= 0 or n_b <= 0:
        return DriftAssessment(metric=metric, statistic=float("nan"), threshold=thr, drifted=False,
                               severity="warning", confidence=0.0, js_distance=float("nan"), psi=float("nan"),
                               chi2=0.0, chi2_dof=0, chi2_p=1.0, ks=0.0, ks_p=1.0, noise_p95={})
    p, q = c / n_c, b / n_b
    js = float(js_distance_rows(p, q))
    ps = float(psi_rows(p, q))
    chi, dof, chi_p = chi_square(c, b)
    ks, ks_p = ks_counts(c, b)
    noise: dict[str, float] = {}
    confidence = float("nan")
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        ic, ib = int(round(min(n_c, MAX_RESAMPLE))), int(round(min(n_b, MAX_RESAMPLE)))
        pooled = (c + b) / (n_c + n_b)
        null_c = rng.multinomial(ic, pooled, size=bootstrap) / max(ic, 1)
        null_b = rng.multinomial(ib, pooled, size=bootstrap) / max(ib, 1)
        noise = {"jensen_shannon_distance": round(float(np.quantile(js_distance_rows(null_c, null_b), 0.95)), 4),
                 "psi": round(float(np.quantile(psi_rows(null_c, null_b), 0.95)), 4)}
        if metric in ("js", "psi"):
            boot_c = rng.multinomial(ic, p, size=bootstrap) / max(ic, 1)
            boot_b = rng.multinomial(ib, q, size=bootstrap) / max(ib, 1)
            confidence = float(np.mean(_gate_rows(metric, boot_c, boot_b) > thr))
    statistic, drifted, critical = gate(metric, thr, significance, js=js, psi=ps, chi2_p=chi_p, ks_p=ks_p)
    if metric in ("chi2", "ks") or not math.isfinite(confidence):
        confidence = 1.0 - (statistic if metric in ("chi2", "ks") else chi_p)
    return DriftAssessment(
        metric=metric, statistic=statistic, threshold=thr, drifted=bool(drifted),
        severity="critical" if critical else "warning", confidence=min(1.0, max(0.0, confidence)),
        js_distance=js, psi=ps, chi2=chi, chi2_dof=dof, chi2_p=chi_p, ks=ks, ks_p=ks_p, noise_p95=noise)


# ----------------------------------------------------------------------------- counters

def counters_data_start(counters: list[CounterSeries]) -> float | None:
    return data_start([cs for cs in (clean_series(c.ts, c.values) for c in counters) if cs is not None])


def version_counts(counters: list[CounterSeries], version: str, start: float, end: float,
                   class_label: str = "class", first_seen: float | None = None) -> dict[str, float]:
    out: dict[str, float] = {}
    for c in counters:
        if c.labels.get("model_version") != version:
            continue
        cs = clean_counter(c.ts, c.values)
        if cs is None:
            continue
        cls = c.labels.get(class_label, "")
        inc = counter_increase_between(cs[0], cs[1], start, end, first_seen)
        out[cls] = out.get(cls, 0.0) + (inc if math.isfinite(inc) and inc > 0 else 0.0)
    return out


def version_first_seen(counters: list[CounterSeries], version: str) -> float | None:
    times = []
    for c in counters:
        if c.labels.get("model_version") == version:
            cs = clean_counter(c.ts, c.values)
            if cs is not None:
                t = first_sample_time(*cs)
                if t is not None:
                    times.append(t)
    return min(times) if times else None


def usable_counters(counters: list[CounterSeries], versions: set[str], what: str, stats: InputStats) -> list[CounterSeries]:
    """The series that can be read; each unusable one of the versions we compare is counted."""
    out = []
    for c in counters:
        if not isinstance(getattr(c, "labels", None), dict):
            stats.reject(what, "a series without labels")
            continue
        cs = clean_counter(c.ts, c.values)
        if cs is None or not np.isfinite(cs[1]).any():
            if c.labels.get("model_version") in versions:
                why = ("needs >= 2 ascending samples, 1-D, same length" if cs is None
                       else "no finite, non-negative sample")
                stats.reject(what, f"series {describe_labels(c.labels)} unusable ({why})")
            continue
        out.append(c)
    return out


def rollout_time(counters: list[CounterSeries], first: float, version_set_at: float | None) -> float:
    """When the current version started: its first sample -- or the commit time when the series
    predates the visible data."""
    seen_from = counters_data_start(counters)
    cs = next((x for x in (clean_series(c.ts, c.values) for c in counters) if x is not None), None)
    step = median_step(cs[0]) if cs is not None else 0.0
    if seen_from is not None and first <= seen_from + 1.5 * step and version_set_at is not None \
            and math.isfinite(version_set_at) and version_set_at < first:
        return version_set_at
    return first


def detect_drift(d: DriftInput, *, now: float, stats: InputStats | None = None) -> Finding | None:
    stats = stats if stats is not None else InputStats()
    what = f"drift {d.service}"
    if not d.enabled:
        return None
    metric = metric_key(d.metric)
    if metric is None:
        stats.reject(what, f"unknown driftDetection.metric {d.metric!r} (JensenShannonDivergence, PSI, ChiSquare, KS)")
        return None
    threshold = DEFAULT_THRESHOLD[metric] if d.threshold is None else d.threshold
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        threshold = float("nan")
    if not threshold_ok(metric, threshold):
        rng = "(0, 1]" if metric == "js" else "> 0" if metric == "psi" else "a p-value in (0, 1)"
        stats.reject(what, f"driftDetection.threshold {d.threshold!r} for {metric} must be {rng}")
        return None
    if not math.isfinite(now):
        stats.reject(what, "evaluation time is not finite")
        return None
    versions = {v for v in (d.current_version, d.baseline_ref, d.previous_version) if v}
    counters = usable_counters(list(d.counters or []), versions, what, stats)
    first = version_first_seen(counters, d.current_version)
    if first is None:
        return None
    seen_from = counters_data_start(counters)
    rollout = rollout_time(counters, first, d.version_set_at)
    cur_start = max(rollout, now - DAY_S)
    current = version_counts(counters, d.current_version, cur_start, now, d.class_label, seen_from)

    known = {c.labels.get("model_version") for c in counters}
    candidates = [v for v in (d.baseline_ref, d.previous_version) if v and v != d.current_version and v in known]
    if not candidates:
        return None
    base_version = candidates[0]
    base_start = rollout - 7 * DAY_S
    baseline = version_counts(counters, base_version, base_start, rollout, d.class_label, seen_from)
    n_cur, n_base = sum(current.values()), sum(baseline.values())
    min_samples = max(1, int(d.min_samples))
    if not (n_cur <= MAX_COUNT and n_base <= MAX_COUNT):
        stats.reject(what, f"implausible prediction counts (current {n_cur:.3g}, baseline {n_base:.3g})")
        return None
    if n_cur < min_samples or n_base < min_samples:
        stats.reject(what, f"too few predictions (current {n_cur:.0f}, baseline {n_base:.0f}, need {min_samples})")
        return None
    classes = ordinal_order(sorted(set(current) | set(baseline)))
    p = np.array([current.get(c, 0.0) for c in classes])
    q = np.array([baseline.get(c, 0.0) for c in classes])
    a = assess_drift(p, q, metric=metric, threshold=threshold, significance=d.significance,
                     bootstrap=max(0, int(d.bootstrap)))
    if not a.drifted:
        return None
    gate = STAT_NAME[metric]
    if metric in ("chi2", "ks"):
        head = f"{'chi-square' if metric == 'chi2' else 'KS'} p-value {a.statistic:.2g} < {threshold:g}"
        head += f" (JS distance {a.js_distance:.3f})"
        expected: list[float] = [threshold, 1.0]
    else:
        head = f"{'Jensen-Shannon distance' if metric == 'js' else 'PSI'} {a.statistic:.3f} (threshold {threshold:g})"
        expected = [0.0, threshold]
    evidence: dict[str, Any] = {
        "metric": gate,
        "manifest_metric": d.metric,
        "value": round(a.statistic, 6 if metric in ("chi2", "ks") else 4),
        "threshold": threshold,
        "expected_range": expected,
        "gate": _gate_text(metric, threshold, d.significance),
        "distance": round(a.js_distance, 4),
        "statistics": {
            "jensen_shannon_distance": round(a.js_distance, 4),
            "psi": round(a.psi, 4),
            "chi_square": {"statistic": round(a.chi2, 3), "dof": a.chi2_dof, "p_value": float(f"{a.chi2_p:.3g}")},
            "ks": {"statistic": round(a.ks, 4), "p_value": float(f"{a.ks_p:.3g}"), "class_order": classes},
        },
        "sampling_noise_p95": a.noise_p95,
        "current_version": d.current_version,
        "baseline_version": base_version,
        "baseline_source": "baselineModelRef" if base_version == d.baseline_ref else "git_history",
        "rollout_at": _iso(rollout),
        "current_window": {"start": _iso(cur_start), "end": _iso(now), "samples": round(n_cur)},
        "baseline_window": {"start": _iso(base_start), "end": _iso(rollout), "samples": round(n_base)},
        "current_distribution": {c: round(float(x / p.sum()), 4) for c, x in zip(classes, p, strict=True)},
        "baseline_distribution": {c: round(float(x / q.sum()), 4) for c, x in zip(classes, q, strict=True)},
    }
    return Finding(
        kind="model_drift", service=d.service, severity=a.severity, detector=DETECTOR[metric],
        confidence=round(a.confidence, 3), model_version=d.current_version, file=d.file,
        summary=f"{d.service} model {d.current_version}: {head} vs {base_version}",
        evidence=evidence,
    )


def _gate_text(metric: str, threshold: float, significance: float) -> str:
    if metric == "js":
        return f"JS distance (base 2) > {threshold:g} and chi-square p < {significance:g}"
    if metric == "psi":
        return f"PSI > {threshold:g} and chi-square p < {significance:g}"
    return f"{'chi-square' if metric == 'chi2' else 'KS'} p-value < {threshold:g}"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(float(t), UTC).isoformat().replace("+00:00", "Z")
