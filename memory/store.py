"""The store: records, key/value state, cycles and the audit trail in SQLite or PostgreSQL.

Records are kept whole as ``model_dump_json`` in a ``body`` column, beside the few columns
that are looked up or sorted on. Every save is an upsert by id, so saving a
``model_copy(update=...)`` of a record replaces it. The schema is owned by the Alembic
migrations in ``memory/migrations`` (run by :meth:`Store.migrate`).
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from pydantic import BaseModel
from sqlalchemy import (
    JSON,
    Column,
    Connection,
    Engine,
    Index,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    inspect,
    make_url,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import Select

from memory.audit import AuditTrail, UTCDateTime, audit_entries, audit_head, to_jsonable
from memory.errors import StoreBusy, StoreMissing
from memory.records import ACTIVE_STATUSES, Decision, Incident, PullRequest, RemediationPlan

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 30_000
_MIGRATE_LOCK = 0x72656D6564  # pg_advisory_xact_lock key: one migrating replica at a time
_CYCLE_LOCK = 0x72656D63      # pg_advisory_lock class key (int4): one cycle at a time per store (schema)
_LOCK_OWNER_KEY = "cycle.lock.owner"

R = TypeVar("R", bound=BaseModel)

metadata = MetaData()

incidents = Table(
    "incidents",
    metadata,
    Column("id", String, primary_key=True),
    Column("fingerprint", String, nullable=False, index=True),
    Column("status", String, nullable=False, index=True),
    Column("kind", String, nullable=False, index=True),
    Column("service", String, nullable=False, index=True),
    Column("updated_at", UTCDateTime, nullable=False, index=True),
    Column("body", Text, nullable=False),
)
plans = Table(
    "plans",
    metadata,
    Column("id", String, primary_key=True),
    Column("incident_id", String, nullable=False, index=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("body", Text, nullable=False),
)
pull_requests = Table(
    "pull_requests",
    metadata,
    Column("id", String, primary_key=True),
    Column("branch", String, nullable=False, index=True),
    Column("status", String, nullable=False, index=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("body", Text, nullable=False),
)
# the store enforces what the cycle assumes (migration 0002): one open PR record per branch, one
# active incident per fingerprint
Index("uq_pull_requests_open_branch", pull_requests.c.branch, unique=True,
      sqlite_where=text("status = 'open'"), postgresql_where=text("status = 'open'"))
_ACTIVE = text("status IN ('open', 'proposed', 'approved')")
Index("uq_incidents_active_fingerprint", incidents.c.fingerprint, unique=True, sqlite_where=_ACTIVE,
      postgresql_where=_ACTIVE)

decisions = Table(
    "decisions",
    metadata,
    Column("id", String, primary_key=True),
    Column("incident_id", String, nullable=False, index=True),
    Column("at", UTCDateTime, nullable=False),
    Column("body", Text, nullable=False),
)
kv = Table(
    "kv",
    metadata,
    Column("key", String, primary_key=True),
    Column("value", Text, nullable=False),
)
cycles = Table(
    "cycles",
    metadata,
    Column("id", String, primary_key=True),
    Column("started_at", UTCDateTime, nullable=False, index=True),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("report", JSON, nullable=False),
)


def make_engine(url: str) -> Engine:
    """An engine for ``sqlite:///...`` (WAL, busy timeout, real BEGIN) or ``postgresql://...`` (psycopg 3)."""
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:" and not u.database.startswith("file:"):
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(u)
        # SQLAlchemy's recipe for pysqlite: let SQLAlchemy emit BEGIN itself, so transactions
        # (migrations included) are real; BEGIN IMMEDIATE where the option asks for the write lock.
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    if u.get_backend_name() != "postgresql":
        raise ValueError(f"memory.url: unsupported database {u.get_backend_name()!r}; use sqlite:/// or postgresql://")
    return create_engine(u, pool_pre_ping=True)


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA journal_mode = WAL")
    cur.close()


def _sqlite_on_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("sqlite_immediate") else "BEGIN")


class Store:
    def __init__(self, url: str) -> None:
        self._url = url
        self._display = make_url(url).render_as_string(hide_password=True)
        self.engine = make_engine(url)
        self._audit = AuditTrail(self.engine)

    @classmethod
    def open(cls, url: str) -> Store:
        store = cls(url)
        store.migrate()
        return store

    @classmethod
    def open_existing(cls, url: str) -> Store:
        """The store at ``url`` for a reader (``incidents``, ``decisions``, ``audit``): a missing
        SQLite file or a database the daemon never set up raises StoreMissing instead of being
        created, so a mistyped path never shows an empty, "OK" store."""
        u = make_url(url)
        shown = u.render_as_string(hide_password=True)
        if u.get_backend_name() == "sqlite" and u.database not in (None, "", ":memory:") \
                and not str(u.database).startswith("file:") and not Path(str(u.database)).is_file():
            raise StoreMissing(f"no store at {shown} (no such file); check memory.url, or run a cycle first")
        store = cls(url)
        try:
            if not inspect(store.engine).has_table("alembic_version"):
                raise StoreMissing(f"no store at {shown} (the database has no remediator tables); check memory.url, "
                                   "or run a cycle first")
        except StoreMissing:
            store.close()
            raise
        store.migrate()
        return store

    def scratch_copy(self, path: Path) -> Store:
        """A SQLite store at ``path`` holding a copy of every row of this one (either backend): what
        a dry run works on, so the real store is left exactly as it was."""
        copy = Store.open(f"sqlite:///{path}")
        tables = [*metadata.sorted_tables, audit_entries, audit_head]
        with self.engine.connect() as src, copy.engine.begin() as dst:
            for table in tables:
                dst.execute(table.delete())
                rows = [dict(r._mapping) for r in src.execute(select(table))]
                if rows:
                    dst.execute(table.insert(), rows)
        return copy

    @property
    def url_for_display(self) -> str:
        return self._display

    @property
    def audit(self) -> AuditTrail:
        return self._audit

    def migrate(self) -> None:
        """``alembic upgrade head`` on this engine; idempotent, and safe when replicas start together."""
        with self.engine.execution_options(sqlite_immediate=True).begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATE_LOCK})
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def close(self) -> None:
        self.engine.dispose()

    # -- helpers ------------------------------------------------------------------------------

    def _upsert(self, table: Table, values: dict[str, Any]) -> None:
        insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        stmt = insert(table).values(values)
        keys = [c.name for c in table.primary_key]
        stmt = stmt.on_conflict_do_update(
            index_elements=keys, set_={k: stmt.excluded[k] for k in values if k not in keys}
        )
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def _save(self, table: Table, record: Incident | RemediationPlan | PullRequest | Decision, **columns: Any) -> None:
        self._upsert(table, {"id": record.id, "body": record.model_dump_json(), **columns})

    def _all(self, model: type[R], query: Select[Any]) -> list[R]:
        with self.engine.connect() as conn:
            return [model.model_validate_json(body) for body in conn.scalars(query)]

    def _one(self, model: type[R], query: Select[Any]) -> R | None:
        found = self._all(model, query.limit(1))
        return found[0] if found else None

    def _by_id(self, model: type[R], table: Table, key: str) -> R | None:
        """Exact id, else the one record whose id starts with ``key`` (None when none or several)."""
        exact = self._one(model, select(table.c.body).where(table.c.id == key))
        if exact is not None or not key:
            return exact
        found = self._all(model, select(table.c.body).where(table.c.id.startswith(key, autoescape=True)).limit(2))
        return found[0] if len(found) == 1 else None

    # -- incidents ----------------------------------------------------------------------------

    def save_incident(self, inc: Incident) -> None:
        self._save(
            incidents, inc,
            fingerprint=inc.fingerprint, status=inc.status, kind=inc.kind, service=inc.service, updated_at=inc.updated_at,
        )

    def get_incident(self, incident_id: str) -> Incident | None:
        return self._by_id(Incident, incidents, incident_id)

    def _incidents(self) -> Select[Any]:
        return select(incidents.c.body).order_by(incidents.c.updated_at.desc(), incidents.c.id.desc())

    def find_active_incident(self, fingerprint: str) -> Incident | None:
        """The most recently updated incident with this fingerprint whose status is active."""
        q = self._incidents().where(incidents.c.fingerprint == fingerprint, incidents.c.status.in_(ACTIVE_STATUSES))
        return self._one(Incident, q)

    def last_incident(self, fingerprint: str) -> Incident | None:
        """The most recently updated incident with this fingerprint, whatever its status."""
        return self._one(Incident, self._incidents().where(incidents.c.fingerprint == fingerprint))

    def list_incidents(self, *, statuses: Iterable[str] | None = None) -> list[Incident]:
        """Most recently updated first."""
        q = self._incidents()
        if statuses is not None:
            q = q.where(incidents.c.status.in_(list(statuses)))
        return self._all(Incident, q)

    # -- plans --------------------------------------------------------------------------------

    def save_plan(self, plan: RemediationPlan) -> None:
        self._save(plans, plan, incident_id=plan.incident_id, created_at=plan.created_at)

    def get_plan(self, plan_id: str) -> RemediationPlan | None:
        return self._by_id(RemediationPlan, plans, plan_id)

    def latest_plan(self, incident_id: str) -> RemediationPlan | None:
        q = select(plans.c.body).where(plans.c.incident_id == incident_id)
        return self._one(RemediationPlan, q.order_by(plans.c.created_at.desc(), plans.c.id.desc()))

    # -- pull requests ------------------------------------------------------------------------

    def save_pr(self, pr: PullRequest) -> None:
        self._save(
            pull_requests, pr, branch=pr.branch, status=pr.status, created_at=pr.created_at, updated_at=pr.updated_at
        )

    def get_pr(self, pr_id: str) -> PullRequest | None:
        return self._by_id(PullRequest, pull_requests, pr_id)

    def _prs(self) -> Select[Any]:
        t = pull_requests.c
        return select(t.body).order_by(t.created_at.desc(), t.updated_at.desc(), t.id.desc())

    def get_pr_by_branch(self, branch: str) -> PullRequest | None:
        """The most recently created PR record for ``branch``."""
        return self._one(PullRequest, self._prs().where(pull_requests.c.branch == branch))

    def list_prs(self, *, statuses: Iterable[str] | None = None) -> list[PullRequest]:
        """Most recently created first."""
        q = self._prs()
        if statuses is not None:
            q = q.where(pull_requests.c.status.in_(list(statuses)))
        return self._all(PullRequest, q)

    # -- decisions ----------------------------------------------------------------------------

    def save_decision(self, d: Decision) -> None:
        self._save(decisions, d, incident_id=d.incident_id, at=d.at)

    def get_decision(self, decision_id: str) -> Decision | None:
        return self._by_id(Decision, decisions, decision_id)

    def list_decisions(self, *, incident_id: str | None = None) -> list[Decision]:
        """Newest first."""
        q = select(decisions.c.body).order_by(decisions.c.at.desc(), decisions.c.id.desc())
        if incident_id is not None:
            q = q.where(decisions.c.incident_id == incident_id)
        return self._all(Decision, q)

    # -- key/value state ----------------------------------------------------------------------

    def get_kv(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.scalar(select(kv.c.value).where(kv.c.key == key))

    def set_kv(self, key: str, value: str) -> None:
        self._upsert(kv, {"key": key, "value": value})

    def claim_kv(self, key: str, value: str, *, retake_if: Callable[[str], bool] | None = None) -> bool:
        """Atomically set ``key`` when absent (or when its value satisfies ``retake_if``); True when
        this caller got it. Safe across threads, processes and replicas (double clicks, replays)."""
        insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        with self.engine.begin() as conn:
            if conn.execute(insert(kv).values(key=key, value=value).on_conflict_do_nothing()).rowcount == 1:
                return True
        if retake_if is None:
            return False
        old = self.get_kv(key)
        if old is None or not retake_if(old):
            return False
        with self.engine.begin() as conn:  # compare-and-swap: only if nobody retook it meanwhile
            return bool(conn.execute(
                update(kv).where(kv.c.key == key, kv.c.value == old).values(value=value)).rowcount == 1)

    # -- one cycle at a time ------------------------------------------------------------------

    @contextmanager
    def cycle_lock(self, *, owner: str, wait: bool = False, poll_s: float = 1.0) -> Iterator[None]:
        """Hold the store's cycle lock for the block: a file lock beside a SQLite file, a session
        advisory lock on PostgreSQL (released by the database if the process dies). Taken: StoreBusy
        naming the holder, or, with ``wait``, block until it is free. An in-memory store needs none."""
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect() as conn:
                # keyed by the schema too: stores in other schemas of the same database are others
                take = text("SELECT pg_try_advisory_lock(:k, hashtext(current_schema()))")
                while not conn.execute(take, {"k": _CYCLE_LOCK}).scalar():
                    if not wait:
                        raise StoreBusy(self.get_kv(_LOCK_OWNER_KEY) or "holder unknown")
                    time.sleep(poll_s)
                conn.commit()   # the advisory lock is the session's: no transaction stays open
                self.set_kv(_LOCK_OWNER_KEY, owner)
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:k, hashtext(current_schema()))"), {"k": _CYCLE_LOCK})
                    conn.commit()
            return
        db = make_url(self._url).database
        if not db or db == ":memory:" or db.startswith("file:"):
            yield
            return
        path = Path(f"{db}.cycle.lock")
        with path.open("a+") as fp:
            while True:
                try:
                    fcntl.flock(fp.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not wait:
                        fp.seek(0)
                        raise StoreBusy(fp.read().strip() or "holder unknown") from None
                    time.sleep(poll_s)
            fp.seek(0)
            fp.truncate()
            fp.write(owner)
            fp.flush()
            try:
                yield
            finally:
                fp.seek(0)
                fp.truncate()
                fcntl.flock(fp.fileno(), fcntl.LOCK_UN)

    # -- cycles -------------------------------------------------------------------------------

    def save_cycle(
        self, *, cycle_id: str, started_at: datetime, finished_at: datetime | None, report: dict[str, Any]
    ) -> None:
        """Upsert one cycle's row (save it when it starts, again when it finishes)."""
        self._upsert(
            cycles,
            {"id": cycle_id, "started_at": started_at, "finished_at": finished_at, "report": to_jsonable(report)},
        )

    def cycle_ids(self, *, offset: int = 0, limit: int = 20) -> list[str]:
        """Ids of stored cycles, newest first (no reports read)."""
        q = select(cycles.c.id).order_by(cycles.c.started_at.desc(), cycles.c.id.desc()).offset(offset).limit(limit)
        with self.engine.connect() as conn:
            return [str(r) for r in conn.execute(q).scalars()]

    def list_cycles(self, *, limit: int = 20, ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Newest first: ``{"cycle_id", "started_at", "finished_at", "report"}`` (only ``ids`` when given)."""
        q = select(cycles).order_by(cycles.c.started_at.desc(), cycles.c.id.desc()).limit(limit)
        if ids is not None:
            q = q.where(cycles.c.id.in_(list(ids)))
        with self.engine.connect() as conn:
            return [
                {"cycle_id": r.id, "started_at": r.started_at, "finished_at": r.finished_at, "report": r.report}
                for r in conn.execute(q)
            ]

    def cycle_heads(self, *, limit: int = 20) -> list[tuple[str, datetime | None]]:
        """``(id, finished_at)`` of the newest cycles (no reports read)."""
        q = select(cycles.c.id, cycles.c.finished_at).order_by(cycles.c.started_at.desc(), cycles.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [(str(r.id), r.finished_at) for r in conn.execute(q)]
