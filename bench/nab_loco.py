"""Leave-one-category-out (LOCO) evaluation of NAB detectors on the shared subset, and the same on a
perturbed copy: a score that holds up on a category nobody chose anything on.

    python bench/nab_loco.py --nab ../shared/bench/nab [--perturbed /tmp/nab-gap] [--detectors a,b] [--json]

For each detector and each category C with labelled windows: every choice (the alarm threshold, and
for a candidate with knobs each knob value from its small grid) is made on the other categories
(NAB's threshold sweep, standard profile, ``bench/nab_score.py``'s scorer), then C is scored with
it and normalised over C's windows. Reported: the mean and the worst of those folds, the FP count
on artificialNoAnomaly (no windows: it cannot be normalised, it is always in the choosing set when
another category is held out), the whole-corpus standard score (threshold chosen on everything,
the figure the earlier tables show) and rows per second. ``--perturbed`` scores the same detectors,
with the knob values chosen on the original subset, on a copy written by ``bench/nab_perturb.py``.

Candidates (all causal: a row's score uses only the rows before it and itself):
- ``remediator``: the production streaming detector (``agents/nab.py``, the daemon's batch path);
  its internal knobs were chosen on the whole subset earlier, so only its threshold is re-chosen
  per fold: its LOCO figure is optimistic.
- ``remediator-knobs``: the same detector with one of eleven knobs moved alone to a smaller or a
  larger value (``KNOB_VARIANTS``: 18 variants and the shipped one); the variant and threshold are
  chosen per fold: a true LOCO of the knob choice within that neighbourhood.
- ``production``: the daemon's whole deciding cost path replayed (``remediator nab --detector
  production``); a row scores where an incident opens (the streaming model's highest score over
  the finding's window, at least 0.001), so the threshold chooses how much of the model's evidence
  an opening needs.
- ``seasonal``: the daemon's deciding cost test (same-hour median / MAD) as a per-point score.
- ``windowedGaussian``, ``zscore``, ``iforest``: the baselines of ``agents/nab.py``.
- ``rankens``: a rank-normalised ensemble of three simple scorers (robust z of the level, of the
  first difference, and of the mean of the last 6 rows, each against the median / MAD of the past
  W rows, recomputed every 50 rows); each scorer's value becomes its causal percentile among that
  scorer's own past values in the series, and the row's score is the largest percentile. Knob: W.
- ``conformal``: forecast residual with online conformal calibration: forecast = EWMA(alpha) of
  the past rows, residual = |x - forecast|, score = 1 - (past residuals >= this one + 1) /
  (past residuals + 1), the conformal p-value turned into a score. Knob: alpha.
- ``discord``: matrix-profile discord distance (``stumpy.stumpi``, streaming, window m rows), the
  distance of the newest subsequence to its nearest earlier neighbour, as a causal percentile.
  Knob: m. Only when ``stumpy`` is installed.
- ``art``: an adaptive-resonance detector in ARTime's manner (``bench/nab_art.py``): downsampled,
  quantised windows and their Haar coefficients clustered by a dual-vigilance fuzzy ART; a new
  cluster after the probationary part is an anomaly. Knob: the normalisation (``file``: the file's
  min and max, as NAB allows and ARTime does; ``probation``: the probationary part's range, causal).
- ``art-history``: ``art`` as a daemon could run it: every 3 h of series time, from cold on the last
  7 days, normalised by that window's range; the rows since the previous cycle keep its scores.
- ``remediator+art``: the larger of the two scores per row (one threshold for both). Knob: ART's
  normalisation. ``remediator+art-history``: the same with ``art-history``.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.nab import (  # noqa: E402
    DETECTORS,
    read_nab_csv,
)
from bench.nab_art import art, art_history  # noqa: E402
from bench.nab_score import Corpus, _file_raw, _normalise, load_corpus, optimise_threshold  # noqa: E402

Series = tuple[np.ndarray, np.ndarray]
Scores = dict[str, np.ndarray]
PROFILE = "standard"
NO_WINDOWS = "artificialNoAnomaly"
REFIT = 50


# ----------------------------------------------------------------------------- candidates

def _causal_percentile(x: np.ndarray) -> np.ndarray:
    """Each value's rank among the finite values before it: 1 - (#past >= x + 1) / (#past + 1)."""
    past: list[float] = []
    out = np.zeros(x.size)
    for i, v in enumerate(x.tolist()):
        if v != v:
            continue
        ge = len(past) - bisect.bisect_left(past, v)
        out[i] = 1.0 - (ge + 1) / (len(past) + 1)
        bisect.insort(past, v)
    return out


def _robust_z(x: np.ndarray, window: int) -> np.ndarray:
    """|x - median| / (1.4826 MAD) against the past ``window`` rows, refitted every REFIT rows."""
    z = np.full(x.size, np.nan)
    for a in range(1, x.size, REFIT):
        past = x[max(0, a - window):a]
        past = past[np.isfinite(past)]
        if past.size < 10:
            continue
        med = float(np.median(past))
        mad = 1.4826 * float(np.median(np.abs(past - med)))
        sd = mad if mad > 0 else (float(np.std(past)) or 1e-9)
        z[a:a + REFIT] = np.abs(x[a:a + REFIT] - med) / sd
    return z


def _ffill(v: np.ndarray) -> np.ndarray:
    idx = np.where(np.isfinite(v), np.arange(v.size), 0)
    np.maximum.accumulate(idx, out=idx)
    return v[idx]


def rankens(series: list[Series], window: int = 1000) -> list[np.ndarray]:
    out = []
    for _, v in series:
        x = _ffill(np.where(np.isfinite(v), v, np.nan))
        d = np.r_[np.nan, np.diff(x)]
        c = np.cumsum(np.nan_to_num(x))
        m6 = np.full(x.size, np.nan)
        m6[5:] = (c[5:] - np.r_[0.0, c[:-6]]) / 6.0
        parts = [_causal_percentile(_robust_z(s, window)) for s in (x, d, m6)]
        out.append(np.max(np.vstack(parts), axis=0))
    return out


def conformal(series: list[Series], alpha: float = 0.3) -> list[np.ndarray]:
    out = []
    for _, v in series:
        x = _ffill(np.where(np.isfinite(v), v, np.nan))
        f = np.full(x.size, np.nan)
        level = math.nan
        for i, val in enumerate(x.tolist()):
            f[i] = level
            if val == val:
                level = val if level != level else level + alpha * (val - level)
        out.append(_causal_percentile(np.abs(x - f)))
    return out


def discord(series: list[Series], m: int = 32) -> list[np.ndarray]:
    import stumpy

    out = []
    for _, v in series:
        x = _ffill(np.where(np.isfinite(v), v, np.nan)).astype(np.float64)
        x = np.nan_to_num(x)
        s = np.zeros(x.size)
        warm = max(4 * m, 64)
        if x.size <= warm:
            out.append(s)
            continue
        stream = stumpy.stumpi(x[:warm], m=m, egress=False)
        dist = np.full(x.size, np.nan)
        for i in range(warm, x.size):
            stream.update(x[i])
            dist[i] = stream.P_[-1]
        dist[~np.isfinite(dist)] = np.nan
        out.append(_causal_percentile(dist))
    return out


# The production detector's knobs, each moved alone to a smaller and a larger value around the one in
# tools/detectors/anomaly.py ("default" = as shipped): ``remediator-knobs`` chooses one of these per
# fold on the three other categories (with the threshold), a true LOCO of the knob choice within this
# neighbourhood (the shipped values were chosen on all four categories).
KNOB_VARIANTS: list[str] = ["default"] + [f"{k}={v}" for k, vals in {
    "ALPHA_LEVEL": (0.01, 0.05), "ALPHA_SCALE": (0.005, 0.02), "ALPHA_SHORT": (0.08, 0.3),
    "REFRACTORY_DAYS": (0.25, 1.0), "RECORD_HL_DAYS": (3.5, 14.0), "SEASON_GATE": (0.3, 0.7),
    "SPATIAL_TOL": (0.02, 0.1), "TOD_DAYS": (3,), "TOD_GATE": (False,), "RECORD_GATE": (False,),
    "WEEK_GATE": (False,)}.items() for v in vals]


def remediator_variant(series: list[Series], variant: str = "default") -> list[np.ndarray]:
    """The production streaming detector with one module constant of tools/detectors/anomaly.py set
    to another value for this run."""
    from tools.detectors import anomaly

    if variant == "default":
        return DETECTORS["remediator"](series)
    name, raw = variant.split("=")
    old = getattr(anomaly, name)
    value = raw == "True" if isinstance(old, bool) else type(old)(float(raw))
    setattr(anomaly, name, value)
    try:
        return DETECTORS["remediator"](series)
    finally:
        setattr(anomaly, name, old)


Candidate = tuple[str, Callable[..., list[np.ndarray]], str | None, list[Any]]
CANDIDATES: list[Candidate] = [
    ("remediator", DETECTORS["remediator"], None, [None]),
    ("remediator-knobs", remediator_variant, "variant", KNOB_VARIANTS),
    ("production", DETECTORS["production"], None, [None]),
    ("seasonal", DETECTORS["seasonal"], None, [None]),
    ("windowedGaussian", DETECTORS["windowedGaussian"], None, [None]),
    ("zscore", DETECTORS["zscore"], None, [None]),
    ("iforest", DETECTORS["iforest"], None, [None]),
    ("rankens", rankens, "window", [288, 1000, 3000]),
    ("conformal", conformal, "alpha", [0.05, 0.3, 1.0]),
    ("discord", discord, "m", [16, 64]),
    ("art", art, "norm", ["file", "probation"]),
    ("art-history", art_history, None, [None]),
    ("remediator+art", lambda series, norm="file": [np.maximum(a, b) for a, b in zip(
        DETECTORS["remediator"](series), art(series, norm=norm), strict=True)], "norm", ["file", "probation"]),
    ("remediator+art-history", lambda series: [np.maximum(a, b) for a, b in zip(
        DETECTORS["remediator"](series), art_history(series), strict=True)], None, [None]),
]


# ----------------------------------------------------------------------------- scoring

def _sub(corpus: Corpus, keep: Callable[[str], bool]) -> Corpus:
    files = {k: f for k, f in corpus.files.items() if keep(f.category)}
    return Corpus(files=files, n_windows=sum(len(f.windows) for f in files.values()), profiles=corpus.profiles)


def _score_on(corpus: Corpus, scores: Scores, thr: float) -> tuple[float | None, int]:
    prof = corpus.profiles[PROFILE]
    rows = [_file_raw(info, scores[rel], thr, prof) for rel, info in corpus.files.items()]
    return _normalise(sum(r["raw"] for r in rows), corpus.n_windows, prof), sum(r["fp"] for r in rows)


def _train(corpus: Corpus, runs: dict[Any, Scores]) -> tuple[Any, float, float]:
    """The knob value and threshold with the best normalised score on ``corpus``."""
    prof = corpus.profiles[PROFILE]
    best: tuple[Any, float, float] | None = None
    for knob, scores in runs.items():
        thr, raw = optimise_threshold(corpus, scores, prof)
        norm = _normalise(raw, corpus.n_windows, prof) or 0.0
        if best is None or norm > best[2]:
            best = (knob, thr, norm)
    assert best is not None
    return best


def loco(corpus: Corpus, runs: dict[Any, Scores]) -> dict[str, Any]:
    folds: dict[str, Any] = {}
    for cat in corpus.categories:
        if corpus.windows_in(cat) == 0:
            continue
        knob, thr, train = _train(_sub(corpus, lambda c, cat=cat: c != cat), runs)
        score, fp = _score_on(_sub(corpus, lambda c, cat=cat: c == cat), runs[knob], thr)
        folds[cat] = {"score": round(score or 0.0, 2), "fp": fp, "knob": knob, "threshold": round(thr, 6),
                      "train_score": round(train, 2)}
    knob, thr, whole = _train(corpus, runs)
    noanom = _score_on(_sub(corpus, lambda c: c == NO_WINDOWS), runs[knob], thr)[1] if NO_WINDOWS in corpus.categories else None
    vals = [f["score"] for f in folds.values()]
    return {"folds": folds, "mean": round(float(np.mean(vals)), 2), "worst": round(float(np.min(vals)), 2),
            "whole_corpus": round(whole, 2), "whole_knob": knob, "whole_threshold": thr, "fp_no_anomaly": noanom}


def _load(nab: Path, corpus: Corpus) -> list[Series]:
    return [read_nab_csv(nab / "data" / rel)[2:] for rel in corpus.files]   # type: ignore[misc]


def run_candidate(cand: Candidate, series: list[Series], rels: list[str],
                  knobs: list[Any] | None = None) -> tuple[dict[Any, Scores], float]:
    name, fn, knob_name, values = cand
    runs: dict[Any, Scores] = {}
    t0 = time.perf_counter()
    for k in knobs if knobs is not None else values:
        out = fn(series) if knob_name is None else fn(series, **{knob_name: k})
        runs[k] = {rel: np.clip(np.nan_to_num(np.asarray(s, dtype=np.float64), nan=0.0), 0.0, 1.0)
                   for rel, s in zip(rels, out, strict=True)}
    return runs, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nab", type=Path, default=Path("../shared/bench/nab"))
    ap.add_argument("--perturbed", type=Path, default=None, help="a copy written by bench/nab_perturb.py")
    ap.add_argument("--detectors", default=",".join(c[0] for c in CANDIDATES))
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    wanted = a.detectors.split(",")
    corpus = load_corpus(a.nab)
    rels = list(corpus.files)
    series = _load(a.nab, corpus)
    rows = sum(v.size for _, v in series)
    pert = load_corpus(a.perturbed) if a.perturbed else None
    pseries = _load(a.perturbed, pert) if pert is not None else []
    results: dict[str, Any] = {}
    for cand in CANDIDATES:
        if cand[0] not in wanted:
            continue
        try:
            runs, wall = run_candidate(cand, series, rels)
        except ImportError as e:
            results[cand[0]] = {"skipped": str(e)}
            continue
        res = loco(corpus, runs)
        res["rows_per_s"] = round(rows * len(runs) / wall)
        if pert is not None:
            prun, _ = run_candidate(cand, pseries, list(pert.files), knobs=[res["whole_knob"]])
            pres = loco(pert, prun)
            res["perturbed"] = {"whole_corpus": pres["whole_corpus"], "loco_mean": pres["mean"],
                                "loco_worst": pres["worst"]}
        results[cand[0]] = res
        if not a.json:
            f = " / ".join(f"{c} {v['score']}" for c, v in res["folds"].items())
            p = res.get("perturbed", {})
            print(f"{cand[0]:<17} LOCO mean {res['mean']:6.2f} worst {res['worst']:6.2f} ({f}; knobs "
                  f"{[v['knob'] for v in res['folds'].values()]}) whole {res['whole_corpus']:6.2f} "
                  f"perturbed whole {p.get('whole_corpus')} LOCO {p.get('loco_mean')} / {p.get('loco_worst')} "
                  f"noAnomaly FP {res['fp_no_anomaly']} {res['rows_per_s']} rows/s", flush=True)
    if a.json:
        print(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
