"""The cycle's nodes, one module each, in graph order (see agents/graph.py):

observe -> host_decisions -> detect -> correlate -> verify -> plan -> guard -> propose -> notify -> record

Each node is ``node(state, runtime) -> partial state``: it reads its dependencies from
``runtime.context`` (an ``agents.deps.Deps``) and returns only JSON-able values. Nodes do not
import each other; what several need lives in agents/ (deps, state, history, incidents, edits).
Every node is idempotent (branches are keyed by the incident's fingerprint), so replaying one
after a crash never opens a second PR.
"""
