"""What the cycle's nodes depend on: the adapters and settings, built once by the composition
root (``agents.compose.build_deps``) and handed to the LangGraph graph as its runtime context
(``context_schema``). Frozen: nothing is set after construction (a run that needs another
checkpointer makes a copy with ``dataclasses.replace``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

from langgraph.checkpoint.base import BaseCheckpointSaver

from agents.config import Settings
from agents.planners.deterministic import PlanContext
from agents.planners.tools import PlannerTools
from agents.state import CycleState, ViewCache
from memory.records import Incident, RemediationPlan
from memory.store import Store
from playbooks.schema import Playbook
from tools.errors import TemporaryError
from tools.protocols import (
    AuditAnchors,
    AuditLog,
    EmbeddingSource,
    GitOpsRepo,
    MetricsSource,
    Notifier,
    PullRequests,
)

log = logging.getLogger("remediator.cycle")
T = TypeVar("T")

Checkpointer = BaseCheckpointSaver[str]


class Planner(Protocol):
    """An incident -> plan planner (the LLM planner; it falls back to the deterministic one)."""

    def plan(self, incident: Incident, ctx: PlanContext, tools: PlannerTools | None = None) -> RemediationPlan: ...


def log_progress(msg: str) -> None:
    log.info(msg)


def _no_checkpoints() -> AbstractContextManager[Checkpointer]:
    raise RuntimeError("no checkpoint store configured (the composition root sets Deps.open_checkpointer)")


@dataclass(frozen=True)
class Deps:
    settings: Settings
    store: Store
    metrics: MetricsSource
    repo: GitOpsRepo
    prs: PullRequests
    auditlog: AuditLog
    playbooks: dict[str, Playbook]
    notifier: Notifier | None = None
    planner: Planner | None = None     # None: the deterministic planner decides
    anchors: AuditAnchors | None = None  # None: the audit chain head is not anchored outside the store
    embeddings: EmbeddingSource | None = None   # None: embedding drift is not tested
    dry_run: bool = False
    retries: int = 3
    retry_base_s: float = 0.5
    # the live checkpointer of a running cycle (approval threads live beside the cycle's) and how
    # to open one outside a cycle (a decision from Slack / the CLI)
    checkpointer: Checkpointer | None = None
    open_checkpointer: Callable[[], AbstractContextManager[Checkpointer]] = _no_checkpoints
    on_progress: Callable[[str], None] = log_progress
    # where a dry run shows each PR it would open (diff and body); None: on_progress
    on_preview: Callable[[str], None] | None = None
    views: ViewCache = field(default_factory=ViewCache, compare=False)

    def checkpoints(self) -> AbstractContextManager[Checkpointer]:
        """The live checkpointer when inside a cycle, else a freshly opened one."""
        if self.checkpointer is not None:
            return _Borrowed(self.checkpointer)
        return self.open_checkpointer()


class _Borrowed(AbstractContextManager[Checkpointer]):
    def __init__(self, cp: Checkpointer) -> None:
        self.cp = cp

    def __enter__(self) -> Checkpointer:
        return self.cp

    def __exit__(self, *exc: object) -> None:
        return None


def retrying(deps: Deps, what: str, fn: Callable[[], T], retries: int | None = None) -> T:
    """Retry TemporaryErrors with exponential backoff; re-raise the last one."""
    retries = deps.retries if retries is None else retries
    for attempt in range(retries + 1):
        try:
            return fn()
        except TemporaryError as e:
            if attempt == retries:
                raise
            delay = max(e.delay, deps.retry_base_s) * (2**attempt) if deps.retry_base_s else 0
            log.warning("%s failed (%s); retrying in %.1fs", what, e, delay)
            time.sleep(min(delay, 10))
    raise AssertionError("unreachable")


def audit(deps: Deps, state: CycleState, stage: str, action: str, subject: str = "", **data: Any) -> int:
    """Append one entry to the audit chain for this cycle; returns its sequence number."""
    return deps.store.audit.append(stage=stage, action=action, subject=subject, data=data,
                                   cycle_id=state["cycle_id"]).seq


def now_of(state: CycleState) -> datetime:
    return datetime.fromisoformat(state["started_at"])


__all__ = ["Checkpointer", "Deps", "Planner", "audit", "now_of", "retrying"]
