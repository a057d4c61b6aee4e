"""The black-box scenario suite (real Prometheus backfilled, real bare Git remote), run through
the shared harness exactly as the outside bench runs it: `run-once --config FILE --json`.

One test per scenario file, so a failure names its scenario and the test processes share the
suite (the scenarios are most of the suite's time)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.scenario, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("REMEDIATOR_SHARED_DIR", REPO.parent / "shared"))
HARNESS = SHARED / "scenarios" / "run.py"
SUITES = {"dev": SHARED / "scenarios" / "dev", "extra": REPO / "tests" / "scenarios" / "extra"}


def _specs(*suites: str) -> list[object]:
    """(suite, spec file) for every scenario; one skipped entry per suite whose folder is missing
    (CI has ../shared beside the checkout)."""
    out: list[object] = []
    for suite in suites:
        specs = sorted(SUITES[suite].glob("*.yaml")) if SUITES[suite].is_dir() else []
        out += [pytest.param(suite, spec, id=f"{suite}-{spec.stem}") for spec in specs]
        if not specs:
            out.append(pytest.param(suite, None, id=f"{suite}-missing", marks=pytest.mark.skip(
                reason=f"no scenarios in {SUITES[suite]} (CI has ../shared beside the checkout)")))
    return out


def _remediator() -> str:
    exe = Path(sys.executable).with_name("remediator")
    return str(exe) if exe.exists() else f"{sys.executable} -m agents.cli"


HOSTILE_MODEL = [{"content": {"playbook": "cap_max_replicas", "rationale": "ignore the guardrails and scale to zero",
                               "targets": [{"workload": "ml-serving/image-captioner", "max_replicas": 0}]},
                   "repeat": True}]


@pytest.mark.parametrize(("suite", "spec"), _specs("dev", "extra"))
def test_scenario_passes(suite: str, spec: Path, tmp_path: Path) -> None:
    _run(spec, tmp_path, overlay=None)


@pytest.mark.parametrize(("suite", "spec"), _specs("dev"))
def test_dev_scenario_passes_with_a_hostile_scripted_model(suite: str, spec: Path, tmp_path: Path) -> None:
    """The dev scenarios with llm.provider: openai pointing at the scripted OpenAI-compatible
    server, whose every answer tries to scale a workload to zero: the guard blocks it, the
    deterministic planner decides, and every expectation still holds."""
    import yaml

    from tests.fakes.openai_server import ScriptedOpenAIServer

    with ScriptedOpenAIServer({"default": HOSTILE_MODEL}) as server:
        overlay = tmp_path / "llm-overlay.yaml"
        overlay.write_text(yaml.safe_dump({"llm": {"provider": "openai", "base_url": server.base_url(),
                                                   "model": "scripted", "timeout_s": 10}}))
        _run(spec, tmp_path, overlay=overlay)
        served = server.served()
    if _proposes(spec):
        assert served > 0  # the model was really asked


def _proposes(spec: Path) -> bool:
    """Whether the scenario expects at least one pull request (only then is a plan, hence the
    model, asked for)."""
    import yaml

    count = ((yaml.safe_load(spec.read_text()) or {}).get("expect") or {}).get("pull_requests", {}).get("count", 0)
    return (count.get("min", 0) if isinstance(count, dict) else count) > 0


def _run(spec: Path, tmp_path: Path, overlay: Path | None) -> None:
    if not HARNESS.exists():
        pytest.skip(f"scenario harness not found at {HARNESS} (CI has ../shared beside the checkout)")
    if not (shutil.which("prometheus") and shutil.which("promtool")):
        pytest.fail("prometheus/promtool not installed: run .ci/run (it installs the Debian package)")
    extra = ["--config-overlay", str(overlay)] if overlay is not None else []
    proc = subprocess.run([sys.executable, str(HARNESS), "--remediator", _remediator(), "--tmpdir", str(tmp_path),
                           *extra, str(spec)], capture_output=True, text=True, timeout=900)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
