"""Evidence for people: readable lines, the text chart and the SVG chart of a series."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from agents.charts import evidence_lines, series_of, svg_chart, text_chart

T0 = 1_790_000_000.0


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


EV = {
    "window": {"start": iso(T0 + 40 * 600), "end": iso(T0 + 47 * 600), "minutes": 70.0},
    "cost_usd_per_hour": 8.36,
    "expected_range_usd_per_hour": [2.5, 3.5],
    "replicas_now": 6,
    "events": [{"user": "alice", "groups": ["sre", "ops"]}],
    "points": [[T0 + i * 600, 3.0 if i < 40 else 8.0] for i in range(48)],
}


def test_evidence_lines_are_readable() -> None:
    lines = evidence_lines(EV)
    assert f"window: start {iso(T0 + 24000)}, end {iso(T0 + 28200)}, minutes 70" in lines
    assert "expected range usd per hour: 2.5, 3.5" in lines
    assert "events: 1" in lines and "  - user alice; groups sre, ops" in lines
    assert not any("points" in line or "{" in line for line in lines)


def test_text_chart_draws_signal_band_and_excursion() -> None:
    chart = text_chart(EV, width=48, height=8)
    assert chart[0].strip() == "$/h"
    rows = chart[1:9]
    assert len(rows) == 8 and all("|" in r for r in rows)
    plot = [r.split("|", 1)[1] for r in rows]
    assert plot[0].startswith(" " * 40) and plot[0][40:] == "*" * 8   # the excursion at the top
    assert all(c in "*." for c in "".join(p[:40] for p in plot if "*" in p[:40]))  # before it, inside the band
    axis = chart[9].split("+", 1)[1]
    assert "^" in axis and axis.index("^") >= 38 and set(axis[:38]) == {"-"}
    assert "expected 2.5-3.5" in chart[-1] and "excursion" in chart[-1]
    assert all(ord(c) < 128 for line in chart for c in line)


def test_no_series_no_chart() -> None:
    assert text_chart({"value": 1}) == [] and svg_chart({"points": [[1, 2]]}) == ""
    assert series_of({"points": [[1, float("nan")], [2, 1], [3, 1]]}) is None


def test_svg_chart_is_well_formed_and_escapes_the_title() -> None:
    svg = svg_chart(EV, title='<script>alert("x")</script>')
    root = ET.fromstring(svg)   # well-formed XML
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{ns}svg" and "<script>" not in svg
    assert root.find(f"{ns}polyline") is not None
    classes = {el.get("class") for el in root.iter()}
    assert {"band", "excursion", "signal"} <= classes


def test_drift_distributions_as_bars() -> None:
    from agents.charts import svg_distributions

    ev = {"current_version": "2.1.0", "baseline_version": "2.0.0",
          "current_distribution": {"cat": 0.5, "<dog>": 0.5}, "baseline_distribution": {"cat": 0.9, "<dog>": 0.1}}
    svg = svg_distributions(ev)
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    bars = {(r.get("class"), r.findtext(f"{ns}title")) for r in root.iter(f"{ns}rect") if r.findtext(f"{ns}title")}
    assert bars == {("current", "now 50.0%"), ("baseline", "baseline 90.0%"), ("baseline", "baseline 10.0%")}
    assert "&lt;dog&gt;" in svg and "2.1.0 vs 2.0.0" in svg
    assert svg_distributions({"current_distribution": {"a": 1}}) == ""
