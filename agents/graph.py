"""The cycle as a LangGraph StateGraph, checkpointed so a killed cycle resumes where it stopped.

    observe -> host_decisions -> detect -> correlate -> verify -> plan -> guard -> propose -> notify -> record

``build_graph(checkpointer)`` is a factory (no module-level graph). The nodes (agents/nodes/)
get their dependencies from the runtime context (``context_schema=Deps``), passed to every
``invoke``. Each run is a thread (``thread_id`` = cycle id); ``run_cycle`` resumes an
unfinished thread first.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from typing import Any, cast

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from agents.deps import Checkpointer, Deps
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
from tools.errors import CycleAborted

log = logging.getLogger("remediator.graph")
INFLIGHT_KEY = "cycle.inflight"

NODES = (observe, host_decisions, detect, correlate, verify, plan, guard, propose, notify, record)

CycleGraph = CompiledStateGraph[CycleState, Deps, CycleState, CycleState]


def build_graph(checkpointer: Checkpointer | None) -> CycleGraph:
    g = StateGraph(CycleState, context_schema=Deps)
    prev = START
    for fn in NODES:
        g.add_node(fn.__name__, fn)
        g.add_edge(prev, fn.__name__)
        prev = fn.__name__
    g.add_edge(prev, END)
    return g.compile(checkpointer=checkpointer)


def run_cycle(deps: Deps, checkpointer: Checkpointer, *, started_at: datetime | None = None) -> dict[str, Any]:
    """Run one cycle to the end and return its report. A cycle left unfinished by a killed
    process is resumed (same cycle id, same evaluation time) instead of starting a new one."""
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
            final = graph.invoke(None, cfg, context=deps)
            deps.store.set_kv(INFLIGHT_KEY, "")
            return build_report(deps, cast(CycleState, final))
    state = new_cycle_state(started_at)
    cfg = {"configurable": {"thread_id": state["cycle_id"]}}
    if not deps.dry_run:
        deps.store.set_kv(INFLIGHT_KEY, state["cycle_id"])
    deps.store.audit.append(stage="cycle", action="started", subject=state["cycle_id"], cycle_id=state["cycle_id"],
                            data={"started_at": state["started_at"], "dry_run": deps.dry_run})
    try:
        final = graph.invoke(state, cfg, context=deps)
    except CycleAborted:
        deps.store.set_kv(INFLIGHT_KEY, "")  # nothing was done; the next run starts afresh
        raise
    deps.store.set_kv(INFLIGHT_KEY, "")
    return build_report(deps, cast(CycleState, final))


__all__ = ["INFLIGHT_KEY", "NODES", "build_graph", "run_cycle"]
