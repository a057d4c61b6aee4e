"""bench/cmd_corpus.py: NAB windows from point labels, and the conversion to NAB's layout."""

from __future__ import annotations

import json
from pathlib import Path

from tests.bench_scripts import load_bench

cmd = load_bench("cmd_corpus")


def test_windows_follow_nabs_labeller() -> None:
    labels = [0] * 100
    labels[40] = labels[41] = labels[42] = 1      # one run: one anomaly
    labels[90] = 1                                # a second anomaly
    # two anomalies in 100 rows: windows int(0.1 * 100 / 2) = 5 rows, 2 each side of the run
    assert cmd.windows_of(labels) == [(38, 44), (88, 92)]
    assert cmd.windows_of([0] * 50) == []
    near = [0] * 100
    near[50] = near[53] = 1                       # two runs whose windows overlap are merged
    assert cmd.windows_of(near) == [(48, 55)]
    assert cmd.windows_of([1] * 10) == [(0, 9)]


def test_conversion_writes_nab_layout(tmp_path: Path) -> None:
    src = tmp_path / "cmd" / "data" / "api-rps"
    src.mkdir(parents=True)
    rows = ["TimeStamp,Value,Label"] + [f'"2018-07-03 {h:02d}:00:00",{10 + (h == 20) * 50},{int(h == 20)}'
                                         for h in range(23)] + ['2018-07-04T01:00:00+02:00,10,0']
    (src / "api-01.csv").write_text("\n".join(rows) + "\n")
    counts = cmd.convert(tmp_path / "cmd", tmp_path / "nab")
    assert counts == {"files": 1, "rows": 24, "windows": 1, "domains": 1}
    data = (tmp_path / "nab" / "data" / "api-rps" / "api-01.csv").read_text().splitlines()
    assert data[0] == "timestamp,value" and data[21] == "2018-07-03 20:00:00,60"
    assert data[24] == "2018-07-03 23:00:00,10"      # a zone offset is read and written as UTC
    windows = json.loads((tmp_path / "nab" / "labels" / "combined_windows.json").read_text())
    assert windows == {"api-rps/api-01.csv": [["2018-07-03 19:00:00.000000", "2018-07-03 21:00:00.000000"]]}


def test_the_script_scores_a_converted_corpus(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "cmd" / "data" / "api-rps"
    src.mkdir(parents=True)
    rows = ["TimeStamp,Value,Label"] + [f"2018-07-{1 + h // 24:02d} {h % 24:02d}:00:00,{10 + (h % 7) + (h == 200) * 90},"
                                         f"{int(h == 200)}" for h in range(240)]
    (src / "api-01.csv").write_text("\n".join(rows) + "\n")
    assert cmd.main(["--data", str(tmp_path / "cmd"), "--out", str(tmp_path / "out"), "--detectors", "zscore,null",
                     "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["corpus"]["windows"] == 1
    # a 9-sigma spike in its window is found by the robust z-score; never firing scores 0
    assert doc["scores"]["zscore"]["standard"]["score"] > 50 and doc["scores"]["null"]["standard"]["score"] <= 0.0
