"""Start a real Prometheus on loopback over backfilled OpenMetrics data (integration tests only)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def binary(name: str) -> str | None:
    """``$PROMETHEUS_BIN`` / ``$PROMTOOL_BIN``, else PATH, else /usr/bin; None when absent."""
    path = os.environ.get(f"{name.upper()}_BIN") or shutil.which(name) or f"/usr/bin/{name}"
    return path if Path(path).is_file() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 2) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (loopback only)
        return bytes(r.read())


def backfill(om_path: Path, data: Path) -> None:
    promtool = binary("promtool")
    if promtool is None:
        raise RuntimeError("promtool not found (set $PROMTOOL_BIN)")
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    r = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=486h",
                        "-q", str(om_path), str(data)], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"promtool backfill failed: {r.stderr.strip()[-2000:]}")


def start_prometheus(om_path: Path, workdir: Path, lookback: str = "2m",
                     timeout: float = 60) -> tuple[subprocess.Popen[bytes], str]:
    """Backfill ``om_path`` into a fresh data dir under ``workdir`` and serve it on a free
    127.0.0.1 port; returns (process, url) once ``/-/ready`` answers and metric names are listed."""
    prom = binary("prometheus")
    if prom is None:
        raise RuntimeError("prometheus not found (set $PROMETHEUS_BIN)")
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "data"
    backfill(om_path, data)
    cfg = workdir / "prometheus.yml"
    cfg.write_text("global:\n  scrape_interval: 1m\n  evaluation_interval: 1m\nscrape_configs: []\n")
    last = ""
    for _ in range(3):  # a port taken between probing and binding: try another one
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        with (workdir / "prometheus.log").open("ab") as log:
            proc = subprocess.Popen(
                [prom, f"--config.file={cfg}", f"--storage.tsdb.path={data}", "--storage.tsdb.retention.time=90d",
                 f"--web.listen-address=127.0.0.1:{port}", f"--query.lookback-delta={lookback}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                _get(f"{url}/-/ready")
                if json.loads(_get(f"{url}/api/v1/label/__name__/values")).get("data"):
                    return proc, url
            except OSError:
                pass
            time.sleep(0.1)
        last = f"prometheus rc={proc.poll()} not ready with data within {timeout}s (see {workdir / 'prometheus.log'})"
        stop(proc)
    raise RuntimeError(last)


def stop(proc: subprocess.Popen[bytes], grace_s: float = 10) -> None:
    """SIGTERM the process by PID, SIGKILL after ``grace_s`` (the test servers' one way to end)."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)


def start_scraper(targets: list[str], workdir: Path, *, scrape_interval: str = "1s",
                  timeout: float = 60) -> tuple[subprocess.Popen[bytes], str]:
    """A Prometheus with an empty TSDB that scrapes ``targets`` (``host:port``, path /metrics) every
    ``scrape_interval``; returns (process, url) once ``/-/ready`` answers."""
    prom = binary("prometheus")
    if prom is None:
        raise RuntimeError("prometheus not found (set $PROMETHEUS_BIN)")
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "prometheus.yml"
    cfg.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [{"job_name": "remediator", "scrape_interval": scrape_interval,
                            "scrape_timeout": scrape_interval, "static_configs": [{"targets": targets}]}]}))
    last = ""
    for _ in range(3):
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        with (workdir / "prometheus.log").open("ab") as log:
            proc = subprocess.Popen(
                [prom, f"--config.file={cfg}", f"--storage.tsdb.path={workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                _get(f"{url}/-/ready")
                return proc, url
            except OSError:
                time.sleep(0.1)
        last = f"prometheus rc={proc.poll()} not ready within {timeout}s (see {workdir / 'prometheus.log'})"
        stop(proc)
    raise RuntimeError(last)


def query(url: str, promql: str) -> list[dict[str, object]]:
    """The instant vector of ``promql`` (``[{"metric": {...}, "value": [ts, "v"]}]``)."""
    from urllib.parse import quote

    doc = json.loads(_get(f"{url}/api/v1/query?query={quote(promql)}"))
    return list(doc["data"]["result"])
