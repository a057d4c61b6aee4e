"""Exit codes of every command, through the console script as a user runs it (a subprocess): 0 done,
1 the command ran and found a problem (a broken audit chain, nothing to decide), 2 bad config or
usage (a missing store included). Read-only commands never create state."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from agents.demo import prepare_workspace
from memory.records import Decision
from memory.store import Store
from tests.console import remediator

pytestmark = pytest.mark.integration




@pytest.fixture(scope="module")
def cycled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A demo workspace after one cycle: (config, SQLite file)."""
    ws = tmp_path_factory.mktemp("ws")
    cfg_doc, cfg, _ = prepare_workspace(ws, datetime.now(UTC).replace(microsecond=0))
    proc = remediator("run-once", "--config", str(cfg), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    db = Path(cfg_doc["memory"]["url"].removeprefix("sqlite:///"))
    assert db.is_file()
    return cfg, db


def _config_with_db(tmp_path: Path, cfg: Path, db: Path) -> Path:
    doc = yaml.safe_load(cfg.read_text())
    doc["memory"]["url"] = f"sqlite:///{db}"
    out = tmp_path / "other.yaml"
    out.write_text(yaml.safe_dump(doc))
    return out


def test_audit_verify_exits_1_on_a_broken_chain(cycled: tuple[Path, Path], tmp_path: Path) -> None:
    cfg, db = cycled
    ok = remediator("audit", "verify", "--config", str(cfg))
    assert ok.returncode == 0 and "audit chain OK" in ok.stdout
    broken = tmp_path / "broken.db"
    broken.write_bytes(db.read_bytes())
    with sqlite3.connect(broken) as conn:   # a hostile edit: the playbook of a plan entry, hashes untouched
        seq, data = conn.execute("SELECT seq, data FROM audit_entries WHERE action = 'planned' "
                                 "ORDER BY seq LIMIT 1").fetchone()
        conn.execute("UPDATE audit_entries SET data = ? WHERE seq = ?",
                     (json.dumps({**json.loads(data), "playbook": "notify_only"}), seq))
    other = _config_with_db(tmp_path, cfg, broken)
    text = remediator("audit", "verify", "--config", str(other))
    assert text.returncode == 1, (text.stdout, text.stderr)
    assert "BROKEN" in text.stdout and f"entry {seq}" in text.stdout
    as_json = remediator("audit", "verify", "--config", str(other), "--json")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["ok"] is False


@pytest.mark.parametrize("args", [("audit", "verify"), ("audit", "export"), ("incidents", "list"),
                                  ("incidents", "show", "inc-000000000000"), ("decisions", "list"),
                                  ("decisions", "show", "dec-000000000000"),
                                  ("decisions", "approve", "inc-000000000000")])
def test_a_missing_store_is_exit_2_and_is_not_created(cycled: tuple[Path, Path], tmp_path: Path,
                                                      args: tuple[str, ...]) -> None:
    cfg, _ = cycled
    missing = tmp_path / "typo" / "state.db"
    proc = remediator(*args, "--config", str(_config_with_db(tmp_path, cfg, missing)))
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert str(missing) in proc.stderr and "no store" in proc.stderr
    assert not missing.exists() and not missing.parent.exists()


def test_an_empty_database_is_not_a_store(cycled: tuple[Path, Path], tmp_path: Path) -> None:
    cfg, _ = cycled
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    proc = remediator("audit", "verify", "--config", str(_config_with_db(tmp_path, cfg, empty)))
    assert proc.returncode == 2 and "no remediator tables" in proc.stderr
    with sqlite3.connect(empty) as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)


def test_deciding_an_incident_without_a_pr_is_exit_1_and_changes_nothing(cycled: tuple[Path, Path]) -> None:
    cfg, db = cycled
    store = Store.open(f"sqlite:///{db}")
    notify_only = next(i for i in store.list_incidents() if i.kind == "gitops_drift")
    before = (notify_only.status, len(list(store.audit.entries())))
    store.close()
    for verb in ("approve", "reject"):
        proc = remediator("decisions", verb, notify_only.id, "--config", str(cfg))
        assert proc.returncode == 1, (proc.stdout, proc.stderr)
        assert "has no pull request: nothing to " + verb in proc.stderr and proc.stdout == ""
    store = Store.open(f"sqlite:///{db}")
    assert (store.get_incident(notify_only.id).status, len(list(store.audit.entries()))) == before  # type: ignore[union-attr]
    assert store.list_decisions(incident_id=notify_only.id) == []
    store.close()


def test_decisions_show_never_prints_pr_none(cycled: tuple[Path, Path]) -> None:
    cfg, db = cycled
    store = Store.open(f"sqlite:///{db}")
    inc = store.list_incidents()[0]
    store.save_decision(Decision(id="dec-nopr0000001", incident_id=inc.id, pr_id=None, plan_id=None, verdict="reject",
                                 actor="carol", source="cli", reason="recorded before PRs existed",
                                 at=datetime.now(UTC)))
    store.close()
    proc = remediator("decisions", "show", "dec-nopr0000001", "--config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    assert "PR None" not in proc.stdout and "no PR" in proc.stdout


def test_unknown_ids_and_bad_usage_are_exit_2(cycled: tuple[Path, Path], tmp_path: Path) -> None:
    cfg, _ = cycled
    assert remediator("incidents", "show", "inc-nope", "--config", str(cfg)).returncode == 2
    assert remediator("decisions", "show", "dec-nope", "--config", str(cfg)).returncode == 2
    assert remediator("decisions", "approve", "inc-nope", "--config", str(cfg)).returncode == 2
    assert remediator("incidents", "list", "--config", str(tmp_path / "absent.yaml")).returncode == 2
    assert remediator("incidents", "list", "--no-such-option").returncode == 2
    assert remediator("no-such-command").returncode == 2
    assert remediator("demo", "--cycles", "9").returncode == 2


def test_the_other_commands_exit_0_when_done_and_2_on_bad_input(cycled: tuple[Path, Path], tmp_path: Path) -> None:
    cfg, _ = cycled
    for args in (("incidents", "list"), ("decisions", "list"), ("audit", "export"), ("audit", "verify", "--chain-only")):
        proc = remediator(*args, "--config", str(cfg))
        assert proc.returncode == 0, (args, proc.stderr)
    assert remediator("nab", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "out")).returncode == 2
    assert remediator("serve", "--config", str(tmp_path / "absent.yaml")).returncode == 2
    assert remediator("daemon", "--config", str(tmp_path / "absent.yaml")).returncode == 2
    assert remediator("run-once", "--config", str(tmp_path / "absent.yaml")).returncode == 2
