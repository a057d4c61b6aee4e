"""Step-wise cost series the way a cluster produces them (after the scenario generator's model):
seasonal traffic with AR noise, an HPA that runs ceil(demand) replicas with a short scale-down
stabilisation, and cost = replicas x the price of one replica. Cost moves in whole replicas."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

STEP = 120
DAY = 86400
REPLICA_USD_H = 1.2 + 4 * 0.0316 + 16 * 0.0042    # one GPU, 4 CPUs, 16 GiB at the generator's node prices


@dataclass(frozen=True)
class Cluster:
    ts: np.ndarray
    cost: np.ndarray
    replicas: np.ndarray
    rps: np.ndarray


def simulate(now: float, *, days: int = 7, tz_h: float = 0.0, seed: int = 0, rps: float = 30.0,
             per_replica: float = 10.0, daily: float = 0.15, weekly: float = 0.1, noise: float = 0.03,
             lo: int = 2, hi: int = 10, creep: tuple[float, float, float] | None = None,
             price_step: tuple[float, float] | None = None, replica_step: tuple[float, int] | None = None,
             dips_per_day: float = 0.0) -> Cluster:
    """``creep=(t0, t1, factor)``: demand (so replicas) rises linearly by ``factor`` from t0 to t1 and
    stays; ``price_step=(t0, factor)``: the price of one replica is multiplied from t0 on (a request
    raised in Git, replicas unchanged); ``replica_step=(t0, k)``: k more replicas from t0 on;
    ``dips_per_day``: how often a pod is missing for one sample (a restart, an eviction)."""
    n = days * DAY // STEP
    ts = now - STEP * np.arange(n)[::-1]
    rng = np.random.default_rng(seed)
    local = ts + tz_h * 3600
    hour = (local % DAY) / 3600.0
    dow = ((local // DAY).astype(int) + 3) % 7
    d = np.cos(2 * np.pi * (hour - 14) / 24) + 0.25 * np.cos(4 * np.pi * (hour - 19) / 24)
    d /= 1.25
    weekend = (dow >= 5).astype(float)
    wk = 1.0 + weekly * 2 / 7 - weekly * weekend
    ar = np.zeros(n)
    phi = 0.97
    e = rng.standard_normal(n)
    for k in range(1, n):
        ar[k] = phi * ar[k - 1] + noise * math.sqrt(1 - phi * phi) * e[k]
    traffic = np.maximum(0.0, rps * (1 + daily * d) * wk * (1 + ar + rng.normal(0, noise * 0.3, n)))
    factor = np.ones(n)
    if creep is not None:
        t0, t1, f = creep
        factor = 1 + (f - 1) * np.clip((ts - t0) / max(1.0, t1 - t0), 0, 1)
    demand = traffic * factor / per_replica
    reps = np.zeros(n)
    cur, hist = None, []  # type: ignore[var-annotated]
    for k in range(n):
        desired = max(lo, min(hi, math.ceil(demand[k] - 0.05)))
        hist = [*hist[-2:], desired]
        if cur is None or desired > cur:
            cur = desired
        elif max(hist) < cur:
            cur = max(hist)
        reps[k] = cur
    if dips_per_day > 0:
        dip = rng.random(n) < dips_per_day * STEP / DAY
        reps = np.where(dip & (reps > 1), reps - 1, reps)
    if replica_step is not None:
        reps = reps + np.where(ts >= replica_step[0], replica_step[1], 0)
    price = np.full(n, REPLICA_USD_H)
    if price_step is not None:
        price = np.where(ts >= price_step[0], price * price_step[1], price)
    return Cluster(ts=ts, cost=reps * price, replicas=reps, rps=traffic)
