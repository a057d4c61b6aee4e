"""Whether a real, sustained cost problem is found must not depend on the hour the cycle runs.

Step-wise cost series (whole replicas at the scenario generator's prices, an HPA following seasonal
traffic with a weekly dip) are evaluated at every hour of a simulated week: the cluster's clock is
shifted by 0..167 hours, so the change falls at every hour of the day and day of the week relative
to the traffic pattern. Each change must be found at every evaluation time, and the same series
without the change must give no finding at any of them. The whole deciding path runs: the torch
streaming detector scores every series of a test as one batch (its alarm is test 1b), then the
cost tests and gates."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.cost_series import DAY, STEP, simulate
from tools.detectors.common import InputStats
from tools.detectors.cost import CostSettings, WorkloadSeries, detect_cost_anomalies, streaming_alarms

NOW = 1_795_775_700.0
S = CostSettings()          # the daemon's defaults: 15 min, x1.3, z 4, one replica of autoscaler slack
HOURS = range(168)


def _find_all(cs: list, stats: InputStats | None = None) -> list[list]:
    """Each series' findings, the streaming detector having scored them all as one batch."""
    ws = streaming_alarms([WorkloadSeries(service="ml/tagger", file=None, ts=c.ts, cost=c.cost,
                                          replicas=c.replicas, request_rate=c.rps) for c in cs])
    return [detect_cost_anomalies([w], S, stats if stats is not None else InputStats()) for w in ws]


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


# E02's size: demand x2.6 over one day, started two days ago; and a slower one still rising:
# x2 over four days up to now ("a little every day")
# (start, end, factor, how close "since" must be to the start: over 168 hours the onset estimate was
# 2-16 h early for the first, -26..+39 h for the second, whose first day adds less than a replica)
CREEPS = {"x2.6 over 1 day, 2 days ago": (NOW - 2 * DAY, NOW - DAY, 2.6, DAY),
          "x2 over 4 days, still rising": (NOW - 4 * DAY, NOW, 2.0, 2 * DAY)}


@pytest.mark.parametrize("name", sorted(CREEPS))
def test_creep_is_found_at_every_hour_of_the_week(name: str) -> None:
    t0, t1, f, tolerance = CREEPS[name]
    missed = []
    found = _find_all([simulate(NOW, tz_h=h, seed=h, creep=(t0, t1, f)) for h in HOURS])
    for h, out in zip(HOURS, found, strict=True):
        if len(out) != 1:
            missed.append(h)
            continue
        ev = out[0].evidence
        assert ev["ratio"] >= S.min_ratio
        # whichever test found it, the evidence says since when and how much per day
        ls = ev["level_shift"]
        assert abs(_ts(ls["since"]) - t0) <= tolerance, (h, ls)
        assert ls["rise_per_hour_per_day"] > 0 and ls["current_per_hour"] > ls["reference_per_hour"]
    assert missed == [], f"{name}: missed at {len(missed)} of {len(HOURS)} hours: {missed[:20]}"


def test_request_raise_with_flat_replicas_links_to_the_window_start_at_every_hour() -> None:
    """A GPU request raised in Git doubles the price of a replica; the replicas stay at 2, with a pod
    missing for a sample now and then (restarts). Judged per replica, the window starts at the change
    (so the commit, within 1 h before it, explains it) whatever the hour."""
    at = NOW - 6 * 3600
    bad = []
    found = _find_all([simulate(NOW, tz_h=h, seed=h, lo=2, hi=2, dips_per_day=6, price_step=(at, 2.0)) for h in HOURS])
    for h, out in zip(HOURS, found, strict=True):
        if len(out) != 1 or not at <= _ts(out[0].evidence["window"]["start"]) <= at + 3600:
            bad.append((h, out[0].evidence["window"] if out else None))
    assert bad == [], f"{len(bad)} of {len(HOURS)}: {bad[:5]}"


@pytest.mark.parametrize("change,from_h", [("price x2", 0), ("+3 replicas", 0), ("+2 replicas", 2)])
def test_a_step_that_persists_is_found_at_every_time_after_the_minimum_duration(change: str, from_h: int) -> None:
    """The step happens at a fixed time; the cycle runs 16 minutes after it and then every hour up to
    5 days after it (so at every hour of the day): found every time, also after the same-hour median
    of the previous days has absorbed it (the level test). A step of +2 replicas on a workload whose
    count moves +-1 with traffic can read as one replica above the usual count at this hour (the
    autoscaler gate) until the day's mean shows it: it is asserted from 2 h on, and the misses
    before are listed below (one of the two evaluations before 2 h, at 1 h)."""
    step_at = NOW - 5 * DAY
    ages = [16 * 60, *range(3600, 5 * 24 * 3600 + 1, 3600)]
    kw = {"price_step": (step_at, 2.0)} if change == "price x2" else {"replica_step": (step_at, int(change[1]))}
    found = _find_all([simulate(step_at + age, tz_h=3, seed=i, **kw) for i, age in enumerate(ages)])  # type: ignore[arg-type]
    missed = [age / 3600 for age, out in zip(ages, found, strict=True) if len(out) != 1]
    assert [h for h in missed if h >= from_h] == [], f"{change}: missed at {len(missed)} of {len(ages)} ages (h): {missed}"
    assert len(missed) <= 1


@pytest.mark.parametrize("lo,hi,dips", [(2, 10, 0.0), (2, 2, 6.0), (1, 4, 0.0), (3, 12, 2.0)])
def test_the_same_series_without_the_change_is_never_a_finding(lo: int, hi: int, dips: float) -> None:
    out = _find_all([simulate(NOW, tz_h=h, seed=1000 + h, lo=lo, hi=hi, dips_per_day=dips) for h in HOURS])
    assert [h for h, f in zip(HOURS, out, strict=True) if f] == []


def test_the_noise_gate_never_holds_back_two_replicas() -> None:
    """The diagnosed bug: on a workload whose replica count at a given hour is 3 or 4 at random, the
    robust sigma of the residuals snaps to one replica, and z = 4 sigmas then dropped an excess of
    two replicas for hours, silently. The noise gate is now capped at replica_step + 1/2 replicas."""
    c = simulate(NOW, lo=3, hi=3, seed=5)
    rng = np.random.default_rng(5)
    reps = 3.0 + (rng.random(c.cost.size) < 0.5)
    reps = np.repeat(reps[::30], 30)[: c.cost.size]            # an hour at 3 or 4 replicas, at random
    reps[-3 * 3600 // STEP:] = 6.0                               # the last 3 hours: 6 (usual median 3.5)
    cost = reps * c.cost[0] / 3.0
    stats = InputStats()
    out = detect_cost_anomalies([WorkloadSeries(service="ml/tagger", file=None, ts=c.ts, cost=cost, replicas=reps)],
                                S, stats)
    assert len(out) == 1, stats.rejected


def test_a_rise_the_noise_gate_drops_is_said_in_the_errors() -> None:
    """Without replicas the noise gate keeps its robust sigma; a rise it drops is an errors entry."""
    c = simulate(NOW, lo=3, hi=3, seed=3)
    rng = np.random.default_rng(3)
    noisy = c.cost * (1 + 0.5 * rng.standard_normal(c.cost.size))   # a very noisy price history
    noisy[-2 * 3600 // STEP:] = c.cost[-2 * 3600 // STEP:] * 1.6
    stats = InputStats()
    out = detect_cost_anomalies([WorkloadSeries(service="ml/tagger", file=None, ts=c.ts, cost=noisy)], S, stats)
    assert out == []
    assert any("noise gate" in r for r in stats.rejected), stats.rejected


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), tz=st.floats(0, 168), age_h=st.floats(2, 120),
       kind=st.sampled_from(["price", "replicas"]), size=st.floats(0, 1), scale=st.floats(1e-2, 1e3))
def test_a_persistent_step_is_found_at_any_age_hour_and_price_scale(seed: int, tz: float, age_h: float, kind: str,
                                                                    size: float, scale: float) -> None:
    """Property: a price step of x1.6-x3 or a step of 3-5 replicas, 2 h to 5 days old, at any hour
    and any price level, is found; the same series without it is not."""
    at = NOW - age_h * 3600
    kw = ({"price_step": (at, 1.6 + 1.4 * size)} if kind == "price" else {"replica_step": (at, 3 + int(2.99 * size))})
    c = simulate(NOW, tz_h=tz, seed=seed, **kw)   # type: ignore[arg-type]
    base = simulate(NOW, tz_h=tz, seed=seed)
    scaled = [type(c)(ts=x.ts, cost=x.cost * scale, replicas=x.replicas, rps=x.rps) for x in (c, base)]
    with_step, without = _find_all(scaled)
    assert len(with_step) == 1
    assert without == []
