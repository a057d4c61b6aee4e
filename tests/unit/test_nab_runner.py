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
