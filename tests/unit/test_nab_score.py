"""bench/nab_score.py: NAB's scoring rules on a hand-computed corpus, and NAB's published scores."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tests.bench_scripts import load_bench

REPO = Path(__file__).resolve().parents[2]
NAB = REPO.parent / "shared" / "bench" / "nab"


ns = load_bench("nab_score")
STD = {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11}


def S(x: float) -> float:
    return -1.0 if x >= 3 else 2 / (1 + math.exp(5 * x)) - 1


def tiny_corpus() -> object:
    """20 rows (probation = 3), one window over rows 10..13 (W = 4)."""
    ts = np.datetime64("2020-01-01T00:00") + np.arange(20) * np.timedelta64(5, "m")
    info = ns.prepare_file("cat/a.csv", ts, [(ts[10], ts[13])], 0)
    corpus = ns.Corpus(profiles={"standard": STD})
    corpus.files["cat/a.csv"] = info
    corpus.n_windows = 1
    return corpus


def test_scaled_sigmoid_matches_readme() -> None:
    assert float(ns.scaled_sigmoid(np.array(-1.0))) == pytest.approx(0.9866, abs=1e-4)
    assert float(ns.scaled_sigmoid(np.array(0.0))) == 0.0
    assert float(ns.scaled_sigmoid(np.array(3.0))) == -1.0


def test_hand_computed_file_score() -> None:
    corpus = tiny_corpus()
    info = corpus.files["cat/a.csv"]
    assert info.windows == [(10, 13)]
    s = np.zeros(20)
    s[[1, 5, 11, 12, 15]] = 1.0          # row 1 is probationary: ignored; 12 is a second hit: ignored
    r = ns._file_raw(info, s, 0.5, STD)
    expected = -0.11 + S(-(13 - 11 + 1) / 4) / S(-1) + 0.11 * S(abs(13 - 15) / 3)
    assert r["raw"] == pytest.approx(expected, abs=1e-12)
    assert (r["tp"], r["fn"], r["fp"]) == (1, 0, 2)
    # no detection at all: the window is a false negative
    assert ns._file_raw(info, np.zeros(20), 0.5, STD)["raw"] == -1.0


def test_threshold_is_optimised_over_the_corpus() -> None:
    corpus = tiny_corpus()
    s = np.zeros(20)
    s[11] = 0.9      # a hit in the window
    s[5] = 0.95      # a false positive with a higher score
    s[16] = 0.3
    thr, best = ns.optimise_threshold(corpus, {"cat/a.csv": s}, STD)
    # threshold 0.9 takes the FP and the hit: -0.11 + S(-0.75)/S(-1) beats never firing (-1)
    assert thr == 0.9
    assert best == pytest.approx(-0.11 + S(-0.75) / S(-1), abs=1e-12)
    doc = ns.score_detector(corpus, {"cat/a.csv": s})["standard"]
    assert doc["score"] == pytest.approx(round(100 * (best + 1) / 2, 2))


def test_never_firing_scores_zero_and_perfect_scores_near_hundred() -> None:
    corpus = tiny_corpus()
    only_fp = np.full(20, np.nan)  # NaN: never a detection
    only_fp[5] = 1.0  # a detection before the window and nothing in it: firing never is better
    doc = ns.score_detector(corpus, {"cat/a.csv": only_fp})["standard"]
    assert doc["threshold"] == ns.NEVER and doc["score"] == 0.0
    s = np.zeros(20)
    s[10] = 1.0
    assert ns.score_detector(corpus, {"cat/a.csv": s})["standard"]["score"] == pytest.approx(100.0)


@pytest.mark.skipif(not NAB.is_dir(), reason="NAB development subset not present")
def test_reproduces_nab_published_random_scores() -> None:
    from agents.nab import detect_random, read_nab_csv

    corpus = ns.load_corpus(NAB)
    paths = sorted((NAB / "data").glob("*/*.csv"))
    series = [read_nab_csv(p) for p in paths]
    scores = detect_random([(t, v) for _, _, t, v in series])
    res = ns.score_detector(corpus, {f"{p.parent.name}/{p.name}": s for p, s in zip(paths, scores, strict=True)})
    assert res["standard"]["score"] == pytest.approx(22.05, abs=0.01)
    assert res["reward_low_FP_rate"]["score"] == pytest.approx(9.12, abs=0.01)
    assert res["reward_low_FN_rate"]["score"] == pytest.approx(31.45, abs=0.01)
