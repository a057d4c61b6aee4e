"""Fairness: demographic parity difference (max - min positive rate across the groups of a
protected attribute) for the current model version since its rollout (at most 24 h).
Groups with fewer than ``min_group`` outcomes are left out, and the difference must stay above
the threshold at the edge of a 95% Wilson interval, so tiny groups do not raise alarms."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from memory.records import Finding
from tools.detectors.common import InputStats, clean_series, counter_increase_between
from tools.detectors.drift import CounterSeries, counters_data_start, version_first_seen

DAY_S = 86400.0
Z95 = 1.96


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


def wilson(pos: float, n: float) -> tuple[float, float]:
    if n <= 0:
        return 0.0, 1.0
    p = pos / n
    den = 1 + Z95**2 / n
    c = (p + Z95**2 / (2 * n)) / den
    h = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / den
    return max(0.0, c - h), min(1.0, c + h)


def detect_fairness(f: FairnessInput, *, now: float, stats: InputStats | None = None) -> Finding | None:
    stats = stats if stats is not None else InputStats()
    if not f.enabled or not f.attributes:
        return None
    first = version_first_seen(f.counters, f.current_version)
    if first is None:
        return None
    start = max(first, now - DAY_S)
    seen_from = counters_data_start(f.counters)
    worst: dict[str, object] | None = None
    for attr in f.attributes:
        counts: dict[str, dict[str, float]] = {}
        for c in f.counters:
            if c.labels.get("model_version") != f.current_version or c.labels.get("attribute") != attr:
                continue
            cs = clean_series(c.ts, c.values)
            if cs is None:
                continue
            g = c.labels.get("group", "")
            o = c.labels.get("outcome", "")
            counts.setdefault(g, {}).setdefault(o, 0.0)
            counts[g][o] += counter_increase_between(cs[0], cs[1], start, now, seen_from)
        rates = {}
        for g, oc in counts.items():
            n = oc.get("positive", 0.0) + oc.get("negative", 0.0)
            if n < f.min_group:
                stats.reject(f"fairness {f.service} {attr}={g}", f"only {n:.0f} outcomes (need {f.min_group})")
                continue
            rates[g] = (oc.get("positive", 0.0) / n, n, wilson(oc.get("positive", 0.0), n))
        if len(rates) < 2:
            continue
        hi = max(rates, key=lambda g: rates[g][0])
        lo = min(rates, key=lambda g: rates[g][0])
        dpd = rates[hi][0] - rates[lo][0]
        dpd_lower = max(0.0, rates[hi][2][0] - rates[lo][2][1])
        if dpd > f.threshold and dpd_lower > 0 and (worst is None or dpd > float(worst["dpd"])):  # type: ignore[arg-type]
            worst = {"attribute": attr, "dpd": dpd, "dpd_ci_lower": dpd_lower, "highest": hi, "lowest": lo,
                     "rates": {g: {"positive_rate": round(r[0], 4), "n": round(r[1]), "ci95": [round(r[2][0], 4), round(r[2][1], 4)]}
                               for g, r in rates.items()}}
    if worst is None:
        return None
    dpd = float(worst["dpd"])  # type: ignore[arg-type]
    return Finding(
        kind="fairness_violation", service=f.service, severity="critical" if dpd >= 2 * f.threshold else "warning",
        detector="fairness.demographic_parity", confidence=0.9, model_version=f.current_version, file=f.file,
        summary=(f"{f.service} model {f.current_version}: demographic parity difference {dpd:.3f} on "
                 f"{worst['attribute']} ({worst['highest']} vs {worst['lowest']}; threshold {f.threshold})"),
        evidence={"metric": "demographic_parity_difference", "threshold": f.threshold,
                  "window": {"start": _iso(start), "end": _iso(now)}, **{k: (round(v, 4) if isinstance(v, float) else v)
                                                                          for k, v in worst.items()}},
    )


def _iso(t: float) -> str:
    return datetime.fromtimestamp(float(t), UTC).isoformat().replace("+00:00", "Z")
