"""bench/nab_loco.py: every choice is made without the held-out category."""

from __future__ import annotations

import numpy as np

from tests.bench_scripts import load_bench

ns = load_bench("nab_score")
nl = load_bench("nab_loco")
STD = {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11}
N = 40


def corpus() -> object:
    """Categories A and B, one file each with one window over rows 20..25; N without windows."""
    ts = np.datetime64("2020-01-01T00:00") + np.arange(N) * np.timedelta64(5, "m")
    c = ns.Corpus(profiles={"standard": STD})
    for i, cat in enumerate(("A", "B")):
        c.files[f"{cat}/f.csv"] = ns.prepare_file(f"{cat}/f.csv", ts, [(ts[20], ts[25])], i)
    c.files["artificialNoAnomaly/f.csv"] = ns.prepare_file("artificialNoAnomaly/f.csv", ts, [], 2)
    c.n_windows = 2
    return c


def scores(hit_a: bool, hit_b: bool, fp_n: bool = False) -> dict[str, np.ndarray]:
    out = {k: np.zeros(N) for k in ("A/f.csv", "B/f.csv", "artificialNoAnomaly/f.csv")}
    out["A/f.csv"][20 if hit_a else 30] = 0.9
    out["B/f.csv"][20 if hit_b else 30] = 0.9
    if fp_n:
        out["artificialNoAnomaly/f.csv"][30] = 0.9
    return out


def test_the_knob_of_each_fold_is_chosen_on_the_other_categories() -> None:
    runs = {"good-on-A": scores(True, False), "good-on-B": scores(False, True)}
    res = nl.loco(corpus(), runs)
    # holding A out, the choice is made on B: the knob that is good on B, which then misses A
    assert res["folds"]["A"]["knob"] == "good-on-B" and res["folds"]["B"]["knob"] == "good-on-A"
    assert res["folds"]["A"]["score"] < 0 and res["folds"]["B"]["score"] < 0
    assert res["worst"] == min(f["score"] for f in res["folds"].values())
    assert set(res["folds"]) == {"A", "B"}            # the category without windows is never a fold


def test_a_detector_right_everywhere_scores_100_on_every_fold_and_its_fps_are_counted() -> None:
    res = nl.loco(corpus(), {None: scores(True, True, fp_n=True)})
    assert res["mean"] > 95 and res["worst"] > 95
    assert res["fp_no_anomaly"] == 1


def test_the_adaptive_resonance_candidate_alarms_on_a_new_shape_and_not_on_a_repeating_one() -> None:
    """bench/nab_art.py: a daily pattern repeated for two weeks makes no new cluster once it has been
    seen for a week (the first days after the probationary part may still add a few weak ones); the
    same series with a level step late in it scores highest there, whichever normalisation; missing
    values are carried, not scored."""
    art = load_bench("nab_art")
    t = np.arange(4032)
    rng = np.random.default_rng(0)
    base = 10 + 3 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 0.1, t.size)
    for norm in ("file", "probation"):
        assert not art.art_scores(base, norm=norm)[2016:].any()
        step = base.copy()
        step[3000:] += 8
        step[1000:1010] = np.nan
        s = art.art_scores(step, norm=norm)
        top = int(np.argmax(s))
        assert 3000 <= top <= 3200 and not s[2016:3000].any(), np.nonzero(s)[0]
        assert (s >= 0).all() and (s <= 1).all()
    assert not art.art_scores(np.full(50, np.nan)).any()


def test_the_daemon_shaped_art_replay_scores_each_cycle_from_cold_on_its_window() -> None:
    """bench/nab_art.py art_history: every 3 h of series time, ART from cold on the last 7 days;
    the rows since the previous cycle keep that run's scores (recomputed here for one cycle)."""
    art = load_bench("nab_art")
    t = 1.6e9 + 300.0 * np.arange(3500)
    rng = np.random.default_rng(1)
    v = 10 + 3 * np.sin(2 * np.pi * np.arange(t.size) / 288) + rng.normal(0, 0.1, t.size)
    v[3000:] += 8
    (s,) = art.art_history([(t, v)])
    assert 3000 <= int(np.argmax(s)) <= 3300 and s.max() > 0
    e = 36 * 84 - 1                     # a cycle ends here (36 rows of 5 minutes each), the first after the step
    lo = int(np.searchsorted(t, t[e] - 7 * 86400.0))
    assert s[e - 35: e + 1].any()
    np.testing.assert_array_equal(s[e - 35: e + 1], art.art_scores(v[lo: e + 1])[-36:])
    np.testing.assert_array_equal(s[e + 1: e + 37], art.art_scores(v[lo + 36: e + 37])[-36:])
