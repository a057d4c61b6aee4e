"""`run-once --dry-run` leaves the store (records, key/values, audit chain, cursor), the
checkpoints and the Git remote exactly as they were: it works on a scratch copy of the store."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from agents.demo import prepare_workspace
from tests.console import remediator

pytestmark = pytest.mark.integration




def dump(db: Path) -> list[str]:
    """Every row of every table (SQLite's own dump, WAL included)."""
    with sqlite3.connect(db) as conn:
        return list(conn.iterdump())


def refs(remote: Path) -> str:
    return subprocess.run(["git", "for-each-ref", "--format=%(refname) %(objectname)"], cwd=remote,
                          capture_output=True, text=True, check=True).stdout


def _workspace(tmp_path: Path) -> tuple[Path, Path, Path]:
    doc, cfg, remote = prepare_workspace(tmp_path, datetime.now(UTC).replace(microsecond=0))
    return cfg, Path(doc["memory"]["url"].removeprefix("sqlite:///")), remote


def test_dry_run_changes_nothing_after_a_real_cycle(tmp_path: Path) -> None:
    cfg, db, remote = _workspace(tmp_path)
    first = remediator("run-once", "--config", str(cfg), "--json")
    assert first.returncode == 0, first.stderr[-2000:]
    checkpoints = db.parent / "checkpoints.sqlite"
    before = (dump(db), refs(remote), dump(checkpoints))
    assert any("auditlog.cursor" in line for line in before[0])

    # later audit events, so the dry run has news to read (and a cursor it must not store)
    log = Path(yaml.safe_load(cfg.read_text())["auditlog"]["paths"][0])
    event = json.loads(log.read_text().splitlines()[-1])
    event.update(auditID="dry-run-1", requestReceivedTimestamp=(datetime.now(UTC) - timedelta(seconds=5)).isoformat())
    with log.open("a") as fp:
        fp.write(json.dumps(event) + "\n")

    dry = remediator("run-once", "--config", str(cfg), "--json", "--dry-run")
    assert dry.returncode == 0, dry.stderr[-2000:]
    report = json.loads(dry.stdout)
    assert report["incidents"], "the dry run still detects and correlates (on its scratch copy)"

    assert (dump(db), refs(remote), dump(checkpoints)) == before


def test_dry_run_on_a_fresh_install_creates_no_store(tmp_path: Path) -> None:
    cfg, db, remote = _workspace(tmp_path)
    before = refs(remote)
    dry = remediator("run-once", "--config", str(cfg), "--json", "--dry-run")
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert json.loads(dry.stdout)["incidents"]
    assert "dry-run: would publish" in dry.stderr
    assert not db.exists() and not (db.parent / "checkpoints.sqlite").exists()
    assert refs(remote) == before
