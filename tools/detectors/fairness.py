"""Fairness of the current model version since its rollout (at most the last 24 h), per protected
attribute, from ``inference_outcomes_total`` (labels attribute, group, outcome positive|negative,
and optionally label positive|negative -- the true label).

* demographic parity difference (DPD): max - min positive-outcome rate across the groups;
* equalized odds difference (EOD, where ``label`` is present): the larger of the true-positive-rate
  gap (rate of positive outcomes among label=positive) and the false-positive-rate gap (among
  label=negative), as fairlearn defines it.

Tiny groups must not raise alarms: a group (for EOD, a group's label cell) with fewer than
``min_group`` outcomes is left out and counted, and a finding needs the difference above
``threshold`` *and* its confidence interval (Newcombe's hybrid score interval for a difference of
two proportions, built from Wilson intervals, at ``confidence_level`` -- default 99%, because the
check is repeated every cycle -- Bonferroni-adjusted over the group pairs) clear of zero. Severity is critical when the difference is at least twice the
threshold and its interval's lower end is at or above the threshold; confidence is the normal
approximation of P(true difference > threshold). One finding per service: the worst attribute and
metric, with every attribute's figures in the evidence."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from scipy import special  # the distribution functions scipy.stats wraps, without its ~1 s import

from memory.records import Finding, Severity
from tools.detectors.common import InputStats, clean_counter, counter_increase_between
from tools.detectors.drift import (
    CounterSeries,
    counters_data_start,
    rollout_time,
    usable_counters,
    version_first_seen,
)

DAY_S = 86400.0
Z95 = 1.96
POSITIVE = frozenset({"positive", "1", "true", "yes"})
NEGATIVE = frozenset({"negative", "0", "false", "no"})
METRICS = ("demographic_parity", "equalized_odds")


@dataclass(frozen=True)
class FairnessInput:
    service: str
    file: str | None
    current_version: str
    counters: list[CounterSeries]      # inference_outcomes_total
    attributes: tuple[str, ...]
    threshold: float = 0.05
    enabled: bool = True
    min_group: int = 100
    version_set_at: float | None = None           # commit time of the change that set current_version
    confidence_level: float = 0.99               # 0.95 alarms on ~30% of quiet low-traffic streams over 36 h
    metrics: tuple[str, ...] = field(default=METRICS)


@dataclass(frozen=True)
class Gap:
    """The largest difference of rates across groups, with its interval."""

    value: float
    lower: float
    upper: float
    highest: str
    lowest: str
    z: float
    rates: dict[str, tuple[float, float, tuple[float, float]]]   # group -> (rate, n, wilson ci)

    @property
    def se(self) -> float:
        return max((self.value - self.lower) / self.z, 1e-12)

    def p_above(self, threshold: float) -> float:
        return float(special.ndtr((self.value - threshold) / self.se))


def wilson(pos: float, n: float, z: float = Z95) -> tuple[float, float]:
    if n <= 0:
        return 0.0, 1.0
    p = min(1.0, max(0.0, pos / n))
    den = 1 + z**2 / n
    c = (p + z**2 / (2 * n)) / den
    h = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n * n)) / den
    return max(0.0, c - h), min(1.0, c + h)


def bonferroni_z(level: float, groups: int) -> float:
    """Two-sided z for ``level`` over all pairs of ``groups``."""
    pairs = max(1, groups * (groups - 1) // 2)
    return float(special.ndtri(1 - (1 - level) / (2 * pairs)))


def rate_gap(counts: dict[str, tuple[float, float]], level: float = 0.99) -> Gap | None:
    """``counts``: group -> (positives, total). The max - min rate with a Newcombe interval."""
    if len(counts) < 2:
        return None
    z = bonferroni_z(level, len(counts))
    rates = {g: (pos / n, n, wilson(pos, n, z)) for g, (pos, n) in counts.items()}
    hi = max(sorted(rates), key=lambda g: rates[g][0])
    lo = min(sorted(rates), key=lambda g: rates[g][0])
    (p1, _, (l1, u1)), (p2, _, (l2, u2)) = rates[hi], rates[lo]
    d = p1 - p2
    lower = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    upper = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return Gap(value=d, lower=lower, upper=min(1.0, upper), highest=hi, lowest=lo, z=z, rates=rates)


def _label(raw: str | None) -> str:
    if raw is None or raw == "":
        return ""
    r = raw.lower()
    return "positive" if r in POSITIVE else "negative" if r in NEGATIVE else "?"


def detect_fairness(f: FairnessInput, *, now: float, stats: InputStats | None = None) -> Finding | None:
    stats = stats if stats is not None else InputStats()
    what = f"fairness {f.service}"
    if not f.enabled or not f.attributes:
        return None
    try:
        threshold = float(f.threshold)
    except (TypeError, ValueError):
        threshold = float("nan")
    if not (0 < threshold < 1):
        stats.reject(what, f"fairness.threshold {f.threshold!r} must be in (0, 1)")
        return None
    if not (0.5 <= f.confidence_level < 1) or not math.isfinite(now):
        stats.reject(what, f"confidence_level {f.confidence_level!r} must be in [0.5, 1) and now finite")
        return None
    counters = usable_counters(list(f.counters or []), {f.current_version}, what, stats)
    first = version_first_seen(counters, f.current_version)
    if first is None:
        return None
    start = max(rollout_time(counters, first, f.version_set_at), now - DAY_S)
    seen_from = counters_data_start(counters)
    min_group = max(1, int(f.min_group))
    results: list[dict[str, Any]] = []
    candidates: list[tuple[float, str, str, Gap, dict[str, Any]]] = []
    for attr in f.attributes:
        # group -> label ("" when absent) -> outcome -> count
        counts: dict[str, dict[str, dict[str, float]]] = {}
        for c in counters:
            if c.labels.get("model_version") != f.current_version or c.labels.get("attribute") != attr:
                continue
            outcome = _label(c.labels.get("outcome"))
            if outcome not in ("positive", "negative"):
                continue
            cs = clean_counter(c.ts, c.values)
            if cs is None:
                continue
            inc = counter_increase_between(cs[0], cs[1], start, now, seen_from)
            cell = counts.setdefault(c.labels.get("group", ""), {}).setdefault(_label(c.labels.get("label")), {})
            cell[outcome] = cell.get(outcome, 0.0) + (inc if math.isfinite(inc) and inc > 0 else 0.0)
        dp_counts: dict[str, tuple[float, float]] = {}
        for g, by_label in sorted(counts.items()):
            pos = sum(x.get("positive", 0.0) for x in by_label.values())
            n = pos + sum(x.get("negative", 0.0) for x in by_label.values())
            if not math.isfinite(n):
                stats.reject(f"{what} {attr}={g}", "outcome counts overflow (not finite)")
                continue
            if n < min_group:
                stats.reject(f"{what} {attr}={g}", f"only {n:.0f} outcomes (need {min_group})")
                continue
            dp_counts[g] = (pos, n)
        gaps: dict[str, Gap] = {}
        extra: dict[str, dict[str, Any]] = {}
        if "demographic_parity" in f.metrics:
            gap = rate_gap(dp_counts, f.confidence_level)
            if gap is not None:
                gaps["demographic_parity"] = gap
        has_label = any(lab in ("positive", "negative") for by in counts.values() for lab in by)
        if "equalized_odds" in f.metrics and has_label:
            per_label: dict[str, Gap] = {}
            for lab, name in (("positive", "true_positive_rate"), ("negative", "false_positive_rate")):
                cells: dict[str, tuple[float, float]] = {}
                for g in dp_counts:
                    x = counts[g].get(lab, {})
                    n = x.get("positive", 0.0) + x.get("negative", 0.0)
                    if not math.isfinite(n) or n < min_group:
                        stats.reject(f"{what} {attr}={g} label={lab}",
                                     f"only {n:.0f} outcomes (need {min_group}) for equalized odds")
                        continue
                    cells[g] = (x.get("positive", 0.0), n)
                gl = rate_gap(cells, f.confidence_level)
                if gl is not None:
                    per_label[name] = gl
            if per_label:
                worst_name = max(sorted(per_label), key=lambda k: per_label[k].value)
                w = per_label[worst_name]
                lower = max(g.lower for g in per_label.values())
                gaps["equalized_odds"] = Gap(value=w.value, lower=lower, upper=w.upper, highest=w.highest,
                                             lowest=w.lowest, z=w.z, rates=w.rates)
                extra["equalized_odds"] = {
                    "component": worst_name,
                    "components": {k: {"value": round(g.value, 4), "ci": [round(g.lower, 4), round(g.upper, 4)],
                                       "highest": g.highest, "lowest": g.lowest, "groups": _groups(g)}
                                   for k, g in per_label.items()}}
        for metric, gap in gaps.items():
            row = {"attribute": attr, "metric": f"{metric}_difference", "value": round(gap.value, 4),
                   "ci": [round(gap.lower, 4), round(gap.upper, 4)], "groups": len(gap.rates),
                   "alarm": gap.value > threshold and gap.lower > 0}
            results.append(row)
            if row["alarm"]:
                candidates.append((gap.value, attr, metric, gap, extra.get(metric, {})))
    if not candidates:
        return None
    value, attr, metric, gap, extra_ev = max(candidates, key=lambda x: (x[0], x[1], x[2]))
    severity: Severity = "critical" if value >= 2 * threshold and gap.lower >= threshold else "warning"
    dpd_row = next((r for r in results if r["attribute"] == attr and r["metric"] == "demographic_parity_difference"),
                   None)
    name = "demographic parity difference" if metric == "demographic_parity" else "equalized odds difference"
    level = f.confidence_level
    evidence: dict[str, Any] = {
        "metric": f"{metric}_difference",
        "attribute": attr,
        "value": round(value, 4),
        "threshold": threshold,
        "expected_range": [0.0, threshold],
        "ci": [round(gap.lower, 4), round(gap.upper, 4)],
        "ci_level": level,
        "ci_method": "Newcombe hybrid score (Wilson), Bonferroni over group pairs",
        "dpd": dpd_row["value"] if dpd_row else None,
        "dpd_ci_lower": dpd_row["ci"][0] if dpd_row else None,
        "highest": gap.highest,
        "lowest": gap.lowest,
        "rates": _groups(gap),
        "min_group": min_group,
        "window": {"start": _iso(start), "end": _iso(now)},
        "all": results,
        **extra_ev,
    }
    return Finding(
        kind="fairness_violation", service=f.service, severity=severity, detector=f"fairness.{metric}",
        confidence=round(min(1.0, max(0.0, gap.p_above(threshold))), 3), model_version=f.current_version,
        file=f.file,
        summary=(f"{f.service} model {f.current_version}: {name} {value:.3f} on {attr} ({gap.highest} vs "
                 f"{gap.lowest}; {level:.0%} CI {gap.lower:.3f}..{gap.upper:.3f}; threshold {threshold:g})"),
        evidence=evidence,
    )


def _groups(g: Gap) -> dict[str, dict[str, Any]]:
    return {k: {"positive_rate": round(r[0], 4), "n": round(r[1]), "ci": [round(r[2][0], 4), round(r[2][1], 4)]}
            for k, r in sorted(g.rates.items())}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(float(t), UTC).isoformat().replace("+00:00", "Z")
