"""HA mode: memory.url on PostgreSQL keeps the store, the audit chain and the LangGraph
checkpoints (cycles and approval threads) in PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from agents.approvals import approval_thread, build_approval_graph, decide
from agents.checkpoint import open_checkpointer
from agents.compose import build_deps
from agents.config import load_settings
from agents.demo import prepare_workspace

pytestmark = pytest.mark.integration
PG = os.environ.get("REMEDIATOR_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture()
def pg_schema():  # type: ignore[no-untyped-def]
    psycopg = pytest.importorskip("psycopg")
    try:
        conn = psycopg.connect(PG, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as e:
        pytest.skip(f"PostgreSQL not reachable at {PG}: {e}")
    schema = f"rem_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG}?options=-csearch_path%3D{schema}", conn, schema
    finally:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()


def test_cycle_and_approval_threads_live_in_postgres(tmp_path: Path, pg_schema) -> None:  # type: ignore[no-untyped-def]
    url, conn, schema = pg_schema
    cfg, cfg_path, remote = prepare_workspace(tmp_path, datetime.now(UTC).replace(microsecond=0))
    cfg["memory"]["url"] = url
    cfg_path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "xdg")}
    runs = [subprocess.run([sys.executable, "-m", "agents.cli", "run-once", "--config", str(cfg_path), "--json"],
                           capture_output=True, text=True, env=env, timeout=300) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[-1].stderr[-2000:]
    r1, r2 = (json.loads(r.stdout) for r in runs)
    assert {p["id"] for p in r1["pull_requests"]} == {p["id"] for p in r2["pull_requests"]} and r1["pull_requests"]
    n = conn.execute(f"SELECT count(*) FROM {schema}.checkpoints").fetchone()[0]
    assert n > 0
    assert not (tmp_path / "xdg" / "remediator" / "checkpoints.sqlite").exists()

    settings = load_settings(cfg_path)
    deps = build_deps(settings)
    inc = next(i for i in r2["incidents"] if i["kind"] == "cost_anomaly")
    with open_checkpointer(settings) as cp:
        assert build_approval_graph(cp).get_state(approval_thread(inc["id"])).next == ("await_decision",)
    d = decide(deps, incident_id=inc["id"], verdict="reject", actor="erin", source="cli", reason="not now")
    assert d.verdict == "reject" and deps.store.audit.verify().ok
