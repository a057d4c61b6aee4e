"""The cycle-wide screen of tools/detectors/cost.py (``_quiet``) only skips series the tests would
not find and would not name in ``errors``: the findings and notes with the screen equal those of
the tests run on every series. And the faster pieces the cost path now uses equal what they replaced."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.unit.cost_series import DAY, STEP, simulate
from tools.detectors import cost as C
from tools.detectors.common import InputStats
from tools.detectors.cost import CostSettings, WorkloadSeries, detect_cost_anomalies, streaming_alarms

NOW = 1_795_775_700.0


def _workloads(seed: int) -> list[WorkloadSeries]:
    """Step-wise cost series with and without a change (creep, price raise, extra replicas, a spike
    that ended), on 2-minute, 5-minute and hourly grids, some younger than two days, some with gaps,
    trailing gaps, infinities, jittered timestamps, replicas or not, a streaming alarm or not."""
    rng = np.random.default_rng(seed)
    out: list[WorkloadSeries] = []
    for i in range(60):
        days = int(rng.choice([1, 2, 3, 7]))
        kind = rng.choice(["flat", "creep", "price", "replicas", "spike"])
        t_change = NOW - float(rng.uniform(0.2, 0.9)) * days * DAY
        kw: dict[str, object] = {}
        if kind == "creep":
            kw["creep"] = (t_change, NOW, float(rng.uniform(1.2, 2.5)))
        elif kind == "price":
            kw["price_step"] = (t_change, float(rng.uniform(1.05, 2.5)))
        elif kind == "replicas":
            kw["replica_step"] = (t_change, int(rng.integers(1, 4)))
        c = simulate(NOW, days=days, seed=int(rng.integers(1 << 30)), lo=int(rng.integers(1, 4)),
                     hi=int(rng.integers(4, 12)), dips_per_day=float(rng.choice([0.0, 2.0])), **kw)  # type: ignore[arg-type]
        ts, cost, reps, rps = c.ts.copy(), c.cost.copy(), c.replicas.copy(), c.rps.copy()
        if kind == "spike":
            a = int(rng.integers(ts.size // 2, ts.size - 5))
            cost[a: a + int(rng.integers(2, 60))] *= float(rng.uniform(1.5, 4.0))
        every = int(rng.choice([1, 1, 1, 150 // 60 * 1, 30]))         # 2 min, 5 min (approx), 1 h
        ts, cost, reps, rps = ts[::every], cost[::every], reps[::every], rps[::every]
        r = rng.random()
        if r < 0.15:
            cost[rng.random(cost.size) < 0.05] = np.nan
        elif r < 0.2:
            cost[-int(rng.integers(1, 8)):] = np.nan
        elif r < 0.23:
            cost[int(rng.integers(cost.size))] = np.inf
        elif r < 0.26:
            ts = ts + rng.uniform(-0.3, 0.3, ts.size) * STEP * every
        elif r < 0.3:
            cost = cost * (1 + rng.normal(0, 0.2, cost.size))      # noisy, not step-wise
        elif r < 0.6:
            ts = ts + rng.uniform(-0.05, 0.05, ts.size) * STEP * every   # scrape jitter within a tenth of a step: kept as is
        has_reps = rng.random() < 0.5
        out.append(WorkloadSeries(service=f"ns/w{seed}-{i}-{kind}", file=None, ts=ts, cost=cost,
                                  replicas=reps if has_reps else None,
                                  request_rate=rps if rng.random() < 0.5 else None))
    return streaming_alarms(out)


def _run(ws: list[WorkloadSeries], settings: CostSettings) -> tuple[list[dict[str, object]], list[str]]:
    stats = InputStats()
    found = detect_cost_anomalies(ws, settings, stats)
    return [f.model_dump(exclude={"observed_at"}) for f in found], stats.rejected


SETTINGS = [CostSettings(), CostSettings(min_duration_s=3600.0, min_ratio=1.1, z=2.0),
            CostSettings(min_duration_s=300.0, min_ratio=2.0),
            CostSettings(tests=("seasonal", "level_shift")), CostSettings(min_duration_s=1.0)]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_screen_changes_no_finding_and_no_note(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = _workloads(seed)
    quieted = 0
    for settings in SETTINGS:
        quiet = C._quiet(ws, settings)
        quieted += len(quiet)
        screened = _run(ws, settings)
        with monkeypatch.context() as m:
            m.setattr(C, "_quiet", lambda workloads, s: set())
            every = _run(ws, settings)
        assert screened == every, settings
        assert every[0], "some series must be found for this test to mean anything"
        assert all(not any(f["service"] == ws[i].service for f in every[0]) for i in quiet)
    assert quieted > 0, "the screen must skip some series for this test to mean anything"


def test_the_screen_skips_the_quiet_series_of_a_cycle_and_keeps_the_changed_one() -> None:
    flat = [simulate(NOW, seed=s, lo=3, hi=3) for s in range(5)]
    raised = simulate(NOW, seed=9, lo=3, hi=3, price_step=(NOW - 6 * 3600, 2.0))
    ws = [WorkloadSeries(service=f"ns/f{i}", file=None, ts=c.ts, cost=c.cost) for i, c in enumerate(flat)]
    ws.append(WorkloadSeries(service="ns/raised", file=None, ts=raised.ts, cost=raised.cost))
    assert C._quiet(ws, CostSettings()) == {0, 1, 2, 3, 4}
    (f,) = detect_cost_anomalies(ws, CostSettings(), InputStats())
    assert f.service == "ns/raised"


def _reference_profile_sorted(x: np.ndarray, ref_end: int, last: int, period: int, step: float) -> np.ndarray:
    """The implementation ``_reference_profile`` replaced (every value tiled to its neighbouring
    phases, one lexsort), kept here as the reference."""
    half = max(0, int(round(C.PROFILE_HALF_WIDTH_S / step)))
    phase = (last - np.arange(x.size)) % period
    vals = x[: ref_end + 1]
    ok = np.isfinite(vals)
    ph0, vv = phase[: ref_end + 1][ok], vals[ok]
    if vv.size == 0:
        return np.full(period, np.nan)
    ph = np.concatenate([(ph0 + off) % period for off in range(-half, half + 1)])
    allv = np.tile(vv, 2 * half + 1)
    order = np.lexsort((allv, ph))
    ph, allv = ph[order], allv[order]
    bounds = np.searchsorted(ph, np.arange(period + 1))
    a, b = bounds[:-1], bounds[1:]
    lo = np.minimum(a + (b - a - 1) // 2, allv.size - 1)
    hi = np.minimum(a + (b - a) // 2, allv.size - 1)
    return np.where(b > a, 0.5 * (allv[lo] + allv[hi]), np.nan)


def test_the_reference_profile_equals_the_sorted_implementation_it_replaced() -> None:
    rng = np.random.default_rng(5)
    for _ in range(400):
        period = int(rng.choice([3, 7, 24, 48, 288, 720]))
        n = int(rng.integers(2, 6 * period + 3))
        x = np.round(rng.normal(10, 3, n), int(rng.integers(0, 3)))    # ties, as whole replicas give
        x[rng.random(n) < rng.choice([0.0, 0.2, 0.9])] = np.nan
        last = int(rng.integers(0, n))
        ref_end = int(rng.integers(-1, last + 1))
        step = float(rng.choice([60.0, 300.0, 600.0, 3600.0]))
        got, phase = C._reference_profile(x, ref_end, last, period, step)
        np.testing.assert_array_equal(got, _reference_profile_sorted(x, ref_end, last, period, step))
        assert np.array_equal(phase, (last - np.arange(n)) % period)


def test_the_expectation_at_a_few_samples_equals_the_whole_series_there() -> None:
    rng = np.random.default_rng(6)
    for _ in range(200):
        period = int(rng.choice([12, 48, 288]))
        n = int(rng.integers(4, 8 * period))
        v = np.round(rng.normal(5, 1, n), 1)
        v[rng.random(n) < 0.1] = np.nan
        whole = C._expected_or_day_before(v, period, 6)
        a = int(rng.integers(0, n))
        b = int(rng.integers(a, n)) + 1
        np.testing.assert_array_equal(C._expected_or_day_before(v, period, 6, slice(a, b)), whole[a:b])
        assert math.isnan(whole[0])   # nothing before the first sample


def test_the_pre_alarm_reference_at_the_last_samples_equals_the_whole_one_there() -> None:
    """Test 1b first checks its tail against the pre-alarm reference at the last k samples alone
    (``only=k``); that must be the whole reference's value there, with gaps, short histories and
    onsets less than a day or an hour in."""
    rng = np.random.default_rng(5)
    for _ in range(300):
        step = float(rng.choice([60.0, 120.0, 300.0, 3600.0]))
        period = int(round(DAY / step))
        n = int(rng.integers(10, 8 * period))
        v = rng.gamma(2.0, 5.0, n) * (1 + 0.3 * np.sin(2 * np.pi * np.arange(n) / period))
        v[rng.random(n) < rng.choice([0.0, 0.05, 0.5])] = np.nan
        onset, k = int(rng.integers(1, n)), int(rng.integers(1, 20))
        last = n - 1
        whole = C._pre_alarm_reference(v, onset, last, period, step)
        tail = C._pre_alarm_reference(v, onset, last, period, step, only=k)
        if whole is None:
            assert tail is None or not np.isfinite(tail[onset:]).any()
            continue
        at = slice(max(0, n - k), n)
        if tail is None:
            assert not np.isfinite(whole[at][np.arange(at.start, n) >= onset]).any()
            continue
        np.testing.assert_array_equal(tail[at], whole[at])
