"""Model drift: Jensen-Shannon distance (base 2, in [0, 1]) between the current model version's
prediction-class distribution since its rollout (at most the last 24 h) and the baseline's over
the 7 days before the rollout. Baseline = the ``baselineModelRef`` version when such a series
exists, else the previous version in Git history."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from memory.records import Finding, Severity
from tools.detectors.common import (
    Array,
    InputStats,
    clean_series,
    counter_increase_between,
    data_start,
    first_sample_time,
)

DAY_S = 86400.0


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
    threshold: float = 0.1
    enabled: bool = True
    baseline_ref: str | None = None
    previous_version: str | None = None    # from Git history
    version_set_at: float | None = None    # commit time of the change that set current_version
    min_samples: int = 200
    class_label: str = "class"
    extra: dict[str, object] = field(default_factory=dict)


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


def counters_data_start(counters: list[CounterSeries]) -> float | None:
    return data_start([cs for cs in (clean_series(c.ts, c.values) for c in counters) if cs is not None])


def version_counts(counters: list[CounterSeries], version: str, start: float, end: float,
                   class_label: str = "class", first_seen: float | None = None) -> dict[str, float]:
    out: dict[str, float] = {}
    for c in counters:
        if c.labels.get("model_version") != version:
            continue
        cs = clean_series(c.ts, c.values)
        if cs is None:
            continue
        cls = c.labels.get(class_label, "")
        out[cls] = out.get(cls, 0.0) + counter_increase_between(cs[0], cs[1], start, end, first_seen)
    return out


def version_first_seen(counters: list[CounterSeries], version: str) -> float | None:
    times = []
    for c in counters:
        if c.labels.get("model_version") == version:
            cs = clean_series(c.ts, c.values)
            if cs is not None:
                t = first_sample_time(*cs)
                if t is not None:
                    times.append(t)
    return min(times) if times else None


def detect_drift(d: DriftInput, *, now: float, stats: InputStats | None = None) -> Finding | None:
    stats = stats if stats is not None else InputStats()
    if not d.enabled:
        return None
    first = version_first_seen(d.counters, d.current_version)
    if first is None:
        return None
    seen_from = counters_data_start(d.counters)
    ts0 = np.asarray(d.counters[0].ts, dtype=float)
    step = float(np.median(np.diff(ts0))) if ts0.size > 1 else 0.0
    rollout = first
    if seen_from is not None and first <= seen_from + 1.5 * step and d.version_set_at is not None \
            and d.version_set_at < first:
        rollout = d.version_set_at  # the series predates our data: the commit says when it started
    cur_start = max(rollout, now - DAY_S)
    current = version_counts(d.counters, d.current_version, cur_start, now, d.class_label, seen_from)

    known = {c.labels.get("model_version") for c in d.counters}
    candidates = [v for v in (d.baseline_ref, d.previous_version) if v and v != d.current_version and v in known]
    if not candidates:
        return None
    base_version = candidates[0]
    baseline = version_counts(d.counters, base_version, rollout - 7 * DAY_S, rollout, d.class_label, seen_from)
    n_cur, n_base = sum(current.values()), sum(baseline.values())
    if n_cur < d.min_samples or n_base < d.min_samples:
        stats.reject(f"drift {d.service}", f"too few predictions (current {n_cur:.0f}, baseline {n_base:.0f}, need {d.min_samples})")
        return None
    classes = sorted(set(current) | set(baseline))
    p = np.array([current.get(c, 0.0) for c in classes])
    q = np.array([baseline.get(c, 0.0) for c in classes])
    dist = js_distance(p, q)
    if dist <= d.threshold:
        return None
    severity: Severity = "critical" if dist >= 2 * d.threshold else "warning"
    conf = min(1.0, 0.5 + 0.5 * min(n_cur, n_base) / (10 * d.min_samples))
    return Finding(
        kind="model_drift", service=d.service, severity=severity, detector="drift.jensen_shannon",
        confidence=round(conf, 3), model_version=d.current_version, file=d.file,
        summary=(f"{d.service} model {d.current_version}: Jensen-Shannon distance {dist:.3f} vs {base_version} "
                 f"(threshold {d.threshold})"),
        evidence={
            "metric": "jensen_shannon_distance",
            "distance": round(dist, 4),
            "threshold": d.threshold,
            "current_version": d.current_version,
            "baseline_version": base_version,
            "baseline_source": "baselineModelRef" if base_version == d.baseline_ref else "git_history",
            "rollout_at": _iso(rollout),
            "current_window": {"start": _iso(cur_start), "end": _iso(now), "samples": round(n_cur)},
            "baseline_window": {"start": _iso(rollout - 7 * DAY_S), "end": _iso(rollout), "samples": round(n_base)},
            "current_distribution": {c: round(float(x / p.sum()), 4) for c, x in zip(classes, p, strict=True)},
            "baseline_distribution": {c: round(float(x / q.sum()), 4) for c, x in zip(classes, q, strict=True)},
        },
    )


def _iso(t: float) -> str:
    return datetime.fromtimestamp(float(t), UTC).isoformat().replace("+00:00", "Z")
