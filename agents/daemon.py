"""The daemon: APScheduler runs one cycle at a time (missed runs coalesced); SIGTERM/SIGINT let
the cycle in flight finish, then the process exits 0. Beside it, on ``http.host:http.daemon_port``
(0: off), ``/metrics``, ``/healthz`` and ``/readyz`` (agents/probes.py); each cycle's outcome,
duration, findings and errors are counted there."""

from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler

from agents.checkpoint import open_checkpointer
from agents.compose import build_deps, build_repo, open_store
from agents.config import Settings
from agents.graph import run_cycle
from agents.probes import BackgroundServer, Readiness, create_probe_app, daemon_registry, listen
from memory.errors import StoreBusy
from tools.errors import CycleAborted, CycleFailed, ToolError

log = logging.getLogger("remediator.daemon")


def run_daemon(settings: Settings) -> None:
    stop = threading.Event()
    store = open_store(settings)
    lock = threading.Lock()
    registry, cycles = daemon_registry(settings, lambda: store)
    server: BackgroundServer | None = None
    if settings.http.daemon_port:
        repo = build_repo(settings)
        readiness = Readiness(settings=settings, store=lambda: store, git=repo.reachable, cycles=cycles)
        server = BackgroundServer(create_probe_app(readiness, registry),
                                  listen(settings.http.host, settings.http.daemon_port))

    def cycle() -> None:
        if stop.is_set() or not lock.acquire(blocking=False):
            return
        t0 = time.monotonic()
        try:
            deps = build_deps(settings, store=store)
            with open_checkpointer(settings) as cp:
                report = run_cycle(deps, cp)
            cycles.record("ok", duration_s=time.monotonic() - t0, report=report)
            log.info("cycle %s: %d findings, %d incidents, %d PRs, %d errors", report["cycle_id"],
                     len(report["findings"]), len(report["incidents"]), len(report["pull_requests"]), len(report["errors"]),
                     extra={"cycle_id": report["cycle_id"]})
        except StoreBusy as e:
            cycles.record("busy")
            log.warning("skipping this tick: %s", e)
        except CycleFailed as e:
            cycles.record("failed", duration_s=time.monotonic() - t0, failed_stage=e.stage)
            log.error("cycle failed: %s (next try in %s)", e, settings.scheduler.interval)
        except (CycleAborted, ToolError) as e:
            cycles.record("aborted", failed_stage="observe")
            log.error("cycle could not run: %s (next try in %s)", e, settings.scheduler.interval)
        except Exception:
            cycles.record("failed", duration_s=time.monotonic() - t0, failed_stage="cycle")
            log.exception("cycle failed; the daemon keeps running")
        finally:
            lock.release()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s: finishing the cycle in flight, then exiting", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if server is not None:
        server.start()
        log.info("serving /metrics, /healthz, /readyz on http://%s", server.address)
    sched = BackgroundScheduler(timezone=UTC)
    sched.add_job(cycle, "interval", seconds=settings.scheduler.interval.total_seconds(), id="cycle",
                  max_instances=1, coalesce=True, misfire_grace_time=None, next_run_time=datetime.now(UTC))
    sched.start()
    log.info("daemon started: a cycle every %s; state in %s", settings.scheduler.interval, settings.state_dir)
    try:
        while not stop.wait(1.0):
            pass
        sched.shutdown(wait=True)  # waits for the running cycle
    finally:
        if server is not None:
            server.stop()
    store.audit.append(stage="daemon", action="stopped", subject="signal")
    log.info("daemon stopped")
