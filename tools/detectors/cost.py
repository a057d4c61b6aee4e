"""Cost anomalies of each workload's $/h series: four tests in a fixed order, one finding.

1. **Cost per replica** (where the replica count is known): $/h divided by the running replicas.
   Autoscaler steps do not move it, so a rise in it (a resource request raised in Git, a dearer
   node type, a price change) is one unbroken window from its onset to the latest sample, whatever
   the autoscaler does meanwhile.
1b. **The torch streaming detector's alarm** (``tools/detectors/anomaly.py``, every series of the
   cycle scored as one batch; the score NAB measures) decides, with the cost gates on top: its
   latest alarm is the onset of an event (after an alarm it stays quiet for half a day, so one
   event raises one alarm), judged against a reference from before the alarm (the pre-alarm
   level per time of day; with less than a day before it, the median of what there is) on the
   mean of the last ``min_duration`` at each sample (the tail). The event **opens** once it has
   lasted ``min_duration``, its mean since the alarm is ``min_ratio`` above the reference and its
   tail is high (above half the ratio gate, and above what the tail exceeded the reference by on
   95 % of the time before the alarm); it is **over** once the tail has not been high for
   ``event_end_s`` (1 h), and an event that is over never decides again (one alarm, one event;
   its incident resolves and stays resolved). In between it is a finding whenever its tail is
   high (hysteresis: the mean since the alarm may sink under the gate as the event goes on). No
   noise gate beyond that: the alarm is the model's judgement. A rise from a reference of about
   $0/h reads as x100. An alarm on a blip, a drop or a rise that has ended decides nothing; when
   the cost was already high in the hour before the alarm (a creep the model alarmed on late), the
   window starts where the level test says the rise began. A rise the model missed (a creep it
   adapted to, a rise in its quiet time after an earlier alarm) is left to tests 2 and 3.
   ``remediator nab --detector production`` replays this whole function on NAB's series.
2. **Same hour of the previous days** on the total $/h: expected = median of the values at the same
   time of day on the previous days (up to ``seasonal_days``; at least 2, else the median of the
   24 h before); noise = 1.4826 x MAD of the residuals before the last day, but never more than
   what ``replica_step`` + 1/2 replicas imply at ``z`` sigmas (cost moves in whole replicas: the
   MAD of a stepwise series snaps to half or one replica depending on the hour, and a real excess
   of two replicas must not vanish under it). A point is anomalous when it exceeds the expected
   value by ``min_ratio`` and by ``z`` sigmas; the anomalous run that ends at the latest sample must
   last ``min_duration``.
3. **Level shift against a reference from before the change** (creep over days, or a step that
   persists long enough for the same-hour median to absorb it): the 24 h trailing mean finds where
   the sustained rise began; the days before it give a time-of-day reference profile; the last
   24 h (or the time since the change, if shorter) are compared hour for hour with it. A full day
   is compared with a full day, so the outcome does not depend on the hour the cycle runs.

Gates on top, each an explicit ``errors`` entry when it drops a rise (never silent): traffic
explaining the rise (cost ratio / traffic ratio < ``min_ratio``), at most ``replica_step``
replicas above the usual count (autoscaler granularity), the noise gate (tests 1, 2 and 3), and
``min_duration``.
Series with bad values (NaN, infinities, too few samples, irregular timestamps) are counted in
``stats``; irregular timestamps are put on a regular grid at the median step first.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import numpy as np

from memory.records import Finding, Severity
from tools.detectors.anomaly import StreamingAnomalyDetector, latest_alarm, steps_per_day
from tools.detectors.common import Array, InputStats, clean_series, downsample, robust_sigma

DAY_S = 86400.0
MAX_GAP_STEPS = 3
HOURS_PER_MONTH = 730.0
LEVEL_ONSET_FRACTION = 0.1    # the change began where the 24 h mean was last within 10 % of the rise above the reference
PROFILE_HALF_WIDTH_S = 1800.0  # the reference profile at a time of day: median over +-30 min on the reference days
MAX_GRID_GROWTH = 20           # a grid this many times longer than the samples (and over MAX_GRID) is pathological
MAX_GRID = 50_000
MAX_RATIO = 100.0              # test 1b: a rise from a reference of (next to) $0/h reads as this ratio
MIN_REPLICA_COVERAGE = 0.5     # cost per replica is judged when replicas are known for half the cost samples


@dataclass(frozen=True)
class CostSettings:
    min_duration_s: float = 900.0
    min_ratio: float = 1.3
    z: float = 4.0
    seasonal_days: int = 6
    replica_step: float = 1.0   # this many replicas above the usual count at this hour is autoscaling granularity
    tests: tuple[str, ...] = ("per_replica", "streaming", "seasonal", "level_shift")   # which tests may decide
    event_end_s: float = 3600.0   # test 1b: an alarm's event is over after this long back near its reference
    #                               (the daemon passes detection.resolve_after: the quiet time before an incident resolves)


@dataclass(frozen=True)
class WorkloadSeries:
    service: str               # namespace/name
    file: str | None
    ts: object                 # unix seconds, regular grid
    cost: object               # $/h
    replicas: object | None = None
    request_rate: object | None = None
    anomaly_scores: object | None = None      # the torch streaming detector's scores on the same grid
    anomaly_alarm_ts: float | None = None     # when its score last crossed its alarm level
    gpu_util: object | None = None            # mean GPU utilisation in % on the same grid (None: no GPUs)
    gpu_util_alarm_ts: float | None = None    # when the streaming detector last alarmed on it


@dataclass
class _Excursion:
    """One test's verdict on one series: the window [start, last] and the sums that decided it."""

    method: str                # per_replica | streaming | seasonal | level_shift
    start: int
    last: int
    actual: float              # mean of the judged series over the window
    expected: float            # mean of its expectation over the window
    sigma: float
    exp: Array                 # expected value per sample (NaN where none)
    level: dict[str, object] = field(default_factory=dict)
    ref_end: int | None = None     # level shift: the last sample of the reference (before the change)
    cmp_start: int | None = None   # level shift: the compared window starts here (at most one day)

    @property
    def ratio(self) -> float:
        return self.actual / self.expected


def _nanmedian(a: Array, axis: int) -> Array:
    """np.nanmedian along ``axis`` (NaN where a slice has no finite value), by one sort: numpy's own
    takes a masked-array path per call that cost the cycle most of its time."""
    a = np.asarray(a, dtype=np.float64)
    s = np.sort(np.where(np.isfinite(a), a, np.nan), axis=axis)   # NaN sorts last
    c = np.isfinite(a).sum(axis=axis, keepdims=True)
    lo = np.take_along_axis(s, np.maximum((c - 1) // 2, 0), axis=axis)
    hi = np.take_along_axis(s, np.maximum(c // 2, 0), axis=axis)
    hi = np.where(c % 2 == 1, lo, hi)
    return np.squeeze(np.where(c > 0, 0.5 * (lo + hi), np.nan), axis=axis)


def _nanmean(a: Array) -> float:
    return float(np.nanmean(a)) if np.isfinite(a).any() else math.nan


def seasonal_expected(v: Array, period: int, days: int, cols: np.ndarray | None = None) -> tuple[Array, Array]:
    """Expected value per point from the same phase on previous periods (NaN where fewer than two
    exist), and how many references each point had; at the indices ``cols`` along the last axis
    (all points when None). ``v`` is one series [time] or several [series, time] with ``cols``
    [series, k]: a point's expectation reads only the points before it."""
    if cols is None:
        cols = np.arange(v.shape[-1])
    lags = np.full((days, *cols.shape), np.nan)
    for k in range(1, days + 1):
        src = cols - k * period
        ok = src >= 0
        lags[k - 1] = np.where(ok, np.take_along_axis(v, np.where(ok, src, 0), axis=-1), np.nan)
    count = np.sum(np.isfinite(lags), axis=0).astype(np.float64)
    exp = np.where(count >= 2, _nanmedian(lags, axis=0), np.nan)
    return exp, count


def _expected(v: Array, step: float, settings: CostSettings) -> Array:
    period = max(1, int(round(DAY_S / step)))
    exp, _ = seasonal_expected(v, period, settings.seasonal_days)
    return exp


def _expected_or_day_before(v: Array, period: int, days: int, at: slice | None = None) -> Array:
    """The same-hour expectation where two previous days exist, else the median of the day before;
    only at the samples of ``at`` when given (the same values as at those samples of the whole: each
    sample's expectation reads only the samples before it)."""
    n = v.size
    cols = np.arange(n)[at] if at is not None else np.arange(n)
    exp, _ = seasonal_expected(v, period, days, cols)
    missing = ~np.isfinite(exp)
    if missing.any():
        need = np.zeros(n, dtype=bool)
        need[cols[missing]] = True
        exp = np.where(missing, _day_before_level(v, period, need)[cols], exp)
    return exp


def _trailing(v: Array, width: int, min_frac: float = 0.5) -> Array:
    """Trailing mean over ``width`` samples ending at each index along the last axis (NaN until
    ``width`` samples exist or when fewer than ``min_frac`` of them are finite); ``v`` is one
    series [time] or several [series, time]."""
    n = v.shape[-1]
    out = np.full(v.shape, np.nan)
    if n < width or width < 1:
        return out
    ok = np.isfinite(v)
    zero = np.zeros((*v.shape[:-1], 1))
    cs = np.concatenate([zero, np.cumsum(np.where(ok, v, 0.0), axis=-1)], axis=-1)
    cn = np.concatenate([zero.astype(np.int64), np.cumsum(ok, axis=-1)], axis=-1)
    s = cs[..., width:] - cs[..., :-width]
    c = cn[..., width:] - cn[..., :-width]
    with np.errstate(invalid="ignore", divide="ignore"):
        out[..., width - 1:] = np.where(c >= max(1, min_frac * width), s / np.maximum(c, 1), np.nan)
    return out


def _day_before_level(v: Array, period: int, need: np.ndarray | None = None) -> Array:
    """Median of the (up to) 24 h before each sample, where at least 3 finite samples exist; only
    at the samples ``need`` marks (all when None), NaN elsewhere."""
    n = v.size
    level = np.full(n, np.nan)
    if n <= 3:
        return level
    # a median over a sliding window: computed every half hour of a day (48 anchors) and held between
    # them (the fallback only matters for the first two days of a series), all anchors in one call
    stride = max(1, period // 48)
    anchors = np.arange(3, n, stride)
    held = np.minimum(anchors[:, None] + np.arange(stride)[None, :], n)   # the samples each anchor fills
    if need is not None:
        wanted = np.where(held < n, need[np.minimum(held, n - 1)], False).any(axis=1)
        anchors, held = anchors[wanted], held[wanted]
    if anchors.size == 0:
        return level
    windows = np.lib.stride_tricks.sliding_window_view(np.concatenate([np.full(period, np.nan), v]), period)[anchors]
    med = np.full(anchors.size, np.nan)
    ok = np.isfinite(windows).sum(axis=1) >= 3       # windows[j] = v[anchor - period: anchor]
    if ok.any():
        med[ok] = _nanmedian(windows[ok], axis=1)
    inside = held < n
    level[held[inside]] = np.broadcast_to(med[:, None], held.shape)[inside]
    return level


def streaming_alarms(workloads: list[WorkloadSeries], detector: StreamingAnomalyDetector | None = None,
                     ) -> list[WorkloadSeries]:
    """Each workload with the torch streaming detector's scores and latest alarm on its $/h series,
    every series scored as one batch ([series, time], padded to the longest): the deciding path of
    ``detect_cost_anomalies`` without the state the daemon keeps between cycles (agents/scoring.py
    resumes from it instead; by the detector's state contract the scores are the same). A series
    the detector cannot take keeps what it had."""
    rows: list[tuple[WorkloadSeries, Array, Array]] = []
    for w in workloads:
        try:
            ts = np.asarray(w.ts, dtype=np.float64).ravel()
            v = np.asarray(w.cost, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            continue
        if ts.size == v.size and ts.size > 0:
            rows.append((w, ts, v))
    if not rows:
        return list(workloads)
    values = np.full((len(rows), max(ts.size for _, ts, _ in rows)), np.nan)
    for i, (_, _, v) in enumerate(rows):
        values[i, : v.size] = v
    det = detector or StreamingAnomalyDetector()
    scores, _ = det.score(values, lengths=[ts.size for _, ts, _ in rows],
                          steps_per_day=[steps_per_day(ts) for _, ts, _ in rows])
    done = {id(w): replace(w, anomaly_scores=scores[i, : ts.size], anomaly_alarm_ts=latest_alarm(scores[i, : ts.size], ts))
            for i, (w, ts, _) in enumerate(rows)}
    return [done.get(id(w), w) for w in workloads]


def detect_cost_anomalies(
    workloads: list[WorkloadSeries], settings: CostSettings, stats: InputStats | None = None,
) -> list[Finding]:
    stats = stats if stats is not None else InputStats()
    findings: list[Finding] = []
    quiet = _quiet(workloads, settings)
    alarm_only = replace(settings, tests=("streaming",)) if "streaming" in settings.tests else None
    for i, w in enumerate(workloads):
        if i in quiet:
            # tests 1, 2 and 3 cannot find it (nor note anything): only an alarm's event can
            if alarm_only is None or w.anomaly_alarm_ts is None:
                continue
            f = _detect_one(w, alarm_only, stats)
        else:
            f = _detect_one(w, settings, stats)
        if f is not None:
            findings.append(f)
    return findings


SCREEN_ROWS = 1024     # series screened together (bounds the screen's memory)
SCREEN_MARGIN = 1e-9   # the screen passes a series this close to a test's first condition on to the test


def _quiet(workloads: list[WorkloadSeries], settings: CostSettings) -> set[int]:
    """Indices of the workloads that tests 1, 2 and 3 provably give no finding and no ``errors``
    entry, found for the whole cycle at once (numpy over [series, time]) so that those tests run
    only where one of them can fire (test 1b, which judges an alarm's event against the cost before
    the alarm, still runs on a quiet workload with an alarm). Every test is a conjunction whose notes come last, and a rise must pass one
    of two first conditions: "still elevated at its end" (the last ``min_duration`` of samples at
    least half the ratio gate above their same-hour expectation: tests 1 and 2) or "the 24 h
    mean rose by half the ratio gate" (test 3). A workload is quiet when its $/h series (and its
    cost per replica, where test 1 would judge it) fails both. Only series that would reach the
    tests unchanged are screened: timestamps on their grid (as ``regular_grid`` decides, within a
    tenth of a step: _detect_one then keeps them as they are), no infinities, at least 3 finite
    samples, two previous days at the same hour for the tail; anything else (and a series within
    SCREEN_MARGIN of a condition) goes to the tests. tests/unit/test_cost_screen.py checks the
    findings and notes are those of the tests alone."""
    rows: dict[tuple[int, float], list[tuple[int, Array, Array]]] = {}
    quiet: set[int] = set()
    for i, w in enumerate(workloads):
        cs = clean_series(w.ts, w.cost)
        if cs is None:
            continue
        ts, v = cs
        finite = np.isfinite(v)
        if finite.sum() < 3 or np.isinf(np.asarray(w.cost, dtype=np.float64)).any():
            continue
        d = np.diff(ts)
        step = float(d[0])
        if not (d == step).all():      # (equal steps: on their grid, and their median is that step)
            grid, _, off = regular_grid(ts)
            if off or grid.size != ts.size:
                continue    # _detect_one would put it on a grid first (and name it): left to the tests
            step = float(np.median(d))     # exactly the step _detect_one computes
        if int(np.nonzero(finite)[0][-1]) < v.size - 1 - MAX_GAP_STEPS:
            quiet.add(i)    # no recent data: _detect_one returns without a note
            continue
        judged = [v]
        if w.replicas is not None and "per_replica" in settings.tests:
            rc = clean_series(w.ts, w.replicas)
            if rc is not None:
                pos = np.isfinite(rc[1]) & (rc[1] > 0)
                if (pos & finite).sum() >= MIN_REPLICA_COVERAGE * finite.sum():
                    judged.append(np.where(pos, v / np.where(pos, rc[1], 1.0), np.nan))
        rows.setdefault((v.size, step), []).extend((i, x, ts) for x in judged)
    for (_, step), group in rows.items():
        period = max(1, int(round(DAY_S / step)))
        can_fire: dict[int, bool] = {}
        for c in range(0, len(group), SCREEN_ROWS):
            chunk = group[c: c + SCREEN_ROWS]
            x = np.stack([r[1] for r in chunk])
            fire = _may_rise(x, np.stack([r[2] for r in chunk]), step, period, settings)
            for (i, _, _), f in zip(chunk, fire, strict=True):
                can_fire[i] = can_fire.get(i, False) or bool(f)
        quiet.update(i for i, f in can_fire.items() if not f)
    return quiet


def _may_rise(x: Array, ts: Array, step: float, period: int, settings: CostSettings) -> np.ndarray:
    """Per row of ``x`` [series, time] (each with at least 3 finite samples, at the times ``ts``
    [series, time] on a grid of ``step``): False only where both first conditions of the tests
    fail (``_quiet``)."""
    s, n = x.shape
    half = 1 + 0.5 * (settings.min_ratio - 1)
    fin = np.isfinite(x)
    last = n - 1 - np.argmax(fin[:, ::-1], axis=1)
    r = np.arange(s)
    # "still elevated at its end" (``_seasonal``): the last k samples against their same-hour expectation
    k = max(1, int(math.ceil(settings.min_duration_s / step)))
    sure = last + 1 - k >= 0
    if k > 1:
        sure &= ts[r, last] - ts[r, np.maximum(last + 2 - k, 0)] + step < settings.min_duration_s
    cols = np.clip(last[:, None] + 1 - k + np.arange(k)[None, :], 0, n - 1)
    exp, count = seasonal_expected(x, period, settings.seasonal_days, cols)
    sure &= (count >= 2).all(axis=1)       # else the day-before fallback: not screened
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)    # a tail of NaN only: its mean is NaN, as _nanmean's
        m_v = np.nanmean(np.take_along_axis(x, cols, axis=1), axis=1)
        m_e = np.nanmean(exp, axis=1)
        bar = m_e * half
        elevated_fails = np.isfinite(m_e) & ~(m_v >= bar - SCREEN_MARGIN * np.abs(bar))
    fire: np.ndarray = (last + 1 - k >= 0) & ~(sure & elevated_fails)   # fewer than k samples: no window lasts min_duration
    # "the 24 h mean rose by half the ratio gate" (``_level_shift``)
    if n >= 2 * period + 1:
        d = _trailing(x, period)
        ref0 = _nanmedian(d[:, period - 1: 2 * period], axis=1)
        d_now = d[r, last]
        with np.errstate(invalid="ignore"):
            bar = ref0 * half
            fire |= np.isfinite(ref0) & np.isfinite(d_now) & (ref0 > 0) & (d_now >= bar - SCREEN_MARGIN * np.abs(bar))
    return fire


def regular_grid(ts: Array) -> tuple[Array, np.ndarray, bool]:
    """The regular grid at the median step that ends at the latest timestamp, each sample's slot on
    it, and whether the timestamps were off the grid (more than 10 % of a step)."""
    step = float(np.median(np.diff(ts)))
    k = np.rint((ts[-1] - ts) / step).astype(np.int64)
    off = bool(np.any(np.abs((ts[-1] - ts) / step - k) > 0.1) or np.any(np.diff(k) == 0))
    n = int(k[0]) + 1
    grid = ts[-1] - step * np.arange(n)[::-1]
    return grid, (n - 1 - k), off


def _on_grid(slots: np.ndarray, n: int, values: Array) -> Array:
    """Values placed on their slots (means where several samples share one, NaN where none)."""
    s = np.zeros(n)
    c = np.zeros(n)
    ok = np.isfinite(values)
    np.add.at(s, slots[ok], values[ok])
    np.add.at(c, slots[ok], 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(c > 0, s / np.maximum(c, 1), np.nan)


def _aligned(w: WorkloadSeries, x: object, slots: np.ndarray | None, n: int) -> Array | None:
    """Another series of the workload on the cost series' grid (None when unusable)."""
    if x is None:
        return None
    cs = clean_series(w.ts, x)
    if cs is None:
        return None
    v = cs[1]
    return v if slots is None else _on_grid(slots, n, v)


def _detect_one(w: WorkloadSeries, settings: CostSettings, stats: InputStats) -> Finding | None:
    what = f"cost {w.service}"
    cs = clean_series(w.ts, w.cost)
    if cs is None:
        stats.reject(what, "series unusable (empty, one sample, wrong shape or unsorted time)")
        return None
    ts, v = cs
    if np.isfinite(v).sum() < 3:
        stats.reject(what, f"{int(np.isfinite(v).sum())} finite sample(s) of {v.size} (NaN or infinite values): "
                           "nothing to judge")
        return None
    n_inf = int(np.sum(np.isinf(np.asarray(w.cost, dtype=np.float64))))
    if n_inf:   # a missed scrape is a NaN gap (normal); an infinity is a broken query or exporter
        stats.reject(what, f"{n_inf} infinite value(s) treated as gaps")
    grid, slots, off = regular_grid(ts)
    if grid.size > max(MAX_GRID_GROWTH * ts.size, MAX_GRID):
        stats.reject(what, f"timestamps too sparse for their median step ({grid.size} slots for {ts.size} "
                           "samples): nothing to judge")
        return None
    align: np.ndarray | None = None
    if off or grid.size != ts.size:
        # missing rows become NaN slots (so "the same time yesterday" stays a day back); timestamps
        # off the grid are named, a plain gap is not
        if off:
            stats.reject(what, f"irregular timestamps: put on a regular {float(np.median(np.diff(ts))):g} s grid")
        v = _on_grid(slots, grid.size, v)
        ts = grid
        align = slots
    n = v.size
    finite = np.isfinite(v)
    step = float(np.median(np.diff(ts)))
    last = int(np.nonzero(finite)[0][-1])
    if last < n - 1 - MAX_GAP_STEPS:
        return None  # no recent data: the workload is gone or not scraped; nothing current to judge
    period = max(1, int(round(DAY_S / step)))
    reps = _aligned(w, w.replicas, align, n)
    rate = _aligned(w, w.request_rate, align, n)
    notes: list[str] = []

    exc: _Excursion | None = None
    unit_price = math.nan
    if reps is not None:
        pos = np.isfinite(reps) & (reps > 0)
        if (pos & finite).sum() >= MIN_REPLICA_COVERAGE * finite.sum():
            unit = np.where(pos, v / np.where(pos, reps, 1.0), np.nan)
            unit_price = float(np.nanmedian(unit[: max(1, n - period)])) if np.isfinite(
                unit[: max(1, n - period)]).any() else float(np.nanmedian(unit))
            if "per_replica" in settings.tests:
                exc = _per_replica(unit, reps, v, ts, step, period, settings, notes)
    streaming_notes: list[str] = []
    onset = _alarm_onset(w.anomaly_alarm_ts, ts, last)
    if exc is None and onset is not None and "streaming" in settings.tests:
        exc = _event(v, ts, step, period, settings, onset)
        if exc is not None and not _gates(exc, w, v, reps, rate, ts, step, settings, unit_price, streaming_notes):
            exc = None
    if exc is None and "seasonal" in settings.tests:
        exc = _seasonal(v, ts, step, period, settings, unit_price, notes)
        if exc is not None and not _gates(exc, w, v, reps, rate, ts, step, settings, unit_price, notes):
            exc = None
    if exc is None and "level_shift" in settings.tests:
        exc = _level_shift(v, ts, step, period, settings, notes)
        if exc is not None and not _gates(exc, w, v, reps, rate, ts, step, settings, unit_price, notes):
            exc = None
    if exc is None:
        for note in notes or streaming_notes:
            stats.reject(what, note)
        return None
    if exc.method in ("streaming", "seasonal"):   # a creep or a step that persists: say since when and how much per day too
        lvl = _level_shift(v, ts, step, period, settings, [])
        if lvl is not None:
            if exc.method == "streaming" and lvl.start < exc.start and _risen_before(exc, v, step, settings) and _gates(
                    lvl, w, v, reps, rate, ts, step, settings, unit_price, []):
                exc = lvl   # the alarm came late in a rise that began before it: the window starts where the rise did
            else:
                exc.level["level_shift"] = lvl.level["level_shift"]
    return _finding(w, exc, ts, v, reps, rate, step, settings, align)


def _seasonal(v: Array, ts: Array, step: float, period: int, settings: CostSettings, unit_price: float,
              notes: list[str], method: str = "seasonal", label: str = "cost") -> _Excursion | None:
    """Test 2 (also test 1 on the cost per replica): the same hour on the previous days. The
    excursion starts where the CUSUM of the relative excess last left zero."""
    n = v.size
    last = int(np.nonzero(np.isfinite(v))[0][-1])
    k_tail = max(1, int(math.ceil(settings.min_duration_s / step)))
    if last + 1 - k_tail < 0:
        return None   # less than min_duration of samples: no window can last that long
    if k_tail == 1 or ts[last] - ts[last + 2 - k_tail] + step < settings.min_duration_s:
        # the usual case (a regular grid): a window that starts later than last + 1 - k_tail is
        # shorter than min_duration, so every window that can decide holds the last k_tail samples
        # and "still elevated at its end" reads exactly them; checked first, on those samples'
        # expectation alone, because it rejects most series (computing the rest is the cost)
        tail0 = slice(last + 1 - k_tail, last + 1)
        if not _nanmean(v[tail0]) >= _nanmean(_expected_or_day_before(v, period, settings.seasonal_days, tail0)) * (
                1 + 0.5 * (settings.min_ratio - 1)):
            return None
    exp = _expected_or_day_before(v, period, settings.seasonal_days)
    resid = v - exp
    sigma = robust_sigma(resid[: max(0, n - period)]) if n > period else robust_sigma(resid)
    base_level = float(np.nanmedian(v))
    sigma = max(sigma, 0.01 * abs(base_level), 1e-9)
    if math.isfinite(unit_price) and unit_price > 0:
        # cost moves in whole replicas: the noise gate may hold back at most replica_step + 1/2 of them
        sigma = min(sigma, max((settings.replica_step + 0.5) * unit_price / settings.z, 0.01 * abs(base_level), 1e-9))
    start = _cusum_start(v, exp, settings.min_ratio, last)
    if start is None or ts[last] - ts[start] + step < settings.min_duration_s:
        return None   # no current excursion, or one shorter than min_duration (a blip)
    win = slice(start, last + 1)
    actual, expected = _nanmean(v[win]), _nanmean(exp[win])
    if not math.isfinite(expected) or expected <= 0 or actual < expected * settings.min_ratio:
        return None
    tail = slice(max(start, last + 1 - max(1, int(math.ceil(settings.min_duration_s / step)))), last + 1)
    if not _nanmean(v[tail]) >= _nanmean(exp[tail]) * (1 + 0.5 * (settings.min_ratio - 1)):
        return None   # the excursion has ended (its last min_duration is back near the usual cost)
    if actual - expected < settings.z * sigma:
        notes.append(f"{label} x{actual / expected:.2f} for {(ts[last] - ts[start] + step) / 60:.0f} min is "
                     f"{actual - expected:.4g}/h above the same hours on previous days, within {settings.z:g} robust "
                     f"sigmas (sigma {sigma:.4g}/h): below the noise gate")
        return None
    return _Excursion(method=method, start=start, last=last, actual=actual, expected=expected, sigma=sigma, exp=exp)


def _event(v: Array, ts: Array, step: float, period: int, settings: CostSettings, onset: int) -> _Excursion | None:
    """Test 1b: the streaming detector's latest alarm decides. Its event runs from the alarm (``onset``)
    against a reference from before it (the pre-alarm level per time of day, from the days before the
    alarm; with less than a day before it, the median of what there is). Judged on the mean of the last
    ``min_duration`` at each sample (the tail): the event **opens** at the first sample where it has
    lasted ``min_duration``, its mean since the alarm is ``min_ratio`` above the reference and the tail
    is above half that gate; it is **over** once the tail has stayed below half the gate for
    ``event_end_s`` (one alarm, one event: an event that ended never decides again). A finding while
    it has opened, is not over and its tail is above half the gate now (hysteresis: the mean since the
    alarm may sink under the gate as the event goes on; a dip shorter than ``event_end_s`` pauses the
    finding, as correlate's quiet time keeps the incident). No noise gate: the model's alarm is the
    judgement that this is not the series' usual noise."""
    last = int(np.nonzero(np.isfinite(v))[0][-1])
    if ts[last] - ts[onset] + step < settings.min_duration_s:
        return None
    half = 1 + 0.5 * (settings.min_ratio - 1)
    k = max(1, int(math.ceil(settings.min_duration_s / step)))
    if last + 1 - onset >= k:
        # the tail must be high at the end: checked first on the last k samples' reference alone (most
        # alarmed series fail it; computing the whole reference is the cost)
        end = _pre_alarm_reference(v, onset, last, period, step, only=k)
        tail = slice(last + 1 - k, last + 1)
        if end is None:
            return None
        both = np.isfinite(v[tail]) & np.isfinite(end[tail])
        if not both.any() or not v[tail][both].mean() >= end[tail][both].mean() * half:
            return None
    exp = _pre_alarm_reference(v, onset, last, period, step)
    if exp is None:
        return None
    x, e = v[onset: last + 1], exp[onset: last + 1]
    ok = np.isfinite(x) & np.isfinite(e)
    # running sums since the alarm (where both are known): the tail at each sample is the mean of its
    # last k (fewer at the start: what there is since the alarm); NaN where the tail holds no sample
    cx, ce, cn = (np.concatenate([[0.0], np.cumsum(np.where(ok, a, 0.0))]) for a in (x, e, ok.astype(np.float64)))
    hi = np.arange(1, x.size + 1)
    lo = np.maximum(hi - k, 0)
    cnt = cn[hi] - cn[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        t_mean = np.where(cnt > 0, (cx[hi] - cx[lo]) / np.maximum(cnt, 1), np.nan)
        t_exp = np.where(cnt > 0, (ce[hi] - ce[lo]) / np.maximum(cnt, 1), np.nan)
    pre = v[:onset] - exp[:onset]
    # what the tail usually exceeds its reference by before the alarm (its 95th percentile): a tail no
    # higher than that is the series' usual noise (a bursty series over a reference of 0 included)
    pre_tail = _trailing(pre, k, 1e-9)
    usual = float(np.nanpercentile(pre_tail, 95)) if np.isfinite(pre_tail).sum() >= 4 * k else 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        high = (t_mean >= t_exp * half) & (t_mean - t_exp > max(usual, 0.0))   # NaN (no sample in the tail): not high
        run_ratio = cx[1:] / ce[1:]                         # the mean since the alarm over its reference's (inf from 0)
    lasted = ts[onset: last + 1] - ts[onset] + step >= settings.min_duration_s
    opens = np.nonzero(lasted & high & (run_ratio >= settings.min_ratio))[0]   # (high: the tail holds a sample)
    if opens.size == 0 or not high[-1]:
        return None
    # over: a stretch of event_end_s whose tails were all low (missing samples neither end nor break it)
    low_t = ts[onset: last + 1][np.isfinite(t_mean) & ~high]
    high_t = ts[onset: last + 1][high]
    if low_t.size:
        prev_high = np.concatenate([[ts[onset] - step], high_t])[np.searchsorted(high_t, low_t)]
        if (low_t - prev_high >= settings.event_end_s).any():
            return None   # the event ended: this alarm has decided all it can
    win = slice(onset, last + 1)
    actual, expected = _nanmean(v[win][ok]), _nanmean(exp[win][ok])
    if not (math.isfinite(actual) and math.isfinite(expected)) or actual <= 0:
        return None
    # spend from (next to) nothing: the reference counts as 1 % of the spend now (the ratio reads x100)
    expected = max(expected, actual / MAX_RATIO)
    sigma = max(robust_sigma(pre) if np.isfinite(pre).sum() >= 3 else 0.0, 0.01 * abs(expected), 1e-9)
    return _Excursion(method="streaming", start=onset, last=last, actual=actual, expected=expected, sigma=sigma,
                      exp=exp)


def _risen_before(exc: _Excursion, v: Array, step: float, settings: CostSettings) -> bool:
    """True when the cost was already above half the ratio gate over test 1b's reference in the hour
    before its alarm: the alarm came late in a rise (a creep) that began earlier."""
    hour = slice(max(0, exc.start - max(1, int(round(3600 / step)))), exc.start)
    return bool(_nanmean(v[hour]) >= _nanmean(exc.exp[hour]) * (1 + 0.5 * (settings.min_ratio - 1)))


def _pre_alarm_reference(v: Array, onset: int, last: int, period: int, step: float,
                         only: int | None = None) -> Array | None:
    """Expected value per sample from before ``onset``: the time-of-day profile of the days before it
    when a full day precedes it, and the median of the samples before it (at least three, an hour or
    more) where that profile has nothing; None when neither exists. With ``only``, at the last
    ``only`` samples alone (the same values there; NaN elsewhere)."""
    before = v[:onset]
    fin = np.isfinite(before)
    flat = float(np.median(before[fin])) if fin.sum() >= 3 and onset * step >= 3600 else math.nan
    exp: Array = np.full(v.size, flat)
    if onset >= period and fin.sum() >= period // 2:
        profile, phase = _reference_profile(v, onset - 1, last, period, step, only)
        prof = profile[phase]
        exp = np.where(np.isfinite(prof), prof, exp)
    if only is not None:
        exp[: max(0, last + 1 - only)] = np.nan
    return exp if np.isfinite(exp[onset: last + 1]).any() else None


def _alarm_onset(alarm_ts: float | None, ts: Array, last: int) -> int | None:
    """The grid slot of the streaming detector's latest alarm (its onset of the current event: after
    an alarm the detector stays quiet for REFRACTORY_DAYS, so one event raises one alarm); None when
    there is none inside the series."""
    if alarm_ts is None or not math.isfinite(float(alarm_ts)):
        return None
    t = float(alarm_ts)
    if t < float(ts[0]) or t > float(ts[last]):
        return None
    return min(int(np.searchsorted(ts, t - 1e-6)), last)


def _cusum_start(v: Array, exp: Array, min_ratio: float, last: int) -> int | None:
    """Where the excursion that reaches the latest sample began, by Page's CUSUM of the relative
    excess v / exp - 1 with a reference of half the ratio gate: a sample or two back at the usual
    cost does not end it, a return to the usual cost for long does. None when it is not running
    at ``last``. More than MAX_GAP_STEPS missing samples in a row restart it. (Vectorised: with
    C the running sum since the last restart, the statistic is C - min(0, min C so far).)"""
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(np.isfinite(v) & np.isfinite(exp) & (exp > 0), v / np.where(exp > 0, exp, 1.0) - 1.0, np.nan)
    r = r[: last + 1]
    fin = np.isfinite(r)
    missing = np.cumsum(~fin)
    gap = missing - np.maximum.accumulate(np.where(fin, missing, 0))   # missing samples in a row up to here
    restarts = np.nonzero(gap > MAX_GAP_STEPS)[0]
    begin = int(restarts[-1]) + 1 if restarts.size else 0
    pos = begin + np.nonzero(fin[begin:])[0]
    if pos.size == 0:
        return None
    c = np.cumsum(r[pos] - 0.5 * (min_ratio - 1.0))
    stat = c - np.minimum(0.0, np.minimum.accumulate(c))
    back = stat <= 1e-9   # back at the usual cost (a tolerance: a sum that returns to 0 exactly may round either way)
    if back[-1]:
        return None
    zeros = np.nonzero(back)[0]
    return int(pos[zeros[-1] + 1]) if zeros.size else int(pos[0])


def _per_replica(unit: Array, reps: Array, v: Array, ts: Array, step: float, period: int, settings: CostSettings,
                 notes: list[str]) -> _Excursion | None:
    """Test 1: the cost of one replica, by the same-hour test and else the level test. The window
    and ratio are those of the cost per replica; ``actual``/``expected`` are restated in total $/h
    (the expected cost is the usual price per replica times the replicas that ran)."""
    sub: list[str] = []
    exc = _seasonal(unit, ts, step, period, settings, math.nan, sub, method="per_replica", label="cost per replica")
    if exc is None:
        exc = _level_shift(unit, ts, step, period, settings, sub, label="cost per replica")
        if exc is not None:
            exc.method = "per_replica"
    if exc is None:
        notes.extend(sub)
        return None
    if exc.ratio < settings.min_ratio:
        notes.append(f"cost per replica x{exc.ratio:.2f} is below x{settings.min_ratio:g}")
        return None
    win = slice(exc.start, exc.last + 1)
    unit_now, unit_exp = exc.actual, exc.expected
    actual = _nanmean(v[win])
    expected = actual / exc.ratio
    exc.level = {**exc.level, "per_replica": {"cost_usd_per_hour_per_replica": round(unit_now, 4),
                                              "expected_usd_per_hour_per_replica": round(unit_exp, 4),
                                              "replicas_mean": round(_nanmean(reps[win]), 2)}}
    exc.sigma = exc.sigma * max(1.0, _nanmean(reps[win]))
    exc.actual, exc.expected = actual, expected
    return exc


def _level_shift(x: Array, ts: Array, step: float, period: int, settings: CostSettings, notes: list[str],
                 label: str = "cost") -> _Excursion | None:
    """Test 3: the last day (or the time since the change) against a time-of-day reference from the
    days before the change. None when the series shows no sustained rise of its 24 h mean, or when
    fewer than one full day precedes the change."""
    n = x.size
    if n < 2 * period + 1:
        return None
    last = int(np.nonzero(np.isfinite(x))[0][-1])
    d = _trailing(x, period)
    ref0 = float(np.nanmedian(d[period - 1: 2 * period])) if np.isfinite(d[period - 1: 2 * period]).any() else math.nan
    d_now = d[last]
    if not (math.isfinite(ref0) and math.isfinite(d_now)) or ref0 <= 0:
        return None
    rise = d_now - ref0
    if d_now < ref0 * (1 + 0.5 * (settings.min_ratio - 1)):
        return None   # no sustained rise of the daily mean (screen at half the ratio gate)
    thr = ref0 + LEVEL_ONSET_FRACTION * rise
    below = np.nonzero(np.isfinite(d[: last + 1]) & (d[: last + 1] <= thr))[0]
    below = below[below >= period - 1]
    if below.size == 0:
        return None
    ref_end = int(below[-1])       # the 24 h ending here were still at the reference level
    if ref_end >= last:
        return None
    profile, phase = _reference_profile(x, ref_end, last, period, step)
    exp = profile[phase]
    exp[: ref_end + 1] = np.nan
    w0 = max(ref_end + 1, last - period + 1)
    win = slice(w0, last + 1)
    actual, expected = _nanmean(x[win]), _nanmean(exp[win])
    if not (math.isfinite(actual) and math.isfinite(expected)) or expected <= 0:
        return None
    excess = actual - expected
    # noise: how much the 24 h mean moved on the reference days; never below 1 % of the level
    sigma = max(robust_sigma(d[period - 1: ref_end + 1]), 0.01 * abs(ref0), 1e-9)
    # since when: the hinge (flat, then rising linearly) that best fits the hourly mean of x minus the
    # reference profile, searched hourly from a day before the reference's end; a step shows as a
    # hinge at the step, a creep at its onset (the 24 h mean would put a creep's onset half a day late)
    hour = max(1, int(round(3600 / step)))
    dev = _trailing(x - profile[phase], hour)
    since = _hinge(dev, ts, max(hour - 1, ref_end - period), last, hour)
    since = max(0, min(since, w0))
    dur = ts[last] - ts[since] + step
    if dur < settings.min_duration_s:
        return None
    ratio = actual / expected
    recent = slice(max(w0, last + 1 - max(hour, int(math.ceil(settings.min_duration_s / step)))), last + 1)
    if not _nanmean(x[recent] - exp[recent]) >= 0.5 * excess:
        return None   # the rise is not sustained to the latest sample: an excursion that ended
    if ratio < settings.min_ratio:
        return None
    if excess < settings.z * sigma:
        notes.append(f"{label}: a rise of {excess:.4g}/h since {_iso(ts[since])} stays within {settings.z:g} sigmas "
                     f"({sigma:.4g}/h) of how much the daily mean moved before it: below the noise gate")
        return None
    per_day = excess / max(dur / DAY_S, 1.0)   # the average rise per day since the change
    level: dict[str, object] = {"level_shift": {
        "since": _iso(ts[since]), "reference_until": _iso(ts[ref_end]),
        "reference_per_hour": round(expected, 4), "current_per_hour": round(actual, 4),
        "compared_hours": round((ts[last] - ts[w0] + step) / 3600, 1),
        "rise_per_hour_per_day": round(per_day, 4),
        "days_since": round(dur / DAY_S, 2)}}
    return _Excursion(method="level_shift", start=since, last=last, actual=actual, expected=expected, sigma=sigma,
                      exp=exp, level=level, ref_end=ref_end, cmp_start=w0)


def _hinge(d: Array, ts: Array, lo: int, hi: int, every: int) -> int:
    """Index of the hinge c that best fits ``d`` on [lo, hi] (sampled every ``every`` samples) by
    a + b * max(0, t - c) with b > 0, in least squares; ``lo`` when nothing fits."""
    idx = np.arange(lo, hi + 1, every)
    idx = idx[np.isfinite(d[idx])]
    if idx.size < 4:
        return lo
    t = (ts[idx] - ts[idx[0]]) / DAY_S
    y = d[idx] - float(np.mean(d[idx]))
    h = np.maximum(0.0, t[None, :] - t[:-2, None])           # one row per candidate hinge
    hc = h - h.mean(axis=1, keepdims=True)
    var = np.sum(hc * hc, axis=1)
    cov = hc @ y
    with np.errstate(invalid="ignore", divide="ignore"):
        gain = np.where((var > 0) & (cov > 0), cov * cov / np.where(var > 0, var, 1.0), -1.0)
    k = int(np.argmax(gain))
    return int(idx[k]) if gain[k] > 0 else lo


def _reference_profile(x: Array, ref_end: int, last: int, period: int, step: float,
                       only: int | None = None) -> tuple[Array, np.ndarray]:
    """Per time of day (phase counted back from ``last``): the median of ``x`` within +-30 min of it
    on the samples up to ``ref_end``; and each sample's phase. With ``only``, the profile is computed
    for the first ``only`` phases (the last ``only`` samples' times of day) and NaN elsewhere."""
    n = x.size
    half = max(0, int(round(PROFILE_HALF_WIDTH_S / step)))
    phase = (last - np.arange(n)) % period
    # the reference as [days back, phase] (sample last - phase - day * period), NaN outside it; each
    # phase's median over its +-half neighbouring columns on every day, one sort per phase
    days = last // period + 1
    idx = last - np.arange(period)[None, :] - period * np.arange(days)[:, None]
    table = np.where((idx >= 0) & (idx <= ref_end), x[np.clip(idx, 0, n - 1)], np.nan)
    rows = np.arange(period if only is None else min(only, period))
    near = (rows[:, None] + np.arange(-half, half + 1)[None, :]) % period
    profile = np.full(period, np.nan)
    profile[rows] = _nanmedian(table[:, near].transpose(1, 0, 2).reshape(rows.size, -1), axis=1)
    return profile, phase


def _gates(exc: _Excursion, w: WorkloadSeries, v: Array, reps: Array | None, rate: Array | None, ts: Array,
           step: float, settings: CostSettings, unit_price: float, notes: list[str]) -> bool:
    """The total-cost gates: traffic explaining the rise, one autoscaler step. False (with a note)
    when one of them drops the excursion."""
    win = slice(exc.start, exc.last + 1)
    ratio = exc.ratio
    if rate is not None and np.isfinite(rate[win]).any():
        r_actual, r_expected = _usual_like(exc, rate, step, settings)
        if math.isfinite(r_expected) and r_expected > 0:
            traffic_ratio = r_actual / r_expected
            exc.level["traffic_ratio"] = round(traffic_ratio, 3)
            if ratio / max(traffic_ratio, 1e-9) < settings.min_ratio:
                notes.append(f"cost x{ratio:.2f} explained by traffic x{traffic_ratio:.2f}")
                return False
    if reps is not None:
        if exc.method == "level_shift" and math.isfinite(unit_price) and unit_price > 0:
            extra = (exc.actual - exc.expected) / unit_price
            if extra <= settings.replica_step + 1e-9:
                notes.append(f"cost x{ratio:.2f} since {_iso(ts[exc.start])} is "
                             f"{extra:.2f} replica(s) on average above the reference, at most {settings.replica_step:g}")
                return False
        elif _one_autoscaler_step(reps, step, settings, win, ratio):
            notes.append(f"cost x{ratio:.2f} is at most {settings.replica_step:g} replica(s) above "
                         "the usual count at this time of day, at the usual cost per replica")
            return False
    return True


def _usual_like(exc: _Excursion, x: Array, step: float, settings: CostSettings) -> tuple[float, float]:
    """``x`` over the excursion's compared window, and what it usually is there by the excursion's
    own reference: the same hours before the change for a level shift, else the same hours on
    previous days (else the day before)."""
    if exc.method == "level_shift" and exc.ref_end is not None and exc.cmp_start is not None:
        period = max(1, int(round(DAY_S / step)))
        profile, phase = _reference_profile(x, exc.ref_end, exc.last, period, step)
        win = slice(exc.cmp_start, exc.last + 1)
        return _nanmean(x[win]), _nanmean(profile[phase][win])
    win = slice(exc.start, exc.last + 1)
    return _nanmean(x[win]), _usual(x, step, settings, win)


def _usual(x: Array, step: float, settings: CostSettings, win: slice) -> float:
    """What ``x`` usually is over ``win``: the same hours on previous days, else the median of the
    day before the window; NaN when neither is known."""
    exp = _expected(x, step, settings)[win]
    if np.isfinite(exp).any():
        return float(np.nanmean(exp))
    day_before = x[max(0, win.start - int(round(DAY_S / step))): win.start]
    return float(np.nanmedian(day_before)) if np.isfinite(day_before).any() else math.nan


def _one_autoscaler_step(r: Array, step: float, settings: CostSettings, win: slice, ratio: float) -> bool:
    """True when the rise is one autoscaler step: at most ``replica_step`` replicas more than at the
    same time on previous days (else than over the day before), each costing what it usually does.
    With two or three replicas one more is already x1.3-1.5 of the cost, and normal."""
    r_now = _nanmean(r[win])
    r_exp = _usual(r, step, settings, win)
    if not (math.isfinite(r_now) and math.isfinite(r_exp)) or r_now <= 0 or r_exp <= 0:
        return False
    return r_now - r_exp <= settings.replica_step + 1e-9 and ratio * r_exp / r_now < settings.min_ratio


def _finding(w: WorkloadSeries, exc: _Excursion, ts: Array, v: Array, reps: Array | None, rate: Array | None,
             step: float, settings: CostSettings, align: np.ndarray | None) -> Finding:
    start, last = exc.start, exc.last
    win = slice(start, last + 1)
    duration = float(ts[last] - ts[start] + step)
    actual, expected, ratio, sigma = exc.actual, exc.expected, exc.ratio, exc.sigma
    extra = {k: v_ for k, v_ in exc.level.items() if k != "traffic_ratio"}
    evidence: dict[str, object] = {
        "method": exc.method,
        "window": {"start": _iso(ts[start]), "end": _iso(ts[last]), "minutes": round(duration / 60, 1)},
        "cost_usd_per_hour": round(actual, 4),
        "expected_usd_per_hour": round(expected, 4),
        "expected_range_usd_per_hour": [round(max(0.0, expected - settings.z * sigma), 4),
                                        round(max(expected * settings.min_ratio, expected + settings.z * sigma), 4)],
        "ratio": round(ratio, 3),
        "extra_usd_per_month": round((actual - expected) * HOURS_PER_MONTH, 2),
        "robust_sigma_usd_per_hour": round(sigma, 5),
        "points": downsample(ts, v, 48),
        **extra,
    }
    if "traffic_ratio" in exc.level:
        evidence["traffic_ratio"] = exc.level["traffic_ratio"]
    elif rate is not None and np.isfinite(rate[win]).any():
        r_actual, r_expected = _usual_like(exc, rate, step, settings)
        if math.isfinite(r_expected) and r_expected > 0:
            evidence["traffic_ratio"] = round(r_actual / r_expected, 3)
    if reps is not None:
        before = reps[:start]
        if np.isfinite(before).any():
            evidence["replicas_before_p95"] = float(np.nanpercentile(before, 95))
            evidence["replicas_before_median"] = float(np.nanmedian(before))
        if np.isfinite(reps[win]).any():
            evidence["replicas_now"] = float(np.nanmax(reps[win]))
    n = v.size
    evidence.update(_gpu_util_evidence(w, _aligned(w, w.gpu_util, align, n), step, settings, win, float(ts[start])))
    if w.anomaly_scores is not None:
        sc = _aligned(w, w.anomaly_scores, align, n)
        if sc is not None and sc.shape == v.shape:
            evidence["anomaly_score_max"] = round(float(np.nanmax(sc[win])) if np.isfinite(sc[win]).any() else 0.0, 4)
        if w.anomaly_alarm_ts is not None and w.anomaly_alarm_ts >= float(ts[start]) - 3600:
            evidence["anomaly_alarm_at"] = _iso(w.anomaly_alarm_ts)
    z_now = (actual - expected) / sigma
    severity: Severity = "critical" if ratio >= 2.5 else "warning"
    confidence = float(min(1.0, 0.5 + 0.5 * min(1.0, duration / (4 * settings.min_duration_s))
                           * max(0.0, min(1.0, z_now / (2 * settings.z)))))
    if "anomaly_alarm_at" in evidence:  # the streaming detector saw the onset too
        confidence = max(confidence, 0.9)
    name = w.service
    how = {"per_replica": "per replica ", "level_shift": "", "seasonal": "", "streaming": ""}[exc.method]
    since = ""
    ls = exc.level.get("level_shift")
    if isinstance(ls, dict):
        rate_txt = (f", +${ls['rise_per_hour_per_day']:.2f}/h per day"
                    if isinstance(ls.get("rise_per_hour_per_day"), float) else "")
        since = f" (a sustained rise since {ls['since']}{rate_txt})"
    return Finding(
        kind="cost_anomaly", service=name, severity=severity, detector=f"cost.{exc.method}",
        confidence=round(confidence, 3), file=w.file,
        summary=(f"{name} costs ${actual:.2f}/h, x{ratio:.2f} its expected ${expected:.2f}/h {how}"
                 f"for {duration / 60:.0f} min{since} (about ${(actual - expected) * HOURS_PER_MONTH:,.0f}/month extra)"),
        evidence=evidence,
    )


def _gpu_util_evidence(w: WorkloadSeries, u: Array | None, step: float, settings: CostSettings, win: slice,
                       start_ts: float) -> dict[str, object]:
    """What the GPUs did during the excursion: busy extra spend (utilisation rose with it) reads
    differently from idle extra spend (more GPUs, the same work spread thinner)."""
    if u is None or u.shape[0] < win.stop or not np.isfinite(u[win]).any():
        return {}
    out: dict[str, object] = {"gpu_util_percent": round(float(np.nanmean(u[win])), 1)}
    usual = _usual(u, step, settings, win)
    if math.isfinite(usual):
        out["gpu_util_expected_percent"] = round(usual, 1)
    if w.gpu_util_alarm_ts is not None and w.gpu_util_alarm_ts >= start_ts - 3600:
        out["gpu_util_alarm_at"] = _iso(w.gpu_util_alarm_ts)
    return out


def _iso(t: float) -> str:
    return datetime.fromtimestamp(float(t), UTC).isoformat().replace("+00:00", "Z")
