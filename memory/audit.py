"""The tamper-evident audit trail: an append-only hash chain in the store's database.

Each entry holds ``hash = sha256(prev_hash + canonical JSON of its fields)`` and the hash of
the entry before it (``GENESIS`` for the first). A one-row head table (last seq + last hash)
is updated in the same transaction as every append, so deleting the *last* entries is
detected too. ``verify()`` recomputes the whole chain and names the first broken entry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TextIO

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Engine,
    Integer,
    MetaData,
    Row,
    String,
    Table,
    TypeDecorator,
    select,
    update,
)

from memory.records import AuditEntry

GENESIS = "0" * 64
_PAGE = 500


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite keeps no offset: store UTC, read UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


def as_utc(value: datetime) -> datetime:
    """An aware datetime in UTC; a naive one is taken to be UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"audit/report data: a value of type {type(value).__name__} is not JSON-serialisable")


def to_jsonable(data: Any) -> Any:
    """``data`` as it reads back from a JSON column: datetimes as ISO strings, tuples as lists, str keys."""
    return json.loads(json.dumps(data, default=_json_default))


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_json_default)


def entry_hash(
    prev_hash: str,
    *,
    seq: int,
    at: datetime,
    cycle_id: str | None,
    stage: str,
    action: str,
    subject: str,
    data: dict[str, Any],
) -> str:
    payload = {
        "seq": seq,
        "at": as_utc(at).isoformat(timespec="microseconds"),
        "cycle_id": cycle_id,
        "stage": stage,
        "action": action,
        "subject": subject,
        "data": data,
    }
    return hashlib.sha256((prev_hash + _canonical(payload)).encode()).hexdigest()


metadata = MetaData()

audit_entries = Table(
    "audit_entries",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", UTCDateTime, nullable=False),
    Column("cycle_id", String, nullable=True, index=True),
    Column("stage", String, nullable=False),
    Column("action", String, nullable=False),
    Column("subject", String, nullable=False),
    Column("data", JSON, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    CheckConstraint("id = 1", name="ck_audit_head_single_row"),
)


@dataclass(frozen=True)
class Anchor:
    """A copy of the chain head kept outside the database (a Git commit): entry ``seq`` had ``hash``."""

    seq: int
    hash: str
    source: str            # where it was read, e.g. "refs/remediator/audit-anchors@3f9a1c2e"


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    count: int  # entries checked and found intact (all of them when ok)
    first_bad_seq: int | None
    reason: str


def _entry(row: Row[Any]) -> AuditEntry:
    return AuditEntry.model_validate(row._asdict())


class AuditTrail:
    """Append, read, verify and export the chain. Tables come from ``Store.migrate()``."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def append(
        self,
        *,
        stage: str,
        action: str,
        subject: str = "",
        data: dict[str, Any] | None = None,
        cycle_id: str | None = None,
        at: datetime | None = None,
    ) -> AuditEntry:
        fields: dict[str, Any] = {
            "at": as_utc(at or datetime.now(UTC)),
            "cycle_id": cycle_id,
            "stage": stage,
            "action": action,
            "subject": subject,
            "data": to_jsonable(data or {}),
        }
        with self._engine.begin() as conn:
            # The first statement takes the head row's write lock (a row lock on PostgreSQL, the
            # database write lock on SQLite) and allocates the seq: appends are serialized
            # across processes, and the head moves in the same transaction as the insert.
            seq, prev_hash = conn.execute(
                update(audit_head)
                .where(audit_head.c.id == 1)
                .values(seq=audit_head.c.seq + 1)
                .returning(audit_head.c.seq, audit_head.c.hash)
            ).one()
            digest = entry_hash(prev_hash, seq=seq, **fields)
            conn.execute(audit_entries.insert().values(seq=seq, prev_hash=prev_hash, hash=digest, **fields))
            conn.execute(update(audit_head).where(audit_head.c.id == 1).values(hash=digest))
        return AuditEntry(seq=seq, prev_hash=prev_hash, hash=digest, **fields)

    def entries(self, *, since_seq: int = 0) -> Iterator[AuditEntry]:
        """Entries with ``seq > since_seq`` in order, read page by page (no connection held between pages)."""
        last = since_seq
        while True:
            with self._engine.connect() as conn:
                rows = conn.execute(
                    select(audit_entries).where(audit_entries.c.seq > last).order_by(audit_entries.c.seq).limit(_PAGE)
                ).all()
            for row in rows:
                yield _entry(row)
            if len(rows) < _PAGE:
                return
            last = rows[-1].seq

    def entries_about(self, subjects: Iterable[str], *, limit: int = 500) -> list[AuditEntry]:
        """The entries whose subject is one of ``subjects`` (an incident, its PRs), oldest first."""
        wanted = sorted(set(subjects))
        if not wanted:
            return []
        with self._engine.connect() as conn:
            rows = conn.execute(select(audit_entries).where(audit_entries.c.subject.in_(wanted))
                                .order_by(audit_entries.c.seq).limit(limit)).all()
        return [_entry(row) for row in rows]

    def verify(self) -> VerifyResult:
        """Recompute the chain in one read transaction and name the first broken entry."""
        count, prev_hash, expected = 0, GENESIS, 1

        def bad(seq: int, reason: str) -> VerifyResult:
            return VerifyResult(ok=False, count=count, first_bad_seq=seq, reason=reason)

        with self._engine.begin() as conn:
            head = conn.execute(select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)).first()
            if head is None:
                return bad(1, "the audit head row is missing (deleted?); the chain cannot be anchored")
            rows = conn.execute(select(audit_entries).order_by(audit_entries.c.seq)).yield_per(_PAGE)
            for row in rows:
                e = _entry(row)
                if e.seq != expected:
                    if e.seq > expected:
                        return bad(expected, f"entry {expected}: missing (entry {e.seq} follows entry {expected - 1}; deleted?)")
                    return bad(e.seq, f"entry {e.seq}: out of sequence after entry {expected - 1} (inserted or renumbered?)")
                if e.prev_hash != prev_hash:
                    return bad(e.seq, f"entry {e.seq}: prev_hash does not match the hash of entry {e.seq - 1} "
                                      "(deleted, inserted or reordered?)")
                fields = e.model_dump(exclude={"seq", "prev_hash", "hash"})
                if entry_hash(e.prev_hash, seq=e.seq, **fields) != e.hash:
                    return bad(e.seq, f"entry {e.seq}: hash does not match its contents (edited?)")
                count, prev_hash, expected = count + 1, e.hash, expected + 1
        last = expected - 1
        if head.seq > last:
            return bad(last + 1, f"entry {last + 1}: missing; the head records {head.seq} entries but the "
                                 f"chain ends at entry {last} (last entries deleted?)")
        if head.seq != last or head.hash != prev_hash:
            return bad(last, f"entry {last}: does not match the head anchor (seq {head.seq}) "
                             "(replaced or appended outside the trail?)")
        return VerifyResult(ok=True, count=count, first_bad_seq=None, reason=f"chain intact: {count} entries verified")

    def head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the last entry (``(0, GENESIS)`` before the first)."""
        with self._engine.connect() as conn:
            row = conn.execute(select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)).first()
        return (int(row.seq), str(row.hash)) if row is not None else (0, GENESIS)

    def check_anchors(self, anchors: list[Anchor]) -> VerifyResult:
        """Every anchor must name an entry that exists with exactly that hash. A chain recomputed
        after an edit (or cut short) passes ``verify()`` but not this: the first anchored entry that
        disagrees is named."""
        checked = 0
        for a in sorted(anchors, key=lambda a: (a.seq, a.source)):
            with self._engine.connect() as conn:
                got = conn.execute(select(audit_entries.c.hash).where(audit_entries.c.seq == a.seq)).scalar()
            if got is None:
                return VerifyResult(ok=False, count=checked, first_bad_seq=a.seq,
                                    reason=f"entry {a.seq}: missing, but anchor {a.source} records it (deleted?)")
            if got != a.hash:
                return VerifyResult(ok=False, count=checked, first_bad_seq=a.seq,
                                    reason=f"entry {a.seq}: hash {got[:12]}... disagrees with anchor {a.source} "
                                           f"({a.hash[:12]}...): the chain was rewritten at or before entry {a.seq}")
            checked += 1
        return VerifyResult(ok=True, count=checked, first_bad_seq=None, reason=f"{checked} anchors agree")

    def export(self, fp: TextIO) -> int:
        """Write every entry as one JSON line; return how many."""
        n = 0
        for e in self.entries():
            fp.write(e.model_dump_json() + "\n")
            n += 1
        return n
