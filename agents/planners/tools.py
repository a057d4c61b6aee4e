"""The model's read-only tools: signal summaries, manifests, git log, similar past incidents.

Each tool wraps a callable the caller passes in; every result is compacted and fenced
(``agents.planners.prompting``) before the model sees it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agents.planners.deterministic import PlanContext
from agents.planners.prompting import compact_evidence, fence_block, neutralise, summarize_points
from tools.errors import ToolError
from tools.llm import ToolSpec

log = logging.getLogger("remediator.planner.llm")  # the planner's logger, as before the split


class QuerySignalArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    service: str = Field(description="namespace/name of a workload")
    signal: Literal["cost", "replicas", "requests", "gpu_util"] = Field(description="which signal")
    window_minutes: int = Field(description="how far back from now, in minutes (5 to 10080)")


class ReadManifestArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    service: str = Field(description="namespace/name of a workload")


class GitLogArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    service: str = Field(description="namespace/name of a workload; the log of its manifest file is returned")
    limit: int = Field(description="how many commits, newest first (1 to 20)")


class SimilarIncidentsArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str | None = Field(description="incident kind, or null for any")
    service: str | None = Field(description="namespace/name, or null for any")
    limit: int = Field(description="how many, newest first (1 to 10)")


QuerySignal = Callable[..., Any]          # (*, service, signal, window_minutes) -> SignalResult | [[ts, v], ...] | None
ReadManifest = Callable[..., Any]         # (*, service) -> dict | None
GitLog = Callable[..., Any]               # (*, file, limit) -> [{commit, at, author, message}]
SimilarIncidents = Callable[..., Any]     # (*, kind, service, limit) -> [{id, kind, service, opened_at, playbook, verdict, outcome, summary}]


class PlannerTools:
    """Read-only tools over callables the caller passes in; each result is compacted and fenced.

    Only tools whose callable is given are offered to the model. A callable that raises a
    ``ToolError`` (or returns None) becomes an error message to the model, never a crash.
    """

    def __init__(self, *, query_signal: QuerySignal | None = None, read_manifest: ReadManifest | None = None,
                 git_log: GitLog | None = None, similar_incidents: SimilarIncidents | None = None,
                 files: Mapping[str, str] | None = None, max_result_chars: int = 1500) -> None:
        self.query_signal = query_signal
        self.read_manifest = read_manifest
        self.git_log = git_log
        self.similar_incidents = similar_incidents
        self.files = dict(files or {})   # service -> manifest file, for git_log
        self.max_result_chars = max_result_chars
        self.calls: list[str] = []

    @classmethod
    def from_context(cls, ctx: PlanContext, *, query_signal: QuerySignal | None = None, git_log: GitLog | None = None,
                     similar_incidents: SimilarIncidents | None = None, read_manifest: ReadManifest | None = None,
                     max_result_chars: int = 1500) -> PlannerTools:
        """Manifests come from the context's workloads unless ``read_manifest`` is given."""
        def manifest(*, service: str) -> Any:
            w = ctx.workloads.get(service)
            if w is None:
                return None
            return {"file": w.file, "document": w.doc.body, **({"hpa": w.hpa.body} if w.hpa is not None else {})}
        return cls(query_signal=query_signal, read_manifest=read_manifest or manifest, git_log=git_log,
                   similar_incidents=similar_incidents, files={k: w.file for k, w in ctx.workloads.items()},
                   max_result_chars=max_result_chars)

    def specs(self) -> list[ToolSpec]:
        out = []
        if self.query_signal is not None:
            out.append(ToolSpec("query_signal", "Summary (statistics, change points, a few points) of one signal of "
                                "one workload over a window ending now. Read-only.", QuerySignalArgs, self._signal))
        if self.read_manifest is not None:
            out.append(ToolSpec("read_manifest", "The workload's manifest as it is in Git (compacted). Read-only.",
                                ReadManifestArgs, self._manifest))
        if self.git_log is not None:
            out.append(ToolSpec("git_log", "Recent commits of the workload's manifest file. Read-only.",
                                GitLogArgs, self._git_log))
        if self.similar_incidents is not None:
            out.append(ToolSpec("similar_incidents", "Past incidents like this one, with the plan chosen and how it "
                                "ended (approved, rejected, verified, reverted). Read-only.",
                                SimilarIncidentsArgs, self._similar))
        return out

    # each handler returns the text the model sees
    def _wrap(self, name: str, fn: Callable[[], Any], source: str) -> str:
        self.calls.append(name)
        try:
            res = fn()
        except ToolError as e:
            return json.dumps({"error": f"{name} failed: {e}"})
        except (KeyError, ValueError, TypeError, AttributeError, OSError) as e:  # a caller-side bug: say so, go on
            log.warning("planner tool %s failed: %s", name, e)
            return json.dumps({"error": f"{name} failed: {type(e).__name__}"})
        if res is None:
            return json.dumps({"error": f"{name}: nothing found"})
        if isinstance(res, str):
            return fence_block(res, source, self.max_result_chars)
        body = compact_evidence(res if isinstance(res, Mapping) else {"items": res},
                                max_chars=self.max_result_chars - 80, source=source + ".")
        return f'<untrusted source="{source}">\n{body}\n</untrusted>'

    def _signal(self, a: BaseModel) -> str:
        assert isinstance(a, QuerySignalArgs)
        window = max(5, min(10080, a.window_minutes))

        def run() -> Any:
            assert self.query_signal is not None
            res = self.query_signal(service=a.service, signal=a.signal, window_minutes=window)
            return signal_summary(res, signal=a.signal, service=a.service, window_minutes=window)
        return self._wrap("query_signal", run, f"tool.query_signal.{a.service}.{a.signal}")

    def _manifest(self, a: BaseModel) -> str:
        assert isinstance(a, ReadManifestArgs)
        assert self.read_manifest is not None
        return self._wrap("read_manifest", lambda: self.read_manifest(service=a.service),  # type: ignore[misc]
                          f"manifest.{a.service}")

    def _git_log(self, a: BaseModel) -> str:
        assert isinstance(a, GitLogArgs)
        file = self.files.get(a.service)
        if file is None:
            self.calls.append("git_log")
            return json.dumps({"error": f"git_log: {neutralise(a.service, 80)} is not a workload in Git"})
        limit = max(1, min(20, a.limit))

        def run() -> Any:
            assert self.git_log is not None
            rows = self.git_log(file=file, limit=limit)
            return None if rows is None else {"file": file, "commits": list(rows)[:limit]}
        return self._wrap("git_log", run, f"git.log.{a.service}")

    def _similar(self, a: BaseModel) -> str:
        assert isinstance(a, SimilarIncidentsArgs)
        limit = max(1, min(10, a.limit))

        def run() -> Any:
            assert self.similar_incidents is not None
            rows = self.similar_incidents(kind=a.kind, service=a.service, limit=limit)
            return None if rows is None else {"incidents": list(rows)[:limit]}
        return self._wrap("similar_incidents", run, "memory.incidents")


def signal_summary(res: Any, *, signal: str, service: str, window_minutes: int) -> dict[str, Any] | None:
    """A SignalResult (or ``[[ts, v], ...]``) as a summary dict; None when there is nothing."""
    if res is None:
        return None
    if isinstance(res, list | tuple):
        pts = [p for p in res if isinstance(p, list | tuple) and len(p) == 2]
        return {"signal": signal, "window_minutes": window_minutes,
                **summarize_points([p[0] for p in pts], [p[1] for p in pts])}
    status = getattr(res, "status", "ok")
    if status == "error":
        raise ToolError(str(getattr(res, "error", "") or "query failed"))
    first = getattr(res, "first", None)
    if status == "no_data" or first is None:
        return {"signal": signal, "window_minutes": window_minutes, "points": 0, "note": "no data"}
    return {"signal": signal, "window_minutes": window_minutes, "series": len(getattr(res, "series", []) or [1]),
            **summarize_points(first.timestamps, first.values)}
