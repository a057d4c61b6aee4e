"""The LLM planner's tools as the plan node offers them in production: the same set as the evals
(query_signal, read_manifest, git_log, similar_incidents), and similar_incidents answering from the
real store with ``kind: null`` meaning any kind, most similar first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agents.nodes.plan import plan, similar_incidents
from memory.records import Incident, RemediationPlan, fingerprint
from memory.store import Store
from tests.fakes.cycle import T0, FakeRepo, cycle_state, make_deps, mis, run, snapshot
from tools.results import CommitInfo

SERVICE = "ml-serving/image-captioner"


def _incident(kind: str, service: str, hours_ago: float, **evidence: Any) -> Incident:
    at = T0 - timedelta(hours=hours_ago)
    return Incident(kind=kind, service=service, severity="warning", status="resolved",
                    fingerprint=fingerprint(kind, service), summary=f"{kind} on {service}", evidence=evidence,
                    opened_at=at, updated_at=at, last_seen_at=at)


def test_similar_incidents_kind_null_is_any_kind_ranked_by_similarity(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")   # the real store, on a file
    deps = make_deps(store=store)
    current = _incident("cost_anomaly", SERVICE, 0, ratio=3.0, window={}, replicas_now=6)
    same_kind_same_service = _incident("cost_anomaly", SERVICE, 48, ratio=2.0, window={}, replicas_now=4)
    same_kind_other_service = _incident("cost_anomaly", "web/checkout", 2, ratio=2.5, window={})
    other_kind_same_service = _incident("model_drift", SERVICE, 1, distance=0.3)
    unrelated = _incident("budget_breach", "web/*", 0.5, projected_percent=120)
    for i in (current, same_kind_same_service, same_kind_other_service, other_kind_same_service, unrelated):
        store.save_incident(i)

    rows = similar_incidents(deps, current, kind=None, service=None, limit=10)

    assert [r["id"] for r in rows] == [same_kind_same_service.id, same_kind_other_service.id,
                                       other_kind_same_service.id, unrelated.id]  # never the incident itself
    assert [r["id"] for r in similar_incidents(deps, current, kind="model_drift", service=None, limit=10)] == [
        other_kind_same_service.id]
    assert [r["id"] for r in similar_incidents(deps, current, kind=None, service="web/*", limit=10)] == [unrelated.id]
    assert len(similar_incidents(deps, current, kind=None, service=None, limit=2)) == 2
    store.close()


class _RecordingPlanner:
    """Stands in for the LLM planner: records the tools it was offered and calls two of them."""

    def __init__(self) -> None:
        self.offered: list[str] = []
        self.answers: dict[str, Any] = {}

    def plan(self, incident: Incident, ctx: Any, tools: Any = None) -> RemediationPlan:
        by_name = {t.name: t for t in tools.specs()}
        self.offered = sorted(by_name)
        self.answers["git_log"] = by_name["git_log"].handler(by_name["git_log"].args_model(service=SERVICE, limit=5))
        self.answers["similar"] = by_name["similar_incidents"].handler(
            by_name["similar_incidents"].args_model(kind=None, service=None, limit=5))
        return RemediationPlan(incident_id=incident.id, playbook="notify_only", rationale="recorded",
                               planner="llm", planner_reason="test")


def test_the_plan_node_offers_the_evals_tools_including_git_log() -> None:
    captioner = mis("image-captioner")
    commits = [CommitInfo(sha="a" * 40, at=datetime(2026, 11, 20, tzinfo=UTC), author="dana <d@x>",
                          subject="raise maxReplicas")]
    repo = FakeRepo(file_log=lambda *, path, limit: commits if path == captioner.file else [])
    planner = _RecordingPlanner()
    deps = make_deps(repo=repo, planner=planner)
    inc = _incident("cost_anomaly", SERVICE, 0, ratio=3.0)
    inc = inc.model_copy(update={"status": "open"})
    deps.store.save_incident(inc)
    deps.store.save_incident(_incident("model_drift", SERVICE, 3, distance=0.2))

    run(plan, cycle_state(snapshot=snapshot([captioner]), touched=[inc.id]), deps)

    assert planner.offered == ["git_log", "query_signal", "read_manifest", "similar_incidents"]
    assert repo.called("file_log") == [{"path": captioner.file, "limit": 5}]
    assert "raise maxReplicas" in planner.answers["git_log"] and "aaaaaaaaaaaa" in planner.answers["git_log"]
    assert "model_drift" in planner.answers["similar"]   # kind null: any kind
