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
its precision in float32). Two gates drop what is not news:

- record gate: a feature counts only while its averaged surprise exceeds the largest one this
  series has had, that maximum decaying with a half-life of RECORD_HL_DAYS: a smaller burst soon
  after a big one is not news, a bigger one is (the surprise is log-squashed, so "smaller" must be
  clearly smaller: half the jump is forgotten within a few days);
- seasonal gates: when the daily (weekly) signal exists, a point counts only if it is also
  unusual against the same time one day (one week) earlier (likelihood >= SEASON_GATE).

The score is the smallest remaining tail probability, log-scaled (log(p + eps) / log(eps)).
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


class StreamingAnomalyDetector:
    """Batched, causal, stateful anomaly scores for [series, time] arrays."""

    N_FEATURES = 4

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
        a = np.where(np.isfinite(a), a, np.nan)
        if lengths is not None:
            ln = np.asarray(lengths, dtype=np.float64).ravel()
            ln = np.where(np.isfinite(ln), ln, n_t).astype(np.int64)
            if ln.size == n_s:
                a = np.where(np.arange(n_t)[None, :] < np.clip(ln, 0, n_t)[:, None], a, np.nan)
                pad = np.arange(n_t)[None, :] >= np.clip(ln, 0, n_t)[:, None]
            else:
                pad = np.zeros(a.shape, dtype=bool)
        else:
            pad = np.zeros(a.shape, dtype=bool)
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
        out = np.zeros((n_s, n_t), dtype=np.float64)
        if n_s == 0 or n_t == 0:
            return out, state
        x = torch.as_tensor(a, device=self.device, dtype=torch.float64)
        padded = torch.as_tensor(pad, device=self.device)
        # the per-step ops are small and memory-bound: one CPU thread is as fast and does not
        # collapse when the host is busy (measured: 1.8 ms/step vs 30 ms/step with 2 threads under load)
        threads = torch.get_num_threads()
        if self.device.type == "cpu":
            torch.set_num_threads(1)
        try:
            res = self._run(x, padded, state)
        finally:
            torch.set_num_threads(threads)
        out[:] = res.to("cpu", torch.float64).numpy()
        return np.clip(np.nan_to_num(out, nan=0.0), 0.0, 1.0), state

    @torch.no_grad()
    def _run(self, x64: torch.Tensor, padded: torch.Tensor, st: State) -> torch.Tensor:
        dev, dt = self.device, self.dtype
        n_s, n_t = x64.shape
        valid_all = torch.isfinite(x64)
        # reference value per series (first valid sample ever seen): removes the shift before float32
        first_idx = torch.argmax(valid_all.to(torch.int8), dim=1)
        first_val = x64.gather(1, first_idx[:, None]).squeeze(1)
        has_any = valid_all.any(dim=1)
        new_ref = has_any & ~st["has_ref"]
        st["ref"] = torch.where(new_ref, first_val.to(dt), st["ref"])
        st["has_ref"] = st["has_ref"] | has_any
        xs = (x64 - st["ref"].to(torch.float64)[:, None]).to(dt)
        xs = torch.where(valid_all, xs, torch.zeros((), device=dev, dtype=dt))
        scores = torch.zeros(n_s, n_t, device=dev, dtype=dt)

        period = st["period"]
        has_season = period > 0
        buf = st["buf"].contiguous()
        blen = buf.shape[0]
        flat = buf.view(-1)
        rows = torch.arange(n_s, device=dev)
        # ring positions read each step, as offsets from the current step: the slot about to be written
        # (kept where the series is padded), one day back and its two neighbours, one week back and the
        # step after it -- one gather per step instead of six
        offsets = torch.stack([torch.zeros_like(period), -period, -period - 1, -period + 1,
                               -WEEK_DAYS * period, -WEEK_DAYS * period + 1], dim=1)
        offsets = torch.where(period[:, None] > 0, offsets, 0)   # in [-blen, 0]; unused without a season
        col = rows[:, None]
        refr = torch.where(period > 0, (period.to(torch.float64) * REFRACTORY_DAYS).round().to(torch.int64),
                           torch.full_like(period, REFRACTORY_STEPS))
        hl = torch.where(period > 0, period.to(torch.float64) * RECORD_HL_DAYS,
                         torch.full_like(period, RECORD_HL_STEPS, dtype=torch.float64))
        rec_decay = torch.exp(-math.log(2.0) / hl).to(dt)
        log_eps = math.log(LOG_EPS)
        one = torch.ones((), device=dev, dtype=dt)
        tiny = torch.tensor(1e-30, device=dev, dtype=dt)
        nanv = torch.tensor(float("nan"), device=dev, dtype=dt)
        zero = torch.zeros((), device=dev, dtype=dt)
        a_scale = torch.tensor(ALPHA_SCALE, device=dev, dtype=dt)

        # a series is scored once it has WARMUP samples and, when its day is known, one full day
        warm_n = torch.clamp(period, min=WARMUP).to(dt)
        n, last, level = st["n"], st["last"], st["level"]
        scale, short, mu, var, nf = st["scale"], st["short"], st["mu"], st["var"], st["nf"]
        steps, quiet = st["steps"], st["quiet"]
        vmin, vmax, nr, gmax = st["vmin"], st["vmax"], st["nr"], st["gmax"]
        a_short = torch.full((self.N_FEATURES, 1), ALPHA_SHORT, device=dev, dtype=dt)
        a_short[2] = ALPHA_SHORT_CHANGE
        z = torch.zeros(self.N_FEATURES, n_s, device=dev, dtype=dt)
        zok = torch.zeros(self.N_FEATURES, n_s, device=dev, dtype=torch.bool)
        for t in range(n_t):
            live = ~padded[:, t]
            ok = valid_all[:, t]
            v = xs[:, t]
            seen = n > 0
            # --- surprises
            d_level = v - level
            d_change = v - last
            back = torch.remainder(steps, blen)[:, None] + offsets          # offsets >= -blen: one wrap at most
            slots = torch.where(back < 0, back + blen, back) * n_s + col
            here, prev, before, after, prevw, afterw = flat[slots.view(-1)].view(n_s, 6).unbind(1)
            # a missing reference sample (a gap one day ago): the mean of its two neighbours, else the
            # one that exists, so that a gap does not switch the seasonal gate off
            before = torch.where(steps - period - 1 >= 0, before, nanv)
            after = torch.where(period > 1, after, nanv)
            between = torch.where(torch.isfinite(before) & torch.isfinite(after), 0.5 * (before + after),
                                  torch.where(torch.isfinite(before), before, after))
            prev = torch.where(torch.isfinite(prev), prev, between)
            s_ok = has_season & (steps >= period * SEASON_MIN_DAYS) & torch.isfinite(prev)
            d_season = torch.where(s_ok, v - prev, zero)
            # likewise a week ago (one step earlier than a week is no longer in the one-week ring)
            afterw = torch.where(period > 1, afterw, nanv)
            prevw = torch.where(torch.isfinite(prevw), prevw, afterw)
            w_ok = has_season & (steps >= WEEK_DAYS * period) & torch.isfinite(prevw)
            d_week = torch.where(w_ok, v - prevw, zero)
            d = torch.stack([d_level, d_season, d_change, d_week])
            ad = d.abs()
            # every scale is floored at SCALE_FLOOR x the level scale: a noise-free seasonal series
            # (seasonal residual ~ float rounding) does not turn rounding into surprise
            floor = torch.maximum(scale[0] * SCALE_FLOOR, tiny)
            z = torch.clamp(ad / torch.maximum(scale, floor), max=Z_CAP)
            z = torch.where(ad == 0, zero, z)
            zok = torch.stack([seen, s_ok, seen, w_ok]) & ok
            warm = n >= warm_n
            # --- likelihood
            g = torch.log1p(z)
            short_new = torch.where(zok, short + a_short * (g - short), short)
            std = torch.sqrt(torch.clamp(var, min=1e-6))
            zz = (short_new - mu) / std
            # tail probability 1 - likelihood, computed directly (erfc) so that it keeps its precision
            # in float32 far into the tail instead of rounding 1 - L to 0
            tail = 0.5 * torch.erfc(zz / math.sqrt(2.0))
            tail = torch.where(zok & (nf >= WARMUP) & (zz > 0), tail, one)
            # record gate: a surprise no larger than one this series already had (recently) is not news
            if RECORD_GATE:
                tail = torch.where(short_new > gmax, tail, one)
            tmin = tail.min(dim=0).values
            # seasonal gate: what looks like the same time of the previous day is not news either
            tmin = torch.where(zok[1] & (tail[1] > 1.0 - SEASON_GATE), one, tmin)
            if WEEK_GATE:  # ... nor what looks like the same time of the previous week
                tmin = torch.where(zok[3] & (tail[3] > 1.0 - SEASON_GATE), one, tmin)
            sc = torch.clamp(torch.log(tmin + LOG_EPS) / log_eps, min=0.0)
            tol = (vmax - vmin) * SPATIAL_TOL
            # (nr: samples in the range; = n, except for a state upgraded from version 1, whose range
            # must first be learnt for warm_n samples)
            spatial = (nr >= warm_n) & (vmax > vmin) & ((v > vmax + tol) | (v < vmin - tol))
            sc = torch.where(spatial, one, sc)
            sc = torch.where(ok & warm, sc, zero)
            in_quiet = quiet > 0
            sc = torch.where(in_quiet, sc * DAMP, sc)
            alarm = (sc >= ALARM) & ~in_quiet
            scores[:, t] = sc
            # --- updates (only where the sample is valid)
            upd = zok
            dm = short_new - mu
            a_long = torch.clamp(1.0 / (nf + 1.0), min=ALPHA_LONG)
            mu = torch.where(upd, mu + a_long * dm, mu)
            var = torch.where(upd, torch.where(nf > 0, (1 - a_long) * (var + a_long * dm * dm), zero), var)
            gmax = torch.where(upd & (nf >= WARMUP), torch.maximum(gmax * rec_decay, short_new), gmax)
            nf = torch.where(upd, nf + 1, nf)
            short = short_new
            clip = torch.where(scale > 0, WINSOR * scale, ad)
            adw = torch.minimum(ad, torch.where(n >= WARMUP, clip, ad))
            alpha_s = torch.where(nf < WARMUP, 1.0 / (nf + 1.0), a_scale)
            scale = torch.where(upd, scale + alpha_s * (adw - scale), scale)
            alpha_l = torch.clamp(1.0 / (n + 1.0), min=ALPHA_LEVEL)
            level = torch.where(ok, torch.where(seen, level + alpha_l * d_level, v), level)
            last = torch.where(ok, v, last)
            vmin = torch.where(ok, torch.minimum(vmin, v), vmin)
            vmax = torch.where(ok, torch.maximum(vmax, v), vmax)
            nr = torch.where(ok, nr + 1, nr)
            n = torch.where(ok, n + 1, n)
            quiet = torch.where(live, torch.where(alarm, refr, torch.clamp(quiet - 1, min=0)), quiet)
            flat.index_copy_(0, slots[:, 0], torch.where(live, torch.where(ok, v, nanv), here))
            steps = torch.where(live, steps + 1, steps)
        st.update(n=n, last=last, level=level, scale=scale, short=short, mu=mu, var=var, nf=nf,
                  steps=steps, quiet=quiet, buf=buf, vmin=vmin, vmax=vmax, nr=nr, gmax=gmax)
        return scores
