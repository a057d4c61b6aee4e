"""Embedding drift tests (tools/detectors/embedding_drift.py): the stated false-alarm rate on
identical distributions, the stated power on a shift of stated size, and bad input refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tools.detectors.embedding_drift import c2st, detect_embedding_drift, mmd_test


def test_false_alarms_on_identical_distributions_stay_near_alpha() -> None:
    """40 draws of two samples of one distribution (n = 100, d = 16): at alpha 0.05 the expected
    count is 2; more than 6 would be a rate above 0.15 (p < 0.01 for a correct test)."""
    rng = np.random.default_rng(7)
    alarms = sum(mmd_test(rng.normal(size=(100, 16)), rng.normal(size=(100, 16)), seed=i).p_value < 0.05
                 for i in range(40))
    assert alarms <= 6


def test_a_half_sigma_shift_on_an_eighth_of_the_coordinates_is_found_at_n_200() -> None:
    """bench/README.md: power 1.00 at n = 200, shift 0.5; here: at least 19 of 20 draws."""
    rng = np.random.default_rng(11)
    found = 0
    for i in range(20):
        x, y = rng.normal(size=(200, 64)), rng.normal(size=(200, 64))
        y[:, :8] += 0.5
        found += mmd_test(x, y, seed=i).p_value < 0.05
    assert found >= 19


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(10, 80), d=st.integers(1, 12))
def test_p_values_are_valid_and_identical_samples_never_drift(seed: int, n: int, d: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    res = mmd_test(x, x.copy(), n_permutations=50, seed=seed)
    assert 1 / 51 <= res.p_value <= 1.0 and res.statistic == pytest.approx(0.0, abs=1e-5)
    y = rng.normal(size=(n + 3, d))
    assert 0 < mmd_test(x, y, n_permutations=50, seed=seed).p_value <= 1


def test_the_modality_that_drifted_is_named_and_the_fused_embedding_is_tested() -> None:
    rng = np.random.default_rng(3)
    ref = {"image": rng.normal(size=(150, 32)), "text": rng.normal(size=(150, 16))}
    cur = {"image": rng.normal(size=(150, 32)) + np.r_[np.full(4, 0.8), np.zeros(28)],
           "text": rng.normal(size=(150, 16))}
    got = {r.modality: r for r in detect_embedding_drift(ref, cur)}
    assert set(got) == {"image", "text", "fused"}
    assert got["image"].drifted and not got["text"].drifted and got["fused"].drifted
    assert got["image"].c2st is not None and 0.0 <= got["image"].c2st.p_value <= 1.0


def test_mismatched_dimensions_and_tiny_samples_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match=r"same width \(got \(10, 4\) and \(10, 5\)\)"):
        mmd_test(np.zeros((10, 4)), np.zeros((10, 5)))
    with pytest.raises(ValueError, match="at least 2 rows"):
        mmd_test(np.zeros((1, 4)), np.zeros((10, 4)))
    assert c2st(np.zeros((30, 2)), np.ones((30, 2))).p_value < 0.01   # trivially separable


def test_a_batch_gives_each_test_the_result_it_gets_alone() -> None:
    """run_many stacks tests of the same sizes (any widths): the MMD statistic and p-value of each are
    those of mmd_test on its own samples; a batch of mixed sizes keeps the order of the tests."""
    from tools.detectors.embedding_drift import DriftTest, run_many

    rng = np.random.default_rng(2)
    tests = []
    for i, (n, d, shift) in enumerate([(120, 32, 0.0), (120, 8, 0.6), (120, 64, 0.3), (60, 16, 0.0), (60, 4, 1.0)]):
        x, y = rng.normal(size=(n, d)), rng.normal(size=(n, d))
        y[:, : max(1, d // 4)] += shift
        tests.append(DriftTest(key=f"s{i}", modality="image", reference=x, current=y))
    batched = run_many(tests, seed=4)
    for t, b in zip(tests, batched, strict=True):
        alone = mmd_test(t.reference, t.current, seed=4)
        assert b.mmd.statistic == pytest.approx(alone.statistic, rel=1e-4, abs=1e-7)
        assert b.mmd.p_value == pytest.approx(alone.p_value)
        assert b.c2st is not None and 0.0 <= b.c2st.p_value <= 1.0
    assert [b.drifted for b in batched] == [False, True, True, False, True]
    # the classifiers of a batch of mixed widths keep their order: only the shifted pairs are told apart
    from tools.detectors.embedding_drift import _c2st_batch

    pairs = [(rng.normal(size=(100, d)), rng.normal(size=(100, d)) + shift)
             for d, shift in [(16, 0.0), (8, 3.0), (16, 3.0), (4, 0.0)]]
    acc = [r.statistic for r in _c2st_batch(pairs, epochs=60, seed=1, dev=torch.device("cpu"))]
    assert acc[1] > 0.95 and acc[2] > 0.95 and acc[0] < 0.7 and acc[3] < 0.7, acc
    with pytest.raises(ValueError, match=r"s9 image: embeddings hold NaN"):
        run_many([DriftTest(key="s9", modality="image", reference=np.full((5, 2), np.nan), current=np.zeros((5, 2)))])
