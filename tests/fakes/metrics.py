"""A MetricsSource fake: serves given series, or wraps a real source and rewrites/breaks signals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from tools.errors import TemporaryError
from tools.protocols import MetricsSource
from tools.results import SignalResult

Rewrite = Callable[[str, dict[str, Any], SignalResult], SignalResult]


class FakeMetrics:
    """Delegates to ``inner``; ``rewrite(signal, kwargs, result)`` may change any result and
    ``fail`` names (signal, name) pairs that raise TemporaryError like an unreachable Prometheus."""

    def __init__(self, inner: MetricsSource, *, rewrite: Rewrite | None = None,
                 fail: set[tuple[str, str]] | None = None) -> None:
        self.inner, self.rewrite, self.fail = inner, rewrite, fail or set()
        self.calls: list[tuple[str, dict[str, Any]]] = []

    @property
    def name(self) -> str:
        return f"fake({self.inner.name})"

    def check(self) -> None:
        self.inner.check()

    def _call(self, signal: str, **kw: Any) -> SignalResult:
        self.calls.append((signal, kw))
        who = kw.get("name") or kw.get("service") or ""
        if (signal, who) in self.fail:
            raise TemporaryError(f"fake: {signal} {who} unavailable", source="fake")
        res: SignalResult = getattr(self.inner, signal)(**kw)
        return self.rewrite(signal, kw, res) if self.rewrite else res

    def workload_cost(self, *, namespace: str, name: str, start: datetime, end: datetime, step_s: int,
                      resources: tuple[str, ...] = ("cpu", "gpu", "memory"), kind: str = "Deployment") -> SignalResult:
        return self._call("workload_cost", namespace=namespace, name=name, start=start, end=end, step_s=step_s,
                          resources=resources, kind=kind)

    def workload_replicas(self, **kw: Any) -> SignalResult:
        return self._call("workload_replicas", **kw)

    def gpu_utilisation(self, **kw: Any) -> SignalResult:
        return self._call("gpu_utilisation", **kw)

    def request_rate(self, **kw: Any) -> SignalResult:
        return self._call("request_rate", **kw)

    def prediction_counters(self, **kw: Any) -> SignalResult:
        return self._call("prediction_counters", **kw)

    def outcome_counters(self, **kw: Any) -> SignalResult:
        return self._call("outcome_counters", **kw)

    def explanation_counters(self, **kw: Any) -> SignalResult:
        return self._call("explanation_counters", **kw)


def flatten_tail(res: SignalResult, hours: float) -> SignalResult:
    """Replace the last ``hours`` of the first series by the median before them (the fix worked)."""
    import numpy as np

    s = res.first
    if s is None:
        return res
    v = s.values.copy()
    n = int(hours * 3600 / float(np.median(np.diff(s.timestamps))))
    v[-n:] = float(np.nanmedian(v[:-n]))
    return replace(res, series=[replace(s, values=v)] + res.series[1:])
