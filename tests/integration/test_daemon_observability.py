"""The daemon watched from outside: a real Prometheus scrapes its /metrics while it runs cycles on
the demo's data and sees the cycle metrics move; /healthz and /readyz answer, and /readyz turns 503
when the store is gone; its logs are JSON lines carrying the cycle id."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from agents.demo import prepare_workspace
from tests.integration import promserver

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 (loopback)
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def wait_for(what: str, fn: Callable[[], Any], timeout: float = 90, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except OSError as e:
            last = e
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def value(url: str, promql: str) -> float:
    res = promserver.query(url, promql)
    return float(res[0]["value"][1]) if res else -1.0  # type: ignore[index]


@pytest.fixture()
def daemon(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    if promserver.binary("prometheus") is None:
        pytest.skip("prometheus not installed (tests/run.sh installs Debian's package)")
    (tmp_path / "ws").mkdir()
    cfg, cfg_path, _ = prepare_workspace(tmp_path / "ws", datetime.now(UTC).replace(microsecond=0))
    port = free_port()
    cfg["scheduler"] = {"interval": "10s"}
    cfg["http"] = {"host": "127.0.0.1", "daemon_port": port}
    cfg_path.write_text(yaml.safe_dump(cfg))
    log = tmp_path / "daemon.log"
    with log.open("w") as fp:
        proc = subprocess.Popen([sys.executable, "-m", "agents.cli", "daemon", "--config", str(cfg_path)],
                                stdout=subprocess.DEVNULL, stderr=fp, start_new_session=True,
                                env={**os.environ, "REMEDIATOR_LOG_FORMAT": "auto"})
    try:
        yield f"127.0.0.1:{port}", log, tmp_path / "ws" / "state.db"
    finally:
        promserver.stop(proc, grace_s=60)   # SIGTERM lets the cycle in flight finish


def test_prometheus_sees_cycles_and_readyz_follows_the_store(daemon: tuple[str, Path, Path], tmp_path: Path) -> None:
    addr, log, db = daemon
    base = f"http://{addr}"
    assert wait_for("/healthz", lambda: get(f"{base}/healthz")[0] == 200, timeout=60)
    prom, url = promserver.start_scraper([addr], tmp_path / "prom")
    try:
        wait_for("a first successful cycle in Prometheus",
                 lambda: value(url, 'remediator_cycles_total{outcome="ok"}') >= 1, timeout=120)
        first_ok = value(url, 'remediator_cycles_total{outcome="ok"}')
        first_last = value(url, "remediator_last_successful_cycle_timestamp_seconds")
        assert first_last > time.time() - 300
        # the next cycles (every 10 s) move the counters, the histogram and the timestamp
        wait_for("another cycle in Prometheus",
                 lambda: value(url, 'remediator_cycles_total{outcome="ok"}') > first_ok, timeout=120)
        assert value(url, "remediator_last_successful_cycle_timestamp_seconds") > first_last
        assert value(url, "remediator_cycle_duration_seconds_count") >= 2
        assert value(url, 'remediator_findings_total{kind="cost_anomaly"}') >= 2   # one per cycle on the demo data
        assert value(url, 'remediator_cycles_total{outcome="failed"}') == 0
        assert value(url, 'sum(remediator_incidents{status=~"open|proposed"})') >= 1
        assert value(url, 'remediator_pull_requests{status="open"}') == 2
        assert value(url, "up") == 1
    finally:
        promserver.stop(prom)

    status, doc = get(f"{base}/readyz")
    assert status == 200 and doc == {"status": "ready", "checks": {"store": "ok", "git": "ok", "cycle": "ok"}}, doc
    # the Dockerfile's HEALTHCHECK, as written there, answers 0 against this daemon (its port put in)
    dockerfile = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()
    hc = re.search(r'^\s+CMD (python -c ".*?") \|\| exit 1$', dockerfile, re.M)
    assert hc is not None and "127.0.0.1:9464/healthz" in hc.group(1)
    probe = hc.group(1).replace("python", shlex.quote(sys.executable), 1).replace(":9464/", f":{addr.split(':')[1]}/")
    assert subprocess.run(probe, shell=True, timeout=30).returncode == 0
    dead = probe.replace(f":{addr.split(':')[1]}/", f":{free_port()}/")
    assert subprocess.run(dead, shell=True, timeout=30, capture_output=True).returncode != 0   # nobody there

    for suffix in ("", "-wal", "-shm"):   # the store is gone
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    status, doc = get(f"{base}/readyz")
    assert status == 503 and doc["status"] == "not ready" and doc["checks"]["store"] != "ok", doc
    assert doc["checks"]["git"] == "ok"
    assert get(f"{base}/healthz")[0] == 200   # alive all the same

    lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
    docs = [json.loads(ln) for ln in lines]   # every line one JSON object
    assert all({"ts", "level", "logger", "message"} <= set(d) for d in docs)
    cycle_lines = [d for d in docs if d["logger"] == "remediator.daemon" and d["message"].startswith("cycle ")]
    assert cycle_lines and all(d.get("cycle_id") for d in cycle_lines)
    assert any(d.get("cycle_id") and d["logger"].startswith("remediator.") and d["logger"] != "remediator.daemon"
               for d in docs), "the cycle's own log lines carry its id"
