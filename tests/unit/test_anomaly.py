"""tools/detectors/anomaly.py: the batched, streaming torch anomaly scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tools.detectors.anomaly import ALARM, DAMP, StreamingAnomalyDetector, steps_per_day

P = 288  # 5-minute samples per day


def seasonal(n: int = 6 * P, level: float = 10.0, amp: float = 0.3, noise: float = 0.02, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return level * (1 + amp * np.sin(2 * np.pi * t / P)) + level * noise * rng.normal(size=n)


def det() -> StreamingAnomalyDetector:
    return StreamingAnomalyDetector(device="cpu")


def test_scores_shape_range_and_level_shift_found() -> None:
    x = np.stack([seasonal(seed=1), seasonal(seed=2)])
    x[1, 4 * P:] += 10.0  # a sustained jump of one level
    s, _ = det().score(x, steps_per_day=P)
    assert s.shape == x.shape and s.dtype == np.float64
    assert np.all((s >= 0) & (s <= 1))
    assert s[1, 4 * P:4 * P + 12].max() >= ALARM          # found within an hour
    assert s[0, 2 * P:].max() < ALARM                     # the quiet twin stays quiet


def test_slow_creep_and_missing_samples() -> None:
    x = seasonal(n=8 * P, seed=3)
    x[5 * P:] += np.linspace(0, 12, 3 * P)                # creep: +120 % over 3 days
    x[::97] = np.nan
    s, _ = det().score(x[None, :], steps_per_day=P)
    assert s[0, 5 * P:].max() >= ALARM
    assert np.all(s[0, ::97] == 0)                        # a missing sample scores 0


def test_constant_series_has_no_finding() -> None:
    s, _ = det().score(np.full((3, 2000), 7.5), steps_per_day=P)
    assert s.max() == 0.0


def test_a_gap_one_day_earlier_does_not_make_a_daily_pattern_news() -> None:
    """A missing sample at t - P is replaced by its neighbours' mean: the daily gate stays on."""
    rng = np.random.default_rng(0)
    n, t = 8 * P, np.arange(8 * P)
    x = 10 + 0.2 * rng.normal(size=(8, n)) + 8 * np.exp(-0.5 * (((t % P) - 150) / 6.0) ** 2)  # a daily batch bump
    for d in (3, 5):
        x[:, d * P + 136: d * P + 165: 2] = np.nan        # half of the bump's samples missing on days 3 and 5
    s, _ = det().score(x, steps_per_day=P)
    after = np.concatenate([s[:, 4 * P:5 * P], s[:, 6 * P:7 * P]], axis=1)   # the days after the gaps
    assert after.max() < ALARM and after.max(axis=1).mean() < 0.35   # (the reference missing: ~0.47)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(level=st.floats(0.1, 1e4), amp=st.floats(0.0, 0.8), seed=st.integers(0, 10_000))
def test_purely_seasonal_series_has_no_finding(level: float, amp: float, seed: int) -> None:
    x = seasonal(n=5 * P, level=level, amp=amp, noise=0.0)
    s, _ = det().score(x[None, :], steps_per_day=P)
    assert s.max() < ALARM


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(exp=st.integers(-8, 8), shift=st.floats(-1e3, 1e3), seed=st.integers(0, 10_000))
def test_scale_and_shift_invariance(exp: int, shift: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = seasonal(n=3 * P, seed=seed) + np.cumsum(rng.normal(0, 0.1, 3 * P))
    x[2 * P + 5] += 8.0
    base, _ = det().score(x[None, :], steps_per_day=P)
    scaled, _ = det().score(x[None, :] * 2.0 ** exp, steps_per_day=P)
    np.testing.assert_array_equal(scaled, base)            # a power-of-two scale is exact in float
    shifted, _ = det().score(x[None, :] + shift, steps_per_day=P)
    close = np.abs(shifted - base) <= 1e-3
    assert close.mean() >= 0.995                           # float32 rounding of the shifted values


@settings(max_examples=25, deadline=None)
@given(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.none()), max_size=60))
def test_scores_always_in_unit_interval(vals: list[float | None]) -> None:
    x = np.array([np.nan if v is None else v for v in vals], dtype=np.float64)
    with np.errstate(all="ignore"):
        s, _ = det().score(x)
    assert s.shape == (1, x.size)
    assert np.all(np.isfinite(s)) and np.all((s >= 0) & (s <= 1))


@pytest.mark.parametrize("bad", [np.zeros((0, 0)), np.zeros((3, 0)), np.array(5.0), [1.0], [[np.nan, np.inf, -np.inf]],
                                 np.ones((2, 3, 4)), "not numbers", None, [[1.0, 2.0], [3.0]]])
def test_bad_input_does_not_crash(bad: object) -> None:
    s, state = det().score(bad)
    assert s.ndim == 2 and np.all((s >= 0) & (s <= 1))
    assert isinstance(state, dict)


def test_state_carried_between_cycles_equals_one_pass() -> None:
    rng = np.random.default_rng(0)
    x = np.stack([seasonal(seed=i) for i in range(4)])
    x[2, 3 * P:] *= 2.0
    x[rng.random(x.shape) < 0.01] = np.nan
    d = det()
    full, _ = d.score(x, steps_per_day=P)
    parts, state = [], None
    for a, b in [(0, 500), (500, 501), (501, 1300), (1300, x.shape[1])]:
        s, state = d.score(x[:, a:b], state=state, steps_per_day=P)
        parts.append(s)
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), full)
    # the state is plain tensors: torch.save / torch.load round-trips it
    import io
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    assert set(torch.load(buf, weights_only=True)) == set(state)


def test_value_beyond_the_range_seen_is_found() -> None:
    # Numenta's "spatial anomaly": a value outside everything seen (plus 5 % of the range) scores 1
    x = seasonal(n=4 * P, seed=11)
    x[3 * P + 7] = x[: 3 * P].max() * 1.3
    s, _ = det().score(x[None, :], steps_per_day=P)
    assert s[0, 3 * P + 7] == 1.0
    assert s[0, P:3 * P].max() < ALARM


def test_record_gate_smaller_bursts_soon_after_a_big_one_are_not_news(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(12)
    x = 10.0 + rng.normal(0, 0.2, 8 * P)
    x[2 * P: 2 * P + 6] += 8.0                   # a big burst ...
    small = [2 * P + 250, 2 * P + 500, 2 * P + 750]
    for b in small:                              # ... then smaller ones within ~3 days (no steps_per_day here)
        x[b: b + 6] += 2.0
    x[6 * P: 6 * P + 6] += 16.0                  # a bigger one is news again
    s, _ = det().score(x[None, :])
    assert s[0, 2 * P: 2 * P + 12].max() >= ALARM
    assert max(s[0, b: b + 12].max() for b in small) < ALARM
    assert s[0, 6 * P: 6 * P + 12].max() >= ALARM
    import tools.detectors.anomaly as mod
    monkeypatch.setattr(mod, "RECORD_GATE", False)
    s_off, _ = det().score(x[None, :])
    assert max(s_off[0, b: b + 12].max() for b in small) >= ALARM   # without the gate they do alarm


def test_weekly_gate_a_weekly_pattern_is_not_news(monkeypatch: pytest.MonkeyPatch) -> None:
    x = seasonal(n=15 * P, seed=14)
    for day in (6, 13):                          # the same busy evening once a week
        x[day * P + 200: day * P + 240] += 3.0
    s, _ = det().score(x[None, :], steps_per_day=P)
    assert s[0, 6 * P + 200: 6 * P + 240].max() >= ALARM          # the first time it is news
    assert s[0, 13 * P + 190: 13 * P + 250].max() < ALARM         # a week later it is the same as last week
    import tools.detectors.anomaly as mod
    monkeypatch.setattr(mod, "WEEK_GATE", False)
    s_off, _ = det().score(x[None, :], steps_per_day=P)
    assert s_off[0, 13 * P + 190: 13 * P + 250].max() >= ALARM


def test_time_of_day_gate_a_job_seen_at_this_hour_days_ago_is_not_news(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch job on day 2 and again on day 6 at the same hour: yesterday it did not run (the daily
    gate is open), no week has been seen (no weekly gate), its record has faded for 4 days, but the
    same values were seen at this time of day within the last 6 days: not news. A job at an hour
    where it never ran still is."""
    x = seasonal(n=8 * P, seed=15)
    for day in (2, 6):
        x[day * P + 100: day * P + 130] += 3.0
    x[7 * P + 200: 7 * P + 230] += 6.0                 # a bigger job at another time of day
    s, _ = det().score(x[None, :], steps_per_day=P)
    assert s[0, 2 * P + 100: 2 * P + 130].max() >= ALARM          # the first time it is news
    assert s[0, 6 * P + 90: 6 * P + 140].max() < ALARM            # seen at this hour four days ago
    assert s[0, 7 * P + 200: 7 * P + 230].max() >= ALARM          # never seen at this hour
    import tools.detectors.anomaly as mod
    monkeypatch.setattr(mod, "TOD_GATE", False)
    s_off, _ = det().score(x[None, :], steps_per_day=P)
    assert s_off[0, 6 * P + 90: 6 * P + 140].max() >= ALARM       # without the gate it alarms again


def test_sampling_rate_calibration_coarse_series_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A series coarser than the 5-minute calibration rate has its tails multiplied by
    (steps_per_day / 288) ** RATE_EXPONENT: the same evidence scores higher. 5-minute and finer series,
    and series without a known day, are unchanged."""
    import tools.detectors.anomaly as mod
    exponent = mod.RATE_EXPONENT
    assert exponent > 0
    rng = np.random.default_rng(21)
    hourly = 10 + rng.normal(0, 0.3, size=24 * 20)
    for d in (8, 12, 16):
        hourly[24 * d + 5: 24 * d + 8] += 1.2              # modest events, inside the range seen
    fine = np.stack([seasonal(n=4 * P, seed=22), seasonal(n=4 * P, seed=23)])
    fine[:, 3 * P: 3 * P + 20] += 2.0
    fine_on = [det().score(fine, steps_per_day=spd)[0] for spd in (P, 5 * P, 0)]
    monkeypatch.setattr(mod, "DAMP", 1.0)                  # (quiet times would damp the two runs differently)
    s_on, _ = det().score(hourly[None, :], steps_per_day=24)
    monkeypatch.setattr(mod, "RATE_EXPONENT", 0.0)
    s_off, _ = det().score(hourly[None, :], steps_per_day=24)
    monkeypatch.setattr(mod, "DAMP", DAMP)
    for spd, f_on in zip((P, 5 * P, 0), fine_on, strict=True):
        assert np.array_equal(det().score(fine, steps_per_day=spd)[0], f_on)
    on, off = s_on[0], s_off[0]
    log_eps = math.log(mod.LOG_EPS)
    p_off = np.maximum(np.exp(off * log_eps) - mod.LOG_EPS, 0.0)
    k = (24 / mod.CALIBRATION_STEPS_PER_DAY) ** exponent
    expected = np.where((off > 0) & (off < 1), np.clip(np.log(p_off * k + mod.LOG_EPS) / log_eps, 0, 1), off)
    assert np.allclose(on, expected, atol=2e-3)
    assert (on > off + 0.2).any() and (on >= off - 1e-6).all()


def test_state_from_version_1_is_upgraded() -> None:
    x = np.stack([seasonal(seed=i) for i in range(2)])
    d = det()
    _, state = d.score(x[:, : 3 * P], steps_per_day=P)
    old = {k: v for k, v in state.items() if k not in ("vmin", "vmax", "nr", "gmax")}
    old["version"] = 1
    # a version-1 ring held one day: the last P samples, at position step % P
    steps = int(state["steps"][0])
    old["buf"] = torch.stack([torch.as_tensor(x[i, steps - P: steps], dtype=torch.float32) - state["ref"][i]
                              for i in range(2)])
    for k in ("scale", "short", "mu", "var", "nf"):                 # version 1 had 3 features, not 4
        old[k] = state[k][:3]
    old["buf"] = torch.roll(old["buf"], shifts=steps % P, dims=1)
    s, new = d.score(x[:, 3 * P:], state=old, steps_per_day=P)
    assert new["version"] == state["version"] and set(new) == set(state)
    assert new["buf"].shape == state["buf"].shape                  # the seasonal ring widened to a week
    assert np.all((s >= 0) & (s <= 1)) and s[:, :P].max() < ALARM   # the range is learnt again, quietly


def test_state_from_version_2_continues_exactly() -> None:
    """Version 2 kept the ring as [series, time]; upgraded, the scores go on as in one pass."""
    x = np.stack([seasonal(n=9 * P, seed=i) for i in range(3)])
    x[1, 8 * P + 100:] += 6.0
    whole, _ = det().score(x, steps_per_day=P)
    _, state = det().score(x[:, : 8 * P], steps_per_day=P)
    old = dict(state, version=2, buf=state["buf"].T.contiguous())
    rest, new = det().score(x[:, 8 * P:], state=old)
    assert new["version"] == 3 and new["buf"].shape == state["buf"].shape
    np.testing.assert_array_equal(rest, whole[:, 8 * P:])


def test_series_of_different_lengths_in_one_batch() -> None:
    a, b = seasonal(n=3 * P, seed=5), seasonal(n=2 * P, seed=6)
    batch = np.full((2, 3 * P), np.nan)
    batch[0], batch[1, : b.size] = a, b
    s, _ = det().score(batch, lengths=[a.size, b.size], steps_per_day=[P, P])
    alone, _ = det().score(b[None, :], steps_per_day=P)
    np.testing.assert_allclose(s[1, : b.size], alone[0], atol=1e-6)
    assert np.all(s[1, b.size:] == 0)


def test_series_at_different_steps_continue_as_if_scored_alone() -> None:
    """After a batch with lengths the series' rings sit at different steps (a ring read is then a
    per-series gather, not one slice); the next batch goes on as if each series were scored alone."""
    x = np.stack([seasonal(n=10 * P, seed=20 + i) for i in range(3)])
    x[1, 9 * P + 40:] += 3.0                           # a level shift a week and more in: the weekly ring is read
    first = [8 * P, 8 * P - 5, 7 * P + 100]
    batch = np.full((3, 8 * P), np.nan)
    for i, n in enumerate(first):
        batch[i, :n] = x[i, :n]
    _, state = det().score(batch, lengths=first, steps_per_day=P)
    assert len(set(state["steps"].tolist())) == 3
    rest = np.full((3, 3 * P), np.nan)
    for i, n in enumerate(first):
        rest[i, : 10 * P - n] = x[i, n:]
    s, new = det().score(rest, state=state, lengths=[10 * P - n for n in first])
    for i, n in enumerate(first):
        alone, st1 = det().score(x[i][None, :], steps_per_day=P)
        np.testing.assert_allclose(s[i, : 10 * P - n], alone[0, n:], atol=1e-6)
        # the ring holds the same last week of samples as the series scored alone
        assert int(new["steps"][i]) == int(st1["steps"][0]) == 10 * P
        np.testing.assert_allclose(new["buf"][:, i].numpy(), st1["buf"][:, 0].numpy(), atol=1e-6, equal_nan=True)
    assert s[1, 9 * P + 40 - first[1]: 9 * P + 60 - first[1]].max() >= ALARM


def test_counter_resets_are_increases() -> None:
    inc = np.abs(seasonal(n=3 * P, seed=7))
    counter = np.cumsum(inc)
    counter[P:] -= counter[P - 1]            # the exporter restarted: the counter starts again from 0
    s_counter, _ = det().score(counter[None, :], steps_per_day=P, counters=[True])
    s_rate, _ = det().score(np.r_[np.nan, inc[1:]][None, :], steps_per_day=P)
    np.testing.assert_allclose(s_counter, s_rate, atol=1e-6)


def test_steps_per_day() -> None:
    assert steps_per_day(np.arange(10) * 300.0) == 288
    assert steps_per_day([1.0]) == 0 and steps_per_day("x") == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no cuda")
def test_cuda_matches_cpu_reference() -> None:
    x = np.stack([seasonal(seed=i) for i in range(8)])
    x[3, 4 * P:] += 5.0
    cpu, _ = StreamingAnomalyDetector(device="cpu").score(x, steps_per_day=P)
    gpu, _ = StreamingAnomalyDetector(device="cuda").score(x, steps_per_day=P)
    assert np.abs(cpu - gpu).max() <= 1e-4 or np.mean(np.abs(cpu - gpu) <= 1e-4) >= 0.999
