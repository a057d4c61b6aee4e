"""Embedding drift: detection power and false-alarm rate of the MMD permutation test and the
classifier two-sample test (tools/detectors/embedding_drift.py) against sample size and shift
size, at alibi-detect's defaults (p-value 0.05, 100 permutations), and their throughput.

    python bench/embedding_drift.py [--trials 50] [--dim 64] [--json]

Data: a reference sample of standard-normal embeddings and a current one whose first ``dim/8``
coordinates are shifted by ``shift`` standard deviations (shift 0: the false-alarm rate). Every
trial draws fresh samples and a fresh permutation seed. Throughput: tests a second at n = 500
against 500 rows of width 512 (a CLIP-sized embedding), on the CPU and, when there is one, the GPU;
and a cycle's worth of tests (``--services`` services with an image (512) and a text (384) modality
and their fused embedding, n = 500 each) run pair by pair against one batched ``run_many`` call.

``--alibi``: alibi-detect's own ``MMDDrift`` (pytorch backend, its defaults: p-value 0.05, 100
permutations) on the same draws, beside ours (``pip install alibi-detect`` into the environment that
runs this script; it is not a dependency of remediator).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.detectors.embedding_drift import DriftTest, c2st, drift_tests, mmd_test, run_many  # noqa: E402

SIZES = (50, 100, 200, 500)
SHIFTS = (0.0, 0.1, 0.25, 0.5)
ALPHA = 0.05


def rates(test: str, n: int, shift: float, dim: int, trials: int) -> float:
    rng = np.random.default_rng(1000 * n + int(100 * shift))
    hits = 0
    for t in range(trials):
        x = rng.normal(size=(n, dim)).astype(np.float32)
        y = rng.normal(size=(n, dim)).astype(np.float32)
        y[:, : max(1, dim // 8)] += shift
        if test == "alibi_mmd":
            from alibi_detect.cd import MMDDrift  # optional: only with --alibi

            hits += int(MMDDrift(x, backend="pytorch", p_val=ALPHA, n_permutations=100).predict(y)["data"]["is_drift"])
            continue
        res = mmd_test(x, y, seed=t) if test == "mmd" else c2st(x, y, seed=t)
        hits += res.p_value < ALPHA
    return hits / trials


def throughput(dev: torch.device, repeats: int = 5) -> dict[str, float]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 512)).astype(np.float32)
    y = rng.normal(size=(500, 512)).astype(np.float32)
    out = {}
    for name, fn in (("mmd", lambda: mmd_test(x, y, dev=dev)), ("c2st", lambda: c2st(x, y, dev=dev))):
        fn()   # warm-up
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        out[name] = round(repeats / (time.perf_counter() - t0), 2)
    return out


def cycle_tests(services: int) -> list[DriftTest]:
    rng = np.random.default_rng(3)
    tests: list[DriftTest] = []
    for i in range(services):
        ref = {"image": rng.normal(size=(500, 512)), "text": rng.normal(size=(500, 384))}
        cur = {"image": rng.normal(size=(500, 512)), "text": rng.normal(size=(500, 384))}
        tests += drift_tests(f"svc-{i}", ref, cur)
    return tests


def batched_throughput(dev: torch.device, services: int) -> dict[str, float]:
    """Seconds for a cycle's tests (MMD + C2ST each) pair by pair and as one batched call."""
    tests = cycle_tests(services)
    out: dict[str, float] = {"tests": float(len(tests))}
    for name, fn in (("pair_by_pair_s", lambda: [(mmd_test(t.reference, t.current, dev=dev),
                                                  c2st(t.reference, t.current, dev=dev)) for t in tests]),
                     ("batched_s", lambda: run_many(tests, dev=dev))):
        run_many(tests[:2], dev=dev)   # warm-up
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        out[name] = round(time.perf_counter() - t0, 2)
    out["speed_up"] = round(out["pair_by_pair_s"] / max(out["batched_s"], 1e-9), 2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--c2st-trials", type=int, default=20)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--services", type=int, default=8, help="services in the batched-cycle figure")
    ap.add_argument("--alibi", action="store_true", help="add alibi-detect's MMDDrift on the same draws")
    ap.add_argument("--no-speed", action="store_true", help="rejection rates only")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    tests = ("mmd", "c2st") + (("alibi_mmd",) if a.alibi else ())
    table = {test: {str(n): {str(s): rates(test, n, s, a.dim, a.c2st_trials if test == "c2st" else a.trials)
                             for s in SHIFTS} for n in SIZES} for test in tests}
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    speed = {} if a.no_speed else {d.type: throughput(d) for d in devices}
    cycle = {} if a.no_speed else {d.type: batched_throughput(d, a.services) for d in devices}
    doc = {"alpha": ALPHA, "permutations": 100, "dim": a.dim, "trials": {"mmd": a.trials, "c2st": a.c2st_trials},
           "rejection_rate": table, "tests_per_second_n500_d512": speed, "cycle_of_tests": cycle}
    if a.json:
        print(json.dumps(doc))
        return 0
    for test in tests:
        print(f"{test}: rejection rate at alpha {ALPHA} (shift 0.0 = false alarms), rows n per sample")
        print("  n    " + "  ".join(f"shift {s:<4}" for s in SHIFTS))
        for n in SIZES:
            print(f"  {n:<4} " + "  ".join(f"{table[test][str(n)][str(s)]:<10.2f}" for s in SHIFTS))
    print("throughput (tests/s, n=500 vs 500, d=512):", json.dumps(speed))
    print(f"a cycle's tests ({a.services} services x image, text, fused; MMD + C2ST each):", json.dumps(cycle))
    return 0


if __name__ == "__main__":
    sys.exit(main())
