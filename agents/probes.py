"""The daemon's own HTTP endpoint: ``/metrics``, ``/healthz`` (alive) and ``/readyz`` (store and
Git remote reachable, a cycle ended within two scheduler intervals), served by uvicorn in a
background thread on ``http.host:http.daemon_port``.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, ProcessCollector
from sqlalchemy.exc import SQLAlchemyError

from agents.config import ConfigError, Settings
from agents.metrics import CycleMetrics, StoreCollector, render
from memory.store import Store
from tools.errors import ToolError, scrub

log = logging.getLogger("remediator.probes")
GIT_CHECK_TTL_S = 15.0


class Readiness:
    """The checks behind ``/readyz``; each answers None (fine) or what is wrong."""

    def __init__(self, *, settings: Settings, store: Callable[[], Store], git: Callable[[], str | None],
                 cycles: CycleMetrics | None, clock: Callable[[], float] = time.time) -> None:
        self.settings, self.store, self.git, self.cycles, self.clock = settings, store, git, cycles, clock
        self._git_cache: tuple[float, str | None] | None = None
        self._git_lock = threading.Lock()

    def store_problem(self) -> str | None:
        path = self.settings.memory.sqlite_path
        if path is not None and not path.exists():
            return f"the store file {path} is gone"
        try:
            self.store().get_kv("readyz")
        except (SQLAlchemyError, OSError) as e:
            return f"the store does not answer: {scrub(str(e))[:300]}"
        return None

    def git_problem(self) -> str | None:
        with self._git_lock:   # one ls-remote at a time, its answer kept a few seconds
            now = self.clock()
            if self._git_cache is None or now - self._git_cache[0] > GIT_CHECK_TTL_S:
                try:
                    self._git_cache = (now, self.git())
                except ToolError as e:
                    self._git_cache = (now, scrub(str(e)))
            return self._git_cache[1]

    def cycle_problem(self) -> str | None:
        if self.cycles is None:   # `serve` runs no cycles
            return None
        limit = 2 * self.settings.scheduler.interval.total_seconds()
        last = self.cycles.last_end_at
        since = self.clock() - (last if last is not None else self.cycles.started)
        if since > limit:
            what = f"the last cycle ended {since:.0f}s ago" if last is not None else \
                f"no cycle has ended since the daemon started {since:.0f}s ago"
            return f"{what} (more than 2 scheduler intervals, {limit:.0f}s)"
        return None

    def check(self) -> tuple[bool, dict[str, str]]:
        checks = {"store": self.store_problem(), "git": self.git_problem()}
        if self.cycles is not None:
            checks["cycle"] = self.cycle_problem()
        return all(v is None for v in checks.values()), {k: v or "ok" for k, v in checks.items()}


def create_probe_app(readiness: Readiness, registry: CollectorRegistry) -> FastAPI:
    app = FastAPI(title="remediator daemon", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    add_readiness_and_metrics(app, readiness, registry)
    return app


def add_readiness_and_metrics(app: FastAPI, readiness: Readiness, registry: CollectorRegistry) -> None:
    """``/readyz`` (503 naming what is not ready) and ``/metrics``: the daemon's probe app and serve's."""

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        try:
            ok, checks = readiness.check()
        except (ToolError, ConfigError, OSError, SQLAlchemyError) as e:   # the deps could not even be built
            ok, checks = False, {"deps": scrub(str(e))[:300]}
        if not ok:
            log.warning("not ready: %s", "; ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok"))
        return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks},
                            status_code=200 if ok else 503)

    @app.get("/metrics")
    def metrics() -> Response:
        data, ctype = render(registry)
        return Response(content=data, media_type=ctype)


def daemon_registry(settings: Settings, store: Callable[[], Store]) -> tuple[CollectorRegistry, CycleMetrics]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, monthly_budget_usd=settings.llm.monthly_budget_usd))
    ProcessCollector(registry=registry)   # process_* (CPU, memory, fds, start time) of the daemon
    return registry, CycleMetrics(registry)


def listen(host: str, port: int, *, key: str = "http.daemon_port") -> socket.socket:
    """A listening socket, or ConfigError naming ``http.host`` / ``key``."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ConfigError(f"http.host: cannot resolve {host!r} ({e.strerror})") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise ConfigError(f"http.host / {key}: cannot listen on {host}:{port} ({e.strerror})") from None
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


class BackgroundServer:
    """uvicorn on an already bound socket, in a daemon thread (no signal handlers: the daemon owns them)."""

    def __init__(self, app: Any, sock: socket.socket) -> None:
        import uvicorn

        self.sock = sock
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                                    server_header=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True,
                                       name="remediator-probes")

    @property
    def address(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"{host}:{port}"

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout_s)
        self.sock.close()


__all__ = ["BackgroundServer", "Readiness", "create_probe_app", "daemon_registry", "listen"]
