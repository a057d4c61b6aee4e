"""An incident's evidence for people: readable ``key: value`` lines, and its signal as a chart (the
series, the expected band, the excursion window), as text for the terminal and as SVG for the
review UI. Both are drawn here, from the evidence alone (no outside library, nothing fetched)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any

UNITS = {"usd_per_hour": "$/h", "percent": "%", "replicas": "replicas"}


@dataclass(frozen=True)
class Series:
    points: list[tuple[float, float]]          # (unix time, value), time ascending
    band: tuple[float, float] | None           # expected range
    window: tuple[float, float] | None         # the excursion (unix times)
    unit: str


def _epoch(value: Any) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def series_of(ev: dict[str, Any]) -> Series | None:
    """The evidence's signal, when it has one (``points``: ``[[unix time, value], ...]``, at least 3)."""
    raw = ev.get("points")
    if not isinstance(raw, list):
        return None
    pts = []
    for p in raw:
        if isinstance(p, list | tuple) and len(p) == 2 and all(isinstance(x, int | float) for x in p) \
                and all(math.isfinite(x) for x in p):
            pts.append((float(p[0]), float(p[1])))
    if len(pts) < 3:
        return None
    pts.sort()
    band = None
    unit = ""
    for key, val in ev.items():
        if key.startswith("expected_range") and isinstance(val, list) and len(val) == 2 \
                and all(isinstance(x, int | float) and math.isfinite(x) for x in val):
            band = (float(min(val)), float(max(val)))
            unit = next((u for suffix, u in UNITS.items() if key.endswith(suffix)), "")
    w = ev.get("window")
    window = None
    if isinstance(w, dict):
        start, end = _epoch(w.get("start")), _epoch(w.get("end"))
        if start is not None and end is not None and end >= start:
            window = (start, end)
    return Series(points=pts, band=band, window=window, unit=unit)


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%m-%d %H:%M")


def _y_range(s: Series) -> tuple[float, float]:
    vals = [v for _, v in s.points] + (list(s.band) if s.band else [])
    lo, hi = min(vals), max(vals)
    if hi - lo < 1e-12:
        lo, hi = lo - 1.0, hi + 1.0
    pad = (hi - lo) * 0.05
    return max(0.0, lo - pad) if lo >= 0 else lo - pad, hi + pad


# ------------------------------------------------------------------------------------ text

def text_chart(ev: dict[str, Any], *, width: int = 60, height: int = 8) -> list[str]:
    """A small chart of the evidence's series for the terminal (ASCII only): ``*`` the signal,
    ``.`` the expected band, ``^`` under the excursion window. Empty when there is no series."""
    s = series_of(ev)
    if s is None:
        return []
    t0, t1 = s.points[0][0], s.points[-1][0]
    cols = min(width, len(s.points))
    buckets: list[list[float]] = [[] for _ in range(cols)]
    for t, v in s.points:
        c = min(cols - 1, int((t - t0) / (t1 - t0) * cols)) if t1 > t0 else 0
        buckets[c].append(v)
    values = [sum(b) / len(b) if b else math.nan for b in buckets]
    lo, hi = _y_range(s)

    def row_of(v: float) -> int:   # 0 = top
        return min(height - 1, max(0, int((hi - v) / (hi - lo) * height)))

    grid = [[" "] * cols for _ in range(height)]
    if s.band is not None:
        for r in range(row_of(s.band[1]), row_of(s.band[0]) + 1):
            grid[r] = ["."] * cols
    for c, v in enumerate(values):
        if not math.isnan(v):
            grid[row_of(v)][c] = "*"
    label_w = max(len(_fmt(hi)), len(_fmt(lo)))
    out = [f"{' ' * label_w}  {s.unit or 'value'}"]
    for r, row in enumerate(grid):
        label = _fmt(hi) if r == 0 else _fmt(lo) if r == height - 1 else ""
        out.append(f"{label:>{label_w}} |{''.join(row)}")
    axis = ["-"] * cols
    if s.window is not None:
        for c in range(cols):
            t = t0 + (c + 0.5) * (t1 - t0) / cols
            if s.window[0] <= t <= s.window[1] + (t1 - t0) / cols:
                axis[c] = "^"
    out.append(f"{' ' * label_w} +{''.join(axis)}")
    start, end = _when(t0), _when(t1)
    out.append(f"{' ' * label_w}  {start}{' ' * max(1, cols - len(start) - len(end))}{end} UTC")
    legend = ["* signal"]
    if s.band is not None:
        legend.append(f". expected {_fmt(s.band[0])}-{_fmt(s.band[1])}")
    if s.window is not None:
        legend.append(f"^ excursion {_when(s.window[0])} to {_when(s.window[1])}")
    out.append(f"{' ' * label_w}  {'   '.join(legend)}")
    return out


# ------------------------------------------------------------------------------------ SVG

def svg_chart(ev: dict[str, Any], *, width: int = 720, height: int = 220, title: str = "") -> str:
    """The series as an inline SVG (signal line, expected band, excursion window, axis labels).
    Only numbers and escaped text go into it. Empty string when there is no series."""
    s = series_of(ev)
    if s is None:
        return ""
    left, right, top, bottom = 64, 12, 24, 36
    pw, ph = width - left - right, height - top - bottom
    t0, t1 = s.points[0][0], s.points[-1][0]
    span = (t1 - t0) or 1.0
    lo, hi = _y_range(s)

    def x(t: float) -> float:
        return left + (t - t0) / span * pw

    def y(v: float) -> float:
        return top + (hi - v) / (hi - lo) * ph

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" aria-label="{escape(title or "signal", quote=True)}">',
             f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="plot"/>']
    if s.window is not None:
        wx0, wx1 = x(max(t0, s.window[0])), x(min(t1, s.window[1]))
        parts.append(f'<rect class="excursion" x="{wx0:.1f}" y="{top}" width="{max(1.0, wx1 - wx0):.1f}" height="{ph}">'
                     f'<title>excursion {_when(s.window[0])} to {_when(s.window[1])} UTC</title></rect>')
    if s.band is not None:
        by0, by1 = y(s.band[1]), y(s.band[0])
        parts.append(f'<rect class="band" x="{left}" y="{by0:.1f}" width="{pw}" height="{max(1.0, by1 - by0):.1f}">'
                     f'<title>expected {_fmt(s.band[0])} to {_fmt(s.band[1])}</title></rect>')
    line = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in s.points)
    parts.append(f'<polyline class="signal" fill="none" points="{line}"/>')
    for v in (hi, (hi + lo) / 2, lo):
        parts.append(f'<text class="tick" x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{escape(_fmt(v))}</text>')
    parts.append(f'<text class="tick" x="{left}" y="{height - 12}">{escape(_when(t0))}</text>')
    parts.append(f'<text class="tick" x="{left + pw}" y="{height - 12}" text-anchor="end">{escape(_when(t1))} UTC</text>')
    parts.append(f'<text class="unit" x="{left}" y="{top - 8}">{escape(s.unit or "value")}'
                 f'{" - " + escape(title) if title else ""}</text>')
    parts.append("</svg>")
    return "".join(parts)


def svg_distributions(ev: dict[str, Any], *, width: int = 720, title: str = "") -> str:
    """Model drift's evidence: the share of each prediction class now and in the baseline, as paired
    horizontal bars. Empty string when the evidence has no such pair of distributions."""
    cur, base = ev.get("current_distribution"), ev.get("baseline_distribution")
    if not isinstance(cur, dict) or not isinstance(base, dict):
        return ""
    classes = sorted(set(cur) | set(base), key=str)[:20]

    def share(d: dict[str, Any], k: str) -> float:
        v = d.get(k, 0.0)
        return float(v) if isinstance(v, int | float) and math.isfinite(v) and v >= 0 else 0.0

    if not classes:
        return ""
    top = max(max(share(cur, k), share(base, k)) for k in classes) or 1.0
    left, bar_h, gap = 150, 10, 10
    pw = width - left - 60
    height = 44 + len(classes) * (2 * bar_h + gap) + 10
    versions = f"{ev.get('current_version', 'current')} vs {ev.get('baseline_version', 'baseline')}"
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" aria-label="{escape(title or "prediction classes", quote=True)}">',
             f'<text class="unit" x="{left}" y="14">share of predictions by class: {escape(versions)}'
             f'{" - " + escape(title) if title else ""}</text>',
             f'<rect class="legend-current" x="{left}" y="22" width="10" height="10"/>'
             f'<text class="tick" x="{left + 14}" y="31">now</text>',
             f'<rect class="legend-baseline" x="{left + 60}" y="22" width="10" height="10"/>'
             f'<text class="tick" x="{left + 74}" y="31">baseline</text>']
    y = 44
    for k in classes:
        c, b = share(cur, k), share(base, k)
        parts.append(f'<text class="tick" x="{left - 8}" y="{y + bar_h + 4}" text-anchor="end">{escape(str(k)[:24])}</text>')
        parts.append(f'<rect class="current" x="{left}" y="{y}" width="{max(1.0, c / top * pw):.1f}" height="{bar_h}">'
                     f'<title>now {c:.1%}</title></rect>')
        parts.append(f'<text class="tick" x="{left + c / top * pw + 4:.1f}" y="{y + bar_h - 1}">{c:.1%}</text>')
        parts.append(f'<rect class="baseline" x="{left}" y="{y + bar_h}" width="{max(1.0, b / top * pw):.1f}" '
                     f'height="{bar_h}"><title>baseline {b:.1%}</title></rect>')
        parts.append(f'<text class="tick" x="{left + b / top * pw + 4:.1f}" y="{y + 2 * bar_h - 1}">{b:.1%}</text>')
        y += 2 * bar_h + gap
    parts.append("</svg>")
    return "".join(parts)


# ------------------------------------------------------------------------------------ lines

def _scalar(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e6 else f"{v:,.0f}"
    if isinstance(v, bool) or v is None:
        return str(v).lower()
    return str(v)


def _inline(v: Any) -> str:
    if isinstance(v, list):
        return ", ".join(_inline(x) for x in v)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} {_inline(x)}" for k, x in v.items()) + "}"
    return _scalar(v)


def evidence_lines(ev: dict[str, Any], *, skip: tuple[str, ...] = ("points",), indent: str = "") -> list[str]:
    """``key: value`` lines, nested mappings indented under their key, lists of scalars joined, lists
    of mappings one item a line (the points of a series are left to the chart)."""
    out: list[str] = []
    for key, val in ev.items():
        if key in skip:
            continue
        name = str(key).replace("_", " ")
        if isinstance(val, dict):
            if val and all(not isinstance(v, dict | list) for v in val.values()):
                out.append(f"{indent}{name}: " + ", ".join(f"{k} {_scalar(v)}" for k, v in val.items()))
            else:
                out.append(f"{indent}{name}:")
                out += evidence_lines(val, skip=(), indent=indent + "  ")
        elif isinstance(val, list):
            if all(not isinstance(v, dict | list) for v in val):
                out.append(f"{indent}{name}: " + ", ".join(_scalar(v) for v in val) if val else f"{indent}{name}: none")
            else:
                out.append(f"{indent}{name}: {len(val)}")
                for item in val[:20]:
                    if isinstance(item, dict):
                        out.append(f"{indent}  - " + "; ".join(f"{k} {_inline(v)}" for k, v in item.items()))
                    else:
                        out.append(f"{indent}  - {item}")
                if len(val) > 20:
                    out.append(f"{indent}  ... {len(val) - 20} more")
        else:
            out.append(f"{indent}{name}: {_scalar(val)}")
    return out


__all__ = ["Series", "evidence_lines", "series_of", "svg_chart", "svg_distributions", "text_chart"]
