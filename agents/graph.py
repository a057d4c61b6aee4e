"""The cycle as a LangGraph StateGraph, checkpointed so a killed cycle resumes where it stopped.

    observe -> host_decisions -> detect -> correlate -> verify -> plan -> guard -> propose -> notify -> record

``build_graph(checkpointer)`` is a factory (no module-level graph). The nodes (agents/nodes/)
get their dependencies from the runtime context (``context_schema=Deps``), passed to every
``invoke``. Each run is a thread (``thread_id`` = cycle id); ``run_cycle`` resumes an
unfinished thread first.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from langgraph.errors import GraphBubbleUp
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime

from agents.deps import Checkpointer, Deps
from agents.logs import cycle_scope
from agents.nodes.correlate import correlate
from agents.nodes.detect import detect
from agents.nodes.guard import guard
from agents.nodes.host_decisions import host_decisions
from agents.nodes.notify import notify
from agents.nodes.observe import observe
from agents.nodes.plan import plan
from agents.nodes.propose import propose
from agents.nodes.record import build_report, record
from agents.nodes.verify import verify
from agents.state import CycleState, new_cycle_state
from tools.errors import CycleAborted, CycleFailed, printable, scrub

log = logging.getLogger("remediator.graph")
INFLIGHT_KEY = "cycle.inflight"

NODES = (observe, host_decisions, detect, correlate, verify, plan, guard, propose, notify, record)

CycleGraph = CompiledStateGraph[CycleState, Deps, CycleState, CycleState]


class Node(Protocol):
    __name__: str

    def __call__(self, state: CycleState, runtime: Runtime[Deps]) -> CycleState: ...


class StageError(Exception):
    """A node raised something unexpected. Carries only its type and message, scrubbed of credentials
    and control characters: LangGraph keeps a failed node's exception in the checkpoint, and the
    original (a URL with a password in an error message) must not be written there."""


def guarded(fn: Node) -> Node:
    """``fn`` with any unexpected exception replaced by a StageError (LangGraph's control flow and
    CycleAborted, whose messages are already scrubbed, pass through)."""
    @functools.wraps(fn)
    def node(state: CycleState, runtime: Runtime[Deps]) -> CycleState:
        try:
            return fn(state, runtime)
        except (GraphBubbleUp, CycleAborted, StageError):
            raise
        except Exception as e:
            raise StageError(printable(scrub(f"{type(e).__name__}: {e}"))[:500]) from e
    return node


def build_graph(checkpointer: Checkpointer | None) -> CycleGraph:
    g = StateGraph(CycleState, context_schema=Deps)
    prev = START
    for fn in NODES:
        g.add_node(fn.__name__, guarded(fn))
        g.add_edge(prev, fn.__name__)
        prev = fn.__name__
    g.add_edge(prev, END)
    return g.compile(checkpointer=checkpointer)


def run_cycle(deps: Deps, checkpointer: Checkpointer, *, started_at: datetime | None = None,
              wait: bool = False) -> dict[str, Any]:
    """Run one cycle to the end and return its report, holding the store's cycle lock (another
    process running a cycle on the same store: StoreBusy naming it, or wait with ``wait``). A cycle
    left unfinished by a process that died is resumed (same cycle id, same evaluation time); a
    cycle whose stage raised is not: it is recorded as failed (CycleFailed) and the next run is fresh."""
    owner = f"pid {os.getpid()} on {socket.gethostname()} since {datetime.now(UTC):%Y-%m-%d %H:%M:%S}Z"
    with deps.store.cycle_lock(owner=owner, wait=wait):
        return _run_cycle(deps, checkpointer, started_at=started_at)


def _run_cycle(deps: Deps, checkpointer: Checkpointer, *, started_at: datetime | None) -> dict[str, Any]:
    deps = replace(deps, checkpointer=checkpointer)
    graph = build_graph(checkpointer)
    inflight = deps.store.get_kv(INFLIGHT_KEY)
    if inflight:
        cfg: Any = {"configurable": {"thread_id": inflight}}
        snap = graph.get_state(cfg)
        if snap.next:
            deps.on_progress(f"resuming unfinished cycle {inflight} at {', '.join(snap.next)}")
            deps.store.audit.append(stage="cycle", action="resumed", subject=inflight, cycle_id=inflight,
                                    data={"next": list(snap.next)})
            final = _invoke(deps, graph, None, cfg, cycle_id=inflight, started_at=snap.values.get("started_at"))
            deps.store.set_kv(INFLIGHT_KEY, "")
            return build_report(deps, final)
    state = new_cycle_state(started_at)
    cfg = {"configurable": {"thread_id": state["cycle_id"]}}
    if not deps.dry_run:
        deps.store.set_kv(INFLIGHT_KEY, state["cycle_id"])
    deps.store.audit.append(stage="cycle", action="started", subject=state["cycle_id"], cycle_id=state["cycle_id"],
                            data={"started_at": state["started_at"], "dry_run": deps.dry_run})
    final = _invoke(deps, graph, state, cfg, cycle_id=state["cycle_id"], started_at=state["started_at"])
    deps.store.set_kv(INFLIGHT_KEY, "")
    if not deps.dry_run:
        prune_checkpoints(deps, checkpointer)
    return build_report(deps, final)


def prune_checkpoints(deps: Deps, checkpointer: Checkpointer) -> None:
    """Delete the checkpoint threads of finished cycles beyond the ``memory.keep_cycle_checkpoints``
    most recent, so the checkpoint store stays bounded (approval threads are kept: they wait)."""
    keep = deps.settings.memory.keep_cycle_checkpoints
    for old in deps.store.cycle_ids(offset=keep, limit=20):   # the ones that just fell out of the window
        checkpointer.delete_thread(old)


def _invoke(deps: Deps, graph: CycleGraph, state: CycleState | None, cfg: Any, *, cycle_id: str,
            started_at: str | None) -> CycleState:
    """Run the graph; a stage that raises ends the cycle (recorded, marker cleared, CycleFailed).
    Only a process that dies (a signal, BaseException) leaves the marker for the next run to resume."""
    try:
        with cycle_scope(cycle_id):
            return cast(CycleState, graph.invoke(state, cfg, context=deps))
    except CycleAborted:
        deps.store.set_kv(INFLIGHT_KEY, "")  # nothing was done; the next run starts afresh
        raise
    except Exception as e:
        stage = ", ".join(graph.get_state(cfg).next) or "?"
        message = str(e) if isinstance(e, StageError) else printable(scrub(f"{type(e).__name__}: {e}"))[:500]
        log.error("cycle %s failed in stage %s: %s", cycle_id, stage, message, exc_info=log.isEnabledFor(logging.DEBUG),
                  extra={"cycle_id": cycle_id})
        deps.store.set_kv(INFLIGHT_KEY, "")
        deps.store.audit.append(stage="cycle", action="failed", subject=cycle_id, cycle_id=cycle_id,
                                data={"stage": stage, "error": message})
        if not deps.dry_run:
            started = datetime.fromisoformat(started_at) if started_at else datetime.now(UTC)
            deps.store.save_cycle(cycle_id=cycle_id, started_at=started, finished_at=datetime.now(UTC), report={
                "cycle_id": cycle_id, "started_at": started_at, "findings": [], "incidents": [], "pull_requests": [],
                "notifications": [], "errors": [{"stage": stage, "source": "cycle", "message": message}]})
        raise CycleFailed(f"cycle {cycle_id} failed in stage {stage} ({message}); it is recorded, and the next "
                          "run starts a fresh cycle", stage=stage) from e


__all__ = ["INFLIGHT_KEY", "NODES", "StageError", "build_graph", "run_cycle"]
