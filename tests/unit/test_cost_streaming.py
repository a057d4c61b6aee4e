"""The torch streaming detector decides cost anomalies (test 1b of tools/detectors/cost.py): its
latest alarm is the onset of the event, the window runs from there, and the same gates apply. An
alarm on a blip, a drop or a rise that has ended decides nothing. ``remediator nab --detector
production`` replays exactly this path."""

from __future__ import annotations

import numpy as np

from agents.nab import detect_production, detect_remediator
from tests.unit.cost_series import STEP, simulate
from tools.detectors.anomaly import ALARM
from tools.detectors.common import InputStats
from tools.detectors.cost import CostSettings, WorkloadSeries, detect_cost_anomalies, streaming_alarms

NOW = 1_795_775_700.0
S = CostSettings()


def _ws(ts: np.ndarray, cost: np.ndarray, name: str = "ml/tagger") -> WorkloadSeries:
    return WorkloadSeries(service=name, file=None, ts=ts, cost=cost)


def _flat(seed: int = 0, days: int = 7) -> tuple[np.ndarray, np.ndarray]:
    c = simulate(NOW, seed=seed, lo=3, hi=3, days=days)   # three replicas all week: a flat price with noise
    return c.ts, c.cost.copy()


def test_a_step_is_decided_by_the_streaming_alarm_from_its_onset() -> None:
    ts, cost = _flat()
    at = ts.size - 3 * 3600 // STEP                      # x2 for the last three hours
    cost[at:] *= 2.0
    (w,) = streaming_alarms([_ws(ts, cost)])
    assert w.anomaly_alarm_ts is not None and ts[at] <= w.anomaly_alarm_ts <= ts[at] + 3600
    (f,) = detect_cost_anomalies([w], S, InputStats())
    assert f.detector == "cost.streaming" and f.evidence["method"] == "streaming"
    start = np.datetime64(f.evidence["window"]["start"].rstrip("Z"), "s").astype(np.int64)
    assert ts[at] - STEP <= start <= int(w.anomaly_alarm_ts)   # the window starts at the rise, by the alarm at the latest
    assert f.evidence["ratio"] >= 1.8 and "anomaly_alarm_at" in f.evidence


def test_without_the_alarm_the_same_step_is_still_found_by_the_same_hour_test() -> None:
    ts, cost = _flat()
    cost[ts.size - 3 * 3600 // STEP:] *= 2.0
    (f,) = detect_cost_anomalies([_ws(ts, cost)], S, InputStats())
    assert f.evidence["method"] == "seasonal"


def test_an_alarm_on_a_blip_a_drop_or_an_ended_rise_decides_nothing() -> None:
    ts, base = _flat(seed=3)
    blip, drop, ended = base.copy(), base.copy(), base.copy()
    blip[-2] *= 4.0                                       # one sample
    drop[-2 * 3600 // STEP:] *= 0.3                       # the cost fell
    ended[-8 * 3600 // STEP: -4 * 3600 // STEP] *= 2.5    # a rise that ended four hours ago
    ws = streaming_alarms([_ws(ts, x, f"ml/{k}") for k, x in (("blip", blip), ("drop", drop), ("ended", ended))])
    assert all(w.anomaly_alarm_ts is not None for w in ws), "each must raise an alarm for the test to mean anything"
    assert detect_cost_anomalies(ws, S, InputStats()) == []


def test_series_of_different_lengths_are_scored_as_one_batch_like_one_by_one() -> None:
    ts, cost = _flat(seed=5)
    cost[-3600 // STEP:] *= 3.0
    short_ts, short = ts[-2 * 86400 // STEP:], cost[-2 * 86400 // STEP:].copy()
    together = streaming_alarms([_ws(ts, cost, "ml/a"), _ws(short_ts, short, "ml/b")])
    alone = [streaming_alarms([w])[0] for w in (_ws(ts, cost, "ml/a"), _ws(short_ts, short, "ml/b"))]
    for x, y in zip(together, alone, strict=True):
        assert x.anomaly_alarm_ts == y.anomaly_alarm_ts
        np.testing.assert_allclose(np.asarray(x.anomaly_scores), np.asarray(y.anomaly_scores), atol=1e-9)


def test_a_workload_the_detector_cannot_take_keeps_what_it_had() -> None:
    ts, cost = _flat()
    bad = WorkloadSeries(service="ml/bad", file=None, ts=ts[:10], cost=cost[:5])   # shapes disagree
    out = streaming_alarms([bad, _ws(ts, cost)])
    assert out[0] is bad and out[1].anomaly_scores is not None


def test_the_nab_replay_is_the_daemon_path_at_each_cycle() -> None:
    """``detect_production`` scores a row exactly where a cycle's detect_cost_anomalies (on the last
    week, with the streaming alarm up to then) first finds the rise, and 0 elsewhere; the opening's
    score is the model's evidence for it (the finding's anomaly_score_max), here an alarm."""
    c = simulate(NOW, seed=11, lo=3, hi=3, days=3)
    ts, cost = c.ts, c.cost.copy()
    at = ts.size - 6 * 3600 // STEP
    cost[at:] *= 2.0
    every = 1800.0
    (score,) = detect_production([(ts, cost)], every_s=every)
    hits = np.nonzero(score)[0]
    assert hits.size == 1
    i = int(hits[0])
    assert ts[at] < ts[i] <= ts[at] + 3600 and score[i] >= ALARM
    # the cycle before found nothing, this one finds it: recomputed here without the replay
    (sc,) = detect_remediator([(ts, cost)])
    for row, want in ((i, 1), (int(np.searchsorted(ts, ts[i] - every)), 0)):
        alarms = np.nonzero(sc[: row + 1] >= ALARM)[0]
        w = WorkloadSeries(service="nab", file=None, ts=ts[: row + 1], cost=cost[: row + 1], anomaly_scores=sc[: row + 1],
                           anomaly_alarm_ts=float(ts[alarms[-1]]) if alarms.size else None)
        found = detect_cost_anomalies([w], S, InputStats())
        assert len(found) == want
        if want:
            assert found[0].evidence["anomaly_score_max"] == score[i]


def test_an_opening_the_model_did_not_alarm_on_scores_below_alarm_and_above_no_opening() -> None:
    """A creep over days the streaming model adapted to (no alarm) is found by the cost tests; its
    opening scores the model's highest score over the window, below ALARM, and at least
    OPENING_FLOOR, so NAB's sweep can keep every opening of the daemon or only the alarmed ones."""
    from agents.nab import OPENING_FLOOR

    c = simulate(NOW, seed=4, lo=3, hi=3, days=7)
    ts, cost = c.ts, c.cost * np.clip(1 + (c.ts - (NOW - 4 * 86400)) / (4 * 86400), 1, 2)
    (score,) = detect_production([(ts, cost)], every_s=3600.0)
    hits = np.nonzero(score)[0]
    assert hits.size == 1 and OPENING_FLOOR <= score[hits[0]] < ALARM


def test_an_alarm_late_in_a_creep_does_not_cut_the_window_short() -> None:
    """Found at tz-shift 8 on the creep scenario: the detector alarmed 10 h ago, in the middle of a
    rise that began two days ago; a window from the alarm read the creep's own high replicas as
    "before", and the planner capped nothing. The window goes back to where the rise began (whichever
    test decides: the alarm's own test only where the tail is above what it was before the alarm)."""
    c = simulate(NOW, seed=8, creep=(NOW - 2 * 86400, NOW - 86400, 2.6))
    late = float(c.ts[-10 * 3600 // STEP])
    w = WorkloadSeries(service="ml/tagger", file=None, ts=c.ts, cost=c.cost, replicas=c.replicas,
                       request_rate=c.rps, anomaly_alarm_ts=late)
    (f,) = detect_cost_anomalies([w], S, InputStats())
    start = np.datetime64(f.evidence["window"]["start"].rstrip("Z"), "s").astype(np.int64)
    assert start < late - 12 * 3600
    assert f.evidence["replicas_before_median"] < f.evidence["replicas_now"] - 2


ONLY_1B = CostSettings(tests=("streaming",))


def _at(ts: np.ndarray, hours_ago: float) -> int:
    return int(ts.size - round(hours_ago * 3600 / STEP))


def _alarmed(ts: np.ndarray, cost: np.ndarray, hours_ago: float) -> WorkloadSeries:
    return WorkloadSeries(service="ml/tagger", file=None, ts=ts, cost=cost, anomaly_alarm_ts=float(ts[_at(ts, hours_ago)]))


def test_one_alarm_one_event_a_rise_after_the_event_ended_is_not_that_alarms() -> None:
    """The event of an alarm is over once the cost stayed back near its pre-alarm level for
    ``event_end_s``; a later rise (with no new alarm) is not that alarm's to decide: its incident
    resolved and stays resolved. (Before: the old alarm reopened an incident on every later rise.)"""
    ts, cost = _flat(seed=21)
    cost[_at(ts, 10): _at(ts, 7)] *= 2.0      # the alarm's event: 3 h, over 7 h ago
    cost[_at(ts, 1):] *= 2.0                  # a new rise an hour ago
    assert detect_cost_anomalies([_alarmed(ts, cost, 10)], ONLY_1B, InputStats()) == []
    (f,) = detect_cost_anomalies([_alarmed(ts, cost, 1)], ONLY_1B, InputStats())   # its own alarm decides it
    assert f.evidence["method"] == "streaming" and f.evidence["ratio"] >= 1.8


def test_a_dip_shorter_than_event_end_pauses_the_finding_and_the_event_goes_on() -> None:
    ts, cost = _flat(seed=22)
    cost[_at(ts, 6):] *= 2.0
    cost[_at(ts, 3): _at(ts, 2.5)] /= 2.0     # back to the usual cost for 30 min
    during = _at(ts, 2.6)
    w = _alarmed(ts[:during], cost[:during], 6 - 0.1)
    assert detect_cost_anomalies([w], ONLY_1B, InputStats()) == []        # paused while back at the usual cost
    (f,) = detect_cost_anomalies([_alarmed(ts, cost, 6)], ONLY_1B, InputStats())
    start = np.datetime64(f.evidence["window"]["start"].rstrip("Z"), "s").astype(np.int64)
    assert start == int(ts[_at(ts, 6)])                                    # the same event, from its alarm


def test_an_event_stays_found_while_its_tail_holds_above_half_the_gate() -> None:
    """Hysteresis: x1.5 for an hour, then x1.2 for five: the mean since the alarm sinks under
    ``min_ratio`` (x1.3) but the cost never went back near its usual level: still the same finding
    (before: it vanished, its incident resolved an hour later and the next bump opened another)."""
    ts, cost = _flat(seed=23)
    cost[_at(ts, 6): _at(ts, 5)] *= 1.5
    cost[_at(ts, 5):] *= 1.2
    (f,) = detect_cost_anomalies([_alarmed(ts, cost, 6)], ONLY_1B, InputStats())
    assert f.evidence["method"] == "streaming" and f.evidence["ratio"] < S.min_ratio
    early = _at(ts, 5.9)                                                    # 6 minutes in: shorter than min_duration
    assert detect_cost_anomalies([_alarmed(ts[:early], cost[:early], 6)], ONLY_1B, InputStats()) == []


def test_spend_from_nothing_is_a_rise_and_noise_near_nothing_ends_the_event() -> None:
    """A workload that cost (about) $0/h for days: new spend is a rise (read as x100); once it is back
    to about $0/h, noise around nothing does not count as the event going on (the finding stops)."""
    rng = np.random.default_rng(24)
    ts, _ = _flat(seed=24)
    cost = np.abs(rng.normal(0.0, 0.01, ts.size))
    cost[_at(ts, 2):] = 5.0 + rng.normal(0, 0.1, _at(ts, 0) - _at(ts, 2))
    (f,) = detect_cost_anomalies([_alarmed(ts, cost, 2)], ONLY_1B, InputStats())
    assert f.evidence["ratio"] >= 50
    ended = cost.copy()
    ended[_at(ts, 2): _at(ts, 0.5)] = 5.0                                 # spent for 90 min, then nothing again
    ended[_at(ts, 0.5):] = np.abs(rng.normal(0.0, 0.01, _at(ts, 0) - _at(ts, 0.5)))
    assert detect_cost_anomalies([_alarmed(ts, ended, 2)], ONLY_1B, InputStats()) == []


def test_the_nab_replay_opens_one_incident_for_an_event_with_dips() -> None:
    """A noisy excursion that dips under its gate now and then (for less than ``event_end_s``) is
    one incident in the replay, as in the daemon: one scored row."""
    c = simulate(NOW, seed=25, lo=3, hi=3, days=3)
    ts, cost = c.ts, c.cost.copy()
    at = ts.size - 10 * 3600 // STEP
    cost[at:] *= 2.0
    for h in (8, 6, 4, 2):                   # 20 minutes back at the usual cost every two hours
        cost[_at(ts, h): _at(ts, h - 1 / 3)] /= 2.0
    (score,) = detect_production([(ts, cost)], every_s=600.0)
    assert np.count_nonzero(score) == 1 and score[np.nonzero(score)[0][0]] >= ALARM
