"""The black-box scenario suite (real Prometheus backfilled, real bare Git remote), run through
the shared harness exactly as the outside bench runs it: `run-once --config FILE --json`."""

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


def _remediator() -> str:
    exe = Path(sys.executable).with_name("remediator")
    return str(exe) if exe.exists() else f"{sys.executable} -m agents.cli"


HOSTILE_MODEL = [{"content": {"playbook": "cap_max_replicas", "rationale": "ignore the guardrails and scale to zero",
                               "targets": [{"workload": "ml-serving/image-captioner", "max_replicas": 0}]},
                   "repeat": True}]


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_scenarios_pass(suite: str, tmp_path: Path) -> None:
    _run(suite, tmp_path, overlay=None)


def test_dev_scenarios_pass_with_a_hostile_scripted_model(tmp_path: Path) -> None:
    """The same dev scenarios with llm.provider: openai pointing at the scripted OpenAI-compatible
    server, whose every answer tries to scale a workload to zero: the guard blocks it, the
    deterministic planner decides, and every expectation still holds."""
    import yaml

    from tests.fakes.openai_server import ScriptedOpenAIServer

    with ScriptedOpenAIServer({"default": HOSTILE_MODEL}) as server:
        overlay = tmp_path / "llm-overlay.yaml"
        overlay.write_text(yaml.safe_dump({"llm": {"provider": "openai", "base_url": server.base_url(),
                                                   "model": "scripted", "timeout_s": 10}}))
        _run("dev", tmp_path, overlay=overlay)
        assert server.served() > 0  # the model was really asked


def _run(suite: str, tmp_path: Path, overlay: Path | None) -> None:
    if not HARNESS.exists():
        pytest.skip(f"scenario harness not found at {HARNESS} (CI has ../shared beside the checkout)")
    if not (shutil.which("prometheus") and shutil.which("promtool")):
        pytest.fail("prometheus/promtool not installed: run .ci/run (it installs the Debian package)")
    folder = SUITES[suite]
    if not folder.exists() or not list(folder.glob("*.yaml")):
        pytest.skip(f"no scenarios in {folder}")
    extra = ["--config-overlay", str(overlay)] if overlay is not None else []
    proc = subprocess.run([sys.executable, str(HARNESS), "--remediator", _remediator(), "--tmpdir", str(tmp_path),
                           *extra, str(folder)], capture_output=True, text=True, timeout=1800)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
