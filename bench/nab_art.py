"""An adaptive-resonance anomaly detector in the manner of ARTime (Hampton, NAB 2021), written for
the leave-one-category-out table of ``bench/nab_loco.py`` (candidate ``art``). Not a port: the
published ARTime is Julia code; this follows its idea as described there, in our own code:

1. **Downsample** so that the probationary part (NAB's min(15 %, 750) rows) holds about
   ``WINDOW * WINDOWS_PER_PROBATION`` steps; a step is the mean of its rows, or its extreme row
   when that departs from the mean by more than 10 % (a spike survives the averaging).
2. **Normalise and quantise**: to [0, 1] by a range (``norm="file"``: the file's min and max, as
   NAB hands its detectors and ARTime uses; ``norm="probation"``: the probationary part's range
   widened by half on each side and clipped, causal), then to ``LEVELS`` levels; a value within
   ``SNAP`` of the running median level is put on it (small wiggles are not news).
3. **Features** of each step: the last ``WINDOW`` values and the Haar wavelet coefficients of that
   window (min-max scaled), complement-coded.
4. **Fuzzy ART with two vigilances** (rho_lb <= rho_ub): a category's match is the fuzzy-ART
   match of the whole vector, cubed, times the square of the match of the window's latest value
   (ARTime's "energy": a familiar shape at an unfamiliar level is not familiar). Every category
   whose match reaches rho_ub learns; if none does, a new category is made, in the best one's
   cluster when its match reaches rho_lb, else as a new cluster. A new cluster after the
   probationary part is an anomaly candidate, unless it comes within a masking time of the last
   anomaly, or while new clusters (or a vigilance change) are recent; then only when it matches
   clearly worse than the last anomaly did.
5. **Vigilance** starts from the probationary part (the mean best match its features reach at 0.8
   after being presented typical-first) and adapts: rho_ub follows the running mean of the best
   matches (at most 0.97); rho_lb rises toward the lowest recent match and (after two trend
   windows) falls by the recent shortfall below rho_ub, never under the mean match of past
   anomalies (each the lowest match while it was masked).

Score of an anomaly: how far its best match falls below the vigilances, in [0, 1]; 0 elsewhere.
Sequential per series (numpy over categories), about 10^4-10^5 rows/s.
"""

from __future__ import annotations

import math

import numpy as np

WINDOW = 8
WINDOWS_PER_PROBATION = 13
LEVELS = 80
SNAP = 0.075
INITIAL_RHO = 0.8
RHO_UB_CAP = 0.97
SPIKE = 0.1
LEVEL_WEIGHT = 1.5


def _haar(x: np.ndarray) -> np.ndarray:
    """Full Haar decomposition of a window whose length is a power of two (orthonormal)."""
    out: list[np.ndarray] = []
    a = x.astype(np.float64)
    while a.size > 1:
        even, odd = a[0::2], a[1::2]
        out.append((even - odd) / math.sqrt(2.0))
        a = (even + odd) / math.sqrt(2.0)
    return np.concatenate([a, *out[::-1]])


def _unit(x: np.ndarray) -> np.ndarray:
    lo, hi = float(np.min(x)), float(np.max(x))
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


class _DualVigilanceART:
    """Fuzzy ART categories (complement-coded weights) grouped in clusters by two vigilances."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.w = np.zeros((0, 2 * dim))
        self.rho_lb = self.rho_ub = INITIAL_RHO
        self.level = 1.0

    def present(self, f: np.ndarray, learn: bool = True) -> tuple[float, bool]:
        """(best match, whether a new cluster was made) for features ``f`` in [0, 1]."""
        x = np.concatenate([f, 1.0 - f])
        if self.w.shape[0] == 0:
            if learn:
                self.w = x[None, :].copy()
            return 1.0, False
        inter = np.minimum(self.w, x[None, :])
        norm_w = np.maximum(self.w.sum(axis=1), 1e-3)
        # the match of the whole window, sharpened by the match of its latest value (the "level"
        # dimension and its complement): a familiar shape at an unfamiliar level is not familiar
        e = [self.dim - 1, 2 * self.dim - 1]
        level = inter[:, e].sum(axis=1) / np.maximum(self.w[:, e].sum(axis=1), 1e-3)
        match = (inter.sum(axis=1) / norm_w) ** 3 * level ** 2
        j = int(np.argmax(match))
        best = float(match[j])
        self.level = float(level[j])
        if not learn:
            return best, False
        resonant = match >= self.rho_ub
        if resonant.any():
            self.w[resonant] = inter[resonant]   # fast learning: every resonant category shrinks to the common part
            return best, False
        self.w = np.vstack([self.w, x])     # a new category: in the same cluster (>= rho_lb) or a new one
        return best, best < self.rho_lb


def _downsample(v: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
    """One value per ``step`` rows (see the module docstring) and the row each one ends at."""
    n = v.size // step
    ends = np.arange(1, n + 1) * step - 1
    out = np.zeros(n)
    avg = math.nan
    for k in range(n):
        blk = v[k * step:(k + 1) * step]
        m = float(np.mean(blk))
        avg = m if avg != avg else 0.5 * (avg + m)
        hi, lo = float(np.max(blk)), float(np.min(blk))
        ext = lo if abs(lo - avg) > abs(hi - avg) else hi
        out[k] = ext if abs(ext - m) >= SPIKE * abs(m) else m
    return out, ends


def art_scores(v: np.ndarray, norm: str = "file") -> np.ndarray:
    """Per-row anomaly scores of one series (NaN rows: carried forward); the score of a downsampled
    step sits on its last row, the rows after the last whole step score 0."""
    if norm not in ("file", "probation"):
        raise ValueError(f"norm must be 'file' or 'probation', not {norm!r}")
    x = np.asarray(v, dtype=np.float64)
    ok = np.isfinite(x)
    scores = np.zeros(x.size)
    if ok.sum() < 4 * WINDOW:
        return scores
    idx = np.where(ok, np.arange(x.size), 0)
    np.maximum.accumulate(idx, out=idx)
    x = np.where(ok[idx], x[idx], float(np.nanmedian(x)))
    prob = min(int(math.floor(0.15 * x.size)), 750)
    prob -= prob % 2
    step = max(1, round(prob / (WINDOW * WINDOWS_PER_PROBATION)))
    ds, ends = _downsample(x, step)
    train = max(WINDOW + 2, prob // step)          # downsampled steps in the probationary part
    if ds.size <= train:
        return scores
    if norm == "file":
        lo, hi = float(np.min(x)), float(np.max(x))
    else:
        p_lo, p_hi = float(np.min(x[:prob])), float(np.max(x[:prob]))
        pad = 0.5 * (p_hi - p_lo) if p_hi > p_lo else max(abs(p_hi), 1.0)
        lo, hi = p_lo - pad, p_hi + pad
    u = np.clip((ds - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros(ds.size)
    q = np.round(u * LEVELS).astype(int)
    counts = np.zeros(LEVELS + 1, dtype=int)
    feats = np.zeros((ds.size, 2 * WINDOW))
    for k in range(ds.size):
        counts[q[k]] += 1
        med = int(np.searchsorted(np.cumsum(counts), (k + 1) / 2.0))   # running median level
        val = q[k] / LEVELS
        if abs(val - med / LEVELS) < SNAP:
            val = med / LEVELS
        u[k] = val
        if k >= WINDOW - 1:
            w = u[k - WINDOW + 1: k + 1]
            feats[k] = np.concatenate([_unit(_haar(_unit(w))), w])
    art = _DualVigilanceART(2 * WINDOW)
    # vigilance from the probationary part: its features presented typical-first at INITIAL_RHO
    tr = feats[WINDOW - 1: train]
    if tr.shape[0] >= 4:
        nrm = np.linalg.norm(tr, axis=1)
        sim = (tr @ tr.T) / np.maximum(np.outer(nrm, nrm), 1e-12)
        order = np.argsort(sim.sum(axis=0))[::-1]
        probe = _DualVigilanceART(2 * WINDOW)
        m = [probe.present(tr[i])[0] for i in order]
        rho = float(np.mean(m[len(m) // 2:]))
        art.rho_lb = art.rho_ub = min(rho, RHO_UB_CAP)
    mask = int(1.5 * WINDOW)
    trend = max(4, train)
    last_anom, last_update, since_new, mask_cat = -10**9, 0, 0, False
    last_anom_match, anom_matches = 0.0, []
    recent: list[float] = []
    shortfall: list[float] = []
    match_sum, match_n = 0.0, 0
    for k in range(ds.size):
        if k < WINDOW - 1:
            continue
        if k > train + mask and mask_cat and since_new >= mask:
            mask_cat = False             # no new cluster for a while: the masking after one ends
        best, new_cluster = art.present(feats[k])
        since_new = 0 if new_cluster else since_new + 1
        match_sum, match_n = match_sum + best, match_n + 1
        recent = [*recent[-(trend // 2):], best]
        shortfall = [*shortfall[-trend:], art.rho_ub - best]
        if k - last_anom < mask and anom_matches:
            anom_matches[-1] = min(anom_matches[-1], best)   # an anomaly's match: the lowest while it is masked
        if k >= train and new_cluster:
            masked = k - last_anom <= mask or mask_cat
            worse = best < last_anom_match * (0.9 if k - last_anom <= mask else 0.7)
            if not masked or worse:
                one = 1.0 - min(best, 0.999)
                s = (0.35 * (one - (1 - art.rho_ub)) / one + 0.65 * (one - (1 - art.rho_lb)) / one
                     + LEVEL_WEIGHT * (1.0 - art.level))
                scores[ends[k]] = float(np.clip(s, 0.0, 1.0))
                last_anom, last_anom_match = k, best
                anom_matches.append(best)
        mask_cat = mask_cat or new_cluster
        if k >= train and (k - last_update >= trend // 2 or k - last_anom == mask):
            ub = min(RHO_UB_CAP, match_sum / match_n)
            low = min(recent)
            if art.rho_lb <= low:
                lb = art.rho_lb + 0.19 * (low - art.rho_lb)
            else:
                short = [min(0.37, s_) for s_ in shortfall if s_ > 0.05] if k > 2 * trend else []
                lb = art.rho_lb - 0.5 * max(0.01, float(np.mean(short)) if short else 0.0)
                if anom_matches:
                    lb = max(lb, float(np.mean(anom_matches)))
            art.rho_ub, art.rho_lb = ub, min(ub, lb)
            last_update, mask_cat = k, True   # a new vigilance: masked until no new cluster for a while
    return scores


def art(series: list[tuple[np.ndarray, np.ndarray]], norm: str = "file") -> list[np.ndarray]:
    return [art_scores(v, norm=norm) for _, v in series]


def art_history(series: list[tuple[np.ndarray, np.ndarray]], history_s: float = 7 * 86400.0,
                every_s: float = 3 * 3600.0) -> list[np.ndarray]:
    """What a daemon could run: every ``every_s`` of series time, ART from cold on the last
    ``history_s`` of rows (normalised by that window's own min and max, the range a cycle knows),
    and the rows since the previous cycle keep that run's scores."""
    out = []
    for t, v in series:
        s = np.zeros(v.size)
        done, lo = 0, 0
        for e in range(v.size):
            if e + 1 < v.size and t[e + 1] - t[done] < every_s:
                continue           # not yet a cycle: the next row is still inside this one
            while t[lo] < t[e] - history_s:
                lo += 1
            s[done: e + 1] = art_scores(v[lo: e + 1])[done - lo:]
            done = e + 1
        out.append(s)
    return out
