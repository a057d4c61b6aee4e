"""A real `remediator serve` on loopback over a store holding one cycle of the demo's data (two open
PRs on the local provider), for the review UI's tests. Stopped by PID."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from agents.demo import prepare_workspace
from tests.integration.promserver import stop

TOKEN = "ui-test-token-6f1c0a9d2b7e4f58"


@dataclass
class UIServer:
    url: str
    config: Path
    remote: Path
    report: dict[str, Any]
    proc: subprocess.Popen[bytes]
    log: Path

    def incident(self, kind: str) -> dict[str, Any]:
        return next(i for i in self.report["incidents"] if i["kind"] == kind)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(workdir: Path, *, http: dict[str, Any] | None = None) -> UIServer:
    workdir.mkdir(parents=True, exist_ok=True)
    cfg, cfg_path, remote = prepare_workspace(workdir, datetime.now(UTC).replace(microsecond=0))
    token_file = workdir / "ui-token"
    token_file.write_text(TOKEN + "\n")
    port = free_port()
    cfg["http"] = {"host": "127.0.0.1", "port": port, "ui_token_file": str(token_file), **(http or {})}
    cfg_path.write_text(yaml.safe_dump(cfg))
    run = subprocess.run([sys.executable, "-m", "agents.cli", "run-once", "--config", str(cfg_path), "--json"],
                         capture_output=True, text=True, timeout=300)
    if run.returncode:
        raise RuntimeError(f"run-once failed: {run.stderr[-2000:]}")
    log = workdir / "serve.log"
    with log.open("wb") as fp:
        proc = subprocess.Popen([sys.executable, "-m", "agents.cli", "serve", "--config", str(cfg_path)],
                                stdout=fp, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:  # noqa: S310 (loopback)
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.2)
    else:
        stop(proc)
        raise RuntimeError(f"serve not ready: {log.read_text()[-2000:]}")
    return UIServer(url=url, config=cfg_path, remote=remote, report=json.loads(run.stdout), proc=proc, log=log)

