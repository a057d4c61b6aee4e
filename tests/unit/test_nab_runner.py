"""`remediator nab`: NAB's results layout, one row per input row in order, scores in [0, 1]."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agents.nab import DETECTORS, run_nab


def corpus(root: Path) -> None:
    rng = np.random.default_rng(3)
    for cat, name, n in (("realA", "f1", 900), ("artificialB", "f2", 400)):
        (root / cat).mkdir(parents=True)
        v = 10 + rng.standard_normal(n)
        v[n // 2] = 40  # one spike
        v[7] = np.nan
        with (root / cat / f"{name}.csv").open("w") as fp:
            fp.write("timestamp,value\n")
            for i, x in enumerate(v):
                fp.write(f"2026-01-{1 + i // 288:02d} {(i % 288) * 5 // 60:02d}:{(i * 5) % 60:02d}:00,"
                         f"{'' if np.isnan(x) else round(float(x), 3)}\n")


@pytest.mark.parametrize("detector", sorted(DETECTORS))
def test_every_detector_writes_nab_results(tmp_path: Path, detector: str) -> None:
    corpus(tmp_path / "data")
    run_nab(tmp_path / "data", tmp_path / "out", detector)
    for cat, name in (("realA", "f1"), ("artificialB", "f2")):
        src = list(csv.DictReader((tmp_path / "data" / cat / f"{name}.csv").open()))
        res = list(csv.DictReader((tmp_path / "out" / detector / cat / f"{detector}_{name}.csv").open()))
        assert [r["timestamp"] for r in res] == [r["timestamp"] for r in src]
        assert set(res[0]) == {"timestamp", "value", "anomaly_score"}
        scores = np.array([float(r["anomaly_score"]) for r in res])
        assert np.all((scores >= 0) & (scores <= 1))


def test_unknown_detector_is_a_usage_error(tmp_path: Path) -> None:
    corpus(tmp_path / "data")
    with pytest.raises(ValueError, match="unknown detector"):
        run_nab(tmp_path / "data", tmp_path / "out", "magic")
    proc = subprocess.run([sys.executable, "-m", "agents.cli", "nab", "--data", str(tmp_path / "data"),
                           "--out", str(tmp_path / "out"), "--detector", "magic"], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown detector" in proc.stderr and "Traceback" not in proc.stderr


def test_irregular_rows_are_placed_on_the_regular_grid_the_daemon_sees() -> None:
    from agents.nab import detect_remediator, grid_slots

    step = 300.0
    assert grid_slots(np.arange(5) * step).tolist() == [0, 1, 2, 3, 4]
    # a gap of 3 samples, a duplicate timestamp (kept in order in the next free slot: no row's value is
    # lost; the rows after it follow one slot late until a gap absorbs the shift), an off-grid time
    ts = np.array([0, 300, 1200, 1200, 1500, 1790, 2100], dtype=float)
    assert grid_slots(ts).tolist() == [0, 1, 4, 5, 6, 7, 8]
    # unknown timing: one slot per row
    assert grid_slots(np.array([0.0, 600.0, 300.0])).tolist() == [0, 1, 2]
    assert grid_slots(np.array([0.0, np.nan, 600.0])).tolist() == [0, 1, 2]
    assert grid_slots(np.array([0.0, 300.0, 300.0 * 10_000])).tolist() == [0, 1, 2]   # a grid 20x the rows
    # one score per row, in order; a gap does not shift "one day earlier" (same scores as the gridded series)
    rng = np.random.default_rng(1)
    t = np.arange(3 * 288) * step
    v = 10 + np.sin(2 * np.pi * np.arange(t.size) / 288) + 0.05 * rng.standard_normal(t.size)
    keep = np.ones(t.size, bool)
    keep[400:430] = False
    (s,) = detect_remediator([(t[keep], v[keep])])
    assert s.shape == (int(keep.sum()),)
    gridded = np.where(keep, v, np.nan)
    (g,) = detect_remediator([(t, gridded)])
    np.testing.assert_allclose(s, g[keep])
