"""A second real corpus, tuned on by nobody here: Microsoft's Cloud Monitoring Dataset (67 production
telemetry series in 8 domains: store purchase counts, database query rates, API request rates and
latencies, application crash rates; point labels by domain experts), scored with NAB's rules.

    git clone <the public cloud-monitoring-dataset repository> CMD
    python bench/cmd_corpus.py --data CMD [--out DIR] [--nab ../shared/bench/nab] [--detectors a,b] [--json]

The dataset is not stored in this repository: pass a checkout of it (``CMD/data/<domain>/<file>.csv``
with ``TimeStamp,Value,Label``). The script converts it into NAB's layout under ``--out``
(``nab/data/<domain>/<file>.csv`` with ``timestamp,value``; ``nab/labels/combined_windows.json``),
runs the candidates of ``bench/nab_loco.py`` (the detectors of ``remediator nab`` and the issue-18
candidates) and scores them with ``bench/nab_score.py`` (NAB's three profiles, one threshold per
detector and profile chosen over the whole corpus, as NAB does for the published detectors). A
candidate with a knob gets the value it chooses on the NAB subset (``--nab``), never one chosen here.

Windows from point labels follow NAB's labeller: a run of consecutive labelled rows is one anomaly;
with k anomalies in n rows each window is ``int(0.10 * n / k)`` rows wide, centred on the run (the run
plus half a window each side), clipped to the series, and windows that overlap are merged. A series
without labels has no window (any detection there is a false positive).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import nab_loco  # noqa: E402  (bench/nab_loco.py: the candidates, and how a knob is chosen)
import nab_score  # noqa: E402  (bench/nab_score.py: NAB's scoring rules)

from agents.nab import DETECTORS  # noqa: E402

# nab_loco's candidates, then any other detector of ``remediator nab`` (no knob)
CANDIDATES = nab_loco.CANDIDATES + [(n, fn, None, [None]) for n, fn in DETECTORS.items()
                                    if n not in {c[0] for c in nab_loco.CANDIDATES}]

WINDOW_FRACTION = 0.10   # NAB's windowSize
DEFAULT_DETECTORS = ("remediator", "seasonal", "rankens", "conformal", "windowedGaussian", "zscore", "iforest")


def windows_of(labels: list[int]) -> list[tuple[int, int]]:
    """NAB windows (first row, last row) for point labels: one per run of labelled rows, merged."""
    runs: list[tuple[int, int]] = []
    for i, lab in enumerate(labels):
        if lab:
            if runs and runs[-1][1] == i - 1:
                runs[-1] = (runs[-1][0], i)
            else:
                runs.append((i, i))
    if not runs:
        return []
    n = len(labels)
    half = int(WINDOW_FRACTION * n / len(runs)) // 2
    out: list[tuple[int, int]] = []
    for a, b in runs:
        lo, hi = max(0, a - half), min(n - 1, b + half)
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _utc(raw: str) -> str:
    """An ISO 8601 time (quoted or not, with or without a zone) as NAB's naive UTC 'YYYY-MM-DD HH:MM:SS'."""
    t = datetime.fromisoformat(raw.strip().strip('"').replace("Z", "+00:00"))
    if t.tzinfo is not None:
        t = t.astimezone(UTC).replace(tzinfo=None)
    return t.strftime("%Y-%m-%d %H:%M:%S")


def convert(data: Path, nab: Path) -> dict[str, int]:
    """CMD/data/<domain>/<file>.csv -> NAB layout under ``nab``; returns counts."""
    root = data / "data" if (data / "data").is_dir() else data
    files = sorted(root.glob("*/*.csv"))
    if not files:
        raise SystemExit(f"no <domain>/<file>.csv under {root}: pass a checkout of the Cloud Monitoring Dataset")
    windows: dict[str, list[list[str]]] = {}
    rows = n_windows = 0
    for path in files:
        with path.open(newline="") as fh:
            reader = csv.reader(fh)
            header = [h.strip().lower() for h in next(reader)]
            try:
                ti, vi, li = header.index("timestamp"), header.index("value"), header.index("label")
            except ValueError:
                raise SystemExit(f"{path}: header {header} lacks TimeStamp, Value or Label") from None
            body = [r for r in reader if r]
        ts = [_utc(r[ti]) for r in body]
        labels = [int(float(r[li])) for r in body]
        rel = f"{path.parent.name}/{path.name}"
        target = nab / "data" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["timestamp", "value"])
            w.writerows([t, r[vi].strip()] for t, r in zip(ts, body, strict=True))
        windows[rel] = [[f"{ts[a]}.000000", f"{ts[b]}.000000"] for a, b in windows_of(labels)]
        rows += len(body)
        n_windows += len(windows[rel])
    (nab / "labels").mkdir(parents=True, exist_ok=True)
    (nab / "labels" / "combined_windows.json").write_text(json.dumps(windows, indent=1))
    return {"files": len(files), "rows": rows, "windows": n_windows,
            "domains": len({p.parent.name for p in files})}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="a checkout of the Cloud Monitoring Dataset")
    ap.add_argument("--out", type=Path, default=Path("cmd-corpus-out"), help="where the NAB layout goes")
    ap.add_argument("--nab", type=Path, default=Path("../shared/bench/nab"),
                    help="the NAB subset a candidate's knob is chosen on (never this corpus)")
    names = [c[0] for c in CANDIDATES]
    ap.add_argument("--detectors", default=",".join(DEFAULT_DETECTORS), help=f"comma-separated, from: {', '.join(names)}")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    dets = [d.strip() for d in a.detectors.split(",") if d.strip()]
    unknown = [d for d in dets if d not in names]
    if unknown:
        ap.error(f"unknown detector(s) {unknown}; choose from {', '.join(names)}")
    nab = a.out / "nab"
    counts = convert(a.data, nab)
    print(f"converted: {counts}", file=sys.stderr)
    corpus = nab_score.load_corpus(nab)
    rels = list(corpus.files)
    series = nab_loco._load(nab, corpus)
    dev_corpus = dev_series = None
    doc: dict[str, Any] = {}
    for cand in (c for c in CANDIDATES if c[0] in dets):
        knob = None
        try:
            if cand[2] is not None:       # a knob: chosen on the NAB subset, never on this corpus
                if dev_corpus is None:
                    dev_corpus = nab_score.load_corpus(a.nab)
                    dev_series = nab_loco._load(a.nab, dev_corpus)
                dev_runs, _ = nab_loco.run_candidate(cand, dev_series or [], list(dev_corpus.files))
                knob = nab_loco._train(dev_corpus, dev_runs)[0]
            runs, wall = nab_loco.run_candidate(cand, series, rels, knobs=[knob])
        except ImportError as e:
            doc[cand[0]] = {"skipped": str(e)}
            continue
        scored = nab_score.score_detector(corpus, runs[knob])
        for prof in scored.values():
            prof.pop("files", None)
        doc[cand[0]] = {"knob": knob, "detect_s": round(wall, 2), **scored}
    if a.json:
        print(json.dumps({"corpus": counts, "scores": doc}, indent=1))
        return 0
    print(f"{'detector':<18} {'standard':>9} {'low FP':>9} {'low FN':>9}   detect s  knob (chosen on NAB)")
    for d, r in doc.items():
        if "skipped" in r:
            print(f"{d:<18} skipped: {r['skipped']}")
            continue
        print(f"{d:<18} {r['standard']['score']:9.2f} {r['reward_low_FP_rate']['score']:9.2f} "
              f"{r['reward_low_FN_rate']['score']:9.2f}   {r['detect_s']:8}  {'-' if r['knob'] is None else r['knob']}")
    print("per domain, standard profile:")
    for d, r in doc.items():
        if "skipped" not in r:
            print(f"  {d:<18} " + "  ".join(f"{c}={'n/a' if v['score'] is None else round(v['score'], 1)}"
                                          for c, v in r["standard"]["categories"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
