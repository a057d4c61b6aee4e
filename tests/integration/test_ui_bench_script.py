"""bench/ui_pages.py runs end to end on a small store and reports every page."""

from __future__ import annotations

import json

import pytest

from tests.bench_scripts import load_bench

pytestmark = pytest.mark.integration


def test_ui_pages_bench_small(capsys: pytest.CaptureFixture[str]) -> None:
    mod = load_bench("ui_pages")
    assert mod.main(["--incidents", "24", "--cycles", "3", "--requests", "2", "--json"]) == 0
    out = capsys.readouterr().out
    doc = json.loads(out[out.index("{"):])
    assert doc["incidents"] == 24 and len(doc["pages"]) == 6
    assert all(p["median_ms"] > 0 and p["bytes"] > 1000 for p in doc["pages"])
