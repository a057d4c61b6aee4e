"""Contract: ReplaySource (numpy) and PrometheusSource (real Prometheus 2.x over the same backfilled
OpenMetrics file) return the same signals on the same grid."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from tools.errors import PermanentError, TemporaryError
from tools.prometheus import PrometheusSource
from tools.replay import ReplaySource
from tools.results import SignalResult

pytestmark = pytest.mark.integration

STEP = 120          # sample spacing of the generated data (the harness's)
DAYS = 2
RTOL = 1e-9         # float summation order differs (Prometheus sums in hash order)
GiB = 2**30


def write_openmetrics(path: Path, end: int) -> int:
    """Two days at a 120 s step ending at ``end`` (an hh:mm:30): three nodes with prices (one
    CPU-only, one reported by two OpenCost instances, a GPU price change), a GPU workload ``alpha``
    whose pods churn across nodes and go silent for 20 minutes, a GPU-less ``beta``, decoys
    (``alpha-other``, ``alpha`` in another namespace), counters with a reset and a new version."""
    rng = np.random.default_rng(7)
    ts = np.arange(end - DAYS * 86400 + STEP, end + 1, STEP)
    n = len(ts)
    fams: dict[str, tuple[str, list[str]]] = {}

    def emit(family: str, kind: str, name: str, labels: dict[str, str], values: np.ndarray, mask: np.ndarray | None = None) -> None:
        lab = ",".join(f'{k}="{v}"' for k, v in labels.items())
        rows = fams.setdefault(family, (kind, []))[1]
        for t, v, keep in zip(ts, values, np.ones(n, bool) if mask is None else mask, strict=True):
            if keep:
                rows.append(f"{name}{{{lab}}} {float(v):.10g} {t}")

    const = lambda x: np.full(n, float(x))  # noqa: E731
    half = np.arange(n) >= n // 2
    prices = {"gpu-1": (0.031, np.where(half, 1.5, 1.2), 0.0042), "gpu-2": (0.033, 1.1, 0.0045),
              "cpu-1": (0.041, None, 0.0051)}
    for node, (cpu, gpu, ram) in prices.items():
        base = {"instance": node, "node": node, "instance_type": "m5" if gpu is None else "g5"}
        emit("node_cpu_hourly_cost", "gauge", "node_cpu_hourly_cost", base, const(cpu))
        if node == "gpu-2":  # a second OpenCost instance reporting a slightly higher price: max by (node)
            emit("node_cpu_hourly_cost", "gauge", "node_cpu_hourly_cost", {**base, "instance": "oc-2"}, const(cpu + 0.002))
        if gpu is not None:
            emit("node_gpu_hourly_cost", "gauge", "node_gpu_hourly_cost", base, np.broadcast_to(gpu, n).astype(float))
        emit("node_ram_hourly_cost", "gauge", "node_ram_hourly_cost", base, const(ram))

    outage = (ts >= ts[n // 3]) & (ts < ts[n // 3] + 1200)
    replicas: dict[tuple[str, str], np.ndarray] = {}

    def workload(ns: str, name: str, cpu: float, gpu: float, mem: float, nodes: list[str], silent: np.ndarray) -> None:
        count = np.zeros(n)
        for gen, lo in enumerate(range(0, n, 180)):          # a new ReplicaSet every 6 h
            rs = f"{gen:03d}{'abcdef'[gen % 6]}9f"
            for k in range(2 + gen % 2):
                alive = (np.arange(n) >= lo + 3 * k) & (np.arange(n) < min(n, lo + 180 + 2 * k)) & ~silent
                if k == 2:                                   # the third pod dies early
                    alive &= np.arange(n) < lo + 60
                pod = f"{name}-{rs}-{'xk2p9qz7m4'[k:k + 5]}"
                node = nodes[(gen + k) % len(nodes)]
                lab = {"namespace": ns, "pod": pod, "container": name, "node": node, "instance": node}
                emit("container_cpu_allocation", "gauge", "container_cpu_allocation", lab, const(cpu), alive)
                if gpu:
                    emit("container_gpu_allocation", "gauge", "container_gpu_allocation", lab, const(gpu), alive)
                    for g in range(1 + k % 2):               # dcgm-exporter: one series per pod and GPU
                        busy = 99.0 if name == "alpha-other" else 20 + 60 * rng.random()
                        emit("DCGM_FI_DEV_GPU_UTIL", "gauge", "DCGM_FI_DEV_GPU_UTIL",
                             {"namespace": ns, "pod": pod, "gpu": str(g), "Hostname": node},
                             np.clip(busy + rng.normal(0, 5, n), 0, 100).round(), alive)
                emit("container_memory_allocation_bytes", "gauge", "container_memory_allocation_bytes", lab,
                     const(mem * GiB), alive)
                count += alive
        replicas[(ns, name)] = count

    workload("ml", "alpha", 4, 1, 16, ["gpu-1", "gpu-2"], outage)
    workload("ml", "alpha-other", 2, 1, 8, ["gpu-2"], np.zeros(n, bool))
    workload("staging", "alpha", 1, 1, 4, ["gpu-1"], np.zeros(n, bool))
    workload("ml", "beta", 2, 0, 4, ["cpu-1", "gpu-2"], np.zeros(n, bool))
    for (ns, name), count in replicas.items():
        emit("kube_deployment_status_replicas", "gauge", "kube_deployment_status_replicas",
             {"namespace": ns, "deployment": name}, count, ~outage if name == "alpha" else None)
    for k in range(2):   # a StatefulSet: pods <name>-<ordinal>, and its kube-state-metrics family
        lab = {"namespace": "ml", "pod": f"vecdb-{k}", "container": "vecdb", "node": "cpu-1", "instance": "cpu-1"}
        emit("container_cpu_allocation", "gauge", "container_cpu_allocation", lab, const(2))
        emit("container_memory_allocation_bytes", "gauge", "container_memory_allocation_bytes", lab, const(8 * GiB))
    emit("kube_statefulset_status_replicas", "gauge", "kube_statefulset_status_replicas",
         {"namespace": "ml", "statefulset": "vecdb"}, const(2))

    def counter(family: str, labels: dict[str, str], rate: float, mask: np.ndarray, reset_at: int | None = None) -> None:
        inc = rng.poisson(rate * STEP, n).astype(float) * mask
        vals = np.cumsum(inc) + (1000 * rng.random() if mask[0] else 0)  # a new series starts near 0
        if reset_at is not None:
            vals[reset_at:] -= vals[reset_at] - inc[reset_at]
        emit(family, "counter", f"{family}_total", labels, vals, mask)

    v2 = np.arange(n) >= 2 * n // 3
    svc = {"namespace": "ml", "service": "alpha"}
    counter("inference_requests", {**svc, "model_version": "1.0", "code": "200"}, 20, ~outage, reset_at=n // 2 + 7)
    counter("inference_requests", {**svc, "model_version": "1.0", "code": "500"}, 0.3, np.ones(n, bool))
    counter("inference_requests", {**svc, "model_version": "2.0", "code": "200"}, 15, v2)
    counter("inference_requests", {"namespace": "ml", "service": "beta", "model_version": "1", "code": "200"}, 5,
            np.ones(n, bool))
    for version, mask in (("1.0", np.ones(n, bool)), ("2.0", v2)):
        counter("inference_explanations", {**svc, "model_version": version}, 0.1, mask)
        for cls, p in (("cat", 0.6), ("dog", 0.4)):
            counter("inference_predictions", {**svc, "model_version": version, "class": cls}, 10 * p, mask,
                    reset_at=n // 2 + 7 if version == "1.0" else None)
        for group in ("f", "m"):
            for outcome, p in (("positive", 0.3), ("negative", 0.7)):
                counter("inference_outcomes", {**svc, "model_version": version, "attribute": "gender", "group": group,
                                               "outcome": outcome}, p, mask)

    with path.open("w") as f:
        for family, (kind, rows) in fams.items():
            f.write(f"# TYPE {family} {kind}\n")
            f.write("\n".join(rows) + "\n")
        f.write("# EOF\n")
    return int(ts[0])


@pytest.fixture(scope="module")
def data(prometheus_server, tmp_path_factory) -> tuple[Path, str, int, int]:
    om = tmp_path_factory.mktemp("om") / "metrics.om"
    end = (int(time.time()) - 600) // 60 * 60 + 30
    first = write_openmetrics(om, end)
    return om, prometheus_server(om, lookback="2m"), first, end


def at(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def assert_same(a: SignalResult, b: SignalResult, exact: bool = False) -> None:
    assert (a.status, a.query) == (b.status, b.query)
    assert [s.labels for s in a.series] == [s.labels for s in b.series]
    for sa, sb in zip(a.series, b.series, strict=True):
        np.testing.assert_array_equal(sa.timestamps, sb.timestamps)
        assert np.array_equal(np.isnan(sa.values), np.isnan(sb.values)), np.flatnonzero(np.isnan(sa.values) != np.isnan(sb.values))
        if exact:
            np.testing.assert_array_equal(sa.values, sb.values)
        else:
            np.testing.assert_allclose(sa.values, sb.values, rtol=RTOL, equal_nan=True)


GRIDS = {  # (start offset from the first sample, end offset from the last, step)
    "unaligned-60s": (3617.25, 173, 60),
    "aligned-120s": (0, 0, 120),             # every evaluation lands exactly on a sample: window edges count
    "coarse-300s": (-1800, 3600, 300),       # starts before and ends after the data
}


@pytest.mark.parametrize("grid", GRIDS)
def test_replay_matches_prometheus(data, grid: str) -> None:
    om, url, first, end = data
    off0, off1, step = GRIDS[grid]
    start, stop_ = at(first + off0), at(end + off1)
    prom = PrometheusSource(url=url, scrape_interval_s=STEP, timeout_s=10)
    replay = ReplaySource(path=om, lookback_s=120, scrape_interval_s=STEP)
    kw = {"start": start, "end": stop_, "step_s": step}
    for name, resources in (("alpha", ("cpu", "gpu", "memory")), ("beta", ("cpu", "gpu", "memory")), ("alpha", ("gpu",))):
        a = prom.workload_cost(namespace="ml", name=name, resources=resources, **kw)
        b = replay.workload_cost(namespace="ml", name=name, resources=resources, **kw)
        assert_same(a, b)
        assert a.status == "ok"
        for r in resources:
            np.testing.assert_allclose(a.params["by_resource"][r], b.params["by_resource"][r], rtol=RTOL, equal_nan=True)
    for name in ("alpha", "beta", "alpha-other"):
        assert_same(prom.workload_replicas(namespace="ml", name=name, **kw),
                    replay.workload_replicas(namespace="ml", name=name, **kw), exact=True)
    for name in ("alpha", "beta", "alpha-other"):
        assert_same(prom.gpu_utilisation(namespace="ml", name=name, **kw),
                    replay.gpu_utilisation(namespace="ml", name=name, **kw))
    for service in ("alpha", "beta"):
        assert_same(prom.request_rate(namespace="ml", service=service, **kw),
                    replay.request_rate(namespace="ml", service=service, **kw))
    for method in ("prediction_counters", "outcome_counters", "explanation_counters"):
        a, b = (getattr(s, method)(namespace="ml", service="alpha", **kw) for s in (prom, replay))
        assert_same(a, b, exact=True)
        assert len(a.series) == {"prediction_counters": 4, "outcome_counters": 8, "explanation_counters": 2}[method]
    for kind in ("StatefulSet", "Deployment"):
        a = prom.workload_cost(namespace="ml", name="vecdb", kind=kind, **kw)
        assert_same(a, replay.workload_cost(namespace="ml", name="vecdb", kind=kind, **kw))
        assert a.status == ("ok" if kind == "StatefulSet" else "no_data")
        assert_same(prom.workload_replicas(namespace="ml", name="vecdb", kind=kind, **kw),
                    replay.workload_replicas(namespace="ml", name="vecdb", kind=kind, **kw), exact=True)
    for s in (prom, replay):  # unknown workload: no_data, not an error
        assert s.workload_cost(namespace="ml", name="nope", **kw).status == "no_data"
        assert s.request_rate(namespace="ml", service="nope", **kw).status == "no_data"


def test_signal_shapes(data) -> None:
    """The generated quirks show up: the outage is NaN, beta has no GPU cost, decoys excluded."""
    om, url, first, end = data
    prom = PrometheusSource(url=url, scrape_interval_s=STEP)
    kw = {"start": at(first + 3600), "end": at(end), "step_s": 60}
    cost = prom.workload_cost(namespace="ml", name="alpha", **kw)
    vals = cost.first.values
    assert np.isnan(vals).sum() >= 15 and not np.isnan(vals[:100]).any()
    # two pods at first + 1 h: one on gpu-1, one on gpu-2 (CPU price = max of its two OpenCost instances)
    assert vals[0] == pytest.approx((4 * 0.031 + 1.2 + 16 * 0.0042) + (4 * 0.035 + 1.1 + 16 * 0.0045))
    vecdb = prom.workload_cost(namespace="ml", name="vecdb", kind="StatefulSet", **kw)
    assert vecdb.first.values[0] == pytest.approx(2 * (2 * 0.041 + 8 * 0.0051))
    assert prom.workload_replicas(namespace="ml", name="vecdb", kind="StatefulSet", **kw).first.values[0] == 2
    beta = prom.workload_cost(namespace="ml", name="beta", **kw)
    assert np.isnan(beta.params["by_resource"]["gpu"]).all() and not np.isnan(beta.first.values).all()
    np.testing.assert_allclose(beta.first.values, beta.params["by_resource"]["cpu"] + beta.params["by_resource"]["memory"])
    assert "alpha-[a-z0-9]+-[a-z0-9]{5}" in cost.query and cost.params["resources"] == ("cpu", "gpu", "memory")
    util = prom.gpu_utilisation(namespace="ml", name="alpha", **kw)
    u = util.first.values
    # the mean over alpha's GPUs only: alpha-other's GPUs (99 %) and staging/alpha are not in it
    assert util.status == "ok" and np.nanmax(u) < 95 and np.nanmin(u) >= 0 and np.isnan(u).sum() >= 15
    assert prom.gpu_utilisation(namespace="ml", name="beta", **kw).status == "no_data"


def test_chunked_range_queries(data) -> None:
    om, url, first, end = data
    kw = {"namespace": "ml", "service": "alpha", "start": at(first), "end": at(end), "step_s": 60}
    whole = PrometheusSource(url=url, scrape_interval_s=STEP).prediction_counters(**kw)
    chunked = PrometheusSource(url=url, scrape_interval_s=STEP)
    chunked.max_points = 333
    assert_same(whole, chunked.prediction_counters(**kw), exact=True)


def test_bad_query_is_permanent(data) -> None:
    om, url, first, end = data
    src = PrometheusSource(url=url, queries={"replicas": 'max(kube_deployment_status_replicas{namespace="{namespace}"'})
    with pytest.raises(PermanentError, match="kube_deployment_status_replicas"):
        src.workload_replicas(namespace="ml", name="alpha", start=at(first), end=at(end), step_s=60)
    src.check()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_is_temporary_and_names_url() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    src = PrometheusSource(url=url, timeout_s=1, retries=2, backoff_s=0.05)
    t0 = time.monotonic()
    with pytest.raises(TemporaryError, match=f"cannot reach Prometheus at {url}"):
        src.check()
    with pytest.raises(TemporaryError, match=url):
        src.request_rate(namespace="ml", service="alpha", start=at(time.time() - 3600), end=at(time.time()), step_s=60)
    assert time.monotonic() - t0 < 5


@pytest.fixture()
def flaky_server() -> Iterator[tuple[str, list[int]]]:
    hits: list[int] = []

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            hits.append(1)
            self.send_response(503)
            self.end_headers()
            self.wfile.write(b"overloaded")

        def log_message(self, *a: object) -> None:
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", hits
    finally:
        srv.shutdown()
        srv.server_close()


def test_5xx_is_retried_then_temporary(flaky_server) -> None:
    url, hits = flaky_server
    src = PrometheusSource(url=url, timeout_s=2, retries=2, backoff_s=0.01)
    with pytest.raises(TemporaryError, match=f"cannot reach Prometheus at {url}: HTTP 503"):
        src.workload_replicas(namespace="ml", name="a", start=at(time.time() - 600), end=at(time.time()), step_s=60)
    assert len(hits) == 3
