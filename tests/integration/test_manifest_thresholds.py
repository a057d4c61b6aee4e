"""A non-numeric responsibleAI threshold in one manifest is reported as a cycle error and the
default applies: the detect stage is not aborted, so the cycle's other findings still come out."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import git
import numpy as np
import pytest

from agents.checkpoint import sqlite_checkpointer
from agents.compose import build_deps, checkpoint_path
from agents.config import load_settings
from agents.demo import prepare_workspace
from agents.graph import run_cycle
from tests.fakes.metrics import FakeMetrics
from tools.results import Series, SignalResult

pytestmark = pytest.mark.integration
FILE = "apps/ml-serving/visual-search.yaml"
VERSION = "2.1.0"  # visual-search's current model in the demo data, rolled out a day before "now"
FAIRNESS = """    fairness:
      enabled: false
      protectedAttributes: ["gender", "age_group"]
      threshold: 0.05
"""
DRIFT_THRESHOLD = "      metric: JensenShannonDivergence\n      threshold: 0.1\n"


def _outcomes(signal: str, kw: dict, res: SignalResult) -> SignalResult:
    """inference_outcomes_total for visual-search (the demo data has none): since the rollout,
    30% positive outcomes for gender=f and 50% for gender=m, a parity gap of 0.2 (> 0.05)."""
    if signal != "outcome_counters" or kw["service"] != "visual-search":
        return res
    end, step = kw["end"].timestamp(), float(kw["step_s"])
    ts = np.arange(kw["start"].timestamp(), end + 1, step)
    rollout = end - 86400.0
    series = [Series({"model_version": VERSION, "attribute": "gender", "group": g, "outcome": o},
                     ts, np.where(ts >= rollout, (ts - rollout) * 2.0 * share, np.nan))
              for g, pos in (("f", 0.3), ("m", 0.5)) for o, share in (("positive", pos), ("negative", 1 - pos))]
    return SignalResult("ok", series=series, query="fake inference_outcomes_total")


def _push(remote: Path, work: Path, text: str) -> None:
    repo = git.Repo.clone_from(str(remote), work)
    (work / FILE).write_text(text)
    repo.git.commit("-am", "visual-search: enable fairness monitoring", env={
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"})
    repo.git.push("origin", "main")


@pytest.mark.parametrize(("section", "fairness_threshold", "drift_threshold"), [
    ("responsibleAI.fairness", '"high"', "0.1"),
    ("responsibleAI.driftDetection", "0.05", '"high"'),
], ids=["fairness", "drift"])
def test_non_numeric_threshold_is_reported_and_the_other_findings_still_come_out(
        tmp_path: Path, section: str, fairness_threshold: str, drift_threshold: str) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    _, cfg, remote = prepare_workspace(tmp_path / "ws", now)
    text = git.Repo(remote).git.show(f"main:{FILE}") + "\n"
    assert FAIRNESS in text and DRIFT_THRESHOLD in text
    text = text.replace(FAIRNESS, FAIRNESS.replace("enabled: false", "enabled: true")
                        .replace("threshold: 0.05", f"threshold: {fairness_threshold}"))
    text = text.replace(DRIFT_THRESHOLD, DRIFT_THRESHOLD.replace("0.1", drift_threshold))
    _push(remote, tmp_path / "clone", text)

    settings = load_settings(cfg)
    deps = build_deps(settings, replay_shift_to=now.replace(second=0))
    deps = replace(deps, metrics=FakeMetrics(deps.metrics, rewrite=_outcomes))  # type: ignore[arg-type]
    with sqlite_checkpointer(checkpoint_path(settings)) as cp:
        r = run_cycle(deps, cp, started_at=now)

    errs = [e for e in r["errors"] if e["stage"] == "detect" and e["source"] == FILE]
    assert len(errs) == 1, r["errors"]
    assert f"{section}.threshold must be a number" in errs[0]["message"] and "'high'" in errs[0]["message"]
    assert "using the default" in errs[0]["message"]
    found = {(i["kind"], i["service"]) for i in r["incidents"]}
    assert ("fairness_violation", "ml-serving/visual-search") in found  # the default 0.05 applied (gap 0.2)
    assert ("model_drift", "ml-serving/visual-search") in found
    assert ("cost_anomaly", "ml-serving/image-captioner") in found  # another workload, same cycle
