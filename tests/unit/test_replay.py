from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from tools.errors import TemporaryError
from tools.replay import ReplaySource

T = 1_800_000_000  # samples at T, T+60, ... (unix seconds)
OM = f"""# HELP kube_deployment_status_replicas replicas
# TYPE kube_deployment_status_replicas gauge
kube_deployment_status_replicas{{namespace="ml",deployment="web"}} 1 {T}
kube_deployment_status_replicas{{namespace="ml",deployment="web"}} 2 {T + 60}
kube_deployment_status_replicas{{namespace="ml",deployment="web"}} 3 {T + 300}
kube_deployment_status_replicas{{namespace="ml",deployment="web-other"}} 7 {T}
# TYPE inference_predictions counter
inference_predictions_total{{namespace="ml",service="web",model_version="1",class="a \\"quoted\\", b"}} 10 {T}
inference_predictions_total{{namespace="ml",service="web",model_version="1",class="a \\"quoted\\", b"}} 20 {T + 60} # {{trace_id="x"}} 1 {T}
inference_predictions_total{{namespace="ml",service="web",model_version="1",class="a \\"quoted\\", b"}} 35 {T + 120}
this line is garbage
no_timestamp{{a="b"}} 3
# TYPE inference_requests counter
inference_requests_total{{namespace="ml",service="web",code="200"}} 100 {T}
inference_requests_total{{namespace="ml",service="web",code="200"}} 160 {T + 60}
inference_requests_total{{namespace="ml",service="web",code="200"}} 10 {T + 120}
inference_requests_total{{namespace="ml",service="web",code="200"}} 70 {T + 180}
# EOF
"""


def at(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


@pytest.fixture()
def om(tmp_path: Path) -> Path:
    p = tmp_path / "metrics.om"
    p.write_text(OM)
    return p


def replicas(src: ReplaySource, start: float, end: float, step: int = 60) -> list[float]:
    return list(src.workload_replicas(namespace="ml", name="web", start=at(start), end=at(end), step_s=step).first.values)


def test_lookback_is_closed_like_prometheus_2(om: Path) -> None:
    src = ReplaySource(path=om, lookback_s=120)
    got = replicas(src, T - 60, T + 420)          # T-60 .. T+420 by 60
    np.testing.assert_array_equal(got, [np.nan, 1, 2, 2, 2, np.nan, 3, 3, 3])  # T+180 = T+60 + 120: still seen
    opened = ReplaySource(path=om, lookback_s=120, left_open=True)
    np.testing.assert_array_equal(replicas(opened, T - 60, T + 420), [np.nan, 1, 2, 2, np.nan, np.nan, 3, 3, np.nan])
    assert src.workload_replicas(namespace="ml", name="nope", start=at(T), end=at(T + 60), step_s=60).status == "no_data"


def test_shift_to_moves_the_last_sample_and_gz(om: Path, tmp_path: Path) -> None:
    gz = tmp_path / "metrics.om.gz"
    gz.write_bytes(gzip.compress(OM.encode()))
    now = datetime(2030, 1, 1, 12, 0, 30, tzinfo=UTC)
    src = ReplaySource(path=gz, lookback_s=120, shift_to=now)
    assert src.name == str(gz)
    src.check()
    assert src.last_sample == now
    last = now.timestamp()
    # the file's last sample (T+300) is now; the one before it (replicas=2 at T+60) 240 s earlier
    np.testing.assert_array_equal(replicas(src, last - 240, last), [2, 2, 2, np.nan, 3])
    assert sorted(p.split(": ")[0][-3:] for p in src.problems) == [":11", ":12"]   # garbage, no timestamp


def test_counters_raw_with_escaped_labels_and_exemplar(om: Path) -> None:
    res = ReplaySource(path=om, lookback_s=120).prediction_counters(
        namespace="ml", service="web", start=at(T), end=at(T + 240), step_s=60)
    assert res.status == "ok" and len(res.series) == 1
    s = res.first
    assert s.labels == {"namespace": "ml", "service": "web", "model_version": "1", "class": 'a "quoted", b'}
    np.testing.assert_array_equal(s.timestamps, [T, T + 60, T + 120, T + 180, T + 240])
    np.testing.assert_array_equal(s.values, [10, 20, 35, 35, 35])
    assert res.query == 'inference_predictions_total{namespace="ml",service="web"}'


def test_rate_extrapolation_and_reset(om: Path) -> None:
    src = ReplaySource(path=om, lookback_s=120, scrape_interval_s=60)   # window max(4*60, 300) = 300 s
    res = src.request_rate(namespace="ml", service="web", start=at(T + 180), end=at(T + 180), step_s=60)
    assert res.query.endswith("[300s]))")
    # samples T..T+180 in [T-120, T+180]: increase 60+0(reset: +160)+... = 70-100+160 = 130
    # zero point: 180*(100/130) = 138.5 > 120 to start; threshold 1.1*60 = 66: extrapolate 30 at the start, 0 at the end
    assert res.first.values[0] == pytest.approx(130 * (180 + 30) / 180 / 300)
    one = src.request_rate(namespace="ml", service="web", start=at(T + 60), end=at(T + 60), step_s=60)
    # two samples (100, 160): zero point 60*100/60 = 100 s; 240 s to the window start -> avg/2 = 30
    assert one.first.values[0] == pytest.approx(60 * (60 + 30) / 60 / 300)
    assert src.request_rate(namespace="ml", service="web", start=at(T), end=at(T), step_s=60).status == "no_data"


def test_missing_file_is_temporary(tmp_path: Path) -> None:
    src = ReplaySource(path=tmp_path / "nope.om")
    with pytest.raises(TemporaryError, match="nope.om"):
        src.check()
