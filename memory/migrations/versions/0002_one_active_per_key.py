"""The store enforces what the cycle assumes: at most one open PR record per branch, at most one
active incident per fingerprint (partial unique indexes, on SQLite and PostgreSQL alike).

Duplicates that an earlier version could leave behind (two processes running one cycle) are
folded first: the most recently updated record stays, the others are closed (PRs) or resolved
(incidents), in the indexed column and in the record's JSON body alike.

Revision ID: 0002
Revises: 0001
"""

import json
from collections import defaultdict

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ACTIVE = ("open", "proposed", "approved")


def _fold(table: str, key: str, active: tuple[str, ...], retired: str) -> None:
    conn = op.get_bind()
    marks = ", ".join(f"'{s}'" for s in active)
    rows = conn.execute(sa.text(f"SELECT id, {key}, updated_at, body FROM {table} WHERE status IN ({marks})")).all()
    groups: dict[str, list[tuple[str, str, object, str]]] = defaultdict(list)
    for r in rows:
        groups[str(r[1])].append((str(r[0]), str(r[1]), r[2], str(r[3])))
    for dupes in groups.values():
        if len(dupes) < 2:
            continue
        dupes.sort(key=lambda r: (str(r[2]), r[0]))
        for row in dupes[:-1]:   # the newest stays
            body = json.loads(row[3])
            body["status"] = retired
            conn.execute(sa.text(f"UPDATE {table} SET status = :s, body = :b WHERE id = :i"),
                         {"s": retired, "b": json.dumps(body), "i": row[0]})


def upgrade() -> None:
    _fold("pull_requests", "branch", ("open",), "closed")
    _fold("incidents", "fingerprint", ACTIVE, "resolved")
    op.create_index("uq_pull_requests_open_branch", "pull_requests", ["branch"], unique=True,
                    sqlite_where=sa.text("status = 'open'"), postgresql_where=sa.text("status = 'open'"))
    where = sa.text("status IN ('open', 'proposed', 'approved')")
    op.create_index("uq_incidents_active_fingerprint", "incidents", ["fingerprint"], unique=True,
                    sqlite_where=where, postgresql_where=where)


def downgrade() -> None:
    op.drop_index("uq_incidents_active_fingerprint", table_name="incidents")
    op.drop_index("uq_pull_requests_open_branch", table_name="pull_requests")
