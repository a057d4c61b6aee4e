"""The cycle's batch scoring keeps the streaming detector's state in memory: a later cycle (even
after a restart) scores only new samples and gets the scores one pass would have given."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agents.scoring import KEY, score_batch
from memory.store import Store
from tools.detectors.anomaly import StreamingAnomalyDetector, steps_per_day

STEP = 600.0


def series(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ts = 1_795_000_000 + STEP * np.arange(n)
    base = np.stack([3 + 0.5 * np.sin(2 * np.pi * ts / 86400) + 0.05 * rng.standard_normal(n),
                     10 + 0.1 * rng.standard_normal(n)])
    base[0, -30:] *= 3  # a sustained jump at the end of the first series
    return ts, base


def test_state_survives_a_restart_and_continues_exactly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    ts, v = series(1500)
    keys = ["ml/a", "ml/b"]
    first = score_batch(Store.open(url), keys, ts[:1200], v[:, :1200])
    assert not first["ml/a"]["resumed"]
    restarted = Store.open(url)  # a new process
    assert restarted.get_kv(KEY)
    second = score_batch(restarted, keys, ts, v)
    assert second["ml/a"]["resumed"]
    one_pass, _ = StreamingAnomalyDetector().score(v, steps_per_day=steps_per_day(ts))
    np.testing.assert_allclose(second["ml/a"]["scores"][1200:], one_pass[0, 1200:], atol=1e-9)
    assert np.all(second["ml/a"]["scores"][:1200] == 0)  # not rescored
    assert second["ml/a"]["alarm_ts"] is not None and second["ml/a"]["alarm_ts"] >= ts[-30]


def test_a_changed_set_of_workloads_starts_cold(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 's.db'}")
    ts, v = series(800)
    score_batch(store, ["ml/a", "ml/b"], ts[:700], v[:, :700])
    again = score_batch(store, ["ml/a"], ts, v[:1])
    assert not again["ml/a"]["resumed"]


def test_unreadable_state_is_discarded(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 's.db'}")
    store.set_kv(KEY, "not base64 torch")
    ts, v = series(300)
    out = score_batch(store, ["ml/a", "ml/b"], ts, v)
    assert not out["ml/a"]["resumed"] and out["ml/a"]["scores"].shape == (300,)
