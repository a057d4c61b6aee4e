"""Cost anomalies: a robust seasonal baseline on each workload's $/h series.

Expected cost at time t = median of the values at the same time of day on the previous days
(up to 6; at least 2 needed, else the median of the 24 h before the excursion). Noise scale =
1.4826 x MAD of the residuals on the history. A point is anomalous when it exceeds the
expected value by ``min_ratio`` AND by ``z`` robust sigmas. A finding needs the anomalous run
that ends at the latest sample to last at least ``min_duration`` (a 4-minute blip is noise),
and, when the service's request rate is known, the rise must not be explained by traffic
(cost ratio / traffic ratio >= ``min_ratio``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from memory.records import Finding, Severity
from tools.detectors.common import Array, InputStats, clean_series, downsample, robust_sigma

DAY_S = 86400.0
MAX_GAP_STEPS = 3
HOURS_PER_MONTH = 730.0


@dataclass(frozen=True)
class CostSettings:
    min_duration_s: float = 900.0
    min_ratio: float = 1.3
    z: float = 4.0
    seasonal_days: int = 6
    replica_step: float = 1.0   # this many replicas above the usual count at this hour is autoscaling granularity


@dataclass(frozen=True)
class WorkloadSeries:
    service: str               # namespace/name
    file: str | None
    ts: object                 # unix seconds, regular grid
    cost: object               # $/h
    replicas: object | None = None
    request_rate: object | None = None
    anomaly_scores: object | None = None      # the torch streaming detector's scores on the same grid
    anomaly_alarm_ts: float | None = None     # when its score last crossed its alarm level
    gpu_util: object | None = None            # mean GPU utilisation in % on the same grid (None: no GPUs)
    gpu_util_alarm_ts: float | None = None    # when the streaming detector last alarmed on it


def _nanmedian(a: Array, axis: int) -> Array:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.asarray(np.nanmedian(a, axis=axis), dtype=np.float64)


def seasonal_expected(v: Array, period: int, days: int) -> tuple[Array, Array]:
    """Expected value per point from the same phase on previous periods, and how many
    references each point had."""
    n = v.size
    lags = np.full((days, n), np.nan)
    for k in range(1, days + 1):
        s = k * period
        if s < n:
            lags[k - 1, s:] = v[: n - s]
    count = np.sum(np.isfinite(lags), axis=0).astype(np.float64)
    exp = _nanmedian(lags, axis=0)
    exp = np.where(count >= 2, exp, np.nan)
    return exp, count


def _expected(v: Array, step: float, settings: CostSettings) -> Array:
    period = max(1, int(round(DAY_S / step)))
    exp, _ = seasonal_expected(v, period, settings.seasonal_days)
    return exp


def detect_cost_anomalies(
    workloads: list[WorkloadSeries], settings: CostSettings, stats: InputStats | None = None,
) -> list[Finding]:
    stats = stats if stats is not None else InputStats()
    findings: list[Finding] = []
    for w in workloads:
        f = _detect_one(w, settings, stats)
        if f is not None:
            findings.append(f)
    return findings


def _detect_one(w: WorkloadSeries, settings: CostSettings, stats: InputStats) -> Finding | None:
    cs = clean_series(w.ts, w.cost)
    if cs is None:
        stats.reject(f"cost {w.service}", "series unusable (empty, one sample, wrong shape or unsorted time)")
        return None
    ts, v = cs
    finite = np.isfinite(v)
    if finite.sum() < 3:
        return None
    step = float(np.median(np.diff(ts)))
    last = int(np.nonzero(finite)[0][-1])
    if last < v.size - 1 - MAX_GAP_STEPS:
        return None  # no recent data: the workload is gone or not scraped; nothing current to judge
    exp = _expected(v, step, settings)
    # fall back to the level of the previous 24 h where there are not enough past days
    period = max(1, int(round(DAY_S / step)))
    level = np.full(v.size, np.nan)
    for i in range(v.size):
        lo = max(0, i - period)
        if i - lo >= 3:
            seg = v[lo:i]
            if np.isfinite(seg).sum() >= 3:
                level[i] = float(np.nanmedian(seg))
    exp = np.where(np.isfinite(exp), exp, level)
    resid = v - exp
    sigma = robust_sigma(resid[: max(0, v.size - period)]) if v.size > period else robust_sigma(resid)
    base_level = float(np.nanmedian(v))
    sigma = max(sigma, 0.01 * abs(base_level), 1e-9)
    anomalous = np.isfinite(v) & np.isfinite(exp) & (v > exp * settings.min_ratio) & (resid > settings.z * sigma)

    # the run of anomalous points that ends at the latest sample (NaN gaps of a few steps allowed)
    if not anomalous[last]:
        return None
    start, gap, i = last, 0, last
    while i >= 0:
        if anomalous[i]:
            start, gap = i, 0
        elif not np.isfinite(v[i]) and gap < MAX_GAP_STEPS:
            gap += 1
        else:
            break
        i -= 1
    duration = float(ts[last] - ts[start] + step)
    if duration < settings.min_duration_s:
        return None

    win = slice(start, last + 1)
    actual = float(np.nanmean(v[win]))
    expected = float(np.nanmean(exp[win]))
    if not math.isfinite(expected) or expected <= 0:
        return None
    ratio = actual / expected
    evidence: dict[str, object] = {
        "window": {"start": _iso(ts[start]), "end": _iso(ts[last]), "minutes": round(duration / 60, 1)},
        "cost_usd_per_hour": round(actual, 4),
        "expected_usd_per_hour": round(expected, 4),
        "expected_range_usd_per_hour": [round(max(0.0, expected - settings.z * sigma), 4),
                                        round(max(expected * settings.min_ratio, expected + settings.z * sigma), 4)],
        "ratio": round(ratio, 3),
        "extra_usd_per_month": round((actual - expected) * HOURS_PER_MONTH, 2),
        "robust_sigma_usd_per_hour": round(sigma, 5),
        "points": downsample(ts, v, 48),
    }
    if w.request_rate is not None:
        rr = clean_series(w.ts, w.request_rate)
        if rr is not None and np.isfinite(rr[1][win]).any():
            r = rr[1]
            rexp = _expected(r, step, settings)
            r_actual = float(np.nanmean(r[win]))
            r_expected = float(np.nanmean(rexp[win])) if np.isfinite(rexp[win]).any() else float("nan")
            if math.isfinite(r_expected) and r_expected > 0:
                traffic_ratio = r_actual / r_expected
                evidence["traffic_ratio"] = round(traffic_ratio, 3)
                if ratio / max(traffic_ratio, 1e-9) < settings.min_ratio:
                    stats.reject(f"cost {w.service}", f"cost x{ratio:.2f} explained by traffic x{traffic_ratio:.2f}")
                    return None
    if w.replicas is not None:
        rp = clean_series(w.ts, w.replicas)
        if rp is not None and _one_autoscaler_step(rp[1], step, settings, win, ratio):
            stats.reject(f"cost {w.service}", f"cost x{ratio:.2f} is at most {settings.replica_step:g} replica(s) above "
                                              "the usual count at this time of day, at the usual cost per replica")
            return None
        if rp is not None:
            r = rp[1]
            before = r[:start]
            if np.isfinite(before).any():
                evidence["replicas_before_p95"] = float(np.nanpercentile(before, 95))
                evidence["replicas_before_median"] = float(np.nanmedian(before))
            if np.isfinite(r[win]).any():
                evidence["replicas_now"] = float(np.nanmax(r[win]))
    evidence.update(_gpu_util_evidence(w, step, settings, win, float(ts[start])))
    if w.anomaly_scores is not None:
        sc = np.asarray(w.anomaly_scores, dtype=np.float64)
        if sc.shape == v.shape:
            evidence["anomaly_score_max"] = round(float(np.nanmax(sc[win])) if np.isfinite(sc[win]).any() else 0.0, 4)
        if w.anomaly_alarm_ts is not None and w.anomaly_alarm_ts >= float(ts[start]) - 3600:
            evidence["anomaly_alarm_at"] = _iso(w.anomaly_alarm_ts)
    z_now = (actual - expected) / sigma
    severity: Severity = "critical" if ratio >= 2.5 else "warning"
    confidence = float(min(1.0, 0.5 + 0.5 * min(1.0, duration / (4 * settings.min_duration_s)) * min(1.0, z_now / (2 * settings.z))))
    if "anomaly_alarm_at" in evidence:  # the streaming detector saw the onset too
        confidence = max(confidence, 0.9)
    name = w.service
    return Finding(
        kind="cost_anomaly", service=name, severity=severity, detector="cost.seasonal_robust",
        confidence=round(confidence, 3), file=w.file,
        summary=(f"{name} costs ${actual:.2f}/h, x{ratio:.2f} its expected ${expected:.2f}/h "
                 f"for {duration / 60:.0f} min (about ${(actual - expected) * HOURS_PER_MONTH:,.0f}/month extra)"),
        evidence=evidence,
    )


def _usual(x: Array, step: float, settings: CostSettings, win: slice) -> float:
    """What ``x`` usually is over ``win``: the same hours on previous days, else the median of the
    day before the window; NaN when neither is known."""
    exp = _expected(x, step, settings)[win]
    if np.isfinite(exp).any():
        return float(np.nanmean(exp))
    day_before = x[max(0, win.start - int(round(DAY_S / step))): win.start]
    return float(np.nanmedian(day_before)) if np.isfinite(day_before).any() else math.nan


def _one_autoscaler_step(r: Array, step: float, settings: CostSettings, win: slice, ratio: float) -> bool:
    """True when the rise is one autoscaler step: at most ``replica_step`` replicas more than at the
    same time on previous days (else than over the day before), each costing what it usually does.
    With two or three replicas one more is already x1.3-1.5 of the cost, and normal."""
    r_now = float(np.nanmean(r[win])) if np.isfinite(r[win]).any() else math.nan
    r_exp = _usual(r, step, settings, win)
    if not (math.isfinite(r_now) and math.isfinite(r_exp)) or r_now <= 0 or r_exp <= 0:
        return False
    return r_now - r_exp <= settings.replica_step + 1e-9 and ratio * r_exp / r_now < settings.min_ratio


def _gpu_util_evidence(w: WorkloadSeries, step: float, settings: CostSettings, win: slice,
                       start_ts: float) -> dict[str, object]:
    """What the GPUs did during the excursion: busy extra spend (utilisation rose with it) reads
    differently from idle extra spend (more GPUs, the same work spread thinner)."""
    if w.gpu_util is None:
        return {}
    cu = clean_series(w.ts, w.gpu_util)
    if cu is None or not np.isfinite(cu[1][win]).any():
        return {}
    u = cu[1]
    out: dict[str, object] = {"gpu_util_percent": round(float(np.nanmean(u[win])), 1)}
    usual = _usual(u, step, settings, win)
    if math.isfinite(usual):
        out["gpu_util_expected_percent"] = round(usual, 1)
    if w.gpu_util_alarm_ts is not None and w.gpu_util_alarm_ts >= start_ts - 3600:
        out["gpu_util_alarm_at"] = _iso(w.gpu_util_alarm_ts)
    return out


def _iso(t: float) -> str:
    return datetime.fromtimestamp(float(t), UTC).isoformat().replace("+00:00", "Z")
