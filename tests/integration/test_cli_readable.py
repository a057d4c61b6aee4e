"""What a person reads from the CLI: --version, incidents show with readable evidence lines and a
text chart, and run-once --dry-run writing each PR it would open (diff and body) to stdout."""

from __future__ import annotations

import json
import re
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.integration.test_cli import branches, cli, workspace  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration


def test_version() -> None:
    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"remediator {version('remediator')}"


def test_dry_run_writes_diffs_and_bodies_to_stdout(workspace: tuple[Path, Path]) -> None:  # noqa: F811
    cfg, remote = workspace
    proc = cli("run-once", "--config", str(cfg), "--dry-run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    opened = re.findall(r"^=== would open PR (remediator/\S+): ", out, re.M)
    assert len(opened) == 2, out[-3000:]
    for branch in opened:
        block = out[out.index(f"=== would open PR {branch}"):out.index(f"=== end of {branch}")]
        assert re.search(r"^--- a/apps/\S+\.yaml$", block, re.M) and re.search(r"^\+\+\+ b/apps/", block, re.M)
        assert re.search(r"^-\s+\S+: ", block, re.M) and re.search(r"^\+\s+\S+: ", block, re.M)   # the edited line
        assert "--- PR body ---" in block and "**Roll back:**" in block
    assert "+++ b/" not in proc.stderr   # the diffs are not log lines any more
    assert branches(remote) == {}

    js = cli("run-once", "--config", str(cfg), "--dry-run", "--json")
    assert js.returncode == 0 and json.loads(js.stdout)["incidents"]   # stdout stays one JSON document...
    assert "=== would open PR remediator/" in js.stderr                  # ...and the previews go to stderr


def test_incidents_show_reads_like_text(workspace: tuple[Path, Path]) -> None:  # noqa: F811
    cfg, _ = workspace
    report = json.loads(cli("run-once", "--config", str(cfg), "--json").stdout)
    cost = next(i for i in report["incidents"] if i["kind"] == "cost_anomaly")
    proc = cli("incidents", "show", cost["id"], "--config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "  evidence:" in lines and "  signal:" in lines
    assert any(re.fullmatch(r"    expected range usd per hour: [\d.]+, [\d.]+", ln) for ln in lines)
    assert any(ln.startswith("    window: start ") for ln in lines)
    assert not any("{" in ln for ln in lines), "no JSON blob"
    chart = lines[lines.index("  signal:") + 1:]
    assert any("|" in ln and "*" in ln for ln in chart) and any("^" in ln for ln in chart)
    assert any("* signal" in ln and "expected" in ln for ln in chart)

    drift = next(i for i in report["incidents"] if i["kind"] == "model_drift")
    out = cli("incidents", "show", drift["id"], "--config", str(cfg)).stdout
    assert "    current version: 2.1.0" in out.splitlines() and "  signal:" not in out   # no series, no chart
