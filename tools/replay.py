"""MetricsSource over an OpenMetrics file (plain or gzip), evaluated with Prometheus 2.x semantics.

The file is parsed once (lazily, on first use) into per-series numpy arrays. Signals are the
default PromQL of ``tools.prometheus`` evaluated in numpy, so results match a Prometheus that
served the same data (backfilled, ``--query.lookback-delta`` = ``lookback_s``):

* instant value at t: the latest sample with ts in [t - lookback, t] (Prometheus 2.x; pass
  ``left_open=True`` for Prometheus 3's (t - lookback, t]); range windows likewise;
* ``rate()``: Prometheus's extrapolatedRate (counter resets, extrapolation to the window edges
  limited to 1.1x the average sample interval, else half an interval; counter zero floor);
* ``sum``/``max`` over the series present at a step, cost joined ``on(node)``.

Custom PromQL (``queries``) is not supported here: this is not a PromQL engine.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import reduce
from pathlib import Path
from typing import Any

import numpy as np

from tools.errors import TemporaryError
from tools.prometheus import (
    DEFAULT_QUERIES,
    RESOURCES,
    cost_result,
    grid_ms,
    pod_regex,
    rate_window_s,
    render,
    replicas_query,
    series_result,
    sum_present,
)
from tools.results import Series, SignalResult

_LABELS = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_ESC = re.compile(r"\\(.)")
_ALLOC = {"cpu": ("container_cpu_allocation", "node_cpu_hourly_cost", 1.0),
          "gpu": ("container_gpu_allocation", "node_gpu_hourly_cost", 1.0),
          "memory": ("container_memory_allocation_bytes", "node_ram_hourly_cost", 1073741824.0)}


class _S:
    __slots__ = ("labels", "t", "v")

    def __init__(self, labels: dict[str, str], t: np.ndarray, v: np.ndarray) -> None:
        self.labels, self.t, self.v = labels, t, v


def _parse_key(key: str) -> tuple[str, dict[str, str]] | None:
    brace = key.find("{")
    if brace < 0:
        return (key, {}) if re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", key) else None
    if not key.endswith("}"):
        return None
    inner, pos = key[brace + 1: -1], 0
    labels: dict[str, str] = {}
    while pos < len(inner):
        m = _LABELS.match(inner, pos)
        if not m:
            return None if inner[pos:].strip() else (key[:brace], labels)
        labels[m.group(1)] = _ESC.sub(lambda e: "\n" if e.group(1) == "n" else e.group(1), m.group(2))
        pos = m.end()
    return key[:brace], labels


def parse_openmetrics(path: Path) -> tuple[dict[str, list[_S]], list[str]]:
    """``{metric name: [series]}`` (timestamps in ms, sorted) and a list of problems ("path:line: reason")."""
    with path.open("rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    with (gzip.open(path, "rt", encoding="utf-8") if gz else path.open(encoding="utf-8")) as f:
        lines = f.read().splitlines()
    blocks: dict[str, tuple[list[str], list[str], int]] = {}
    problems: list[str] = []
    prev, vals, tss = None, [], []  # type: ignore[var-annotated]
    for no, line in enumerate(lines, 1):
        if not line or line[0] == "#":
            continue
        if " # {" in line:  # exemplar
            line = line[: line.index(" # {")]
        parts = line.rsplit(" ", 2)
        if len(parts) != 3 or not parts[0]:
            problems.append(f"{path}:{no}: sample without a timestamp or malformed")
            continue
        if parts[0] != prev:
            prev = parts[0]
            vals, tss, _ = blocks.setdefault(prev, ([], [], no))
        vals.append(parts[1])
        tss.append(parts[2])
    out: dict[str, list[_S]] = {}
    for key, (vs, ts, no) in blocks.items():
        parsed = _parse_key(key)
        try:
            v = np.array(list(map(float, vs)))
            t = np.round(np.array(list(map(float, ts))) * 1000).astype(np.int64)
        except ValueError as e:
            problems.append(f"{path}:{no}: {key[:200]}: {e}")
            continue
        if parsed is None:
            problems.append(f"{path}:{no}: cannot parse series {key[:200]}")
            continue
        if len(t) > 1 and (np.diff(t) < 0).any():
            order = np.argsort(t, kind="stable")
            t, v = t[order], v[order]
        out.setdefault(parsed[0], []).append(_S(parsed[1], t, v))
    return out, problems


def _fmax(arrays: Iterable[np.ndarray], n: int) -> np.ndarray:
    return reduce(np.fmax, arrays, np.full(n, np.nan))


class ReplaySource:
    """MetricsSource replaying an OpenMetrics file; ``shift_to`` moves every timestamp so that the
    file's last sample lands at that instant (naive datetimes are UTC)."""

    def __init__(self, *, path: Path, lookback_s: int = 300, scrape_interval_s: int = 60,
                 shift_to: datetime | None = None, left_open: bool = False) -> None:
        self._path = Path(path)
        self._lookback = int(lookback_s * 1000)
        self._window_s = rate_window_s(scrape_interval_s)
        self._shift_to = shift_to if shift_to is None or shift_to.tzinfo else shift_to.replace(tzinfo=UTC)
        self._left_open = left_open
        self._data: dict[str, list[_S]] | None = None
        self.problems: list[str] = []
        self.last_sample: datetime | None = None

    @property
    def name(self) -> str:
        return str(self._path)

    def _load(self) -> dict[str, list[_S]]:
        if self._data is None:
            try:
                data, self.problems = parse_openmetrics(self._path)
            except (OSError, EOFError, UnicodeDecodeError) as e:
                raise TemporaryError(f"cannot read metrics file {self._path}: {e}", source=str(self._path)) from None
            last = max((int(s.t[-1]) for ss in data.values() for s in ss if len(s.t)), default=None)
            if last is not None and self._shift_to is not None:
                shift = int(self._shift_to.timestamp() * 1000) - last
                for ss in data.values():
                    for s in ss:
                        s.t = s.t + shift
                last += shift
            self.last_sample = None if last is None else datetime.fromtimestamp(last / 1000, UTC)
            self._data = data
        return self._data

    def check(self) -> None:
        self._load()

    # ------------------------------------------------------------------ PromQL pieces
    def _select(self, metric: str, **match: str | re.Pattern[str]) -> list[_S]:
        def ok(s: _S) -> bool:
            return all(s.labels.get(k, "") == w if isinstance(w, str) else w.fullmatch(s.labels.get(k, ""))
                       for k, w in match.items())
        return [s for s in self._load().get(metric, []) if ok(s)]

    def _instant(self, s: _S, grid: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(s.t, grid, side="right") - 1
        seen = s.t[np.maximum(idx, 0)] if len(s.t) else np.zeros(len(grid), np.int64)
        age_ok = seen > grid - self._lookback if self._left_open else seen >= grid - self._lookback
        ok = (idx >= 0) & age_ok
        out = np.full(len(grid), np.nan)
        out[ok] = s.v[idx[ok]]
        return out

    def _rate(self, s: _S, grid: np.ndarray, window_s: int) -> np.ndarray:
        """Prometheus 2.x ``rate(x[window])`` (extrapolatedRate) of one series at each grid time."""
        t, v, w = s.t, s.v, window_s * 1000
        lo = np.searchsorted(t, grid - w, side="right" if self._left_open else "left")
        hi = np.searchsorted(t, grid, side="right") - 1
        out = np.full(len(grid), np.nan)
        ok = hi - lo >= 1
        if not ok.any():
            return out
        resets = np.cumsum(np.concatenate([[0.0], np.where(v[1:] < v[:-1], v[:-1], 0.0)]))
        i0, i1, g = lo[ok], hi[ok], grid[ok]
        result = v[i1] - v[i0] + (resets[i1] - resets[i0])
        to_start = (t[i0] - (g - w)) / 1000
        to_end = (g - t[i1]) / 1000
        sampled = (t[i1] - t[i0]) / 1000
        avg = sampled / (i1 - i0)
        with np.errstate(divide="ignore", invalid="ignore"):
            to_zero = sampled * (v[i0] / result)
            to_start = np.where((result > 0) & (v[i0] >= 0) & (to_zero < to_start), to_zero, to_start)
            thr = avg * 1.1
            interval = sampled + np.where(to_start < thr, to_start, avg / 2) + np.where(to_end < thr, to_end, avg / 2)
            vals = result * (interval / sampled / window_s)
        out[np.flatnonzero(ok)] = np.where(sampled > 0, vals, np.nan)
        return out

    def _params(self, start: datetime, end: datetime, step_s: int, **kw: Any) -> dict[str, Any]:
        return {**kw, "start": start, "end": end, "step_s": step_s}

    # ------------------------------------------------------------------ signals
    def workload_cost(self, *, namespace: str, name: str, start: datetime, end: datetime, step_s: int,
                      resources: tuple[str, ...] = RESOURCES, kind: str = "Deployment") -> SignalResult:
        grid = grid_ms(start, end, step_s)
        pods = re.compile(pod_regex(name, kind))
        queries, by_resource = {}, {}
        for r in resources:
            alloc_metric, price_metric, scale = _ALLOC[r]
            queries[r] = render(DEFAULT_QUERIES[f"cost_{r}"], namespace=namespace, name=name,
                                pod_regex=pod_regex(name, kind))
            alloc: dict[str, list[np.ndarray]] = {}
            for s in self._select(alloc_metric, namespace=namespace, pod=pods):
                alloc.setdefault(s.labels.get("node", ""), []).append(self._instant(s, grid))
            price: dict[str, list[np.ndarray]] = {}
            for s in self._select(price_metric):
                price.setdefault(s.labels.get("node", ""), []).append(self._instant(s, grid))
            # sum by (node) (alloc) [/ 2^30] * on(node) max by (node) (price), summed over nodes (x / 1.0 == x)
            by_resource[r] = sum_present((sum_present(a, len(grid)) / scale * _fmax(price[node], len(grid))
                                          for node, a in alloc.items() if node in price), len(grid))
        return cost_result(queries, by_resource, grid,
                           self._params(start, end, step_s, namespace=namespace, name=name, resources=resources))

    def _each(self, key: str, metric: str, fn: Callable[[_S, np.ndarray], np.ndarray], start: datetime,
              end: datetime, step_s: int, name_label: str = "deployment", **names: str) -> SignalResult:
        grid = grid_ms(start, end, step_s)
        q = render(DEFAULT_QUERIES[key], window=f"{self._window_s}s", **names)
        match = {name_label if k == "name" else k: v for k, v in names.items()}
        series = [Series({k: v for k, v in s.labels.items() if k != "__name__"}, grid / 1000.0, fn(s, grid))
                  for s in self._select(metric, **match)]
        return series_result(q, series, self._params(start, end, step_s, **names))

    def _aggregate(self, res: SignalResult, how: Callable[[Iterable[np.ndarray], int], np.ndarray],
                   grid: np.ndarray) -> SignalResult:
        vals = how((s.values for s in res.series), len(grid))
        series = [] if np.isnan(vals).all() else [Series({}, grid / 1000.0, vals)]
        return SignalResult(status="ok" if series else "no_data", series=series, query=res.query, params=res.params)

    def workload_replicas(self, *, namespace: str, name: str, start: datetime, end: datetime, step_s: int,
                          kind: str = "Deployment") -> SignalResult:
        sts = kind == "StatefulSet"
        res = self._each(replicas_query(kind), f"kube_{'statefulset' if sts else 'deployment'}_status_replicas",
                         self._instant, start, end, step_s, name_label="statefulset" if sts else "deployment",
                         namespace=namespace, name=name)
        return self._aggregate(res, _fmax, grid_ms(start, end, step_s))

    def gpu_utilisation(self, *, namespace: str, name: str, start: datetime, end: datetime, step_s: int,
                        kind: str = "Deployment") -> SignalResult:
        grid = grid_ms(start, end, step_s)
        q = render(DEFAULT_QUERIES["gpu_util"], namespace=namespace, name=name, pod_regex=pod_regex(name, kind))
        found = [self._instant(s, grid) for s in self._select("DCGM_FI_DEV_GPU_UTIL", namespace=namespace,
                                                               pod=re.compile(pod_regex(name, kind)))]
        # avg(): the mean of the series present at each step
        count = np.sum([np.isfinite(a) for a in found], axis=0) if found else np.zeros(len(grid))
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, sum_present(found, len(grid)) / np.maximum(count, 1), np.nan)
        series = [] if np.isnan(mean).all() else [Series({}, grid / 1000.0, mean)]
        return SignalResult(status="ok" if series else "no_data", series=series, query=q,
                            params=self._params(start, end, step_s, namespace=namespace, name=name,
                                                pod_regex=pod_regex(name)))

    def request_rate(self, *, namespace: str, service: str, start: datetime, end: datetime, step_s: int) -> SignalResult:
        res = self._each("request_rate", "inference_requests_total",
                         lambda s, g: self._rate(s, g, self._window_s), start, end, step_s,
                         namespace=namespace, service=service)
        return self._aggregate(res, sum_present, grid_ms(start, end, step_s))

    def prediction_counters(self, *, namespace: str, service: str, start: datetime, end: datetime,
                            step_s: int) -> SignalResult:
        return self._each("prediction_counters", "inference_predictions_total", self._instant, start, end, step_s,
                          namespace=namespace, service=service)

    def outcome_counters(self, *, namespace: str, service: str, start: datetime, end: datetime,
                         step_s: int) -> SignalResult:
        return self._each("outcome_counters", "inference_outcomes_total", self._instant, start, end, step_s,
                          namespace=namespace, service=service)

    def explanation_counters(self, *, namespace: str, service: str, start: datetime, end: datetime,
                             step_s: int) -> SignalResult:
        return self._each("explanation_counters", "inference_explanations_total", self._instant, start, end, step_s,
                          namespace=namespace, service=service)

