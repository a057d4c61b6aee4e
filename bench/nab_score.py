"""NAB scorer, written from NAB's published scoring rules (see ../shared/bench/nab/README.md).

    python bench/nab_score.py --results DIR --nab ../shared/bench/nab [--json]

DIR is either one detector's results folder (``DIR/<category>/<detector>_<file>.csv``) or a
folder holding several of them (``DIR/<detector>/<category>/...``); each detector found is scored.

Rules implemented (NAB's sweeper):
- rows ``i < min(floor(0.15 n), 750)`` are probationary and never scored;
- a detection is a row with ``anomaly_score >= threshold``; one threshold per detector and
  profile, chosen over the whole corpus to maximise the summed raw score (ties: the highest
  threshold; "never fire" is the candidate 1.1);
- in a window of W rows ending at row r only the best (= first) detection counts:
  ``A_tp * S(-(r - i + 1) / W) / S(-1)``; a window without detection scores ``-A_fn``;
- a detection outside every window costs ``A_fp * S(|r_prev - i| / (W_prev - 1))`` after a window,
  ``-A_fp`` before the first one; ``S(x) = 2 / (1 + exp(5x)) - 1`` and ``S(x) = -1`` for x >= 3;
- normalised = ``100 * (raw - null) / (perfect - null)`` with perfect = ``A_tp`` per window and
  null = ``-A_fn`` per window. Per category the same normalisation over that category's windows
  (a category without windows has no normalised score; its raw score and FP count are shown).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PROBATION_PERCENT = 0.15
PROBATION_MAX = 750  # 0.15 * 5000
NEVER = 1.1  # NAB's start threshold: no row is a detection
DEFAULT_PROFILES = {
    "standard": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11},
    "reward_low_FP_rate": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.22},
    "reward_low_FN_rate": {"tpWeight": 1.0, "fnWeight": 2.0, "fpWeight": 0.11},
}


def scaled_sigmoid(x: np.ndarray) -> np.ndarray:
    """NAB's S(x) = 2 / (1 + exp(5x)) - 1, and -1 from x = 3 on."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore"):
        s = 2.0 / (1.0 + np.exp(5.0 * x)) - 1.0
    return np.where(x >= 3.0, -1.0, s)


S_MINUS_ONE = float(scaled_sigmoid(np.array(-1.0)))


def parse_ts(s: str) -> np.datetime64:
    return np.datetime64(s.strip().replace(" ", "T"), "us")


@dataclass
class FileInfo:
    """One data file, prepared for scoring: per-row window id (-1 outside), probation mask and
    the unweighted scaled-sigmoid value a detection at that row would earn (inside a window,
    already divided by S(-1)) or cost (outside)."""

    rel: str
    category: str
    n: int
    windows: list[tuple[int, int]]          # (first row, last row), file-local
    win: np.ndarray                         # int, global window id or -1
    scorable: np.ndarray                    # bool
    s_value: np.ndarray                     # float


@dataclass
class Corpus:
    files: dict[str, FileInfo] = field(default_factory=dict)
    n_windows: int = 0
    profiles: dict[str, dict[str, float]] = field(default_factory=lambda: dict(DEFAULT_PROFILES))

    def windows_in(self, category: str | None = None) -> int:
        return sum(len(f.windows) for f in self.files.values() if category is None or f.category == category)

    @property
    def categories(self) -> list[str]:
        return sorted({f.category for f in self.files.values()})


def probation_length(n: int) -> int:
    return int(min(math.floor(PROBATION_PERCENT * n), PROBATION_MAX))


def prepare_file(rel: str, timestamps: np.ndarray, windows: list[tuple[Any, Any]], first_id: int) -> FileInfo:
    """Row bookkeeping for one file. ``windows`` are (start, end) timestamps, inclusive."""
    n = int(timestamps.size)
    spans: list[tuple[int, int]] = []
    for t1, t2 in windows:
        a = int(np.searchsorted(timestamps, parse_ts(t1) if isinstance(t1, str) else t1, "left"))
        b = int(np.searchsorted(timestamps, parse_ts(t2) if isinstance(t2, str) else t2, "right")) - 1
        if b >= a:
            spans.append((a, b))
    spans.sort()
    win = np.full(n, -1, dtype=np.int64)
    s_value = np.empty(n, dtype=np.float64)
    idx = np.arange(n, dtype=np.float64)
    prev_end, prev_w = -1, 0
    cursor = 0

    def outside(seg: slice) -> None:
        """Rows after the previous window (or from the start, before any window): FP weights."""
        if prev_end < 0:
            s_value[seg] = -1.0
        else:
            denom = float(prev_w - 1) if prev_w > 1 else 1e-12
            s_value[seg] = scaled_sigmoid(np.abs(prev_end - idx[seg]) / denom)

    for k, (a, b) in enumerate(spans):
        w = b - a + 1
        outside(slice(cursor, a))
        win[a:b + 1] = first_id + k
        s_value[a:b + 1] = scaled_sigmoid(-(b - idx[a:b + 1] + 1.0) / w) / S_MINUS_ONE
        prev_end, prev_w, cursor = b, w, b + 1
    outside(slice(cursor, n))
    scorable = np.arange(n) >= probation_length(n)
    return FileInfo(rel=rel, category=rel.split("/")[0], n=n, windows=spans, win=win,
                    scorable=scorable, s_value=s_value)


def read_csv_columns(path: Path) -> dict[str, list[str]]:
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        cols: dict[str, list[str]] = {h.strip(): [] for h in header}
        names = [h.strip() for h in header]
        for row in reader:
            if not row:
                continue
            for h, v in zip(names, row, strict=False):
                cols[h].append(v)
    return cols


def load_corpus(nab: Path) -> Corpus:
    """Data timestamps + combined windows + profiles of a NAB folder."""
    windows = json.loads((nab / "labels" / "combined_windows.json").read_text())
    corpus = Corpus()
    prof_path = nab / "config" / "profiles.json"
    if prof_path.exists():
        raw = json.loads(prof_path.read_text())
        corpus.profiles = {k: {w: float(v["CostMatrix"][w]) for w in ("tpWeight", "fnWeight", "fpWeight")}
                           for k, v in raw.items()}
    for path in sorted((nab / "data").glob("*/*.csv")):
        rel = f"{path.parent.name}/{path.name}"
        ts = np.array([parse_ts(s) for s in read_csv_columns(path)["timestamp"]])
        info = prepare_file(rel, ts, [tuple(w) for w in windows.get(rel, [])], corpus.n_windows)
        corpus.files[rel] = info
        corpus.n_windows += len(info.windows)
    return corpus


def read_results(detector_dir: Path, corpus: Corpus) -> dict[str, np.ndarray]:
    """anomaly_score per data file from ``detector_dir/<category>/<detector>_<file>.csv``."""
    name = detector_dir.name
    out: dict[str, np.ndarray] = {}
    for rel, info in corpus.files.items():
        cat, fname = rel.split("/")
        path = detector_dir / cat / f"{name}_{fname}"
        if not path.exists():
            raise FileNotFoundError(f"missing results file {path}")
        scores = np.array([float(v) for v in read_csv_columns(path)["anomaly_score"]], dtype=np.float64)
        if scores.size != info.n:
            raise ValueError(f"{path}: {scores.size} rows, data has {info.n}")
        out[rel] = scores
    return out


def _file_raw(info: FileInfo, scores: np.ndarray, threshold: float, prof: dict[str, float]) -> dict[str, float]:
    det = (scores >= threshold) & info.scorable
    outside = det & (info.win < 0)
    fp_score = float(np.sum(info.s_value[outside])) * prof["fpWeight"]
    raw = fp_score
    tp = fn = 0
    for a, b in info.windows:
        if not info.scorable[a:b + 1].any():
            continue  # a window wholly inside the probationary period is not scored
        hits = np.nonzero(det[a:b + 1])[0]
        if hits.size:
            raw += prof["tpWeight"] * float(info.s_value[a + hits[0]])
            tp += 1
        else:
            raw -= prof["fnWeight"]
            fn += 1
    return {"raw": raw, "tp": tp, "fn": fn, "fp": int(outside.sum())}


def optimise_threshold(corpus: Corpus, scores: dict[str, np.ndarray], prof: dict[str, float]) -> tuple[float, float]:
    """The corpus-wide threshold with the best summed raw score (NAB's sweep)."""
    sc, sv, wn = [], [], []
    n_scored_windows = 0
    for rel, info in corpus.files.items():
        m = info.scorable
        sc.append(np.nan_to_num(scores[rel][m], nan=-np.inf))
        sv.append(info.s_value[m])
        wn.append(info.win[m])
        n_scored_windows += len(np.unique(info.win[m][info.win[m] >= 0]))
    s = np.concatenate(sc) if sc else np.zeros(0)
    v = np.concatenate(sv) if sv else np.zeros(0)
    w = np.concatenate(wn) if wn else np.zeros(0, dtype=np.int64)
    base = -prof["fnWeight"] * n_scored_windows
    if s.size == 0:
        return NEVER, base
    order = np.argsort(-s, kind="stable")
    s, v, w = s[order], v[order], w[order]
    gain = np.where(w < 0, v * prof["fpWeight"], 0.0)
    inwin = np.nonzero(w >= 0)[0]
    if inwin.size:
        ws = w[inwin]
        o2 = np.lexsort((inwin, ws))            # by window, then by sweep position
        pos, wsorted = inwin[o2], ws[o2]
        vals = v[pos] * prof["tpWeight"]
        starts = np.r_[0, np.nonzero(np.diff(wsorted))[0] + 1]
        ends = np.r_[starts[1:], pos.size]
        for a, b in zip(starts, ends, strict=True):
            cm = np.maximum.accumulate(vals[a:b])
            prev = np.r_[-prof["fnWeight"], cm[:-1]]
            gain[pos[a:b]] = cm - prev
    total = base + np.cumsum(gain)
    last_of_group = np.r_[s[1:] != s[:-1], True]
    cand_scores = np.r_[base, total[last_of_group]]
    cand_thr = np.r_[NEVER, s[last_of_group]]
    valid = np.isfinite(cand_thr)
    cand_scores = np.where(valid, cand_scores, -np.inf)
    best = int(np.argmax(cand_scores))
    return float(cand_thr[best]), float(cand_scores[best])


def _normalise(raw: float, n_windows: int, prof: dict[str, float]) -> float | None:
    perfect = prof["tpWeight"] * n_windows
    null = -prof["fnWeight"] * n_windows
    if perfect == null:
        return None
    return 100.0 * (raw - null) / (perfect - null)


def score_detector(corpus: Corpus, scores: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per profile: threshold, raw and normalised score, per category and per file."""
    out: dict[str, Any] = {}
    for pname, prof in corpus.profiles.items():
        thr, _ = optimise_threshold(corpus, scores, prof)
        per_file = {rel: _file_raw(info, scores[rel], thr, prof) for rel, info in corpus.files.items()}
        cats: dict[str, Any] = {}
        for cat in corpus.categories:
            rows = [r for rel, r in per_file.items() if corpus.files[rel].category == cat]
            raw = sum(r["raw"] for r in rows)
            cats[cat] = {"score": _round(_normalise(raw, corpus.windows_in(cat), prof)), "raw": round(raw, 4),
                         "tp": sum(r["tp"] for r in rows), "fn": sum(r["fn"] for r in rows),
                         "fp": sum(r["fp"] for r in rows)}
        raw = sum(r["raw"] for r in per_file.values())
        out[pname] = {"threshold": thr, "score": _round(_normalise(raw, corpus.n_windows, prof)), "raw": round(raw, 4),
                      "tp": sum(r["tp"] for r in per_file.values()), "fn": sum(r["fn"] for r in per_file.values()),
                      "fp": sum(r["fp"] for r in per_file.values()), "categories": cats,
                      "files": {k: {**v, "raw": round(v["raw"], 4)} for k, v in per_file.items()}}
    return out


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


def detector_dirs(results: Path, corpus: Corpus) -> list[Path]:
    cats = set(corpus.categories)
    if any((results / c).is_dir() for c in cats):
        return [results]
    return sorted(p for p in results.iterdir() if p.is_dir() and any((p / c).is_dir() for c in cats))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, required=True, help="one detector's results folder, or a folder of them")
    ap.add_argument("--nab", type=Path, default=Path("../shared/bench/nab"), help="NAB folder (data/, labels/, config/)")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    ap.add_argument("--files", action="store_true", help="also print per-file raw scores (text mode)")
    args = ap.parse_args(argv)
    corpus = load_corpus(args.nab)
    dirs = detector_dirs(args.results, corpus)
    if not dirs:
        print(f"no detector results under {args.results}", file=sys.stderr)
        return 2
    doc: dict[str, Any] = {}
    for d in dirs:
        doc[d.name] = score_detector(corpus, read_results(d, corpus))
    if args.json:
        if not args.files:
            for det in doc.values():
                for prof in det.values():
                    prof.pop("files", None)
        print(json.dumps(doc, indent=1))
        return 0
    for name, det in doc.items():
        print(f"{name}  ({corpus.n_windows} windows, {len(corpus.files)} files)")
        for pname, p in det.items():
            print(f"  {pname:<20} {p['score']:7.2f}   threshold {p['threshold']:.6g}  "
                  f"tp {p['tp']} fn {p['fn']} fp {p['fp']}")
            for cat, c in p["categories"].items():
                sc = "   n/a" if c["score"] is None else f"{c['score']:6.2f}"
                print(f"      {cat:<24} {sc}   raw {c['raw']:8.3f}  tp {c['tp']} fn {c['fn']} fp {c['fp']}")
            if args.files:
                for rel, r in p["files"].items():
                    print(f"        {rel:<55} raw {r['raw']:7.3f} tp {r['tp']} fn {r['fn']} fp {r['fp']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
