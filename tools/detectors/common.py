"""Small numeric helpers shared by the detectors (pure numpy, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


@dataclass
class InputStats:
    """What a detector had to skip, so the cycle report can say so."""

    rejected: list[str] = field(default_factory=list)

    def reject(self, what: str, why: str) -> None:
        self.rejected.append(f"{what}: {why}")


def clean_series(ts: object, values: object) -> tuple[Array, Array] | None:
    """Validate one series: 1-D, same length, finite timestamps, ascending. Non-finite
    values become NaN. Returns None when the series is unusable."""
    try:
        t = np.asarray(ts, dtype=np.float64)
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if t.ndim != 1 or v.ndim != 1 or t.shape != v.shape or t.size < 2:
        return None
    if not np.all(np.isfinite(t)) or np.any(np.diff(t) <= 0):
        return None
    v = np.where(np.isfinite(v), v, np.nan)
    return t, v


def counter_increase(values: Array) -> float:
    """Total increase of a counter sampled in order, tolerating NaN gaps and resets
    (a drop means the counter restarted from zero: the new value is the increase)."""
    v = values[np.isfinite(values)]
    if v.size < 2:
        return 0.0
    d = np.diff(v)
    d = np.where(d < 0, v[1:], d)
    return float(d.sum())


def counter_increase_between(ts: Array, values: Array, start: float, end: float,
                             data_start: float | None = None) -> float:
    """Increase of a counter over ``(start, end]`` using the last sample at or before ``start`` as base.

    A series whose first sample lies inside the window counts from zero (a new version's counter
    starts at 0) -- unless that first sample is where the data itself begins (``data_start``,
    within 1.5 steps): then the series simply predates what we can see and its first value is a
    running total, not an increase."""
    mask = (ts <= end) & np.isfinite(values)
    t, v = ts[mask], values[mask]
    if t.size == 0:
        return 0.0
    before = np.nonzero(t <= start)[0]
    if before.size:
        return counter_increase(v[before[-1]:])
    step = float(np.median(np.diff(ts))) if ts.size > 1 else 0.0
    if data_start is not None and t[0] <= data_start + 1.5 * step:
        return counter_increase(v)
    return float(v[0]) + counter_increase(v)


def data_start(series: list[tuple[Array, Array]]) -> float | None:
    """The first time any of these series has a sample (where the visible data begins)."""
    firsts = [first_sample_time(t, v) for t, v in series]
    known = [f for f in firsts if f is not None]
    return min(known) if known else None


def first_sample_time(ts: Array, values: Array) -> float | None:
    idx = np.nonzero(np.isfinite(values))[0]
    return float(ts[idx[0]]) if idx.size else None


def robust_sigma(x: Array) -> float:
    """1.4826 x MAD of the finite values (a robust standard deviation); 0 when empty."""
    x = x[np.isfinite(x)]
    if x.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def downsample(ts: Array, values: Array, n: int = 48) -> list[list[float]]:
    """A few ``[ts, value]`` points for evidence and charts (means over equal buckets)."""
    ok = np.isfinite(values)
    t, v = ts[ok], values[ok]
    if t.size == 0:
        return []
    buckets = np.array_split(np.arange(t.size), min(n, t.size))
    return [[float(t[b[-1]]), round(float(v[b].mean()), 6)] for b in buckets if b.size]


def clean_counter(ts: object, values: object) -> tuple[Array, Array] | None:
    """``clean_series`` for a counter: a negative sample cannot be a counter value, so it becomes a gap."""
    cs = clean_series(ts, values)
    if cs is None:
        return None
    t, v = cs
    return t, np.where(v >= 0, v, np.nan)


def median_step(ts: Array) -> float:
    """The typical sampling interval of a cleaned series (0 when it has fewer than two samples)."""
    return float(np.median(np.diff(ts))) if ts.size > 1 else 0.0


def describe_labels(labels: dict[str, str]) -> str:
    """``{k="v", ...}`` for messages that name one series."""
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
