"""Perturbed copies of a NAB folder, to check that a detector's NAB score is not an artefact of the
development subset's regular 5-minute sampling (the held-out NAB categories have gaps, irregular
timestamps and hourly series).

    python bench/nab_perturb.py --nab ../shared/bench/nab --out /tmp/nab-gap  --drop 0.15 --seed 7
    python bench/nab_perturb.py --nab ../shared/bench/nab --out /tmp/nab-jit  --jitter 0.45 --seed 11
    python bench/nab_perturb.py --nab ../shared/bench/nab --out /tmp/nab-30m  --resample 6 --agg max
    remediator nab --data /tmp/nab-gap/data --out /tmp/nab-gap-res --detector remediator
    python bench/nab_score.py --results /tmp/nab-gap-res --nab /tmp/nab-gap

One perturbation per call (the options combine in the order drop, jitter, resample):
- ``--drop F``: each row but the first is dropped with probability F (gaps);
- ``--jitter F``: each timestamp moves by a uniform offset of up to F x the file's median step
  (F < 0.5 keeps the rows in order), rounded to the second;
- ``--resample K --agg max|mean``: K consecutive rows become one, at the first row's timestamp
  (K = 6 turns 5-minute series into 30-minute ones; ``max`` keeps one-sample spikes, ``mean``
  dilutes them).
The labels (windows are timestamps, so they still apply) and the cost profiles are copied as they
are. The same seed gives the same copy. Nothing is written outside ``--out``, which must not exist
or be empty.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

Rows = list[list[str]]
TS_FORMAT = "%Y-%m-%d %H:%M:%S"


def drop_rows(rows: Rows, frac: float, rng: np.random.Generator) -> Rows:
    """Each row but the first kept with probability 1 - ``frac``."""
    keep = rng.random(len(rows)) >= frac
    if rows:
        keep[0] = True
    return [r for r, k in zip(rows, keep, strict=True) if k]


def jitter_rows(rows: Rows, frac: float, rng: np.random.Generator) -> Rows:
    """Timestamps moved by up to ``frac`` x the median step (uniform), to the second."""
    if len(rows) < 2:
        return [list(r) for r in rows]
    ts = [datetime.fromisoformat(r[0].strip()) for r in rows]
    step = float(np.median(np.diff([t.timestamp() for t in ts])))
    offsets = rng.uniform(-frac, frac, size=len(rows)) * step
    return [[(t + timedelta(seconds=round(float(o)))).strftime(TS_FORMAT), *r[1:]]
            for r, t, o in zip(rows, ts, offsets, strict=True)]


def resample_rows(rows: Rows, k: int, agg: str) -> Rows:
    """``k`` consecutive rows -> one row at the first one's timestamp, value = max or mean."""
    out: Rows = []
    for i in range(0, len(rows), k):
        chunk = rows[i:i + k]
        vals = [float(r[1]) for r in chunk]
        v = max(vals) if agg == "max" else sum(vals) / len(vals)
        out.append([chunk[0][0], repr(v)])
    return out


def perturb_folder(nab: Path, out: Path, *, drop: float = 0.0, jitter: float = 0.0, resample: int = 1,
                   agg: str = "max", seed: int = 7) -> int:
    """Write the perturbed copy of ``nab`` (data/, labels/, config/) to ``out``; returns the file count."""
    rng = np.random.default_rng(seed)
    files = sorted((nab / "data").glob("*/*.csv"))
    for src in files:
        with src.open(newline="") as fh:
            head, *rows = [r for r in csv.reader(fh) if r]
        if drop > 0:
            rows = drop_rows(rows, drop, rng)
        if jitter > 0:
            rows = jitter_rows(rows, jitter, rng)
        if resample > 1:
            rows = resample_rows(rows, resample, agg)
        dst = out / "data" / src.parent.name / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        with dst.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(head)
            w.writerows(rows)
    for sub in ("labels", "config"):
        if (nab / sub).is_dir():
            shutil.copytree(nab / sub, out / sub)
    return len(files)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nab", type=Path, default=Path("../shared/bench/nab"), help="NAB folder (data/, labels/, config/)")
    ap.add_argument("--out", type=Path, required=True, help="new folder for the perturbed copy")
    ap.add_argument("--drop", type=float, default=0.0, help="probability of dropping each row (0 <= F < 1)")
    ap.add_argument("--jitter", type=float, default=0.0, help="timestamp jitter as a fraction of the step (0 <= F < 0.5)")
    ap.add_argument("--resample", type=int, default=1, help="K rows -> 1 (K >= 1)")
    ap.add_argument("--agg", choices=("max", "mean"), default="max", help="how --resample combines K rows")
    ap.add_argument("--seed", type=int, default=7, help="random seed (same seed, same copy)")
    a = ap.parse_args(argv)
    problems = []
    if not 0.0 <= a.drop < 1.0:
        problems.append(f"--drop must be in [0, 1) (got {a.drop})")
    if not 0.0 <= a.jitter < 0.5:
        problems.append(f"--jitter must be in [0, 0.5) (got {a.jitter}); 0.5 or more would reorder rows")
    if a.resample < 1:
        problems.append(f"--resample must be >= 1 (got {a.resample})")
    if not (a.nab / "data").is_dir():
        problems.append(f"--nab {a.nab}: no data/ folder; pass the NAB folder (e.g. ../shared/bench/nab)")
    if a.out.exists() and (not a.out.is_dir() or any(a.out.iterdir())):
        problems.append(f"--out {a.out}: exists and is not an empty folder; pick a new path")
    if problems:
        print("nab_perturb: " + "; ".join(problems), file=sys.stderr)
        return 2
    n = perturb_folder(a.nab, a.out, drop=a.drop, jitter=a.jitter, resample=a.resample, agg=a.agg, seed=a.seed)
    print(f"nab_perturb: wrote {n} files to {a.out}/data (labels and profiles copied)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
