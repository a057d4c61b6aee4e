"""The cycle as a LangGraph StateGraph, checkpointed so a killed cycle resumes where it stopped.

    observe -> detect -> correlate -> plan -> guard -> propose -> notify -> record

``build_graph(deps, checkpointer)`` is a factory (no module-level graph). Each run is a
thread (``thread_id`` = cycle id); ``run_cycle`` resumes an unfinished thread first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph

from agents.checkpoint import sqlite_checkpointer
from agents.cycle import STAGES, CycleAborted, CycleState, Deps, build_report, new_cycle_state

log = logging.getLogger("remediator.graph")
INFLIGHT_KEY = "cycle.inflight"


def build_graph(deps: Deps, checkpointer: BaseCheckpointSaver[Any] | None):  # type: ignore[no-untyped-def]
    g = StateGraph(CycleState)
    prev = START
    for name, fn in STAGES:
        g.add_node(name, _node(deps, fn))
        g.add_edge(prev, name)
        prev = name
    g.add_edge(prev, END)
    return g.compile(checkpointer=checkpointer)


def _node(deps: Deps, fn: Callable[[Deps, CycleState], CycleState]) -> Callable[[CycleState], CycleState]:
    def run(state: CycleState) -> CycleState:
        return fn(deps, state)

    run.__name__ = fn.__name__
    return run


def run_cycle(deps: Deps, checkpointer: BaseCheckpointSaver[Any], *, started_at: datetime | None = None) -> dict[str, Any]:
    """Run one cycle to the end and return its report. A cycle left unfinished by a killed
    process is resumed (same cycle id, same evaluation time) instead of starting a new one."""
    graph = build_graph(deps, checkpointer)
    deps.checkpointer = checkpointer
    inflight = deps.store.get_kv(INFLIGHT_KEY)
    if inflight:
        cfg = {"configurable": {"thread_id": inflight}}
        snap = graph.get_state(cfg)
        if snap.next:
            deps.on_progress(f"resuming unfinished cycle {inflight} at {', '.join(snap.next)}")
            deps.store.audit.append(stage="cycle", action="resumed", subject=inflight, cycle_id=inflight,
                                    data={"next": list(snap.next)})
            final = graph.invoke(None, cfg)
            deps.store.set_kv(INFLIGHT_KEY, "")
            return build_report(deps, final)
    state = new_cycle_state(started_at)
    cfg = {"configurable": {"thread_id": state["cycle_id"]}}
    if not deps.dry_run:
        deps.store.set_kv(INFLIGHT_KEY, state["cycle_id"])
    deps.store.audit.append(stage="cycle", action="started", subject=state["cycle_id"], cycle_id=state["cycle_id"],
                            data={"started_at": state["started_at"], "dry_run": deps.dry_run})
    try:
        final = graph.invoke(state, cfg)
    except CycleAborted:
        deps.store.set_kv(INFLIGHT_KEY, "")  # nothing was done; the next run starts afresh
        raise
    deps.store.set_kv(INFLIGHT_KEY, "")
    return build_report(deps, final)

__all__ = ["INFLIGHT_KEY", "build_graph", "run_cycle", "sqlite_checkpointer"]
