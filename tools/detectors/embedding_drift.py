"""Multimodal embedding drift: two-sample tests between a reference and a current sample of a
service's input embeddings, per modality and for the fused embedding (pure: arrays in, results
out; torch on the GPU when there is one, else the CPU).

* **MMD** with a Gaussian (RBF) kernel, the bandwidth from the median heuristic on the pooled
  sample, and a permutation p-value: the statistic is the biased MMD² (``s^T K s`` with
  ``s_i = 1/n`` for reference rows and ``-1/m`` for current rows), computed for every permutation
  at once as one matrix product on the kernel matrix.
* **Classifier two-sample test (C2ST)**: a small MLP tells the samples apart on half of the rows;
  its accuracy on the other half against chance gives a one-sided binomial p-value.

A modality drifted when its p-value is below ``alpha`` (both tests are reported; MMD decides, the
C2ST is evidence). Defaults are alibi-detect's: ``alpha`` 0.05, 100 permutations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from tools.detectors.anomaly import default_device

__all__ = ["EmbeddingDrift", "TestResult", "c2st", "detect_embedding_drift", "device", "mmd_test"]


def device() -> torch.device:
    """The GPU when there is one, else the CPU (the anomaly model's choice)."""
    return default_device()


@dataclass(frozen=True)
class TestResult:
    statistic: float
    p_value: float
    n_reference: int
    n_current: int
    detail: Mapping[str, float]


@dataclass(frozen=True)
class EmbeddingDrift:
    modality: str                 # a modality's name, or "fused"
    mmd: TestResult
    c2st: TestResult | None
    drifted: bool


def _as_tensor(a: np.ndarray, dev: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float32), device=dev)


def mmd_test(x: np.ndarray, y: np.ndarray, *, n_permutations: int = 100, seed: int = 0,
             dev: torch.device | None = None) -> TestResult:
    """Permutation MMD test of ``x`` (n, d) against ``y`` (m, d)."""
    dev = dev or device()
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"embeddings must be 2-D with the same width (got {x.shape} and {y.shape})")
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"need at least 2 rows in each sample (got {len(x)} and {len(y)})")
    z = torch.cat([_as_tensor(x, dev), _as_tensor(y, dev)])
    n, m = len(x), len(y)
    d2 = torch.cdist(z, z).pow(2)
    off = d2[~torch.eye(n + m, dtype=torch.bool, device=dev)]
    bandwidth = float(off.median().clamp_min(1e-12))
    k = torch.exp(-d2 / bandwidth)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    perms = torch.stack([torch.arange(n + m)] + [torch.randperm(n + m, generator=gen) for _ in range(n_permutations)])
    # permutation p puts rows perms[p, :n] in the reference group: weight 1/n there, -1/m elsewhere
    by_position = torch.where(torch.arange(n + m) < n, 1.0 / n, -1.0 / m).to(dev, torch.float32)
    w = torch.empty((len(perms), n + m), device=dev, dtype=torch.float32)
    w.scatter_(1, perms.to(dev), by_position.expand(len(perms), -1).contiguous())
    stats = ((w @ k) * w).sum(dim=1)
    observed = float(stats[0])
    p = float((1 + (stats[1:] >= observed).sum()) / (1 + n_permutations))
    return TestResult(statistic=observed, p_value=p, n_reference=n, n_current=m,
                      detail={"bandwidth": bandwidth, "permutations": float(n_permutations)})


def c2st(x: np.ndarray, y: np.ndarray, *, epochs: int = 60, seed: int = 0, dev: torch.device | None = None) -> TestResult:
    """Classifier two-sample test: train on half, the held-out accuracy's one-sided binomial p-value."""
    dev = dev or device()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    z = np.concatenate([x, y]).astype(np.float32)
    lab = np.concatenate([np.zeros(len(x)), np.ones(len(y))]).astype(np.float32)
    idx = rng.permutation(len(z))
    half = len(z) // 2
    tr, te = idx[:half], idx[half:]
    mu, sd = z[tr].mean(0), z[tr].std(0) + 1e-6
    zt = torch.as_tensor((z - mu) / sd, device=dev)
    lt = torch.as_tensor(lab, device=dev)
    net = torch.nn.Sequential(torch.nn.Linear(z.shape[1], 32), torch.nn.ReLU(), torch.nn.Linear(32, 1)).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    tri = torch.as_tensor(tr, device=dev)
    for _ in range(epochs):
        opt.zero_grad()
        loss = loss_fn(net(zt[tri]).squeeze(1), lt[tri])
        loss.backward()
        opt.step()
    with torch.no_grad():
        tei = torch.as_tensor(te, device=dev)
        pred = (net(zt[tei]).squeeze(1) > 0).float()
        correct = int((pred == lt[tei]).sum())
    total = len(te)
    # majority rate under the null: the larger class share of the held-out half
    base = max(float(lab[te].mean()), 1 - float(lab[te].mean()))
    p = _binom_sf(correct, total, base)
    return TestResult(statistic=correct / total, p_value=p, n_reference=len(x), n_current=len(y),
                      detail={"accuracy": correct / total, "chance": base, "epochs": float(epochs)})


def _binom_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), in log space."""
    if k <= 0:
        return 1.0
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p) + (n - i) * math.log1p(-p)
            for i in range(k, n + 1)]
    top = max(logs)
    return float(min(1.0, math.exp(top) * sum(math.exp(v - top) for v in logs)))


def detect_embedding_drift(reference: Mapping[str, np.ndarray], current: Mapping[str, np.ndarray], *,
                           alpha: float = 0.05, n_permutations: int = 100, sample_size: int | None = None,
                           with_c2st: bool = True, seed: int = 0) -> list[EmbeddingDrift]:
    """Per modality (same name in both mappings) and, when every modality has the same rows in both
    samples, for the fused embedding (modalities side by side). ``sample_size`` caps each sample
    (a random subset, seeded)."""
    dev = device()
    rng = np.random.default_rng(seed)

    def cap(a: np.ndarray) -> np.ndarray:
        return a[rng.choice(len(a), sample_size, replace=False)] if sample_size and len(a) > sample_size else a

    out: list[EmbeddingDrift] = []
    names = sorted(set(reference) & set(current))
    pairs = {name: (np.asarray(reference[name]), np.asarray(current[name])) for name in names}
    if len(names) > 1 and len({len(r) for r, _ in pairs.values()}) == 1 and len({len(c) for _, c in pairs.values()}) == 1:
        pairs["fused"] = (np.concatenate([pairs[n][0] for n in names], axis=1),
                          np.concatenate([pairs[n][1] for n in names], axis=1))
    for name, (ref, cur) in pairs.items():
        ref, cur = cap(ref), cap(cur)
        m = mmd_test(ref, cur, n_permutations=n_permutations, seed=seed, dev=dev)
        c = c2st(ref, cur, seed=seed, dev=dev) if with_c2st and min(len(ref), len(cur)) >= 20 else None
        out.append(EmbeddingDrift(modality=name, mmd=m, c2st=c, drifted=m.p_value < alpha))
    return out
