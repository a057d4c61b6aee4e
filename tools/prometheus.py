"""MetricsSource over the Prometheus HTTP API (the only module importing prometheus_api_client).

Every query is a range query with explicit ``start``/``end``/``step``; results are aligned on the
regular grid ``start, start+step, ..., <= end`` (NaN where Prometheus returned no point).

``workload_cost`` runs one query per resource (DESIGN.md's OpenCost join) and adds them in Python:
``series[0]`` is the total $/h (a resource without data counts 0 at a timestamp where another
resource has data; NaN where none has) and ``params["by_resource"]`` maps each requested resource
to its own $/h array on the same grid (NaN where that resource had no data).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from tools.errors import PermanentError, TemporaryError, scrub
from tools.results import Series, SignalResult

_COST = ("sum(sum by (node) ({alloc}{{namespace=\"{{namespace}}\",pod=~\"{{pod_regex}}\"}}){scale}"
         " * on(node) group_left() max by (node) ({price}))")
DEFAULT_QUERIES: dict[str, str] = {
    "cost_cpu": _COST.format(alloc="container_cpu_allocation", scale="", price="node_cpu_hourly_cost"),
    "cost_gpu": _COST.format(alloc="container_gpu_allocation", scale="", price="node_gpu_hourly_cost"),
    "cost_memory": _COST.format(alloc="container_memory_allocation_bytes", scale=" / 1073741824",
                                price="node_ram_hourly_cost"),
    # max(): one series even when kube-state-metrics runs in HA (duplicate series).
    "replicas": 'max(kube_deployment_status_replicas{namespace="{namespace}",deployment="{name}"})',
    "replicas_statefulset": 'max(kube_statefulset_status_replicas{namespace="{namespace}",statefulset="{name}"})',
    # avg(): the mean over every GPU of the workload's pods (dcgm-exporter: one series per pod and gpu)
    "gpu_util": 'avg(DCGM_FI_DEV_GPU_UTIL{namespace="{namespace}",pod=~"{pod_regex}"})',
    "request_rate": 'sum(rate(inference_requests_total{namespace="{namespace}",service="{service}"}[{window}]))',
    "prediction_counters": 'inference_predictions_total{namespace="{namespace}",service="{service}"}',
    "outcome_counters": 'inference_outcomes_total{namespace="{namespace}",service="{service}"}',
    "explanation_counters": 'inference_explanations_total{namespace="{namespace}",service="{service}"}',
}
RESOURCES = ("cpu", "gpu", "memory")
_PLACEHOLDER = re.compile(r"\{(namespace|name|service|pod_regex|window)\}")


def promql_string(value: str) -> str:
    """Escape a value for use inside a double-quoted PromQL string literal."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def pod_regex(name: str, kind: str = "Deployment") -> str:
    """Pods of workload ``name`` (RE2, fully anchored): a StatefulSet's are ``<name>-<ordinal>``, a
    Deployment's (and what renders one: an inference service, a Rollout) ``<name>-<hash>-<5 chars>``."""
    escaped = re.sub(r"([.\\+*?()|\[\]{}^$])", r"\\\1", name)
    return escaped + ("-[0-9]+" if kind == "StatefulSet" else "-[a-z0-9]+-[a-z0-9]{5}")


def replicas_query(kind: str) -> str:
    """The query key of a workload's replica count: kube-state-metrics names it by kind."""
    return "replicas_statefulset" if kind == "StatefulSet" else "replicas"


def rate_window_s(scrape_interval_s: int) -> int:
    """Rate windows span at least 4 scrapes and 5 minutes."""
    return max(4 * scrape_interval_s, 300)


def render(template: str, **values: str) -> str:
    """Fill ``{namespace}``/``{name}``/``{service}``/``{pod_regex}``/``{window}``; other braces stay."""
    esc = {k: (v if k == "window" else promql_string(v)) for k, v in values.items()}
    return _PLACEHOLDER.sub(lambda m: esc.get(m.group(1), m.group(0)), template)


def grid_ms(start: datetime, end: datetime, step_s: int) -> np.ndarray:
    """Evaluation times in integer milliseconds, as Prometheus computes them."""
    if step_s <= 0:
        raise PermanentError(f"step must be positive, got {step_s}")
    s, e = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    return np.arange(s, e + 1, step_s * 1000, dtype=np.int64) if e >= s else np.zeros(0, dtype=np.int64)


def sum_present(arrays: Iterable[np.ndarray], n: int) -> np.ndarray:
    """Element-wise sum where a NaN counts 0 if another array has a value there, NaN where none has
    (PromQL ``sum`` over the series present at each step; also how per-resource costs add up)."""
    arrays = list(arrays)
    if not arrays:
        return np.full(n, np.nan)
    stack = np.vstack(arrays)
    total: np.ndarray = np.nansum(stack, axis=0)
    total[np.isnan(stack).all(axis=0)] = np.nan
    return total


def cost_result(queries: dict[str, str], by_resource: dict[str, np.ndarray], grid: np.ndarray,
                params: dict[str, Any]) -> SignalResult:
    total = sum_present(by_resource.values(), len(grid))
    query = "\n".join(queries.values())
    params = {**params, "by_resource": by_resource, "queries": queries}
    if np.isnan(total).all():
        return SignalResult(status="no_data", query=query, params=params)
    return SignalResult(status="ok", series=[Series({}, grid / 1000.0, total)], query=query, params=params)


def align_matrix(result: Any, grid: np.ndarray,
                 rows: dict[tuple[tuple[str, str], ...], np.ndarray]) -> None:
    """Put a range query's ``result`` (Prometheus' matrix: ``[{"metric": {...}, "values": [[t, "v"],
    ...]}]``) onto ``grid`` (ms), one row per label set, in ``rows``. Anything else (a non-numeric
    or non-finite timestamp, a sample that is not a number, a malformed item) is a ValueError
    naming it, never another exception."""
    if not isinstance(result, list):
        raise ValueError(f"expected a matrix (a list), got {type(result).__name__}")
    for item in result:
        if not isinstance(item, dict) or not isinstance(item.get("metric", {}), dict):
            raise ValueError(f"a series is not an object with a metric: {str(item)[:80]!r}")
        labels = {str(k): str(v) for k, v in item.get("metric", {}).items() if k != "__name__"}
        vals = rows.setdefault(tuple(sorted(labels.items())), np.full(len(grid), np.nan))
        pts = item.get("values") or []
        if not isinstance(pts, list):
            raise ValueError(f"values of {labels} are not a list")
        try:
            t = np.array([float(p[0]) for p in pts], dtype=np.float64)
            v = np.array([float(p[1]) for p in pts], dtype=np.float64)   # "NaN", "+Inf" are valid samples
        except (TypeError, ValueError, IndexError, KeyError, OverflowError) as e:
            raise ValueError(f"a sample of {labels} is not [time, number] ({e})") from None
        if not pts:
            continue
        if not np.all(np.isfinite(t)) or np.any(np.abs(t) > 1e11):
            raise ValueError(f"a timestamp of {labels} is not a time")
        ts = np.round(t * 1000).astype(np.int64)
        idx = np.searchsorted(grid, ts)
        ok = (idx < len(grid)) & (grid[np.minimum(idx, len(grid) - 1)] == ts)
        vals[idx[ok]] = v[ok]


def series_result(query: str, series: list[Series], params: dict[str, Any]) -> SignalResult:
    series = sorted((s for s in series if not np.isnan(s.values).all()), key=lambda s: sorted(s.labels.items()))
    return SignalResult(status="ok" if series else "no_data", series=series, query=query, params=params)


class PrometheusSource:
    """MetricsSource backed by a Prometheus server.

    ``retries`` is the number of extra attempts after the first one on connection errors,
    timeouts, 5xx, 408 and 429 (exponential backoff from ``backoff_s``); then TemporaryError.
    Any other 4xx is a PermanentError naming the query. Range queries longer than
    ``max_points`` steps are split (Prometheus refuses more than 11,000 points per series).
    """

    max_points = 10_000

    def __init__(self, *, url: str, timeout_s: float = 30, scrape_interval_s: int = 60,
                 queries: dict[str, str] | None = None, retries: int = 3, backoff_s: float = 0.5) -> None:
        unknown = set(queries or {}) - set(DEFAULT_QUERIES)
        if unknown:
            raise PermanentError(f"unknown Prometheus query names: {sorted(unknown)} (known: {sorted(DEFAULT_QUERIES)})")
        self._url = url.rstrip("/")
        self._timeout = timeout_s
        self._window = f"{rate_window_s(scrape_interval_s)}s"
        self._queries = {**DEFAULT_QUERIES, **(queries or {})}
        self._retries = max(0, retries)
        self._backoff = backoff_s
        # Our own retry loop below; the client's urllib3 retries are off (redirects still followed).
        self._client = PrometheusConnect(url=self._url, timeout=timeout_s,
                                         retry=Retry(total=None, connect=0, read=0, status=0, redirect=5))

    @property
    def name(self) -> str:
        return scrub(self._url)

    # ------------------------------------------------------------------ HTTP with retries
    def _call(self, fn: Any, query: str) -> Any:
        reason = ""
        for attempt in range(self._retries + 1):
            if attempt:
                time.sleep(min(self._backoff * 2 ** (attempt - 1), 10.0))
            try:
                return fn()
            except requests.exceptions.RequestException as e:
                reason = f"{type(e).__name__}: {e}"
            except PrometheusApiClientException as e:
                m = re.match(r"HTTP Status Code (\d+) \((.*)\)$", str(e), re.S)
                code = int(m.group(1)) if m else 0
                body = m.group(2) if m else str(e)
                if 400 <= code < 500 and code not in (408, 429):
                    raise PermanentError(f"Prometheus at {self._url} rejected query {query!r}: HTTP {code} {body[:500]}",
                                         source=self._url) from None
                reason = f"HTTP {code} {body[:300]}"
            except ValueError as e:  # 200 but not JSON: not a Prometheus API
                raise PermanentError(f"unexpected answer from {self._url} (is it Prometheus?): {e}",
                                     source=self._url) from None
        raise TemporaryError(f"cannot reach Prometheus at {self._url}: {reason}", source=self._url,
                             delay=max(self._backoff, 1.0))

    def check(self) -> None:
        self._call(lambda: self._client.custom_query("vector(1)", params={"time": time.time()}), "vector(1)")

    def _range(self, query: str, grid: np.ndarray, step_s: int) -> list[Series]:
        """Run ``query`` over ``grid`` (chunked) and align each returned series onto it."""
        rows: dict[tuple[tuple[str, str], ...], np.ndarray] = {}
        for lo in range(0, len(grid), self.max_points):
            chunk = grid[lo: lo + self.max_points]
            t0, t1 = (datetime.fromtimestamp(t / 1000, UTC) for t in (chunk[0], chunk[-1]))
            # The client rounds start/end to whole seconds: pass the exact values as params (they win).
            exact = {"start": f"{chunk[0] / 1000:.3f}", "end": f"{chunk[-1] / 1000:.3f}"}
            result = self._call(lambda a=t0, b=t1, p=exact: self._client.custom_query_range(
                query, start_time=a, end_time=b, step=str(step_s), params=p), query)
            try:
                align_matrix(result, grid, rows)
            except ValueError as e:
                raise PermanentError(f"unexpected answer from {self.name} for {query!r}: {e}", source=self.name) from None
        return [Series(dict(k), grid / 1000.0, v) for k, v in rows.items()]

    def _params(self, start: datetime, end: datetime, step_s: int, **kw: Any) -> dict[str, Any]:
        return {**kw, "start": start, "end": end, "step_s": step_s}

    # ------------------------------------------------------------------ signals
    def workload_cost(self, *, namespace: str, name: str, start: datetime, end: datetime, step_s: int,
                      resources: tuple[str, ...] = RESOURCES, kind: str = "Deployment") -> SignalResult:
        grid = grid_ms(start, end, step_s)
        queries = {r: render(self._queries[f"cost_{r}"], namespace=namespace, name=name, pod_regex=pod_regex(name, kind))
                   for r in resources}
        by_resource: dict[str, np.ndarray] = {}
        for r, q in queries.items():
            found = self._range(q, grid, step_s)
            by_resource[r] = sum_present((s.values for s in found), len(grid))
        return cost_result(queries, by_resource, grid,
                           self._params(start, end, step_s, namespace=namespace, name=name, resources=resources))

    def _single(self, key: str, start: datetime, end: datetime, step_s: int, **names: str) -> SignalResult:
        grid = grid_ms(start, end, step_s)
        q = render(self._queries[key], window=self._window, **names)
        return series_result(q, self._range(q, grid, step_s), self._params(start, end, step_s, **names))

    def workload_replicas(self, *, namespace: str, name: str, start: datetime, end: datetime, step_s: int,
                          kind: str = "Deployment") -> SignalResult:
        return self._single(replicas_query(kind), start, end, step_s, namespace=namespace, name=name)

    def gpu_utilisation(self, *, namespace: str, name: str, start: datetime, end: datetime, step_s: int,
                        kind: str = "Deployment") -> SignalResult:
        return self._single("gpu_util", start, end, step_s, namespace=namespace, name=name,
                            pod_regex=pod_regex(name, kind))

    def request_rate(self, *, namespace: str, service: str, start: datetime, end: datetime, step_s: int) -> SignalResult:
        return self._single("request_rate", start, end, step_s, namespace=namespace, service=service)

    def prediction_counters(self, *, namespace: str, service: str, start: datetime, end: datetime,
                            step_s: int) -> SignalResult:
        return self._single("prediction_counters", start, end, step_s, namespace=namespace, service=service)

    def outcome_counters(self, *, namespace: str, service: str, start: datetime, end: datetime,
                         step_s: int) -> SignalResult:
        return self._single("outcome_counters", start, end, step_s, namespace=namespace, service=service)

    def explanation_counters(self, *, namespace: str, service: str, start: datetime, end: datetime,
                             step_s: int) -> SignalResult:
        return self._single("explanation_counters", start, end, step_s, namespace=namespace, service=service)
