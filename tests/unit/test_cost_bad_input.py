"""Bad input to the cost detector (NaN, infinities, empty, constant, one sample, irregular
timestamps), through the whole deciding path (the streaming detector, then the cost tests): never
a crash, never a finding on a series without a change, and every kind of bad
input except a plain constant series (which is valid) is counted in ``stats`` (the cycle report's
``errors``)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.cost_series import STEP, simulate
from tools.detectors.common import InputStats
from tools.detectors.cost import CostSettings, WorkloadSeries, detect_cost_anomalies, streaming_alarms

NOW = 1_795_775_700.0
S = CostSettings()
BASE = simulate(NOW, days=3, seed=11)


def _run(ts: object, cost: object, **kw: object) -> tuple[list, InputStats]:
    """The whole deciding path: the torch streaming detector's alarm, then the cost tests."""
    stats = InputStats()
    ws = streaming_alarms([WorkloadSeries(service="ns/w", file=None, ts=ts, cost=cost, **kw)])
    out = detect_cost_anomalies(ws, S, stats)
    return out, stats


@settings(max_examples=40, deadline=None)
@given(frac=st.floats(0.0, 1.0), seed=st.integers(0, 10_000),
       fill=st.sampled_from([np.nan, np.inf, -np.inf]))
def test_missing_or_infinite_values_never_crash_nor_find(frac: float, seed: int, fill: float) -> None:
    rng = np.random.default_rng(seed)
    cost = BASE.cost.copy()
    reps = BASE.replicas.copy()
    hit = rng.random(cost.size) < frac
    cost[hit] = fill
    reps[rng.random(cost.size) < frac] = fill
    out, stats = _run(BASE.ts, cost, replicas=reps, request_rate=BASE.rps)
    assert out == []
    if np.isinf(fill) and hit.any():
        assert any("infinite" in r or "finite sample" in r for r in stats.rejected), stats.rejected
    if np.isfinite(cost).sum() < 3:
        assert stats.rejected


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 2), value=st.floats(allow_nan=True, allow_infinity=True))
def test_empty_or_one_or_two_samples(n: int, value: float) -> None:
    out, stats = _run(BASE.ts[:n], np.full(n, value))
    assert out == [] and len(stats.rejected) == 1


@settings(max_examples=30, deadline=None)
@given(level=st.floats(0.0, 1e6), n=st.integers(3, 2160), with_reps=st.booleans())
def test_a_constant_series_is_valid_and_never_a_finding(level: float, n: int, with_reps: bool) -> None:
    out, stats = _run(BASE.ts[-n:], np.full(n, level), replicas=np.full(n, 2.0) if with_reps else None)
    assert out == [] and stats.rejected == []


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), jitter=st.floats(0.15, 0.45), drop=st.floats(0.0, 0.5))
def test_irregular_timestamps_are_put_on_a_grid_and_counted(seed: int, jitter: float, drop: float) -> None:
    """Timestamps jittered by up to +-45 % of a step and rows dropped at random: no crash, no finding
    on a series without a change, and the irregularity is named."""
    rng = np.random.default_rng(seed)
    keep = rng.random(BASE.ts.size) >= drop
    keep[-1] = True
    ts = BASE.ts + rng.uniform(-jitter, jitter, BASE.ts.size) * STEP
    ts[-1] = BASE.ts[-1]
    out, stats = _run(ts[keep], BASE.cost[keep], replicas=BASE.replicas[keep], request_rate=BASE.rps[keep])
    assert out == []
    assert any("irregular timestamps" in r for r in stats.rejected), stats.rejected


def test_irregular_timestamps_still_find_a_real_rise() -> None:
    """The grid is not a way to hide a problem: a request raise on jittered timestamps is found."""
    c = simulate(NOW, days=7, seed=2, lo=2, hi=2, price_step=(NOW - 6 * 3600, 2.0))
    rng = np.random.default_rng(2)
    ts = c.ts + rng.uniform(-0.3, 0.3, c.ts.size) * STEP
    ts[-1] = c.ts[-1]
    out, stats = _run(ts, c.cost, replicas=c.replicas)
    assert len(out) == 1 and out[0].evidence["method"] == "per_replica"
    assert any("irregular timestamps" in r for r in stats.rejected)


@settings(max_examples=25, deadline=None)
@given(ts_kind=st.sampled_from(["unsorted", "duplicate", "nan", "2d"]), seed=st.integers(0, 100))
def test_unusable_timestamps_are_counted(ts_kind: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    ts = BASE.ts.copy()
    if ts_kind == "unsorted":
        rng.shuffle(ts)
    elif ts_kind == "duplicate":
        ts[5] = ts[4]
    elif ts_kind == "nan":
        ts[rng.integers(0, ts.size)] = np.nan
    else:
        ts = np.vstack([ts, ts])
    out, stats = _run(ts, BASE.cost)
    assert out == [] and len(stats.rejected) == 1


def test_missing_rows_are_gaps_on_the_grid_not_a_shift_of_a_day() -> None:
    """Rows missing from the answer (not NaN, absent): the series goes on its grid, so the same time
    on previous days stays a day back. Not an errors entry (a gap is normal); a real rise is found with
    its window where it is, and the series without it gives nothing."""
    at = NOW - 6 * 3600
    c = simulate(NOW, days=7, seed=4, lo=2, hi=2, price_step=(at, 2.0))
    base = simulate(NOW, days=7, seed=4, lo=2, hi=2)
    keep = np.ones(c.ts.size, dtype=bool)
    keep[1000:1400] = False                     # half a day missing, three days ago
    keep[np.random.default_rng(4).random(c.ts.size) < 0.05] = False
    keep[-1] = True
    out, stats = _run(c.ts[keep], c.cost[keep], replicas=c.replicas[keep])
    assert len(out) == 1 and stats.rejected == []
    start = np.datetime64(out[0].evidence["window"]["start"][:-1]).astype("datetime64[s]").astype(float)
    assert at <= start <= at + 3600
    assert _run(base.ts[keep], base.cost[keep], replicas=base.replicas[keep])[0] == []


def test_pathologically_sparse_timestamps_are_refused_and_counted() -> None:
    ts = np.r_[NOW - 400 * 86400, NOW - np.arange(100)[::-1] * 60.0]
    out, stats = _run(ts, np.full(ts.size, 3.0))
    assert out == [] and any("too sparse" in r for r in stats.rejected)
