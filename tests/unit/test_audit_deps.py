"""tests/audit_deps.py: fails on a reported vulnerability, skips (saying so) when pip-audit cannot look anything up."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests import audit_deps


def _fake(monkeypatch: pytest.MonkeyPatch, stdout: str, stderr: str = "") -> None:
    def run(*a: Any, **k: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(a[0], 1, stdout, stderr)
    monkeypatch.setattr(audit_deps.subprocess, "run", run)


def test_a_reported_vulnerability_fails_naming_package_and_fix(monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    _fake(monkeypatch, json.dumps({"dependencies": [
        {"name": "urllib3", "version": "2.0.0", "vulns": [{"id": "GHSA-xxxx", "fix_versions": ["2.0.7"]}]},
        {"name": "pyyaml", "version": "6.0.2", "vulns": []},
        {"name": "torch", "skip_reason": "Dependency not found on PyPI"}]}))
    assert audit_deps.main() == 1
    out = capsys.readouterr().out
    assert "VULNERABLE urllib3 2.0.0: GHSA-xxxx (fixed in: 2.0.7)" in out
    assert "1 of 2 audited" in out


def test_nothing_looked_up_is_a_skip_that_says_so(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    _fake(monkeypatch, json.dumps({"dependencies": [{"name": "a", "skip_reason": "not found"}]}))
    assert audit_deps.main() == 0
    assert "skipped" in capsys.readouterr().out


def test_an_unreachable_service_is_a_skip(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _fake(monkeypatch, "", "requests.exceptions.ConnectionError: Max retries exceeded")
    assert audit_deps.main() == 0
    assert "could not be reached (requests.exceptions.ConnectionError" in capsys.readouterr().out


def test_clean_audit_passes(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _fake(monkeypatch, json.dumps({"dependencies": [{"name": "pyyaml", "version": "6.0.2", "vulns": []}]}))
    assert audit_deps.main() == 0
    assert "1 dependencies audited, no known vulnerabilities" in capsys.readouterr().out
