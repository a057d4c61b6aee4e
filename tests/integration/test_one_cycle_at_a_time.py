"""Two processes, one store: a second `run-once` while a cycle runs says who holds the store and
exits 1 (never resumes the live cycle, never makes a second PR record); with `--wait` it runs once
the first is done. Real processes, real SQLite file lock."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agents.config import load_settings
from agents.demo import prepare_workspace
from memory.store import Store
from tests.console import start

pytestmark = pytest.mark.integration




def test_a_second_run_once_exits_1_naming_the_holder_or_waits(tmp_path: Path) -> None:
    _, cfg, _ = prepare_workspace(tmp_path, datetime.now(UTC).replace(microsecond=0))
    store = Store.open(load_settings(cfg).memory.url)
    with store.cycle_lock(owner="pid 4242 on ops-host since 2026-12-07 01:00:00Z"):
        busy = start("run-once", "--config", str(cfg), "--json")
        out, err = busy.communicate(timeout=120)
        assert busy.returncode == 1 and out == ""
        assert "another cycle is running on this store (pid 4242 on ops-host" in err and "--wait" in err

        waiting = start("run-once", "--config", str(cfg), "--json", "--wait")
        time.sleep(3)
        assert waiting.poll() is None   # still waiting for the lock
    out, err = waiting.communicate(timeout=240)
    assert waiting.returncode == 0, err[-2000:]
    report = json.loads(out)
    assert report["pull_requests"]
    prs = store.list_prs()
    assert len({p.branch for p in prs}) == len(prs)
    store.close()


def test_two_concurrent_cycles_make_one_set_of_prs(tmp_path: Path) -> None:
    _, cfg, _ = prepare_workspace(tmp_path, datetime.now(UTC).replace(microsecond=0))
    results: list[tuple[int, str, str]] = []

    def run() -> None:
        p = start("run-once", "--config", str(cfg), "--json", "--wait")
        out, err = p.communicate(timeout=300)
        results.append((p.returncode, out, err))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [rc for rc, _, _ in results] == [0, 0], [err[-1500:] for _, _, err in results]
    ids = [json.loads(out)["cycle_id"] for _, out, _ in results]
    assert ids[0] != ids[1]   # two cycles one after the other, not one cycle run twice
    store = Store.open(load_settings(cfg).memory.url)
    open_prs = store.list_prs(statuses=["open"])
    assert len(open_prs) == len({p.branch for p in open_prs}) == 2
    store.close()
