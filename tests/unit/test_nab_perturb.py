"""bench/nab_perturb.py: perturbed NAB copies for the robustness checks in bench/README.md."""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path

import numpy as np

from tests.bench_scripts import load_bench

npb = load_bench("nab_perturb")


def _rows(n: int = 200) -> list[list[str]]:
    t0 = datetime(2020, 1, 1).timestamp()
    return [[datetime.fromtimestamp(t0 + 300 * i).strftime("%Y-%m-%d %H:%M:%S"), str(float(i % 7))]
            for i in range(n)]


def _fake_nab(root: Path) -> Path:
    (root / "data" / "cat").mkdir(parents=True)
    with (root / "data" / "cat" / "a.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "value"])
        w.writerows(_rows())
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps({"cat/a.csv": []}))
    return root


def test_drop_keeps_first_row_and_about_the_fraction() -> None:
    rows = _rows(2000)
    kept = npb.drop_rows(rows, 0.15, np.random.default_rng(7))
    assert kept[0] == rows[0]
    assert 0.80 < len(kept) / len(rows) < 0.90
    assert all(r in rows for r in kept[:50])


def test_jitter_stays_within_the_fraction_and_keeps_order() -> None:
    rows = _rows(500)
    out = npb.jitter_rows(rows, 0.45, np.random.default_rng(11))
    t_in = np.array([datetime.fromisoformat(r[0]).timestamp() for r in rows])
    t_out = np.array([datetime.fromisoformat(r[0]).timestamp() for r in out])
    assert np.abs(t_out - t_in).max() <= 0.45 * 300 + 1
    assert (np.diff(t_out) > 0).all()
    assert [r[1] for r in out] == [r[1] for r in rows]
    assert np.abs(t_out - t_in).max() > 60          # it did move them


def test_resample_max_and_mean() -> None:
    rows = _rows(13)                                  # values 0..6, 0..5
    mx = npb.resample_rows(rows, 6, "max")
    mean = npb.resample_rows(rows, 6, "mean")
    assert len(mx) == len(mean) == 3
    assert [float(r[1]) for r in mx] == [5.0, 6.0, 5.0]
    assert float(mean[0][1]) == sum(range(6)) / 6
    assert [r[0] for r in mx] == [rows[0][0], rows[6][0], rows[12][0]]


def test_folder_copy_is_reproducible_and_refuses_a_used_out(tmp_path: Path) -> None:
    nab = _fake_nab(tmp_path / "nab")
    assert npb.main(["--nab", str(nab), "--out", str(tmp_path / "a"), "--drop", "0.2", "--seed", "3"]) == 0
    assert npb.main(["--nab", str(nab), "--out", str(tmp_path / "b"), "--drop", "0.2", "--seed", "3"]) == 0
    a = (tmp_path / "a" / "data" / "cat" / "a.csv").read_text()
    assert a == (tmp_path / "b" / "data" / "cat" / "a.csv").read_text()
    assert (tmp_path / "a" / "labels" / "combined_windows.json").exists()
    assert npb.main(["--nab", str(nab), "--out", str(tmp_path / "a"), "--drop", "0.2"]) == 2   # not empty
    assert npb.main(["--nab", str(nab), "--out", str(tmp_path / "c"), "--jitter", "0.5"]) == 2  # would reorder
