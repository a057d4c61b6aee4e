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
