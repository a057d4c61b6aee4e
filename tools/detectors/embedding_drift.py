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

``run_many`` runs every (service, modality) test of a cycle as batches: tests with the same sample
sizes share one set of permutations and one batched product over their stacked kernel matrices,
and their classifiers train together as one batched network (features zero-padded to the widest).
Each test's result is the one it would get alone with the same permutations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from tools.detectors.anomaly import default_device

__all__ = ["DriftTest", "EmbeddingDrift", "TestResult", "c2st", "detect_embedding_drift", "device", "drift_tests",
           "mmd_test", "sample_problem", "run_many"]


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


@dataclass(frozen=True)
class DriftTest:
    """One two-sample test to run: ``reference`` (n, d) against ``current`` (m, d)."""

    key: str                      # whose test (a service)
    modality: str                 # a modality's name, or "fused"
    reference: np.ndarray
    current: np.ndarray
    alpha: float = 0.05


def sample_problem(t: DriftTest) -> str | None:
    """Why a test cannot run on its samples (not 2-D, widths differ, fewer than 2 rows, not finite), or None."""
    x, y = np.asarray(t.reference), np.asarray(t.current)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        return f"{t.modality}: embeddings must be 2-D with the same width (got {x.shape} and {y.shape})"
    if len(x) < 2 or len(y) < 2:
        return f"{t.modality}: need at least 2 rows in each sample (got {len(x)} and {len(y)})"
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return f"{t.modality}: embeddings hold NaN or infinite values"
    return None


def _check(x: np.ndarray, y: np.ndarray) -> None:
    problem = sample_problem(DriftTest(key="", modality="", reference=x, current=y))
    if problem:
        raise ValueError(problem.removeprefix(": "))


def _kernel(x: np.ndarray, y: np.ndarray, dev: torch.device) -> tuple[torch.Tensor, float]:
    """The RBF kernel matrix of the pooled sample, bandwidth by the median heuristic."""
    z = torch.cat([_as_tensor(x, dev), _as_tensor(y, dev)])
    d2 = torch.cdist(z, z).pow(2)
    off = d2[~torch.eye(len(z), dtype=torch.bool, device=dev)]
    bandwidth = float(off.median().clamp_min(1e-12))
    return torch.exp(-d2 / bandwidth), bandwidth


def _mmd_batch(kernels: torch.Tensor, n: int, m: int, n_permutations: int, seed: int,
               dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Observed biased MMD² and permutation p-value of each stacked kernel matrix (B, n+m, n+m)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    perms = torch.stack([torch.arange(n + m)] + [torch.randperm(n + m, generator=gen) for _ in range(n_permutations)])
    # permutation p puts rows perms[p, :n] in the reference group: weight 1/n there, -1/m elsewhere
    by_position = torch.where(torch.arange(n + m) < n, 1.0 / n, -1.0 / m).to(dev, torch.float32)
    w = torch.empty((len(perms), n + m), device=dev, dtype=torch.float32)
    w.scatter_(1, perms.to(dev), by_position.expand(len(perms), -1).contiguous())
    stats = ((w @ kernels) * w).sum(dim=-1)            # (B, P+1): w_p^T K_b w_p
    observed = stats[:, 0]
    p = (1 + (stats[:, 1:] >= observed[:, None]).sum(dim=1)) / (1 + n_permutations)
    return observed, p


def mmd_test(x: np.ndarray, y: np.ndarray, *, n_permutations: int = 100, seed: int = 0,
             dev: torch.device | None = None) -> TestResult:
    """Permutation MMD test of ``x`` (n, d) against ``y`` (m, d)."""
    dev = dev or device()
    _check(x, y)
    k, bandwidth = _kernel(x, y, dev)
    observed, p = _mmd_batch(k[None], len(x), len(y), n_permutations, seed, dev)
    return TestResult(statistic=float(observed[0]), p_value=float(p[0]), n_reference=len(x), n_current=len(y),
                      detail={"bandwidth": bandwidth, "permutations": float(n_permutations)})


def c2st(x: np.ndarray, y: np.ndarray, *, epochs: int = 60, seed: int = 0, dev: torch.device | None = None) -> TestResult:
    """Classifier two-sample test: train on half, the held-out accuracy's one-sided binomial p-value."""
    return _c2st_batch([(x, y)], epochs=epochs, seed=seed, dev=dev or device())[0]


def _c2st_batch(pairs: Sequence[tuple[np.ndarray, np.ndarray]], *, epochs: int, seed: int,
                dev: torch.device) -> list[TestResult]:
    """C2STs of pairs with the same sizes, trained together per embedding width (no padding: a
    wider batch would cost every narrower network the widest one's work); results in input order."""
    by_width: dict[int, list[int]] = {}
    for i, (x, _) in enumerate(pairs):
        by_width.setdefault(x.shape[1], []).append(i)
    out: dict[int, TestResult] = {}
    for members in by_width.values():
        res = _c2st_same_width([pairs[i] for i in members], epochs=epochs, seed=seed, dev=dev)
        out.update(zip(members, res, strict=True))
    return [out[i] for i in range(len(pairs))]


def _c2st_same_width(pairs: Sequence[tuple[np.ndarray, np.ndarray]], *, epochs: int, seed: int,
                     dev: torch.device) -> list[TestResult]:
    """B independent two-layer networks, one per pair, trained as batched matrix products."""
    n, m = len(pairs[0][0]), len(pairs[0][1])
    width = pairs[0][0].shape[1]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    lab = np.concatenate([np.zeros(n), np.ones(m)]).astype(np.float32)
    idx = rng.permutation(n + m)
    half = (n + m) // 2
    tr, te = idx[:half], idx[half:]
    feats = np.zeros((len(pairs), n + m, width), dtype=np.float32)
    for b, (x, y) in enumerate(pairs):
        z = np.concatenate([x, y]).astype(np.float32)
        mu, sd = z[tr].mean(0), z[tr].std(0) + 1e-6
        feats[b] = (z - mu) / sd
    zt = torch.as_tensor(feats, device=dev)
    lt = torch.as_tensor(lab, device=dev).expand(len(pairs), -1)
    hidden, batch = 32, len(pairs)

    def param(*shape: int, fan_in: int) -> torch.Tensor:   # nn.Linear's default initialisation
        bound = 1 / math.sqrt(fan_in)
        return torch.empty(shape, device=dev).uniform_(-bound, bound).requires_grad_()

    w1, b1 = param(batch, width, hidden, fan_in=width), param(batch, 1, hidden, fan_in=width)
    w2, b2 = param(batch, hidden, 1, fan_in=hidden), param(batch, 1, 1, fan_in=hidden)
    opt = torch.optim.Adam([w1, b1, w2, b2], lr=1e-2, weight_decay=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss(reduction="sum")

    def logits(z: torch.Tensor) -> torch.Tensor:
        return (torch.relu(z @ w1 + b1) @ w2 + b2).squeeze(-1)

    tri, tei = torch.as_tensor(tr, device=dev), torch.as_tensor(te, device=dev)
    z_train, y_train, z_test = zt[:, tri], lt[:, tri], zt[:, tei]   # gathered once, not every epoch
    for _ in range(epochs):
        opt.zero_grad()
        # the sum over networks of each one's mean loss: every network gets its own gradient
        loss = loss_fn(logits(z_train), y_train) / len(tr)
        loss.backward()
        opt.step()
    with torch.no_grad():
        correct = ((logits(z_test) > 0).float() == lt[:, tei]).sum(dim=1).tolist()
    total = len(te)
    # majority rate under the null: the larger class share of the held-out half
    base = max(float(lab[te].mean()), 1 - float(lab[te].mean()))
    return [TestResult(statistic=c / total, p_value=_binom_sf(int(c), total, base), n_reference=n, n_current=m,
                       detail={"accuracy": c / total, "chance": base, "epochs": float(epochs)}) for c in correct]


def _binom_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), in log space."""
    if k <= 0:
        return 1.0
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p) + (n - i) * math.log1p(-p)
            for i in range(k, n + 1)]
    top = max(logs)
    return float(min(1.0, math.exp(top) * sum(math.exp(v - top) for v in logs)))


def run_many(tests: Sequence[DriftTest], *, n_permutations: int = 100, with_c2st: bool = True, seed: int = 0,
              dev: torch.device | None = None) -> list[EmbeddingDrift]:
    """Every test, batched by sample sizes; results in the order of ``tests``. A test whose samples
    are malformed raises ValueError naming its key and modality before anything runs."""
    dev = dev or device()
    for t in tests:
        problem = sample_problem(t)
        if problem:
            raise ValueError(f"{t.key} {problem}")
    groups: dict[tuple[int, int], list[int]] = {}
    for i, t in enumerate(tests):
        groups.setdefault((len(t.reference), len(t.current)), []).append(i)
    out: dict[int, EmbeddingDrift] = {}
    for (n, m), members in groups.items():
        kernels, bandwidths = zip(*(_kernel(tests[i].reference, tests[i].current, dev) for i in members), strict=True)
        observed, p = _mmd_batch(torch.stack(kernels), n, m, n_permutations, seed, dev)
        c2 = (_c2st_batch([(tests[i].reference, tests[i].current) for i in members], epochs=60, seed=seed, dev=dev)
              if with_c2st and min(n, m) >= 20 else [None] * len(members))
        for j, i in enumerate(members):
            res = TestResult(statistic=float(observed[j]), p_value=float(p[j]), n_reference=n, n_current=m,
                             detail={"bandwidth": bandwidths[j], "permutations": float(n_permutations)})
            out[i] = EmbeddingDrift(modality=tests[i].modality, mmd=res, c2st=c2[j],
                                    drifted=res.p_value < tests[i].alpha)
    return [out[i] for i in range(len(tests))]


def drift_tests(key: str, reference: Mapping[str, np.ndarray], current: Mapping[str, np.ndarray], *,
                alpha: float = 0.05, sample_size: int | None = None, seed: int = 0) -> list[DriftTest]:
    """The tests of one service: per modality (same name in both mappings) and, when every modality
    has the same rows in both samples, the fused embedding (modalities side by side). ``sample_size``
    caps each sample (a random subset, seeded)."""
    rng = np.random.default_rng(seed)

    def cap(a: np.ndarray) -> np.ndarray:
        return a[rng.choice(len(a), sample_size, replace=False)] if sample_size and len(a) > sample_size else a

    names = sorted(set(reference) & set(current))
    pairs = {name: (np.asarray(reference[name]), np.asarray(current[name])) for name in names}
    if len(names) > 1 and len({len(r) for r, _ in pairs.values()}) == 1 and len({len(c) for _, c in pairs.values()}) == 1:
        pairs["fused"] = (np.concatenate([pairs[n][0] for n in names], axis=1),
                          np.concatenate([pairs[n][1] for n in names], axis=1))
    return [DriftTest(key=key, modality=name, reference=cap(ref), current=cap(cur), alpha=alpha)
            for name, (ref, cur) in pairs.items()]


def detect_embedding_drift(reference: Mapping[str, np.ndarray], current: Mapping[str, np.ndarray], *,
                           alpha: float = 0.05, n_permutations: int = 100, sample_size: int | None = None,
                           with_c2st: bool = True, seed: int = 0) -> list[EmbeddingDrift]:
    """One service's tests (``drift_tests``), run as batches (``run_many``)."""
    return run_many(drift_tests("", reference, current, alpha=alpha, sample_size=sample_size, seed=seed),
                     n_permutations=n_permutations, with_c2st=with_c2st, seed=seed)
