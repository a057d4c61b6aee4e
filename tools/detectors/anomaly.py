"""Streaming cost/utilisation anomaly scores in torch: every series of a cycle as one batch.

``StreamingAnomalyDetector.score(values [S, T], ...) -> (scores [S, T] in [0, 1], state)``

The method (chosen on NAB evidence, see bench/README.md) is an ensemble of four causal
"surprise" signals per series, each turned into an anomaly likelihood, with gates and alarm
suppression:

1. level: |x - m| / s, with m an EWMA of the series and s an EWMA of the winsorised |x - m|;
2. seasonal: |x - x(t - P)| / s_P, P = steps per day (skipped when unknown or not yet seen; a
   missing x(t - P) is replaced by the mean of x(t - P -+ 1), else the one that exists);
3. change: |x - x_prev| / s_D, the jump from the previous sample;
4. weekly: |x - x(t - 7P)| / s_W, once a week has been seen.

Each surprise z is squashed (log1p) and averaged over a few samples (short EWMA; shorter for the
change feature, whose jumps last one sample); its long-run
mean and variance (slow EWMA, about Numenta's 8640-sample history) give a Gaussian tail
probability (Numenta's anomaly likelihood; the tail is computed directly with erfc so it keeps
its precision in float32). Gates drop what is not news:

- record gate: a feature counts only while its averaged surprise exceeds the largest one this
  series has had, that maximum decaying with a half-life of RECORD_HL_DAYS: a smaller burst soon
  after a big one is not news, a bigger one is (the surprise is log-squashed, so "smaller" must be
  clearly smaller: half the jump is forgotten within a few days);
- seasonal gates: when the daily (weekly) signal exists, a point counts only if it is also news
  against the same time one day (one week) earlier: that feature's tail, after the record gate,
  below 1 - SEASON_GATE (so the day-ago surprise must itself beat its own record; the same rule on
  the ungated tail lets ~3x more false alarms through on NAB, bench/README.md);
- time-of-day gate: once a day has been seen, a value inside the range of the values at the same
  time of day (+- TOD_HALF_WIDTH samples) on the last TOD_DAYS days, widened by SPATIAL_TOL of the
  range seen so far, is not news either (a job that runs at this hour on some days but not daily).

The score is the smallest remaining tail probability, log-scaled (log(p + eps) / log(eps)).
Sampling-rate calibration: the alarm level was set on 5-minute series. A series sampled more coarsely
sees fewer samples per event and per day, and the same event reaches a less extreme tail there (on
30-minute and hourly copies of the NAB subset the corpus-optimal threshold was 0.10-0.29 instead of
ALARM), so it gets a lower evidence bar: its tails are multiplied by
(steps_per_day / CALIBRATION_STEPS_PER_DAY) ** RATE_EXPONENT (< 1; the exponent is chosen on resampled
NAB copies, not derived, and raises the pure-noise alarm rate of hourly series by ~17 %:
bench/README.md). Series at 5 minutes or finer, or without a known day, are unchanged.
A value outside the range seen so far by more than SPATIAL_TOL of that range scores 1
(Numenta's NAB "spatial anomaly"). A series is scored after max(WARMUP samples, one day); every
feature scale is floored at 1 % of the level scale. After a score crosses ``ALARM`` the series is
quiet for REFRACTORY_DAYS (its scores are damped), so a single event is reported once.

Everything is causal (a score uses only the samples up to it), batched over series
([S, T] tensors, float32), runs on cuda when present else CPU, and carries its state between
calls: ``score(a)`` then ``score(b, state=...)`` equals ``score(concat(a, b))`` (exactly on one
device). CPU is the reference; on cuda the scores should agree within 1e-4 absolute (float32
op order differs; an alarm decision right at ALARM may flip) -- not yet measured on a GPU:
tests/unit/test_anomaly.py::test_cuda_matches_cpu_reference checks it where cuda exists.

Input conventions: NaN/inf = missing sample (its score is 0 and it does not update the
model); ``lengths[s]`` = number of leading valid columns of row s (the rest is padding);
``counters`` marks monotone counter series, turned into per-step increases with resets
handled (a drop means the counter restarted from 0). Scale and shift of a series do not
change its scores (up to float rounding). Hyperparameters are fixed here, not per series.

Why one module over ~450 lines: the block precompute and the step recurrence read the same
ring buffers, constants and state layout, and the NAB result files are checked byte-equal after
each change; splitting them would put one numerical method's invariants in two places.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

Scores = npt.NDArray[np.float64]
State = dict[str, Any]

# ---------------------------------------------------------------- fixed hyperparameters
ALPHA_LEVEL = 0.02        # level EWMA (about 50 samples)
ALPHA_SCALE = 0.01        # scale EWMAs (about 100 samples)
WINSOR = 6.0              # scale updates see |residual| clipped at WINSOR x scale
ALPHA_SHORT = 0.15        # short average of the surprise (about 7 samples) ...
ALPHA_SHORT_CHANGE = 0.3  # ... except the change feature's (about 3 samples): a jump is a one-sample event
ALPHA_LONG = 1.0 / 8640   # long-run distribution of the averaged surprise (Numenta: 8640-sample history)
WARMUP = 30               # samples before a series is scored at all
ALARM = 0.5               # score at which an alarm is raised (likelihood 1 - 1e-5)
REFRACTORY_DAYS = 0.5     # quiet time after an alarm, in days when steps_per_day is known ...
REFRACTORY_STEPS = 144    # ... else in samples
DAMP = 0.1                # scores inside the quiet time are multiplied by this
SEASON_MIN_DAYS = 1       # seasonal signal only once one full period is in the buffer
WEEK_DAYS = 7             # weekly signal: the same time this many days earlier
SCALE_FLOOR = 0.01        # feature scales never below 1 % of the level scale
LOG_EPS = 1e-10           # score = log(1 - L + eps) / log(eps)
Z_CAP = 1e4
STATE_VERSION = 3         # 3: the ring buffer is [time, series] (was [series, time])
SPATIAL_TOL = 0.05        # a value beyond the range seen so far by more than this fraction of it
                          # scores 1 (Numenta's NAB "spatial anomaly", same tolerance)
SEASON_GATE = 0.5         # with a seasonal signal, only points whose seasonal likelihood is >= this score
RECORD_GATE = True        # (switches kept for the ablation in bench/README.md)
WEEK_GATE = True          # the seasonal gate also against the same time one week earlier, once a week is seen
RECORD_HL_DAYS = 7.0      # "record" gate: a feature only scores when its averaged surprise beats its own
RECORD_HL_STEPS = 2016    # past maximum, which decays with this half-life (days if known, else samples)
TOD_GATE = True           # time-of-day gate: a value this series already had at this time of day, on one of
TOD_DAYS = 6              # the last TOD_DAYS days (+- TOD_HALF_WIDTH samples around that time), is not news
TOD_HALF_WIDTH = 2
CALIBRATION_STEPS_PER_DAY = 288   # the alarm level was set on 5-minute series (NAB); a series sampled more
RATE_EXPONENT = 3.0               # coarsely has its tails x (steps_per_day / 288) ** RATE_EXPONENT (bench/README.md)


def latest_alarm(scores: object, ts: object) -> float | None:
    """The time of the latest sample whose score reached ALARM (None when none did)."""
    hit = np.nonzero(np.asarray(scores) >= ALARM)[0]
    return float(np.asarray(ts, dtype=np.float64)[hit[-1]]) if hit.size else None


def steps_per_day(ts: object) -> int:
    """Samples per day from unix-second timestamps (0 when unknown or irregular)."""
    try:
        t = np.asarray(ts, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        return 0
    t = t[np.isfinite(t)]
    if t.size < 2:
        return 0
    d = np.diff(t)
    d = d[d > 0]
    if d.size == 0:
        return 0
    step = float(np.median(d))
    return int(round(86400.0 / step)) if 0 < step <= 86400.0 else 0


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class _Shape:
    s: int
    t: int


def _as_2d(values: object) -> npt.NDArray[np.float64]:
    try:
        if isinstance(values, torch.Tensor):
            a = values.detach().to("cpu", torch.float64).numpy()
        else:
            a = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return np.zeros((0, 0))
    if a.ndim == 0:
        a = a.reshape(1, 1)
    elif a.ndim == 1:
        a = a.reshape(1, -1)
    elif a.ndim > 2:
        a = a.reshape(-1, a.shape[-1])
    return a


def _counter_increase(v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Per-step increase of counters (NaN gaps skipped, a drop = restart from 0); first = NaN."""
    out = np.full_like(v, np.nan)
    for i in range(v.shape[0]):
        idx = np.nonzero(np.isfinite(v[i]))[0]
        if idx.size < 2:
            continue
        x = v[i, idx]
        d = np.diff(x)
        d = np.where(d < 0, x[1:], d)
        out[i, idx[1:]] = d
    return out


def _unroll(ring: torch.Tensor, steps: torch.Tensor, out: torch.Tensor) -> None:
    """[width, series] ring (a series' step k at row k % width) -> ``out``: the last ``width`` steps of
    every series in time order (row j = step ``steps - width + j``; a slot never written stays NaN)."""
    width = ring.shape[0]
    r = torch.remainder(steps, width)
    if bool((r == r[0]).all()):           # one grid: a rotation
        k = int(r[0])
        out[:width - k] = ring[k:]
        out[width - k:] = ring[:k]
        return
    rows = torch.arange(width, device=ring.device)[:, None] + r[None, :]
    torch.gather(ring, 0, torch.where(rows >= width, rows - width, rows), out=out)


def _roll_up(hist: torch.Tensor, width: int, end: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """The inverse of ``_unroll``: the ring [width, series] holding, per series s, the rows
    ``hist[end[s]: end[s] + width, s]`` ([time, series]), which are its steps ``steps[s] - width``
    .. ``steps[s] - 1``."""
    r = torch.remainder(steps, width)
    if bool((end == end[0]).all()) and bool((r == r[0]).all()):
        e, k = int(end[0]), int(r[0])
        return torch.roll(hist[e:e + width], k, 0)      # time-ordered row j -> slot (k + j) % width
    ar = torch.arange(width, device=hist.device)[:, None]
    vals = hist.gather(0, ar + end[None, :])
    slots = ar + r[None, :]
    return torch.empty_like(vals).scatter_(0, torch.where(slots >= width, slots - width, slots), vals)


def _read(hist: torch.Tensor, row0: int, rows: int, back: int | torch.Tensor) -> torch.Tensor:
    """[rows, series]: for each of ``rows`` steps from row ``row0`` of ``hist`` ([time, series]), the
    sample ``back`` steps earlier (an int: the same for every series, a slice; else per series)."""
    if isinstance(back, int):
        return hist[row0 - back: row0 + rows - back]
    idx = torch.arange(row0, row0 + rows, device=hist.device)[:, None] - back[None, :]
    return hist.gather(0, idx)


class StreamingAnomalyDetector:
    """Batched, causal, stateful anomaly scores for [series, time] arrays."""

    N_FEATURES = 4
    BLOCK = 64    # steps whose non-recurrent quantities are computed at once (memory ~ BLOCK x series)

    def __init__(self, device: str | torch.device | None = None) -> None:
        self.device = torch.device(device) if device is not None else default_device()
        self.dtype = torch.float32

    # ---------------------------------------------------------------- state
    def init_state(self, n_series: int, steps_per_day: object = None) -> State:
        s, dev, dt = n_series, self.device, self.dtype
        per = np.zeros(s, dtype=np.int64)
        if steps_per_day is not None:
            p = np.asarray(steps_per_day, dtype=np.float64).ravel()
            p = np.where(np.isfinite(p), p, 0).astype(np.int64)
            per[:] = p if p.size == s else (p[0] if p.size else 0)
        per = np.clip(per, 0, 100_000)
        buf_len = int(max(1, per.max() * WEEK_DAYS)) if per.size else 1

        def z() -> torch.Tensor:
            return torch.zeros(s, device=dev, dtype=dt)

        f = self.N_FEATURES
        return {
            "version": STATE_VERSION,
            "period": torch.as_tensor(per, device=dev),
            "ref": z(), "has_ref": torch.zeros(s, device=dev, dtype=torch.bool),
            "n": z(), "steps": torch.zeros(s, device=dev, dtype=torch.int64),
            "last": z(), "level": z(), "scale": torch.zeros(f, s, device=dev, dtype=dt),
            "short": torch.zeros(f, s, device=dev, dtype=dt), "mu": torch.zeros(f, s, device=dev, dtype=dt),
            "var": torch.ones(f, s, device=dev, dtype=dt), "nf": torch.zeros(f, s, device=dev, dtype=dt),
            "quiet": torch.zeros(s, device=dev, dtype=torch.int64),
            "vmin": torch.full((s,), float("inf"), device=dev, dtype=dt), "nr": z(),
            "vmax": torch.full((s,), float("-inf"), device=dev, dtype=dt),
            "gmax": torch.zeros(f, s, device=dev, dtype=dt),
            # [time, series]: at each step every series reads the same ring rows, so the reads of a
            # batch on one grid are contiguous (a [series, time] ring made them one cache miss each)
            "buf": torch.full((buf_len, s), float("nan"), device=dev, dtype=dt),
        }

    def _state_to(self, state: State) -> State:
        return {k: (v.to(self.device) if isinstance(v, torch.Tensor) else v) for k, v in state.items()}

    def _widen(self, buf: torch.Tensor, steps: torch.Tensor, width: int) -> torch.Tensor:
        """A version-1/2 ring buffer ``buf`` ([series, time], position = step % its width) re-laid out
        for a ring ``width`` wide (still [series, time])."""
        olen = buf.shape[1]
        if olen >= width:
            return buf
        back = steps[:, None] - torch.arange(1, olen + 1, device=self.device)[None, :]   # last olen steps
        vals = buf.gather(1, torch.remainder(back, olen))
        vals = torch.where(back >= 0, vals, torch.full_like(vals, float("nan")))
        out = torch.full((buf.shape[0], width), float("nan"), device=self.device, dtype=buf.dtype)
        out.scatter_(1, torch.remainder(back, width), vals)
        return out

    # ---------------------------------------------------------------- scoring
    def score(self, values: object, lengths: object = None, state: State | None = None,
              steps_per_day: object = None, counters: object = None) -> tuple[Scores, State]:
        """Score a [S, T] batch; returns (scores [S, T] float64 in [0, 1], new state)."""
        a = _as_2d(values)
        n_s, n_t = a.shape
        if counters is not None and n_s:
            cmask = np.asarray(counters, dtype=bool).ravel()
            if cmask.size == n_s and cmask.any():
                a = a.copy()
                a[cmask] = _counter_increase(a[cmask])
        pad = np.zeros(a.shape, dtype=bool)      # trailing padding (lengths); NaN/inf = a missing sample
        if lengths is not None:
            ln = np.asarray(lengths, dtype=np.float64).ravel()
            ln = np.where(np.isfinite(ln), ln, n_t).astype(np.int64)
            if ln.size == n_s:
                pad = np.arange(n_t)[None, :] >= np.clip(ln, 0, n_t)[:, None]
        if state is None or int(state.get("n", torch.zeros(0)).shape[0]) != n_s:
            state = self.init_state(n_s, steps_per_day)
        else:
            state = self._state_to(dict(state))
            if state.get("version") != STATE_VERSION:  # an older state: add the keys it lacks
                fresh = self.init_state(n_s, state["period"].cpu().numpy())
                for k, v in fresh.items():
                    state.setdefault(k, v)
                if int(state.get("version") or 1) < 3:   # rings were [series, time] before version 3
                    state["buf"] = self._widen(state["buf"], state["steps"], fresh["buf"].shape[0]).T.contiguous()
                for k in ("scale", "short", "mu", "var", "nf", "gmax"):   # version 1 had 3 features
                    if state[k].shape[0] < fresh[k].shape[0]:
                        state[k] = torch.cat([state[k], fresh[k][state[k].shape[0]:]])
                state["version"] = STATE_VERSION
        if n_s == 0 or n_t == 0:
            return np.zeros((n_s, n_t), dtype=np.float64), state
        x = torch.as_tensor(a, device=self.device, dtype=torch.float64)   # shares the array's memory on CPU
        padded = torch.as_tensor(pad, device=self.device)
        scores = torch.zeros(n_t, n_s, device=self.device, dtype=self.dtype)
        # the per-step ops are small and memory-bound: one CPU thread is as fast and does not collapse
        # when the host is busy (measured: 1.8 ms/step vs 30 ms/step with 2 threads under load); series
        # sharded over 2 Python threads were no faster on the 2-core machine either (bench/README.md)
        threads = torch.get_num_threads()
        if self.device.type == "cpu":
            torch.set_num_threads(1)
        try:
            self._run(x, padded, state, scores)
        finally:
            torch.set_num_threads(threads)
        torch.nan_to_num_(scores, nan=0.0).clamp_(0.0, 1.0)
        return scores.T.to("cpu", torch.float64).contiguous().numpy(), state

    @torch.no_grad()
    def _run(self, x64: torch.Tensor, padded: torch.Tensor, st: State, scores: torch.Tensor) -> None:
        """The scores of a batch. Everything that does not depend on the recurrent model (the
        seasonal references read from the ring, the last valid sample, sample counts, the range
        seen so far) is computed for a block of steps at once; the per-step loop keeps only the
        recurrences (level, scales, surprise averages, their long-run mean/variance, record maxima,
        quiet time). Same values as a step-by-step evaluation of every quantity. Writes ``scores``
        ([time, series])."""
        dev, dt = self.device, self.dtype
        n_s, n_t = x64.shape
        valid_all = torch.isfinite(x64) & ~padded
        # reference value per series (first valid sample ever seen): removes the shift before float32
        first_idx = torch.argmax(valid_all.to(torch.int8), dim=1)
        first_val = x64.gather(1, first_idx[:, None]).squeeze(1)
        has_any = valid_all.any(dim=1)
        new_ref = has_any & ~st["has_ref"]
        st["ref"] = torch.where(new_ref, first_val.to(dt), st["ref"])
        st["has_ref"] = st["has_ref"] | has_any
        nanv = torch.tensor(float("nan"), device=dev, dtype=dt)
        zero = torch.zeros((), device=dev, dtype=dt)
        one = torch.ones((), device=dev, dtype=dt)
        # time-major from here on: a step reads one contiguous row of every [time, series] tensor
        ok_all = valid_all.T.contiguous()
        live_all = ~padded.T                                              # padding is trailing per series
        period = st["period"]
        has_season = period > 0
        steps0, buf = st["steps"], st["buf"]
        blen = buf.shape[0]
        # the series' history in time order, shifted by ref and in float32: the ring's last blen steps,
        # then this batch (a missing sample is NaN); row blen + t is this batch's step t of every series
        hist = torch.empty(blen + n_t, n_s, device=dev, dtype=dt)
        _unroll(buf, steps0, hist[:blen])
        ref64 = st["ref"].to(torch.float64)[None, :]
        for t0 in range(0, n_t, self.BLOCK):
            t1 = min(n_t, t0 + self.BLOCK)
            hist[blen + t0: blen + t1] = torch.where(ok_all[t0:t1], (x64[:, t0:t1].T - ref64).to(dt), nanv)
        # carried from block to block: samples so far, the last valid value, the range seen so far
        n_run, nr_run, last_run = st["n"], st["nr"], st["last"]
        vmin_run, vmax_run = st["vmin"], st["vmax"]
        refr = torch.where(period > 0, (period.to(torch.float64) * REFRACTORY_DAYS).round().to(torch.int64),
                           torch.full_like(period, REFRACTORY_STEPS))
        hl = torch.where(period > 0, period.to(torch.float64) * RECORD_HL_DAYS,
                         torch.full_like(period, RECORD_HL_STEPS, dtype=torch.float64))
        rec_decay = torch.exp(-math.log(2.0) / hl).to(dt)
        log_eps = math.log(LOG_EPS)
        # sampling-rate calibration (module docstring): < 1 only for series coarser than the calibration rate
        rate_k = torch.where(period > 0, torch.clamp(period.to(torch.float64) / CALIBRATION_STEPS_PER_DAY, max=1.0),
                             torch.ones_like(period, dtype=torch.float64)).pow(RATE_EXPONENT).to(dt)
        rate_on = bool((rate_k < 1).any())
        tiny = torch.tensor(1e-30, device=dev, dtype=dt)
        a_scale = torch.tensor(ALPHA_SCALE, device=dev, dtype=dt)
        # a series is scored once it has WARMUP samples and, when its day is known, one full day
        warm_n = torch.clamp(period, min=WARMUP).to(dt)
        level, scale, short, mu, var, nf = st["level"], st["scale"], st["short"], st["mu"], st["var"], st["nf"]
        quiet, gmax = st["quiet"], st["gmax"]
        a_short = torch.full((self.N_FEATURES, 1), ALPHA_SHORT, device=dev, dtype=dt)
        a_short[2] = ALPHA_SHORT_CHANGE
        # ring reads as distances back from the current step: one day (and its two neighbours), one
        # week (and the step after it); unused without a season
        back = torch.stack([period, period + 1, period - 1, WEEK_DAYS * period, WEEK_DAYS * period - 1])
        back = torch.where(has_season[None, :], back, 0)
        # the first batch step at which a series has seen enough steps for a read (-1: already; small
        # integers, exact in float32)
        def first_t(first: torch.Tensor) -> torch.Tensor:
            return torch.clamp(first - steps0, min=-1, max=n_t + 1).to(dt)[None, :]

        t_before, t_day, t_week = first_t(period + 1), first_t(period * SEASON_MIN_DAYS), first_t(WEEK_DAYS * period)
        one_grid = bool((steps0 == steps0[0]).all()) and bool((back == back[:, :1]).all())
        # time-of-day gate: the samples around the same time on each of the last TOD_DAYS days (a day of
        # at most 2 x TOD_HALF_WIDTH samples has no time of day to speak of)
        hw = TOD_HALF_WIDTH
        tod_on = has_season & (period > 2 * hw)
        # one read per day back: the block's rows +- hw, that day earlier (a series without one reads
        # hw back, which stays inside the history)
        tod_back: list[Any] = [torch.where(tod_on, d * period, hw) for d in range(1, TOD_DAYS + 1)]
        tod_any = TOD_GATE and bool(tod_on.any())
        t_tod = first_t(period)
        # every series at the same step with the same period: a read is a slice (offsets as ints)
        back_k: list[Any] = [int(k[0]) for k in back] if one_grid else list(back)
        if one_grid:
            tod_back = [int(k[0]) for k in tod_back]

        for t0 in range(0, n_t, self.BLOCK):
            t1 = min(n_t, t0 + self.BLOCK)
            c = t1 - t0                                                   # steps in this block
            ok_b = ok_all[t0:t1]
            v_b = torch.where(ok_b, hist[blen + t0: blen + t1], zero)
            ttf = torch.arange(t0, t1, device=dev, dtype=dt)[:, None]     # small integers: exact
            prev, before, after, prevw, afterw = (_read(hist, blen + t0, c, k) for k in back_k)
            # a missing reference sample (a gap one day ago): the mean of its two neighbours, else the
            # one that exists, so that a gap does not switch the seasonal gate off
            before = torch.where(ttf >= t_before, before, nanv)
            after = torch.where(period > 1, after, nanv)
            fin_b, fin_a = torch.isfinite(before), torch.isfinite(after)
            between = torch.where(fin_b & fin_a, 0.5 * (before + after), torch.where(fin_b, before, after))
            prev = torch.where(torch.isfinite(prev), prev, between)
            s_ok = has_season & (ttf >= t_day) & torch.isfinite(prev)
            # likewise a week ago (one step earlier than a week is no longer in the one-week ring)
            afterw = torch.where(period > 1, afterw, nanv)
            prevw = torch.where(torch.isfinite(prevw), prevw, afterw)
            w_ok = has_season & (ttf >= t_week) & torch.isfinite(prevw)
            # samples before each step: counts (exact: integers < 2^24)
            okf = ok_b.to(dt)
            c_before = torch.cumsum(okf, dim=0) - okf
            nb, nrb = n_run[None, :] + c_before, nr_run[None, :] + c_before
            n_run, nr_run = n_run + okf.sum(dim=0), nr_run + okf.sum(dim=0)
            # the last valid value and the range seen before each step: running row by row (a cumulative
            # max along time is a strided scan, much slower than C row operations)
            last_v = torch.empty_like(v_b)
            vmax = torch.empty_like(v_b)
            vmin = torch.empty_like(v_b)
            for i in range(c):
                last_v[i], vmax[i], vmin[i] = last_run, vmax_run, vmin_run
                last_run = torch.where(ok_b[i], v_b[i], last_run)
                vmax_run = torch.where(ok_b[i], torch.maximum(vmax_run, v_b[i]), vmax_run)
                vmin_run = torch.where(ok_b[i], torch.minimum(vmin_run, v_b[i]), vmin_run)
            seen = nb > 0
            # |surprise| per feature; the level's (row 0) is filled in by the loop
            ad_b = torch.empty(c, self.N_FEATURES, n_s, device=dev, dtype=dt)
            torch.abs(torch.where(s_ok, v_b - prev, zero), out=ad_b[:, 1])
            torch.abs(v_b - last_v, out=ad_b[:, 2])
            torch.abs(torch.where(w_ok, v_b - prevw, zero), out=ad_b[:, 3])
            zok_b = torch.empty(c, self.N_FEATURES, n_s, device=dev, dtype=torch.bool)
            torch.logical_and(seen, ok_b, out=zok_b[:, 0])
            torch.logical_and(s_ok, ok_b, out=zok_b[:, 1])
            zok_b[:, 2] = zok_b[:, 0]
            torch.logical_and(w_ok, ok_b, out=zok_b[:, 3])
            # per feature: samples it has learnt from before each step, and what depends on that count
            zf = zok_b.to(dt)
            nf_b = nf[None] + (torch.cumsum(zf, dim=0) - zf)          # exact: integers < 2^24
            nf = nf + zf.sum(dim=0)
            learnt_b = nf_b >= WARMUP
            a_long_b = torch.clamp(1.0 / (nf_b + 1.0), min=ALPHA_LONG)
            nf_after = nf_b + zf                                       # = the count after the step where it learns
            alpha_s_b = torch.where(nf_after < WARMUP, 1.0 / (nf_after + 1.0), a_scale)
            keep_b = 1 - a_long_b
            warm_ok_b = ok_b & (nb >= warm_n)
            tol = (vmax - vmin) * SPATIAL_TOL
            tod_b = None
            if tod_any:
                # the highest / lowest sample at this time of day (+- hw) on the last TOD_DAYS days (-inf /
                # +inf: none seen); a value inside that range (+- tol) is not news. Per day the rows of the
                # block +- hw, then the window of 2 hw + 1 rows around each step (max and min are exact)
                slabs = [_read(hist, blen + t0 - hw, c + 2 * hw, k) for k in tod_back]
                hi = torch.nan_to_num(slabs[0], nan=-math.inf)
                lo = torch.nan_to_num(slabs[0], nan=math.inf)
                for slab in slabs[1:]:
                    hi = torch.maximum(hi, torch.nan_to_num(slab, nan=-math.inf))
                    lo = torch.minimum(lo, torch.nan_to_num(slab, nan=math.inf))
                tod_hi, tod_lo = hi[:c], lo[:c]
                for j in range(1, 2 * hw + 1):
                    tod_hi, tod_lo = torch.maximum(tod_hi, hi[j:j + c]), torch.minimum(tod_lo, lo[j:j + c])
                seen_here = tod_on & (ttf >= t_tod) & (tod_hi >= tod_lo)
                tod_b = seen_here & (v_b <= tod_hi + tol) & (v_b >= tod_lo - tol)
            # (nr: samples in the range; = n, except for a state upgraded from version 1, whose range
            # must first be learnt for warm_n samples)
            spatial_b = ((nrb >= warm_n) & (vmax > vmin) & ((v_b > vmax + tol) | (v_b < vmin - tol))
                         & warm_ok_b)
            nwarm_b = nb >= WARMUP
            alpha_l_b = torch.clamp(1.0 / (nb + 1.0), min=ALPHA_LEVEL)
            live_b = live_all[t0:t1]
            for i in range(c):
                v, ok, zok, ad, learnt = v_b[i], ok_b[i], zok_b[i], ad_b[i], learnt_b[i]
                d_level = v - level
                ad[0] = d_level.abs()
                # every scale is floored at SCALE_FLOOR x the level scale: a noise-free seasonal series
                # (seasonal residual ~ float rounding) does not turn rounding into surprise
                floor = torch.maximum(scale[0] * SCALE_FLOOR, tiny)
                z = torch.clamp(ad / torch.maximum(scale, floor), max=Z_CAP)   # (ad = 0 -> z = 0: the divisor is >= tiny)
                # --- likelihood
                g = torch.log1p(z)
                short_new = torch.where(zok, short + a_short * (g - short), short)
                std = torch.sqrt(torch.clamp(var, min=1e-6))
                zz = (short_new - mu) / std
                # tail probability 1 - likelihood, computed directly (erfc) so that it keeps its
                # precision in float32 far into the tail instead of rounding 1 - L to 0
                tail = 0.5 * torch.erfc(zz / math.sqrt(2.0))
                counts = zok & learnt & (zz > 0)
                # record gate: a surprise no larger than one this series already had (recently) is not news
                if RECORD_GATE:
                    counts = counts & (short_new > gmax)
                tail = torch.where(counts, tail, one)
                tmin = tail.min(dim=0).values
                if rate_on:   # (a point no feature counts keeps its tail of 1: score 0)
                    tmin = torch.where(tmin < 1.0, tmin * rate_k, tmin)
                # seasonal gates: what looks like the same time of the previous day (week) is not news
                echo = zok[1] & (tail[1] > 1.0 - SEASON_GATE)
                if WEEK_GATE:
                    echo = echo | (zok[3] & (tail[3] > 1.0 - SEASON_GATE))
                if tod_b is not None:   # ... nor a value it had at this time of day in the last days
                    echo = echo | tod_b[i]
                sc = torch.clamp(torch.log(torch.where(echo, one, tmin) + LOG_EPS) / log_eps, min=0.0)
                sc = torch.where(spatial_b[i], one, sc)
                sc = torch.where(warm_ok_b[i], sc, zero)
                in_quiet = quiet > 0
                alarm = (sc >= ALARM) & ~in_quiet
                scores[t0 + i] = torch.where(in_quiet, sc * DAMP, sc)
                # --- updates (only where the sample is valid)
                dm = short_new - mu
                adm = a_long_b[i] * dm
                mu = torch.where(zok, mu + adm, mu)
                # (the first sample a feature learns from has a_long = 1: its variance becomes exactly 0)
                var = torch.where(zok, keep_b[i] * (var + adm * dm), var)
                gmax = torch.where(zok & learnt, torch.maximum(gmax * rec_decay, short_new), gmax)
                short = short_new
                clip = torch.where(scale > 0, WINSOR * scale, ad)
                adw = torch.minimum(ad, torch.where(nwarm_b[i], clip, ad))
                scale = torch.where(zok, scale + alpha_s_b[i] * (adw - scale), scale)
                level = torch.where(ok, torch.where(seen[i], level + alpha_l_b[i] * d_level, v), level)
                quiet = torch.where(live_b[i], torch.where(alarm, refr, torch.clamp(quiet - 1, min=0)), quiet)

        # the carried state: counts, last value and range after the batch, the ring's last blen steps
        live_n = live_all.sum(dim=0)
        st["buf"] = _roll_up(hist, blen, live_n, steps0 + live_n)
        steps = steps0 + live_n
        st.update(n=n_run, nr=nr_run, steps=steps, last=last_run, vmin=vmin_run, vmax=vmax_run,
                  level=level, scale=scale, short=short, mu=mu, var=var, nf=nf, quiet=quiet, gmax=gmax)
