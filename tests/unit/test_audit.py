"""The audit hash chain on a SQLite file: append, verify, tamper detection, export."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from memory.audit import GENESIS, AuditTrail, entry_hash, to_jsonable
from memory.store import Store

N = 8
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path}/state.db")
    yield s
    s.close()


def fill(trail: AuditTrail, n: int = N) -> None:
    for i in range(1, n + 1):
        trail.append(stage="detect", action="finding", subject=f"ml/svc-{i}", cycle_id="cyc-1",
                     data={"i": i, "nested": {"vals": [i, i / 3, None, True]}}, at=T0 + timedelta(seconds=i))


def sql(db: Store, statement: str, **params: Any) -> None:
    with db.engine.begin() as conn:
        conn.execute(text(statement), params)


def test_empty_chain_verifies(db: Store) -> None:
    assert db.audit.verify().ok and db.audit.verify().count == 0
    assert list(db.audit.entries()) == []


def test_chain_verifies_and_links(db: Store) -> None:
    fill(db.audit)
    entries = list(db.audit.entries())
    assert [e.seq for e in entries] == list(range(1, N + 1))
    assert entries[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in zip(entries, entries[1:], strict=False))
    result = db.audit.verify()
    assert (result.ok, result.count, result.first_bad_seq) == (True, N, None)
    assert [e.seq for e in db.audit.entries(since_seq=5)] == [6, 7, 8]


def test_append_returns_what_is_stored(db: Store) -> None:
    local = datetime(2025, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    e = db.audit.append(stage="propose", action="pr_opened", subject="pr-1",
                        data={"when": local, "day": date(2025, 3, 1), "files": ("a.yaml",), 3: "int key"}, at=local)
    assert e.data == {"when": "2025-03-01T12:00:00+00:00", "day": "2025-03-01", "files": ["a.yaml"], "3": "int key"}
    assert e.at == local and e.at.tzinfo == UTC
    assert list(db.audit.entries()) == [e]
    assert e.hash == entry_hash(GENESIS, seq=1, at=local, cycle_id=None, stage="propose", action="pr_opened",
                                subject="pr-1", data=e.data)


def test_unserialisable_data_is_refused(db: Store) -> None:
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        db.audit.append(stage="x", action="y", data={"s": {1, 2}})
    assert db.audit.verify().ok and list(db.audit.entries()) == []


@pytest.mark.parametrize(
    ("column", "value"),
    [("data", '{"i": 999}'), ("subject", "ml/other"), ("stage", "guard"), ("action", "x"),
     ("cycle_id", "cyc-2"), ("at", "2030-01-01 00:00:00.000000"), ("hash", "f" * 64), ("prev_hash", "e" * 64)],
)
def test_edited_row_is_named(db: Store, column: str, value: str) -> None:
    fill(db.audit)
    sql(db, f"UPDATE audit_entries SET {column} = :v WHERE seq = 4", v=value)
    r = db.audit.verify()
    assert (r.ok, r.first_bad_seq, r.count) == (False, 4, 3)
    assert r.reason.startswith("entry 4:")
    if column not in ("prev_hash",):
        assert r.reason == "entry 4: hash does not match its contents (edited?)"


def test_deleted_middle_row_is_named(db: Store) -> None:
    fill(db.audit)
    sql(db, "DELETE FROM audit_entries WHERE seq = 5")
    r = db.audit.verify()
    assert (r.ok, r.first_bad_seq) == (False, 5)
    assert r.reason == "entry 5: missing (entry 6 follows entry 4; deleted?)"


def test_deleted_middle_row_with_renumbering_is_named(db: Store) -> None:
    fill(db.audit)
    sql(db, "DELETE FROM audit_entries WHERE seq = 5")
    for seq in range(6, N + 1):
        sql(db, "UPDATE audit_entries SET seq = :s - 1 WHERE seq = :s", s=seq)
    r = db.audit.verify()
    assert (r.ok, r.first_bad_seq) == (False, 5) and "prev_hash does not match" in r.reason


def test_deleted_last_row_is_detected_by_the_head(db: Store) -> None:
    fill(db.audit)
    sql(db, f"DELETE FROM audit_entries WHERE seq = {N}")
    r = db.audit.verify()
    assert (r.ok, r.first_bad_seq, r.count) == (False, N, N - 1)
    assert r.reason.startswith(f"entry {N}: missing") and "last entries deleted" in r.reason


def test_deleted_everything_is_detected(db: Store) -> None:
    fill(db.audit)
    sql(db, "DELETE FROM audit_entries")
    r = db.audit.verify()
    assert (r.ok, r.first_bad_seq) == (False, 1)


def test_swapped_seq_values_are_named(db: Store) -> None:
    fill(db.audit)
    sql(db, "UPDATE audit_entries SET seq = -1 WHERE seq = 3")
    sql(db, "UPDATE audit_entries SET seq = 3 WHERE seq = 6")
    sql(db, "UPDATE audit_entries SET seq = 6 WHERE seq = -1")
    r = db.audit.verify()
    assert (r.ok, r.first_bad_seq) == (False, 3) and r.reason.startswith("entry 3:")


@pytest.mark.parametrize(("a", "b"), [(3, 6), (4, 5)])
def test_swapped_contents_are_named(db: Store, a: int, b: int) -> None:
    fill(db.audit)
    cols = "at, cycle_id, stage, action, subject, data, prev_hash, hash"
    sets = ", ".join(f"{c} = (SELECT {c} FROM saved WHERE saved.seq = :other)" for c in cols.split(", "))
    with db.engine.begin() as conn:
        conn.execute(text(f"CREATE TEMP TABLE saved AS SELECT seq, {cols} FROM audit_entries WHERE seq IN ({a}, {b})"))
        conn.execute(text(f"UPDATE audit_entries SET {sets} WHERE seq = :this"), {"this": a, "other": b})
        conn.execute(text(f"UPDATE audit_entries SET {sets} WHERE seq = :this"), {"this": b, "other": a})
    r = db.audit.verify()
    assert (r.ok, r.first_bad_seq) == (False, a)
    assert r.reason == f"entry {a}: prev_hash does not match the hash of entry {a - 1} (deleted, inserted or reordered?)"


def test_forged_tail_entry_is_detected(db: Store) -> None:
    fill(db.audit)
    last = list(db.audit.entries())[-1]
    forged = {"seq": N + 1, "at": T0, "cycle_id": None, "stage": "x", "action": "y", "subject": "", "data": {}}
    digest = entry_hash(last.hash, **forged)
    sql(db, "INSERT INTO audit_entries (seq, at, cycle_id, stage, action, subject, data, prev_hash, hash) "
            "VALUES (:seq, :at, NULL, 'x', 'y', '', '{}', :prev, :hash)",
        seq=N + 1, at="2025-03-01 12:00:00.000000", prev=last.hash, hash=digest)
    r = db.audit.verify()
    assert (r.ok, r.first_bad_seq) == (False, N + 1) and "head" in r.reason


def test_export_writes_json_lines(db: Store) -> None:
    fill(db.audit)
    buf = io.StringIO()
    assert db.audit.export(buf) == N
    lines = buf.getvalue().splitlines()
    assert len(lines) == N
    rows = [json.loads(line) for line in lines]
    assert [r["seq"] for r in rows] == list(range(1, N + 1))
    assert rows[0]["prev_hash"] == GENESIS and rows[1]["prev_hash"] == rows[0]["hash"]
    assert db.audit.export(io.StringIO()) == N


def test_paged_reads_cross_page_boundaries(db: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("memory.audit._PAGE", 3)
    fill(db.audit, 10)
    assert [e.seq for e in db.audit.entries()] == list(range(1, 11))
    assert db.audit.verify().count == 10


def test_concurrent_appends_from_two_stores_keep_one_chain(db: Store) -> None:
    other = Store.open(db.url_for_display)

    def work(s: Store, who: str) -> None:
        for i in range(25):
            s.audit.append(stage="t", action=who, data={"i": i})

    threads = [threading.Thread(target=work, args=(s, w)) for s, w in ((db, "a"), (other, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.close()
    r = db.audit.verify()
    assert r.ok and r.count == 50, r.reason


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
    | st.datetimes(timezones=st.just(UTC)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.dictionaries(st.text(), json_values, max_size=5), subject=st.text(), stage=st.text(min_size=1))
def test_property_append_then_verify(db: Store, data: dict[str, Any], subject: str, stage: str) -> None:
    e = db.audit.append(stage=stage, action="prop", subject=subject, data=data)
    assert e.data == to_jsonable(data)
    assert list(db.audit.entries(since_seq=e.seq - 1)) == [e]
    r = db.audit.verify()
    assert r.ok and r.count == e.seq, r.reason
