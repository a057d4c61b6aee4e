"""Fakes for unit tests of the cycle's nodes (agents/nodes/): adapters that fail when called
unexpectedly.

Every method of a fake raises ``AssertionError("<adapter>.<method> must not be called")`` unless
the test scripted it, so a test also proves which outside systems a node leaves alone (observe
never touches PRs, host_decisions never talks to Slack, a dry run never publishes). A scripted
answer is a value (returned), an exception instance (raised) or a callable (called with the
method's keyword arguments; its result is returned). Every call is recorded in ``calls``.

``make_deps(**overrides)`` builds a real ``Deps`` around a migrated in-memory SQLite ``Store``,
minimal validated settings and the real playbooks, with every adapter forbidden.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.runtime import Runtime

from agents.config import Settings, validate_settings
from agents.deps import Checkpointer, Deps
from agents.state import CycleState, new_cycle_state
from memory.store import Store
from playbooks.loader import load_playbooks
from tools.results import ManifestDoc

T0 = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)   # the evaluation time of the tests' cycles

_PLAYBOOKS = load_playbooks()


class Forbidden:
    """Base of the fakes: a method is forbidden unless ``script`` answers it."""

    adapter = "adapter"

    def __init__(self, **script: Any) -> None:
        self.script: dict[str, Any] = dict(script)
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def allow(self, method: str, answer: Any = None) -> Forbidden:
        self.script[method] = answer
        return self

    def forbid(self, method: str) -> Forbidden:
        self.script.pop(method, None)
        return self

    def called(self, method: str) -> list[dict[str, Any]]:
        """The keyword arguments of each call of ``method``."""
        return [kw for m, kw in self.calls if m == method]

    def _answer(self, method: str, **kw: Any) -> Any:
        self.calls.append((method, kw))
        if method not in self.script:
            raise AssertionError(f"{self.adapter}.{method} must not be called")
        answer = self.script[method]
        if isinstance(answer, BaseException):
            raise answer
        if callable(answer):
            return answer(**kw)
        return answer

    def __getattr__(self, name: str) -> Callable[..., Any]:
        # a method the fake does not even declare (a Protocol member added later) is forbidden too
        if name.startswith("_"):
            raise AttributeError(name)

        def forbidden(*args: Any, **kw: Any) -> Any:
            raise AssertionError(f"{self.adapter}.{name} must not be called")

        return forbidden


class FakeMetrics(Forbidden):
    adapter = "metrics"
    name = "fake-metrics"

    def check(self) -> None:
        return self._answer("check")

    def workload_cost(self, **kw: Any) -> Any:
        return self._answer("workload_cost", **kw)

    def workload_replicas(self, **kw: Any) -> Any:
        return self._answer("workload_replicas", **kw)

    def request_rate(self, **kw: Any) -> Any:
        return self._answer("request_rate", **kw)

    def gpu_utilisation(self, **kw: Any) -> Any:
        return self._answer("gpu_utilisation", **kw)

    def prediction_counters(self, **kw: Any) -> Any:
        return self._answer("prediction_counters", **kw)

    def outcome_counters(self, **kw: Any) -> Any:
        return self._answer("outcome_counters", **kw)

    def explanation_counters(self, **kw: Any) -> Any:
        return self._answer("explanation_counters", **kw)


class FakeRepo(Forbidden):
    adapter = "repo"
    remote = "fake-remote.git"

    def sync(self) -> Any:
        return self._answer("sync")

    def read_file(self, **kw: Any) -> Any:
        return self._answer("read_file", **kw)

    def read_tree(self) -> Any:
        return self._answer("read_tree")

    def field_history(self, **kw: Any) -> Any:
        return self._answer("field_history", **kw)

    def file_log(self, **kw: Any) -> Any:
        return self._answer("file_log", **kw)

    def reachable(self, **kw: Any) -> Any:
        return self._answer("reachable", **kw)


class FakePRs(Forbidden):
    adapter = "prs"
    name = "fake-host"

    def publish(self, **kw: Any) -> Any:
        return self._answer("publish", **kw)

    def refresh(self, **kw: Any) -> Any:
        return self._answer("refresh", **kw)

    def reviews(self, **kw: Any) -> Any:
        return self._answer("reviews", **kw)

    def close(self, **kw: Any) -> Any:
        return self._answer("close", **kw)

    def merge(self, **kw: Any) -> Any:
        return self._answer("merge", **kw)

    def diff(self, **kw: Any) -> Any:
        return self._answer("diff", **kw)


class FakeAuditLog(Forbidden):
    adapter = "auditlog"

    def __init__(self, *, last_problems: list[str] | None = None, **script: Any) -> None:
        super().__init__(**script)
        self.last_problems = list(last_problems or [])

    def read(self, **kw: Any) -> Any:
        return self._answer("read", **kw)


class FakeNotifier(Forbidden):
    adapter = "notifier"

    def notify(self, **kw: Any) -> Any:
        return self._answer("notify", **kw)

    def post_message(self, **kw: Any) -> Any:
        return self._answer("post_message", **kw)

    def update_message(self, **kw: Any) -> Any:
        return self._answer("update_message", **kw)


class FakeAnchors(Forbidden):
    adapter = "anchors"
    location = "fake-remote.git refs/remediator/audit-anchors"

    def write(self, **kw: Any) -> Any:
        return self._answer("write", **kw)

    def read(self) -> Any:
        return self._answer("read")


def make_settings(**sections: dict[str, Any]) -> Settings:
    """Minimal valid settings; each keyword replaces one section (``slack={"enabled": True}``)."""
    data: dict[str, Any] = {"gitops": {"remote": "fake-remote.git", "branch": "main", "provider": "local"},
                            "memory": {"url": "sqlite://"}, "llm": {"provider": "none"},
                            "slack": {"enabled": False}, "auditlog": {"paths": []}}
    data.update(sections)
    return validate_settings(data, source="test")


def in_memory_checkpoints() -> Callable[[], AbstractContextManager[Checkpointer]]:
    """``Deps.open_checkpointer`` for approval threads kept in memory (one saver per Deps)."""
    saver = InMemorySaver()
    return lambda: nullcontext(saver)


def make_deps(*, settings: Settings | None = None, store: Store | None = None, **overrides: Any) -> Deps:
    """A real Deps: in-memory Store, minimal settings, real playbooks, every adapter forbidden,
    no retry sleeps. ``overrides`` replace any other field (``prs=FakePRs(refresh=...)``)."""
    fields: dict[str, Any] = {
        "metrics": FakeMetrics(), "repo": FakeRepo(), "prs": FakePRs(), "auditlog": FakeAuditLog(),
        "notifier": FakeNotifier(), "playbooks": _PLAYBOOKS, "retry_base_s": 0.0,
        "open_checkpointer": in_memory_checkpoints(), "on_progress": lambda msg: None,
    }
    fields.update(overrides)
    return Deps(settings=settings or make_settings(), store=store or Store.open("sqlite://"), **fields)


def run(node: Callable[[CycleState, Runtime[Deps]], CycleState], state: CycleState, deps: Deps) -> CycleState:
    """Call one node the way the graph does."""
    return node(state, Runtime(context=deps))


# ----------------------------------------------------------------------------- snapshots

def manifest(kind: str, name: str, *, namespace: str = "ml-serving", file: str | None = None,
             labels: dict[str, str] | None = None, spec: dict[str, Any] | None = None,
             api_version: str = "ai.apexlogic.com/v1alpha1", index: int = 0) -> ManifestDoc:
    labels = dict(labels or {})
    body = {"apiVersion": api_version, "kind": kind,
            "metadata": {"name": name, "namespace": namespace, "labels": labels}, "spec": dict(spec or {})}
    return ManifestDoc(file=file or f"apps/{namespace}/{name}.yaml", index=index, kind=kind, api_version=api_version,
                       name=name, namespace=namespace, labels=labels, body=body)


def mis(name: str, *, min_replicas: int = 2, max_replicas: int = 6, labels: dict[str, str] | None = None,
        namespace: str = "ml-serving") -> ManifestDoc:
    """A MultimodalInferenceService with autoscaling bounds (no drift / fairness checks)."""
    return manifest("MultimodalInferenceService", name, namespace=namespace, labels=labels, spec={
        "modelRef": {"name": name.replace("-", "_"), "version": "1.0.0"},
        "resourceRequests": {"cpu": "4", "memory": "16Gi", "gpu": "1"},
        "autoscaling": {"minReplicas": min_replicas, "maxReplicas": max_replicas}})


def mis_yaml(doc: ManifestDoc) -> str:
    """The file text of a ``mis()`` document, for a scripted ``repo.read_file``."""
    a = doc.body["spec"]["autoscaling"]
    return (f"apiVersion: {doc.api_version}\nkind: {doc.kind}\nmetadata:\n  name: {doc.name}\n"
            f"  namespace: {doc.namespace}\nspec:\n  autoscaling:\n    minReplicas: {a['minReplicas']}\n"
            f"    maxReplicas: {a['maxReplicas']}\n")


def snapshot(manifests: list[ManifestDoc], *, commit: str = "c0ffee0", budgets: list[dict[str, Any]] | None = None,
             guardrails: dict[str, Any] | None = None, effective: dict[str, Any] | None = None) -> dict[str, Any]:
    """``state["snapshot"]`` the way observe builds it."""
    return {"commit": commit, "manifests": [asdict(m) for m in manifests], "budgets": list(budgets or []),
            "guardrails": dict(guardrails or {}), "effective": dict(effective or {})}


def cycle_state(at: datetime = T0, **values: Any) -> CycleState:
    """A fresh cycle's state at ``at`` plus ``values`` (``snapshot=...``, ``touched=[...]``)."""
    state = new_cycle_state(at)
    state.update(values)  # type: ignore[typeddict-item]
    return state
