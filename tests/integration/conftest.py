"""Fixtures starting real services on loopback; every started Prometheus is stopped at teardown."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.promserver import binary, start_prometheus, stop


@pytest.fixture(scope="session")
def prometheus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., str]]:
    """``prometheus_server(om_path, lookback="2m") -> url``: backfill the file into a fresh
    Prometheus on 127.0.0.1; skipped when the prometheus/promtool binaries are missing."""
    missing = [b for b in ("prometheus", "promtool") if binary(b) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (Debian: apt install prometheus; or set $PROMETHEUS_BIN/$PROMTOOL_BIN)")
    procs: list[subprocess.Popen[bytes]] = []

    def start(om_path: Path, lookback: str = "2m") -> str:
        proc, url = start_prometheus(om_path, tmp_path_factory.mktemp("prometheus"), lookback=lookback)
        procs.append(proc)
        return url

    try:
        yield start
    finally:
        for p in procs:
            stop(p)
