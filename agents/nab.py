"""Run a detector over NAB-format CSVs and write NAB results files.

``run_nab(data, out, detector)`` reads ``data/<category>/<file>.csv`` (``timestamp,value``), scores
every series with the named detector and writes ``out/<detector>/<category>/<detector>_<file>.csv``
(``timestamp,value,anomaly_score``; one row per input row, same order; score in [0, 1]).

Detectors:
- ``remediator``: the production detector, ``tools.detectors.anomaly.StreamingAnomalyDetector``,
  on exactly the code path the daemon uses (all series of the corpus scored as one batch, each on
  a regular grid at its median step with missing samples as NaN, as Prometheus serves it).
- ``zscore``: robust z-score baseline, |x - median| / (1.4826 MAD) over the previous 1000 samples.
- ``iforest``: scikit-learn IsolationForest(n_estimators=100, random_state=0) per series, fitted on
  the series' probationary part (first 15 %, at most 750 rows) on [value, first difference].
- ``windowedGaussian``, ``random``, ``null``: NAB's own simple detectors re-implemented, used to
  check ``bench/nab_score.py`` against NAB's published scores.
"""

from __future__ import annotations

import csv
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from agents.config import DetectionSettings
from tools.detectors.anomaly import ALARM, StreamingAnomalyDetector, steps_per_day
from tools.detectors.common import InputStats
from tools.detectors.cost import CostSettings, WorkloadSeries, detect_cost_anomalies, seasonal_expected

log = logging.getLogger("remediator.nab")
Series = tuple[np.ndarray, np.ndarray]  # (unix seconds, values)
DetectorFn = Callable[[list[Series]], list[np.ndarray]]


def _parse_time(s: str) -> float:
    return float(np.datetime64(s.strip().replace(" ", "T"), "s").astype(np.int64))


def read_nab_csv(path: Path) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """(raw timestamp strings, raw value strings, unix seconds, values); unparseable values become NaN."""
    raw_ts: list[str] = []
    raw_v: list[str] = []
    vals: list[float] = []
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader)]
        ti, vi = header.index("timestamp"), header.index("value")
        for row in reader:
            if not row:
                continue
            raw_ts.append(row[ti])
            raw_v.append(row[vi] if vi < len(row) else "")
            try:
                vals.append(float(row[vi]))
            except ValueError:
                vals.append(math.nan)
    ts = np.array([_parse_time(s) for s in raw_ts], dtype=np.float64)
    return raw_ts, raw_v, ts, np.array(vals, dtype=np.float64)


def _probation(n: int) -> int:
    return int(min(math.floor(0.15 * n), 750))


# ----------------------------------------------------------------------------- detectors

MAX_GRID_GROWTH = 20  # a series whose gaps would make its grid longer than this many x its rows is scored row by row


def grid_slots(ts: np.ndarray) -> np.ndarray:
    """Slot of each row on a regular grid at the series' median step: the shape a Prometheus range
    query hands the daemon, a missing sample being an empty (NaN) slot, so that "the same time one
    day earlier" stays one day earlier across gaps. Rows closer together than a step keep their
    order in the next free slot (no row's value is lost; the rows after it follow one slot late
    until a gap absorbs the shift). Unknown or pathological timing: one slot per row."""
    n = ts.size
    rows = np.arange(n, dtype=np.int64)
    d = np.diff(ts)
    if n < 2 or not np.isfinite(ts).all() or (d < 0).any() or not (d > 0).any():
        return rows
    raw = np.round((ts - ts[0]) / float(np.median(d[d > 0]))).astype(np.int64)
    slots = rows + np.maximum.accumulate(raw - rows)
    return slots if slots[-1] < MAX_GRID_GROWTH * n else rows


def detect_remediator(series: list[Series]) -> list[np.ndarray]:
    det = StreamingAnomalyDetector()
    slots = [grid_slots(t) for t, _ in series]
    n = max((int(s[-1]) + 1 for s in slots if s.size), default=0)
    values = np.full((len(series), n), np.nan)
    lengths = np.zeros(len(series), dtype=np.int64)
    periods = np.zeros(len(series), dtype=np.int64)
    for i, ((t, v), s) in enumerate(zip(series, slots, strict=True)):
        values[i, s] = v
        lengths[i] = int(s[-1]) + 1 if s.size else 0
        periods[i] = steps_per_day(t)
    scores, _ = det.score(values, lengths=lengths, steps_per_day=periods)
    return [scores[i, s] for i, s in enumerate(slots)]


OPENING_FLOOR = 1e-3           # the NAB score of an incident opening the model saw nothing of (0 = no opening)
CYCLE_EVERY_S = 300.0          # the daemon's default schedule.interval
HISTORY_S = 7 * 86400.0        # the daemon's default detection.history (what one cycle's range query holds)


def detect_production(series: list[Series], every_s: float = CYCLE_EVERY_S, history_s: float = HISTORY_S,
                      settings: CostSettings | None = None, resolve_after_s: float | None = None) -> list[np.ndarray]:
    """The daemon's deciding cost path, replayed: the streaming detector scores all series as one
    batch (``detect_remediator``, as the cycle does), then a cycle runs every ``every_s`` seconds of
    each series' time and calls ``tools.detectors.cost.detect_cost_anomalies`` with its default
    settings on the last ``history_s`` of samples and the streaming detector's latest alarm up to
    then. A row scores where an incident opens, else 0.0, by the daemon's incident rules
    (agents/nodes/correlate.py): one incident per workload while it is active; a finding while one
    is active is the same incident; it resolves once no cycle has found it for the daemon's default
    ``detection.resolve_after`` (``resolve_after_s`` replaces that quiet time, to measure how much of
    the result is an incident resolving and reopening). An opening's score is the streaming model's
    highest score over the finding's window (its evidence ``anomaly_score_max``; at least
    OPENING_FLOOR): NAB's threshold sweep then chooses how much of the model's evidence an opening
    needs (at OPENING_FLOOR: every opening, the daemon's own decisions; at ``ALARM``: the openings
    whose window holds an alarm). NAB's series have no replicas or traffic, so the gates that need
    them do not apply; ``min_duration``, ``min_ratio``, the noise gates and "rises only" do."""
    streaming = detect_remediator(series)
    settings = settings or CostSettings()
    quiet = (DetectionSettings(min_duration=timedelta(seconds=settings.min_duration_s)).quiet_before_resolve
             .total_seconds() if resolve_after_s is None else resolve_after_s)   # the daemon's rule when unset
    settings = replace(settings, event_end_s=quiet)   # as the detect node does: an event ends when its incident may resolve
    out: list[np.ndarray] = []
    for k, ((t, v), sc) in enumerate(zip(series, streaming, strict=True)):
        log.info("production replay: series %d of %d (%d rows)", k + 1, len(series), v.size)
        s = np.zeros(v.size)
        alarm_rows = np.nonzero(np.nan_to_num(sc) >= ALARM)[0]
        active, last_seen, next_t, lo, opened = False, -math.inf, -math.inf, 0, 0
        for i in range(v.size):
            if t[i] < next_t:
                continue
            next_t = t[i] + every_s
            while t[lo] < t[i] - history_s:
                lo += 1
            j = int(np.searchsorted(alarm_rows, i, side="right"))   # alarms up to this cycle
            alarm_ts = float(t[alarm_rows[j - 1]]) if j else None
            w = WorkloadSeries(service="nab", file=None, ts=t[lo:i + 1], cost=v[lo:i + 1],
                               anomaly_scores=sc[lo:i + 1], anomaly_alarm_ts=alarm_ts)
            found = detect_cost_anomalies([w], settings, InputStats()) if i - lo >= 2 else []
            if found:
                if not active:   # an incident opens: scored by the model's evidence for it
                    s[i] = max(OPENING_FLOOR, float(found[0].evidence.get("anomaly_score_max", 0.0)))
                    opened += 1
                active, last_seen = True, float(t[i])
            elif active and t[i] - last_seen >= quiet:
                active = False
        log.info("production replay: series %d of %d: %d incident(s) opened, %d with the model's alarm in their window",
                 k + 1, len(series), opened, int(np.sum(s >= ALARM)))
        out.append(s)
    return out


def detect_seasonal(series: list[Series]) -> list[np.ndarray]:
    """The daemon's first cost detector (tools/detectors/cost.py) as a per-point score: expected =
    median of the same time of day on up to 6 previous days (else of the previous day), noise =
    an EWMA of |residual| (causal), score = z / (z + 4) of the upward and downward excursion."""
    out = []
    for t, v in series:
        x = np.where(np.isfinite(v), v, np.nan)
        period = steps_per_day(t) or 288
        exp, _ = seasonal_expected(x, period, 6)
        level = np.full(x.size, np.nan)
        for i in range(3, x.size):  # previous day's median where there are not 2 past days
            if not np.isfinite(exp[i]):
                seg = x[max(0, i - period):i]
                if np.isfinite(seg).sum() >= 3:
                    level[i] = float(np.nanmedian(seg))
        exp = np.where(np.isfinite(exp), exp, level)
        r = np.abs(x - exp)
        s = np.zeros(x.size)
        scale, seen = 0.0, 0
        for i in range(x.size):
            if not np.isfinite(r[i]):
                continue
            if seen >= 10 and scale > 0:
                z = r[i] / scale
                s[i] = z / (z + 4.0)
            scale = r[i] if seen == 0 else 0.99 * scale + 0.01 * min(r[i], 6 * scale if scale > 0 else r[i])
            seen += 1
        out.append(s)
    return out


def detect_zscore(series: list[Series], window: int = 1000) -> list[np.ndarray]:
    out = []
    for _, v in series:
        x = np.where(np.isfinite(v), v, np.nan)
        s = np.zeros(x.size)
        for i in range(1, x.size):
            past = x[max(0, i - window):i]
            past = past[np.isfinite(past)]
            if past.size < 2 or not np.isfinite(x[i]):
                continue
            med = np.median(past)
            mad = 1.4826 * np.median(np.abs(past - med))
            sd = mad if mad > 0 else (np.std(past) if np.std(past) > 0 else 1e-9)
            z = abs(x[i] - med) / sd
            s[i] = z / (1.0 + z)
        out.append(s)
    return out


def detect_iforest(series: list[Series]) -> list[np.ndarray]:
    from sklearn.ensemble import IsolationForest

    out = []
    for _, v in series:
        x = np.where(np.isfinite(v), v, np.nan)
        # forward-fill gaps so every row has features
        idx = np.where(np.isfinite(x), np.arange(x.size), 0)
        np.maximum.accumulate(idx, out=idx)
        x = np.nan_to_num(x[idx], nan=0.0)
        feats = np.column_stack([x, np.r_[0.0, np.diff(x)]])
        p = max(_probation(x.size), min(x.size, 10))
        if x.size < 2:
            out.append(np.zeros(x.size))
            continue
        forest = IsolationForest(n_estimators=100, random_state=0).fit(feats[:p])
        out.append(np.clip(-forest.score_samples(feats), 0.0, 1.0))
    return out


def _normal_tail(x: float, mean: float, std: float) -> float:
    if x < mean:
        x = 2 * mean - x
    return 0.5 * math.erfc(((x - mean) / std) / math.sqrt(2))


def detect_windowed_gaussian(series: list[Series]) -> list[np.ndarray]:
    """NAB's windowedGaussian (window 6400, step 100), as published."""
    out = []
    for _, v in series:
        window: list[float] = []
        buf: list[float] = []
        mean, std = 0.0, 1.0
        s = np.zeros(v.size)
        for i, x in enumerate(v.tolist()):
            if window:
                s[i] = 1.0 - _normal_tail(x, mean, std)
            if len(window) < 6400:
                window.append(x)
            else:
                buf.append(x)
                if len(buf) < 100:
                    continue
                window = window[100:] + buf
                buf = []
            mean = float(np.mean(window))
            std = float(np.std(window)) or 0.000001
        out.append(s)
    return out


def detect_random(series: list[Series]) -> list[np.ndarray]:
    """NAB's random detector: uniform(0, 1) per row, seed 42 per file."""
    out = []
    for _, v in series:
        rng = random.Random(42)
        out.append(np.array([rng.uniform(0, 1) for _ in range(v.size)]))
    return out


def detect_null(series: list[Series]) -> list[np.ndarray]:
    return [np.full(v.size, 0.5) for _, v in series]


DETECTORS: dict[str, DetectorFn] = {
    "remediator": detect_remediator,
    "production": detect_production,
    "seasonal": detect_seasonal,
    "zscore": detect_zscore,
    "iforest": detect_iforest,
    "windowedGaussian": detect_windowed_gaussian,
    "random": detect_random,
    "null": detect_null,
}


# ----------------------------------------------------------------------------- runner

def _data_root(data: Path) -> Path:
    return data / "data" if (data / "data").is_dir() and not any(data.glob("*/*.csv")) else data


def run_nab(data: Path, out: Path, detector: str) -> dict[str, Any]:
    """Score every ``<category>/<file>.csv`` under ``data`` (a NAB ``data/`` folder or the NAB root)
    with ``detector`` and write NAB results files under ``out/<detector>/``."""
    if detector not in DETECTORS:
        raise ValueError(f"unknown detector {detector!r}; choose one of {', '.join(DETECTORS)}")
    if "_" in detector:
        raise ValueError("a NAB detector name must not contain '_'")
    root = _data_root(Path(data))
    files = sorted(root.glob("*/*.csv"))
    if not files:
        raise FileNotFoundError(f"no <category>/<file>.csv under {root}")
    loaded = [read_nab_csv(p) for p in files]
    t0 = time.perf_counter()
    scores = DETECTORS[detector]([(ts, v) for _, _, ts, v in loaded])
    wall = time.perf_counter() - t0
    rows = 0
    for path, (raw_ts, raw_v, _, v), s in zip(files, loaded, scores, strict=True):
        s = np.clip(np.nan_to_num(np.asarray(s, dtype=np.float64), nan=0.0), 0.0, 1.0)
        target = Path(out) / detector / path.parent.name / f"{detector}_{path.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["timestamp", "value", "anomaly_score"])
            for t, x, a in zip(raw_ts, raw_v, s.tolist(), strict=True):
                w.writerow([t, x, repr(a)])
        rows += v.size
    return {"detector": detector, "files": len(files), "rows": rows, "detect_wall_s": round(wall, 3),
            "out": str(Path(out) / detector)}
