"""GPU utilisation in the cycle: fetched per workload, scored in the same torch batch as the $/h
series, and shown to the approver as evidence of a cost finding (idle extra spend reads
differently from busy extra spend); the LLM planner's ``query_signal`` tool serves it too."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from agents.checkpoint import sqlite_checkpointer
from agents.compose import build_deps, checkpoint_path
from agents.config import load_settings
from agents.demo import prepare_workspace
from agents.graph import run_cycle
from agents.nodes.plan import query_signal as _query_signal
from agents.scoring import KEY, _load
from tests.fakes.metrics import FakeMetrics
from tools.results import Series, SignalResult

pytestmark = pytest.mark.integration
SERVICE = "ml-serving/image-captioner"  # the demo's replicas jump to maxReplicas 6 h before "now"


def _util(signal: str, kw: dict, res: SignalResult) -> SignalResult:
    """dcgm-exporter utilisation for image-captioner (the demo data has none): ~70 % until the
    replicas jump, ~25 % after it (the same work spread over three times the GPUs)."""
    if signal != "gpu_utilisation" or kw["name"] != "image-captioner":
        return res
    end, step = kw["end"].timestamp(), float(kw["step_s"])
    ts = np.arange(kw["start"].timestamp(), end + 1, step)
    rng = np.random.default_rng(3)
    vals = np.where(ts < end - 6 * 3600, 70.0, 25.0) + rng.normal(0, 2, ts.size)
    return SignalResult("ok", series=[Series({}, ts, vals)], query="fake avg(DCGM_FI_DEV_GPU_UTIL)")


def test_gpu_utilisation_is_scored_and_shown_as_evidence(tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    _, cfg, _ = prepare_workspace(tmp_path / "ws", now)
    settings = load_settings(cfg)
    deps = build_deps(settings, replay_shift_to=now.replace(second=0))
    fake = FakeMetrics(deps.metrics, rewrite=_util)
    deps = replace(deps, metrics=fake)  # type: ignore[assignment]
    with sqlite_checkpointer(checkpoint_path(settings)) as cp:
        r = run_cycle(deps, cp, started_at=now)

    assert not [e for e in r["errors"] if "gpu_util" in e["source"]], r["errors"]
    asked = {kw["name"] for sig, kw in fake.calls if sig == "gpu_utilisation"}
    assert "image-captioner" in asked and len(asked) >= 3          # every workload is asked
    inc = next(i for i in deps.store.list_incidents() if i.kind == "cost_anomaly" and i.service == SERVICE)
    ev = inc.evidence
    assert 20 <= ev["gpu_util_percent"] <= 30, ev
    assert 65 <= ev["gpu_util_expected_percent"] <= 75, ev
    assert "gpu_util_alarm_at" in ev   # the drop is a level shift the streaming detector alarms on
    # one torch batch: the $/h rows and the utilisation row, state kept under their keys
    saved = _load(deps.store.get_kv(KEY))
    assert saved is not None and f"{SERVICE} gpu_util" in saved["keys"] and SERVICE in saved["keys"]
    # the approver sees it in the PR body
    pr = next(p for p in deps.store.list_prs() if inc.id in p.incident_ids)
    assert "**GPU utilisation** during the excursion: " in pr.body and "usually" in pr.body
    plan = deps.store.latest_plan(inc.id)
    assert plan is not None and "GPU utilisation" in plan.rationale   # the planner's "why" says it too
    # workloads without GPU data: no utilisation keys, no error
    others = [i for i in deps.store.list_incidents() if i.kind == "cost_anomaly" and i.service != SERVICE]
    assert all("gpu_util_percent" not in i.evidence for i in others)

    got = _query_signal(deps, now, service=SERVICE, signal="gpu_util", window_minutes=120)
    assert got is not None and got.status == "ok" and np.nanmean(got.first.values) < 30
