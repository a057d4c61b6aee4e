"""The daemon: APScheduler runs one cycle at a time (missed runs coalesced); SIGTERM/SIGINT let
the cycle in flight finish, then the process exits 0."""

from __future__ import annotations

import logging
import signal
import threading
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler

from agents.checkpoint import open_checkpointer
from agents.compose import build_deps, open_store
from agents.config import Settings
from agents.graph import run_cycle
from memory.errors import StoreBusy
from tools.errors import CycleAborted, ToolError

log = logging.getLogger("remediator.daemon")


def run_daemon(settings: Settings) -> None:
    stop = threading.Event()
    store = open_store(settings)
    lock = threading.Lock()

    def cycle() -> None:
        if stop.is_set() or not lock.acquire(blocking=False):
            return
        try:
            deps = build_deps(settings, store=store)
            with open_checkpointer(settings) as cp:
                report = run_cycle(deps, cp)
            log.info("cycle %s: %d findings, %d incidents, %d PRs, %d errors", report["cycle_id"],
                     len(report["findings"]), len(report["incidents"]), len(report["pull_requests"]), len(report["errors"]))
        except StoreBusy as e:
            log.warning("skipping this tick: %s", e)
        except (CycleAborted, ToolError) as e:
            log.error("cycle could not run: %s (next try in %s)", e, settings.scheduler.interval)
        except Exception:
            log.exception("cycle failed; the daemon keeps running")
        finally:
            lock.release()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s: finishing the cycle in flight, then exiting", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sched = BackgroundScheduler(timezone=UTC)
    sched.add_job(cycle, "interval", seconds=settings.scheduler.interval.total_seconds(), id="cycle",
                  max_instances=1, coalesce=True, misfire_grace_time=None, next_run_time=datetime.now(UTC))
    sched.start()
    log.info("daemon started: a cycle every %s; state in %s", settings.scheduler.interval, settings.state_dir)
    while not stop.wait(1.0):
        pass
    sched.shutdown(wait=True)  # waits for the running cycle
    store.audit.append(stage="daemon", action="stopped", subject="signal")
    log.info("daemon stopped")
