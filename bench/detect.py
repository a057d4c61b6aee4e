"""Throughput of the production anomaly detector vs an IsolationForest baseline.

    python bench/detect.py --series 10000 --points 2016 --json

Synthetic $/h-like series (daily seasonality at 5-minute steps, noise, a few level shifts,
spikes and NaN gaps). The production detector scores every point of the whole [series, points]
batch from a cold start; the baseline fits and scores scikit-learn
IsolationForest(n_estimators=100, random_state=0) per series on 200 randomly chosen series.
Then the whole deciding cost path (``tools.detectors.cost.detect_cost_anomalies`` on every series
with the streaming detector's latest alarm, all series in one call as a cycle runs it; a 5-minute
grid): ``path_wall_s`` is streaming + cost tests, ``cost_tests_wall_s`` the tests alone (numpy: the
screen over all series at once, then the tests on the series it passes).
Prints {"series","points","wall_s","points_per_s","baseline_points_per_s","device","peak_rss_mb",
"cost_tests_wall_s","path_wall_s","path_points_per_s","findings"}; ``--no-path`` skips the tests.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.detectors.anomaly import StreamingAnomalyDetector, latest_alarm  # noqa: E402
from tools.detectors.common import InputStats  # noqa: E402
from tools.detectors.cost import CostSettings, WorkloadSeries, detect_cost_anomalies  # noqa: E402


def synthetic(series: int, points: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(points, dtype=np.float64)
    level = rng.uniform(0.5, 50.0, size=(series, 1))
    amp = rng.uniform(0.0, 0.4, size=(series, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(series, 1))
    x = level * (1 + amp * np.sin(2 * np.pi * t[None, :] / 288 + phase))
    x += level * rng.normal(0, 0.03, size=(series, points))
    shift_at = rng.integers(points // 2, points, size=series)
    has_shift = rng.random(series) < 0.1
    x += np.where(has_shift[:, None] & (t[None, :] >= shift_at[:, None]), level, 0.0)
    gaps = rng.random((series, points)) < 0.002
    x[gaps] = np.nan
    return x.astype(np.float32).astype(np.float64)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=10000)
    ap.add_argument("--points", type=int, default=2016)
    ap.add_argument("--baseline-series", type=int, default=200)
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-path", action="store_true", help="the streaming detector only, not the cost tests after it")
    args = ap.parse_args(argv)

    x = synthetic(args.series, args.points)
    det = StreamingAnomalyDetector(device=args.device)
    t0 = time.perf_counter()
    scores, _ = det.score(x, steps_per_day=288)
    wall = time.perf_counter() - t0
    rss = peak_rss_mb()

    from sklearn.ensemble import IsolationForest

    rng = np.random.default_rng(1)
    pick = rng.choice(args.series, size=min(args.baseline_series, args.series), replace=False)
    b0 = time.perf_counter()
    for i in pick:
        v = np.nan_to_num(x[i], nan=float(np.nanmedian(x[i]))).reshape(-1, 1)
        IsolationForest(n_estimators=100, random_state=0).fit(v).score_samples(v)
    bwall = time.perf_counter() - b0
    n = args.series * args.points
    doc = {"series": args.series, "points": args.points, "wall_s": round(wall, 3),
           "points_per_s": round(n / wall, 1),
           "baseline_points_per_s": round(pick.size * args.points / bwall, 1),
           "device": str(det.device), "peak_rss_mb": round(rss, 1)}
    if not args.no_path:
        ts = 1.7e9 + 300.0 * np.arange(args.points)
        c0 = time.perf_counter()
        workloads = [WorkloadSeries(service=f"ns/s{i}", file=None, ts=ts, cost=x[i], anomaly_scores=scores[i],
                                    anomaly_alarm_ts=latest_alarm(scores[i], ts)) for i in range(args.series)]
        found = len(detect_cost_anomalies(workloads, CostSettings(), InputStats()))   # one cycle: all series at once
        cwall = time.perf_counter() - c0
        doc.update({"cost_tests_wall_s": round(cwall, 3), "path_wall_s": round(wall + cwall, 3),
                    "path_points_per_s": round(n / (wall + cwall), 1), "findings": found,
                    "peak_rss_mb": round(peak_rss_mb(), 1)})
    if args.json:
        print(json.dumps(doc))
    else:
        for k, v in doc.items():
            print(f"{k:>22}: {v}")
        print(f"{'speedup':>22}: {doc['points_per_s'] / doc['baseline_points_per_s']:.1f}x")
        if "path_points_per_s" in doc:
            print(f"{'path speedup':>22}: {doc['path_points_per_s'] / doc['baseline_points_per_s']:.1f}x")
        print(f"{'scores >= 0.5':>22}: {int((scores >= 0.5).sum())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
