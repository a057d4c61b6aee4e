"""Evidence as prompt text: fencing of outside strings and bounded compaction of evidence.

* Every string that comes from outside (audit-log fields, manifest strings, label values, commit
  messages, tool results) is fenced as ``<untrusted source="...">...</untrusted>`` with ``<`` and
  ``>`` escaped inside, so the fence cannot be closed from within.
* Evidence is compacted: numbers rounded, series summarised (statistics, change points, a few
  points), lists cut; the text is bounded in characters.
* A rationale that cites no number of the evidence gets the key evidence appended.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from agents.workloads import dig
from memory.records import Incident

_TS = re.compile(r"^\d{4}-\d\d-\d\d([T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)?)?$")
# strings remediator computes itself (detector vocabulary); everything else is fenced
TRUSTED_KEYS = frozenset({"metric", "gate", "method", "baseline_source", "detector", "window", "component"})


def neutralise(text: str, limit: int = 300) -> str:
    """Untrusted text made inert for the prompt: no angle brackets (no fence can be closed or
    opened from inside), no control characters, one line, bounded length."""
    t = str(text).replace("<", "&lt;").replace(">", "&gt;")
    t = re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", " ", t).replace("\r", " ").replace("\n", " \u23ce ")
    return t if len(t) <= limit else t[: max(0, limit - 1)] + "\u2026"


def fence(text: object, source: str, limit: int = 300) -> str:
    src = re.sub(r"[^A-Za-z0-9_.\[\]/:*-]", "_", source)[:120]
    return f'<untrusted source="{src}">{neutralise(str(text), limit)}</untrusted>'


def fence_block(text: str, source: str, limit: int) -> str:
    """A multi-line untrusted block (a tool result): escaped, bounded, fenced once."""
    src = re.sub(r"[^A-Za-z0-9_.\[\]/:*-]", "_", source)[:120]
    t = str(text).replace("<", "&lt;").replace(">", "&gt;")
    t = re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", " ", t)
    if len(t) > limit:
        t = t[: max(0, limit - 1)] + "\u2026"
    return f'<untrusted source="{src}">\n{t}\n</untrusted>'


def _num(x: float) -> float | int:
    if isinstance(x, bool):
        return x
    if isinstance(x, int):
        return x
    if not math.isfinite(x):
        return x
    if x == 0:
        return 0
    r = round(x, max(0, 4 - int(math.floor(math.log10(abs(x)))) - 1))
    return int(r) if float(r).is_integer() and abs(r) >= 1000 else r


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%dT%H:%MZ")


def change_points(values: Sequence[float], *, max_points: int = 2, min_seg: int = 3) -> list[int]:
    """Indexes where the level shifts (binary segmentation on the mean; a shift must be larger
    than 3 pooled standard deviations and 10% of the level)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    found: list[int] = []

    def split(lo: int, hi: int) -> None:
        if len(found) >= max_points or hi - lo < 2 * min_seg:
            return
        seg = v[lo:hi]
        best, bi = 0.0, -1
        for i in range(min_seg, seg.size - min_seg + 1):
            a, b = seg[:i], seg[i:]
            score = a.size * b.size / seg.size * (a.mean() - b.mean()) ** 2
            if score > best:
                best, bi = score, i
        if bi < 0:
            return
        a, b = seg[:bi], seg[bi:]
        pooled = math.sqrt((a.var() * a.size + b.var() * b.size) / seg.size) or 1e-12
        shift = abs(a.mean() - b.mean())
        if shift > 3 * pooled and shift > 0.1 * max(abs(a.mean()), abs(b.mean()), 1e-12):
            found.append(lo + bi)
            split(lo, lo + bi)
            split(lo + bi, hi)

    split(0, v.size)
    return sorted(found)


def summarize_points(ts: Sequence[float], values: Sequence[float], *, sample: int = 6) -> dict[str, Any]:
    """Statistics, change points and a few points of one series (never the raw dump)."""
    t = np.asarray(ts, dtype=float)
    v = np.asarray(values, dtype=float)
    ok = np.isfinite(t) & np.isfinite(v)
    t, v = t[ok], v[ok]
    if v.size == 0:
        return {"points": 0}
    out: dict[str, Any] = {
        "points": int(v.size), "from": _iso(t[0]), "to": _iso(t[-1]),
        "min": _num(float(v.min())), "max": _num(float(v.max())), "mean": _num(float(v.mean())),
        "p95": _num(float(np.percentile(v, 95))), "last": _num(float(v[-1])),
    }
    cps = change_points(v)
    if cps:
        bounds = [0, *cps, v.size]
        out["change_points"] = [{"at": _iso(t[c]), "mean_before": _num(float(v[bounds[i]:c].mean())),
                                 "mean_after": _num(float(v[c:bounds[i + 2]].mean()))}
                                for i, c in enumerate(cps)]
    if sample > 0:
        idx = np.unique(np.linspace(0, v.size - 1, min(sample, v.size)).round().astype(int))
        out["sample"] = [[_iso(t[i]), _num(float(v[i]))] for i in idx]
    return out


def _is_points(x: Any) -> bool:
    return (isinstance(x, list) and len(x) >= 6 and all(
        isinstance(p, list | tuple) and len(p) == 2 and all(isinstance(y, int | float) and not isinstance(y, bool)
                                                              for y in p) for p in x))


@dataclass(frozen=True)
class _Limits:
    items: int = 8
    sample: int = 6
    string: int = 200


def _compact(x: Any, path: str, lim: _Limits, src_prefix: str, key: str = "") -> Any:
    if isinstance(x, bool) or x is None:
        return x
    if isinstance(x, int | float):
        return _num(x)
    if isinstance(x, str):
        if _TS.match(x) or key in TRUSTED_KEYS and len(x) <= 80 and re.fullmatch(r"[\w .:%<>=()-]*", x):
            return _Raw(neutralise(x, 80))
        return _Raw(fence(x, f"{src_prefix}{path}", lim.string))
    if isinstance(x, dict):
        return {str(k): _compact(v, f"{path}.{k}" if path else str(k), lim, src_prefix, str(k)) for k, v in x.items()}
    if isinstance(x, list | tuple):
        x = list(x)
        if _is_points(x):
            return _compact(summarize_points([p[0] for p in x], [p[1] for p in x], sample=lim.sample),
                            path, lim, src_prefix, key)
        items = [_compact(v, f"{path}[{i}]", lim, src_prefix, key) for i, v in enumerate(x[: lim.items])]
        if len(x) > lim.items:
            items.append(_Raw(f"... +{len(x) - lim.items} more"))
        return items
    return _Raw(fence(repr(x), f"{src_prefix}{path}", lim.string))


class _Raw(str):
    """Text already made safe for the prompt (rendered as is)."""


def _render(x: Any, indent: int = 0) -> list[str]:
    pad = "  " * indent
    if isinstance(x, dict):
        lines = []
        for k, v in x.items():
            k = neutralise(k, 60)
            if isinstance(v, dict | list) and v:
                if isinstance(v, list) and all(not isinstance(i, dict | list) for i in v):
                    lines.append(f"{pad}{k}: [{', '.join(_scalar(i) for i in v)}]")
                else:
                    lines.append(f"{pad}{k}:")
                    lines += _render(v, indent + 1)
            else:
                lines.append(f"{pad}{k}: {_scalar(v)}")
        return lines
    if isinstance(x, list):
        lines = []
        for v in x:
            if isinstance(v, dict | list) and v:
                sub = _render(v, indent + 1)
                lines.append(f"{pad}- {sub[0].strip()}")
                lines += sub[1:]
            else:
                lines.append(f"{pad}- {_scalar(v)}")
        return lines
    return [pad + _scalar(x)]


def _scalar(v: Any) -> str:
    if isinstance(v, _Raw):
        return str(v)
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict | list):
        return "{}" if isinstance(v, dict) else "[]"
    if isinstance(v, int | float):
        return repr(v)
    return fence(v, "value")


def compact_evidence(evidence: Mapping[str, Any], *, max_chars: int = 2400, source: str = "evidence.") -> str:
    """The incident's evidence as bounded prompt text: numbers rounded, series summarised,
    lists cut, every outside string fenced. Never longer than ``max_chars``."""
    text = ""
    for lim in (_Limits(8, 6, 200), _Limits(5, 4, 120), _Limits(3, 2, 80), _Limits(2, 0, 60), _Limits(1, 0, 40)):
        text = "\n".join(_render(_compact(dict(evidence), "", lim, source)))
        if len(text) <= max_chars:
            return text
    # still too long: whole lines only (a fence is always on one line, so it stays closed)
    note = f"... (evidence cut to {max_chars} characters)"
    out, size = [], len(note) + 1
    for line in text.split("\n"):
        if size + len(line) + 1 > max_chars:
            break
        out.append(line)
        size += len(line) + 1
    return "\n".join([*out, note])[:max_chars] if out else note[:max_chars]


def audit_source(incident: Incident) -> str:
    return "audit." if incident.kind == "gitops_drift" or incident.evidence.get("untrusted") else "evidence."


# ============================================================================ evidence citation


def cite_evidence(incident: Incident, text: str) -> str:
    """The model's rationale, bounded; when it cites no number of the evidence, remediator
    appends the key evidence itself so every plan cites numbers and a window."""
    r = re.sub(r"\s+", " ", text or "").strip()[:1200]
    nums = {str(_num(v)) for v in _numbers(incident.evidence)} | {str(v) for v in _numbers(incident.evidence)}
    cited = any(n in r for n in nums if len(n.strip("0.")) >= 1 and n not in ("0", "1"))
    if not cited:
        r = (r + " " if r else "") + "[evidence: " + evidence_citation(incident) + "]"
    return r


def _numbers(x: Any) -> Iterable[float]:
    if isinstance(x, bool):
        return
    if isinstance(x, int | float):
        yield x
    elif isinstance(x, dict):
        for k, v in x.items():
            if k not in ("points", "sample"):
                yield from _numbers(v)
    elif isinstance(x, list) and not _is_points(x):
        for v in x[:20]:
            yield from _numbers(v)


def evidence_citation(incident: Incident) -> str:
    """A short, remediator-written line of the incident's key numbers and window."""
    ev = incident.evidence
    keys = {"cost_anomaly": ("cost_usd_per_hour", "expected_usd_per_hour", "ratio", "replicas_now", "replicas_before_p95"),
            "budget_breach": ("projected_monthly_usd", "monthly_usd", "projected_percent", "alert_at_percent"),
            "model_drift": ("distance", "threshold", "baseline_version", "current_version"),
            "fairness_violation": ("metric", "attribute", "value", "threshold"),
            "gitops_drift": ("count",)}.get(incident.kind, ())
    parts = [f"{k}={_num(ev[k]) if isinstance(ev[k], int | float) else neutralise(str(ev[k]), 40)}"
             for k in keys if k in ev]
    win = ev.get("window")
    if isinstance(win, dict):
        parts.append(f"window {win.get('start', '?')}..{win.get('end', '?')} ({win.get('minutes', '?')} min)")
    elif win:
        parts.append(f"window {neutralise(str(win), 40)} ({ev.get('window_start', '?')}..{ev.get('window_end', '?')})")
    elif "current_window" in ev:
        cw = ev["current_window"]
        parts.append(f"window {dig(cw, 'start')}..{dig(cw, 'end')}")
    elif "rollout_at" in ev:
        parts.append(f"since {ev['rollout_at']}")
    return ", ".join(parts) or "see the incident evidence"
