"""Store and audit chain against a real PostgreSQL (each test in its own throw-away schema)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from memory import audit, store
from memory.records import Decision, Incident, PullRequest, RemediationPlan
from memory.store import Store

pytestmark = pytest.mark.integration

PG_URL = os.environ.get("REMEDIATOR_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _admin() -> Store:
    return Store(PG_URL)


@pytest.fixture
def schema_url() -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped afterwards."""
    admin = _admin()
    try:
        with admin.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        admin.close()
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}")
    schema = f"rem_test_{uuid.uuid4().hex[:10]}"
    with admin.engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.close()


@pytest.fixture
def db(schema_url: str) -> Iterator[Store]:
    s = Store.open(schema_url)
    yield s
    s.close()


def test_migrate_is_idempotent_and_matches_models(db: Store) -> None:
    db.migrate()
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == ["0002"]
        assert compare_metadata(MigrationContext.configure(conn), [store.metadata, audit.metadata]) == []


def test_concurrent_migrations_do_not_collide(schema_url: str) -> None:
    """Replicas starting together: three processes migrate the same empty schema at once."""
    code = "import sys; from memory.store import Store; Store.open(sys.argv[1]).close()"
    root = Path(__file__).resolve().parents[2]
    procs = [
        subprocess.Popen([sys.executable, "-c", code, schema_url], cwd=root, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs if p.wait(timeout=120) != 0]
    assert errors == []
    check = Store(schema_url)
    with check.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_head")).scalar() == 1
    check.close()


def test_records_round_trip(db: Store) -> None:
    inc = Incident(kind="model_drift", service="ml/ranker", severity="critical", fingerprint="0123abcd",
                   model_version="v7", evidence={"psi": 0.31, "bins": [0.1, 0.2], "note": "✓"}, updated_at=T0)
    db.save_incident(inc)
    db.save_incident(inc.model_copy(update={"status": "resolved", "updated_at": T0 + timedelta(hours=1)}))
    newer = Incident(kind="model_drift", service="ml/ranker", severity="warning", fingerprint="0123abcd",
                     updated_at=T0 + timedelta(hours=2))
    db.save_incident(newer)
    got = db.get_incident(inc.id[:9])
    assert got is not None and got.status == "resolved" and got.evidence == inc.evidence
    assert db.find_active_incident("0123abcd") == newer and db.last_incident("0123abcd") == newer
    assert [i.id for i in db.list_incidents(statuses=["resolved"])] == [inc.id]

    plan = RemediationPlan(incident_id=inc.id, playbook="rollback_model", params={"to": "v6"})
    pr = PullRequest(branch="remediator/model-drift/ml-ranker-0123abcd", title="Roll back", incident_ids=(inc.id,))
    dec = Decision(incident_id=inc.id, pr_id=pr.id, verdict="approve", actor="alice", source="pr_review")
    db.save_plan(plan)
    db.save_pr(pr)
    db.save_decision(dec)
    assert db.latest_plan(inc.id) == plan and db.get_plan(plan.id) == plan
    assert db.get_pr_by_branch(pr.branch) == pr and db.list_prs(statuses=["open"]) == [pr]
    assert db.list_decisions(incident_id=inc.id) == [dec] and db.get_decision(dec.id) == dec

    db.set_kv("cursor", "1")
    db.set_kv("cursor", "2")
    assert db.get_kv("cursor") == "2"
    db.save_cycle(cycle_id="c1", started_at=T0, finished_at=T0 + timedelta(seconds=2), report={"errors": []})
    assert db.list_cycles() == [{"cycle_id": "c1", "started_at": T0, "finished_at": T0 + timedelta(seconds=2),
                                 "report": {"errors": []}}]


def test_audit_chain_and_tampering(db: Store) -> None:
    for i in range(5):
        db.audit.append(stage="detect", action="finding", subject=f"s{i}", data={"i": i, "at": T0, "u": "ü"})
    assert db.audit.verify().ok
    buf = io.StringIO()
    assert db.audit.export(buf) == 5 and len(buf.getvalue().splitlines()) == 5
    with db.engine.begin() as conn:
        conn.execute(text("""UPDATE audit_entries SET data = '{"i": 99}' WHERE seq = 3"""))
    r = db.audit.verify()
    assert (r.ok, r.first_bad_seq, r.reason) == (False, 3, "entry 3: hash does not match its contents (edited?)")
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_entries WHERE seq >= 3"))
    r = db.audit.verify()
    assert (r.ok, r.first_bad_seq) == (False, 3) and "last entries deleted" in r.reason


def test_concurrent_appends_yield_one_valid_chain(db: Store, schema_url: str) -> None:
    other = Store(schema_url)
    n = 60

    def work(s: Store, who: str) -> None:
        for i in range(n):
            s.audit.append(stage="t", action=who, data={"i": i})

    threads = [threading.Thread(target=work, args=(s, w)) for s, w in ((db, "a"), (other, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.close()
    r = db.audit.verify()
    assert r.ok and r.count == 2 * n, r.reason
    assert sorted(e.action for e in db.audit.entries()) == ["a"] * n + ["b"] * n


def test_one_cycle_at_a_time_per_store(schema_url: str) -> None:
    from memory.errors import StoreBusy

    a, b = Store.open(schema_url), Store.open(schema_url)
    try:
        with a.cycle_lock(owner="pid 1 on host-a"):
            with pytest.raises(StoreBusy, match="pid 1 on host-a"), b.cycle_lock(owner="pid 2 on host-b"):
                pass
        with b.cycle_lock(owner="pid 2 on host-b"):   # released: the next one gets it
            pass
    finally:
        a.close()
        b.close()
