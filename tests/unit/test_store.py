"""Store on a SQLite file: record round trips, upserts, lookups, kv, cycles, migrations."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from memory import audit, store
from memory.records import Decision, FieldEdit, Incident, PullRequest, RemediationPlan, fingerprint
from memory.store import Store

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path}/nested/dir/state.db")
    yield s
    s.close()


def incident(fp: str = "abcd1234", status: str = "open", at: datetime = T0, **kw: object) -> Incident:
    base = dict(kind="cost_anomaly", service="ml/captioner", severity="warning", fingerprint=fp, status=status,
                updated_at=at, evidence={"ratio": 2.5, "series": [1, 2, {"x": None}], "note": "ünïcode ✓"})
    return Incident(**{**base, **kw})


def test_creates_parent_folder_and_uses_wal(tmp_path: Path, db: Store) -> None:
    assert (tmp_path / "nested" / "dir" / "state.db").is_file()
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == store.SQLITE_BUSY_TIMEOUT_MS


def test_migrate_twice_is_a_noop_and_schema_matches_models(db: Store) -> None:
    db.save_incident(incident())
    db.audit.append(stage="detect", action="found")
    db.migrate()
    Store.open(db.url_for_display).close()
    assert len(db.list_incidents()) == 1 and db.audit.verify().ok
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == ["0002"]
        assert conn.execute(text("SELECT count(*) FROM audit_head")).scalar() == 1
        assert compare_metadata(MigrationContext.configure(conn), [store.metadata, audit.metadata]) == []
    assert {"incidents", "plans", "pull_requests", "decisions", "kv", "cycles", "audit_entries", "audit_head"} <= set(
        inspect(db.engine).get_table_names()
    )


def test_url_for_display_masks_password_and_maps_driver() -> None:
    s = Store("postgresql://bob:s3cret@db.example:5432/rem")
    assert "s3cret" not in s.url_for_display and "***" in s.url_for_display
    assert s.engine.url.drivername == "postgresql+psycopg"
    s.close()


def test_unsupported_url_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported database"):
        Store("mysql://u@h/db")


def test_incident_round_trip_and_upsert(db: Store) -> None:
    inc = incident(model_version="v3", file="apps/ml/captioner.yaml", resolved_at=None)
    db.save_incident(inc)
    assert db.get_incident(inc.id) == inc
    changed = inc.model_copy(update={"status": "proposed", "updated_at": T0 + timedelta(minutes=5)})
    db.save_incident(changed)
    assert db.get_incident(inc.id) == changed
    assert db.list_incidents() == [changed]


def test_datetimes_come_back_aware_and_equal(db: Store) -> None:
    local = datetime(2025, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    inc = incident(at=local, opened_at=local)
    db.save_incident(inc)
    got = db.get_incident(inc.id)
    assert got is not None and got.updated_at == local and got.updated_at.tzinfo is not None


def test_prefix_lookup(db: Store) -> None:
    a, b = incident(id="inc-aaa111"), incident("ffff0000", id="inc-aab222")   # one active incident per fingerprint
    db.save_incident(a)
    db.save_incident(b)
    assert db.get_incident("inc-aaa") == a
    assert db.get_incident("inc-aa") is None  # ambiguous
    assert db.get_incident("inc-zzz") is None
    assert db.get_incident("") is None
    assert db.get_incident("inc-a%") is None  # LIKE wildcards are literal


def test_active_and_last_incident_by_fingerprint(db: Store) -> None:
    fp = fingerprint("cost_anomaly", "ml/captioner")
    old = incident(fp, "resolved", T0)
    active = incident(fp, "proposed", T0 + timedelta(hours=1))
    closed_newer = incident(fp, "closed", T0 + timedelta(hours=2))
    other = incident("ffff0000", "open", T0 + timedelta(hours=3))
    for i in (old, active, closed_newer, other):
        db.save_incident(i)
    assert db.find_active_incident(fp) == active
    assert db.last_incident(fp) == closed_newer
    assert db.find_active_incident("nope") is None and db.last_incident("nope") is None
    assert db.list_incidents() == [other, closed_newer, active, old]
    assert db.list_incidents(statuses=["open", "proposed"]) == [other, active]
    assert db.list_incidents(statuses=[]) == []


def test_plan_round_trip_and_latest(db: Store) -> None:
    edit = FieldEdit(file="apps/a.yaml", doc_kind="Deployment", doc_name="a",
                     path=("spec", "template", "spec", "containers", 0, "resources"), old={"cpu": "2"}, new={"cpu": "1"})
    p1 = RemediationPlan(incident_id="inc-1", playbook="rightsize", params={"factor": 0.5}, edits=(edit,),
                         guard_reasons=("ok",), created_at=T0)
    p2 = RemediationPlan(incident_id="inc-1", playbook="scale_down", created_at=T0 + timedelta(minutes=1))
    for p in (p1, p2):
        db.save_plan(p)
    assert db.get_plan(p1.id) == p1
    assert db.latest_plan("inc-1") == p2
    assert db.latest_plan("inc-2") is None
    accepted = p2.model_copy(update={"guard_verdict": "accepted"})
    db.save_plan(accepted)
    assert db.latest_plan("inc-1") == accepted


def test_pull_requests(db: Store) -> None:
    br = "remediator/cost-anomaly/ml-captioner-abcd1234"
    old = PullRequest(branch=br, title="old", status="closed", created_at=T0, updated_at=T0,
                      files=("a.yaml",), incident_ids=("inc-1",), labels=("remediator",), number=7)
    new = PullRequest(branch=br, title="new", created_at=T0 + timedelta(hours=1), updated_at=T0 + timedelta(hours=1))
    for pr in (old, new):
        db.save_pr(pr)
    assert db.get_pr(old.id) == old and db.get_pr(new.id[:10]) == new
    assert db.get_pr_by_branch(br) == new and db.get_pr_by_branch("x") is None
    merged = new.model_copy(update={"status": "merged", "head_sha": "abc"})
    db.save_pr(merged)
    assert db.get_pr_by_branch(br) == merged
    assert db.list_prs() == [merged, old]
    assert db.list_prs(statuses=["closed"]) == [old]


def test_decisions(db: Store) -> None:
    d1 = Decision(incident_id="inc-1", verdict="approve", actor="alice", source="slack", at=T0, pr_id="pr-1")
    d2 = Decision(incident_id="inc-2", verdict="reject", actor="bob", reason="too risky", at=T0 + timedelta(1))
    for d in (d1, d2):
        db.save_decision(d)
    assert db.get_decision(d1.id) == d1 and db.get_decision("dec-none") is None
    assert db.list_decisions() == [d2, d1]
    assert db.list_decisions(incident_id="inc-1") == [d1]


def test_kv(db: Store) -> None:
    assert db.get_kv("auditlog.cursor") is None
    db.set_kv("auditlog.cursor", "42")
    db.set_kv("auditlog.cursor", '{"offset": 43}')
    db.set_kv("empty", "")
    assert db.get_kv("auditlog.cursor") == '{"offset": 43}'
    assert db.get_kv("empty") == ""


def test_cycles(db: Store) -> None:
    db.save_cycle(cycle_id="c1", started_at=T0, finished_at=None, report={"findings": []})
    db.save_cycle(cycle_id="c1", started_at=T0, finished_at=T0 + timedelta(seconds=3),
                  report={"findings": [{"kind": "x"}], "at": T0})
    db.save_cycle(cycle_id="c2", started_at=T0 + timedelta(minutes=5), finished_at=None, report={})
    c2, c1 = db.list_cycles()
    assert c2 == {"cycle_id": "c2", "started_at": T0 + timedelta(minutes=5), "finished_at": None, "report": {}}
    assert c1["finished_at"] == T0 + timedelta(seconds=3)
    assert c1["report"] == {"findings": [{"kind": "x"}], "at": T0.isoformat()}
    assert [c["cycle_id"] for c in db.list_cycles(limit=1)] == ["c2"]


def test_data_survives_reopen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    s = Store.open(url)
    inc = incident()
    s.save_incident(inc)
    s.set_kv("k", "v")
    s.close()
    s = Store.open(url)
    assert s.get_incident(inc.id) == inc and s.get_kv("k") == "v"
    s.close()


def test_the_store_enforces_one_open_pr_per_branch_and_one_active_incident_per_fingerprint(tmp_path: Path) -> None:
    from sqlalchemy.exc import IntegrityError

    from memory.records import Incident, PullRequest

    s = Store.open(f"sqlite:///{tmp_path / 'one.db'}")
    s.save_pr(PullRequest(branch="remediator/x/a-1", title="a"))
    with pytest.raises(IntegrityError):
        s.save_pr(PullRequest(branch="remediator/x/a-1", title="a again"))
    s.save_pr(PullRequest(branch="remediator/x/a-1", title="closed one", status="closed"))   # closed ones may repeat
    inc = Incident(kind="cost_anomaly", service="ml/a", severity="warning", fingerprint="f00dfeed")
    s.save_incident(inc)
    with pytest.raises(IntegrityError):
        s.save_incident(Incident(kind="cost_anomaly", service="ml/a", severity="warning", fingerprint="f00dfeed"))
    s.save_incident(inc.model_copy(update={"status": "resolved"}))
    s.save_incident(Incident(kind="cost_anomaly", service="ml/a", severity="warning", fingerprint="f00dfeed"))
    s.close()


def test_upgrading_a_store_with_duplicates_folds_them_keeping_the_newest(tmp_path: Path) -> None:
    """An earlier version could leave two open PR records for one branch (two processes, one cycle)."""
    from datetime import UTC, datetime, timedelta

    from alembic import command
    from alembic.config import Config

    from memory.records import PullRequest
    from memory.store import MIGRATIONS

    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = Store(url)
    with old.engine.begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    first = PullRequest(branch="remediator/x/a-1", title="first", created_at=t0, updated_at=t0)
    second = PullRequest(branch="remediator/x/a-1", title="second", created_at=t0, updated_at=t0 + timedelta(minutes=5))
    old.save_pr(first)
    old.save_pr(second)
    old.close()

    s = Store.open(url)   # migrates to head
    by_id = {p.id: p for p in s.list_prs()}
    assert (by_id[first.id].status, by_id[second.id].status) == ("closed", "open")
    assert [p.id for p in s.list_prs(statuses=["open"])] == [second.id]
    s.close()
