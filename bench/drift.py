"""Drift and fairness benchmark on generated streams with a known onset.

    python bench/drift.py [--json] [--streams N] [--seed S]

Drift streams. A model version rolls out at t = 0; the baseline is 7 days of the previous version
at the same traffic. Predictions fall into 4 classes (baseline mix drawn from Dirichlet(2) per
stream) and arrive as Poisson counts in 5-minute buckets at ``rate`` per minute. Six hours after
the rollout (the onset) the mix moves toward the baseline's rarest class by a known Jensen-Shannon
distance (base 2): 0 (null streams), 0.15 or 0.30. Every 5 minutes (the daemon's cycle) each
detector compares the window since the rollout (at most 24 h) with the baseline, over 36 h.

Detectors, at their defaults:
  ours-JS   JS distance base 2 > 0.1 and chi-square p < 0.01, >= 200 predictions per side
  ours-PSI  PSI > 0.1 and chi-square p < 0.01, >= 200 per side
  ours-chi2 chi-square p < 0.01, >= 200 per side
  ours-KS   KS p < 0.01 over the class order, >= 200 per side
  Evidently-JS   scipy's jensenshannon (natural log) >= 0.1, any sample size (Evidently's default
                 JS test; a base-e distance is 0.833 x the base-2 one, so this is base-2 >= 0.120)
  Evidently-PSI  PSI >= 0.1 with empty classes floored at 1e-4, any sample size

Figures: false alarms = share of streams with any alarm before the onset (drift streams) or at
all (null streams); per-check false-alarm rate on null streams; detection = share of drift streams
alarming at or after the onset; delay = first alarm at or after the onset minus the onset
(median and 90th percentile over detected streams, minutes).

Fairness streams: two groups with 20:1 traffic (the small group gets ``rate``/21 outcomes per
minute), positive rates equal (0.30) until the onset at 6 h, then the small group's drops by 0.10
(or stays: null). Ours: demographic parity difference > 0.05 with groups >= 100 and a 99%
Newcombe interval clear of zero (the defaults; ``--fairness-level 0.95`` for comparison). Naive:
the point estimate > 0.05 on whatever has arrived.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.detectors.drift import (  # noqa: E402
    DEFAULT_THRESHOLD,
    assess_drift,
    gate,
    js_distance_rows,
    psi_rows,
)
from tools.detectors.fairness import rate_gap  # noqa: E402

BUCKET_MIN = 5
HORIZON_H = 36
ONSET_H = 6
WINDOW_H = 24
K = 4
MIN_SAMPLES = 200
MIN_GROUP = 100
SIGNIFICANCE = 0.01
LEVEL = 0.99
DETECTORS = ("ours-JS", "ours-PSI", "ours-chi2", "ours-KS", "Evidently-JS", "Evidently-PSI")


def shifted(p0: np.ndarray, target: float) -> np.ndarray:
    """p0 mixed toward its rarest class so that the base-2 JS distance is ``target``."""
    if target <= 0:
        return p0
    e = np.zeros_like(p0)
    e[int(np.argmin(p0))] = 1.0
    lo, hi = 0.0, 1.0
    for _ in range(60):
        w = 0.5 * (lo + hi)
        if float(js_distance_rows(p0, (1 - w) * p0 + w * e)) < target:
            lo = w
        else:
            hi = w
    return (1 - hi) * p0 + hi * e


@dataclass
class Outcome:
    first_alarm_before: bool
    alarms_before: int
    checks_before: int
    delay_min: float | None


def drift_stream(rng: np.random.Generator, rate: float, magnitude: float, null: bool) -> dict[str, Outcome]:
    p0 = rng.dirichlet(np.full(K, 2.0))
    p1 = shifted(p0, magnitude)
    base = rng.multinomial(rng.poisson(rate * 60 * 24 * 7), p0).astype(float)
    nb = int(HORIZON_H * 60 / BUCKET_MIN)
    onset_b = int(ONSET_H * 60 / BUCKET_MIN)
    win_b = int(WINDOW_H * 60 / BUCKET_MIN)
    buckets = np.array([rng.multinomial(rng.poisson(rate * BUCKET_MIN), p0 if (null or i < onset_b) else p1)
                        for i in range(nb)], dtype=float)
    cum = np.vstack([np.zeros(K), np.cumsum(buckets, axis=0)])
    alarms: dict[str, list[bool]] = {d: [] for d in DETECTORS}
    qb = base / base.sum()
    for i in range(1, nb + 1):
        cur = cum[i] - cum[max(0, i - win_b)]
        n = cur.sum()
        if n < 1:
            for d in DETECTORS:
                alarms[d].append(False)
            continue
        pc = cur / n
        alarms["Evidently-JS"].append(float(js_distance_rows(qb, pc, base=math.e)) >= 0.1)
        alarms["Evidently-PSI"].append(float(psi_rows(qb, pc)) >= 0.1)
        if n < MIN_SAMPLES:
            for d in ("ours-JS", "ours-PSI", "ours-chi2", "ours-KS"):
                alarms[d].append(False)
            continue
        a = assess_drift(cur, base, metric="js", bootstrap=0)      # every statistic, once
        for d, metric in (("ours-JS", "js"), ("ours-PSI", "psi"), ("ours-chi2", "chi2"), ("ours-KS", "ks")):
            alarms[d].append(gate(metric, DEFAULT_THRESHOLD[metric], SIGNIFICANCE, js=a.js_distance, psi=a.psi,
                                  chi2_p=a.chi2_p, ks_p=a.ks_p)[1])
    out = {}
    for d, a in alarms.items():
        arr = np.array(a)
        check_onset = onset_b if not null else nb      # check i (1-based) ends at i buckets
        before = arr[:check_onset]
        after = np.nonzero(arr[check_onset:])[0]
        delay = None if null or after.size == 0 else float((after[0] + 1) * BUCKET_MIN)
        out[d] = Outcome(bool(before.any()), int(before.sum()), int(before.size), delay)
    return out


def fairness_stream(rng: np.random.Generator, rate: float, gap: float) -> dict[str, Outcome]:
    nb = int(HORIZON_H * 60 / BUCKET_MIN)
    onset_b = int(ONSET_H * 60 / BUCKET_MIN)
    win_b = int(WINDOW_H * 60 / BUCKET_MIN)
    share = {"big": 20 / 21, "small": 1 / 21}
    pos = {g: np.zeros(nb) for g in share}
    tot = {g: np.zeros(nb) for g in share}
    for i in range(nb):
        for g, s in share.items():
            n = rng.poisson(rate * BUCKET_MIN * s)
            r = 0.30 - (gap if (g == "small" and i >= onset_b) else 0.0)
            tot[g][i], pos[g][i] = n, rng.binomial(n, r)
    cp = {g: np.concatenate([[0], np.cumsum(pos[g])]) for g in share}
    ct = {g: np.concatenate([[0], np.cumsum(tot[g])]) for g in share}
    alarms: dict[str, list[bool]] = {"ours-DPD": [], "naive-DPD": []}
    for i in range(1, nb + 1):
        j = max(0, i - win_b)
        cells = {g: (float(cp[g][i] - cp[g][j]), float(ct[g][i] - ct[g][j])) for g in share}
        have = {g: c for g, c in cells.items() if c[1] > 0}
        naive = len(have) == 2 and abs(have["big"][0] / have["big"][1] - have["small"][0] / have["small"][1]) > 0.05
        alarms["naive-DPD"].append(naive)
        big_enough = {g: c for g, c in cells.items() if c[1] >= MIN_GROUP}
        g2 = rate_gap(big_enough, LEVEL)
        alarms["ours-DPD"].append(g2 is not None and g2.value > 0.05 and g2.lower > 0)
    out = {}
    null = gap <= 0
    for d, a in alarms.items():
        arr = np.array(a)
        cut = nb if null else onset_b
        after = np.nonzero(arr[cut:])[0]
        out[d] = Outcome(bool(arr[:cut].any()), int(arr[:cut].sum()), cut,
                         None if null or after.size == 0 else float((after[0] + 1) * BUCKET_MIN))
    return out


def summarise(rows: list[dict[str, Outcome]], null: bool) -> dict[str, dict[str, Any]]:
    res: dict[str, dict[str, Any]] = {}
    for d in rows[0]:
        oc = [r[d] for r in rows]
        delays = [o.delay_min for o in oc if o.delay_min is not None]
        entry: dict[str, Any] = {"false_alarm_streams": round(float(np.mean([o.first_alarm_before for o in oc])), 3)}
        if null:
            entry["false_alarm_per_check"] = round(sum(o.alarms_before for o in oc) / sum(o.checks_before for o in oc), 4)
        else:
            entry["detected"] = round(len(delays) / len(oc), 3)
            entry["delay_median_min"] = float(np.median(delays)) if delays else None
            entry["delay_p90_min"] = float(np.percentile(delays, 90)) if delays else None
        res[d] = entry
    return res


def run(streams: int, seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {"streams_per_cell": streams, "seed": seed, "drift": [], "fairness": []}
    for rate in (2.0, 30.0):
        for magnitude in (0.0, 0.15, 0.30):
            rng = np.random.default_rng([seed, int(rate), int(magnitude * 100)])
            rows = [drift_stream(rng, rate, magnitude, null=magnitude == 0) for _ in range(streams)]
            out["drift"].append({"rate_per_min": rate, "js_shift": magnitude,
                                 "detectors": summarise(rows, null=magnitude == 0)})
    for rate in (5.0, 50.0):
        for gap in (0.0, 0.10):
            rng = np.random.default_rng([seed, 7, int(rate), int(gap * 100)])
            rows = [fairness_stream(rng, rate, gap) for _ in range(streams)]
            out["fairness"].append({"rate_per_min": rate, "gap": gap, "detectors": summarise(rows, null=gap == 0)})
    return out


def table(res: dict[str, Any]) -> str:
    lines = ["Drift (JS shift 0 = null streams: false alarms over 36 h; else false alarms before the 6 h onset)",
             "", "| traffic /min | JS shift | detector | false-alarm streams | FA per check | detected | "
             "delay median (min) | delay p90 (min) |", "|---:|---:|---|---:|---:|---:|---:|---:|"]

    def fmt(x: Any) -> str:
        return "-" if x is None else f"{x:g}"

    def rows(cells: list[dict[str, Any]], key: str) -> list[str]:
        return [f"| {cell['rate_per_min']:g} | {cell[key]:g} | {d} | {e['false_alarm_streams']:.0%} | "
                f"{fmt(e.get('false_alarm_per_check'))} | "
                f"{'-' if 'detected' not in e else format(e['detected'], '.0%')} | "
                f"{fmt(e.get('delay_median_min'))} | {fmt(e.get('delay_p90_min'))} |"
                for cell in cells for d, e in cell["detectors"].items()]

    lines += rows(res["drift"], "js_shift")
    lines += ["", "Fairness (two groups 20:1; gap 0 = null streams)", "",
              "| outcomes /min | gap | detector | false-alarm streams | FA per check | detected | "
              "delay median (min) | delay p90 (min) |", "|---:|---:|---|---:|---:|---:|---:|---:|"]
    lines += rows(res["fairness"], "gap")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--streams", type=int, default=100, help="streams per cell (default 100)")
    ap.add_argument("--seed", type=int, default=20261127)
    ap.add_argument("--fairness-level", type=float, default=LEVEL, help="confidence level of ours-DPD")
    a = ap.parse_args(argv)
    globals()["LEVEL"] = a.fairness_level
    t0 = time.perf_counter()
    res = run(a.streams, a.seed)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(res, indent=1) if a.json else table(res) + f"\n\n({a.streams} streams per cell, seed {a.seed}, "
          f"fairness level {a.fairness_level:g}, {res['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
