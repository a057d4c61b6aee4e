"""host_decisions: merges, closures and approving reviews done in the Git host become the
incident's decision; Slack is left to notify (the notifier fake forbids every call)."""

from __future__ import annotations

from datetime import timedelta

from agents.deps import Deps
from agents.nodes.host_decisions import host_decisions
from memory.records import Incident, PullRequest, fingerprint
from tests.fakes.cycle import T0, FakePRs, cycle_state, make_deps, run
from tools.errors import TemporaryError

SERVICE = "ml-serving/image-captioner"


def seed(deps: Deps, status: str = "proposed") -> tuple[Incident, PullRequest]:
    inc = Incident(kind="cost_anomaly", service=SERVICE, severity="warning", status=status,
                   fingerprint=fingerprint("cost_anomaly", SERVICE), evidence={"ratio": 2.0},
                   opened_at=T0 - timedelta(hours=2), updated_at=T0 - timedelta(hours=2),
                   last_seen_at=T0 - timedelta(minutes=5))
    pr = PullRequest(branch="remediator/cost-anomaly/ml-serving-image-captioner-x", title="Cap maxReplicas",
                     incident_ids=(inc.id,), files=("apps/ml-serving/image-captioner.yaml",),
                     created_at=T0 - timedelta(hours=1), updated_at=T0 - timedelta(hours=1))
    deps.store.save_incident(inc)
    deps.store.save_pr(pr)
    return inc, pr


def test_without_open_prs_the_host_is_not_asked() -> None:
    deps = make_deps()   # every provider call would raise
    closed = PullRequest(branch="remediator/old", title="old", status="closed")
    deps.store.save_pr(closed)
    assert run(host_decisions, cycle_state(), deps) == {"errors": [], "slack_outcomes": []}


def test_a_pr_merged_in_the_host_is_recorded_as_the_approval_and_its_outcome_queued_for_notify() -> None:
    prs = FakePRs()
    deps = make_deps(prs=prs)
    inc, pr = seed(deps)
    prs.allow("refresh", lambda pr: pr.model_copy(update={"status": "merged"}))   # merge / close: still forbidden
    state = cycle_state()

    out = run(host_decisions, state, deps)

    saved = deps.store.get_pr(pr.id)
    assert saved is not None and saved.status == "merged" and saved.updated_at == T0
    [decision] = deps.store.list_decisions(incident_id=inc.id)
    assert (decision.verdict, decision.actor, decision.source) == ("approve", "git-host", "pr_review")
    assert deps.store.get_incident(inc.id).status == "approved"  # type: ignore[union-attr]
    assert out["errors"] == []
    assert out["slack_outcomes"] == [{"pr_id": pr.id, "text": "PR merged in the Git host (2025-03-03 12:00Z)."}]
    assert [(e.action, e.subject) for e in deps.store.audit.entries() if e.cycle_id == state["cycle_id"]] == [
        ("pr_merged", pr.branch)]


def test_a_pr_closed_in_the_host_rejects_its_incident() -> None:
    deps = make_deps(prs=FakePRs(refresh=lambda pr: pr.model_copy(update={"status": "closed"})))
    inc, pr = seed(deps)
    out = run(host_decisions, cycle_state(), deps)
    assert deps.store.get_incident(inc.id).status == "rejected"  # type: ignore[union-attr]
    assert [d.verdict for d in deps.store.list_decisions(incident_id=inc.id)] == ["reject"]
    assert out["slack_outcomes"][0]["text"].startswith("PR closed in the Git host")


def test_an_approving_review_lands_the_pr_through_the_provider() -> None:
    prs = FakePRs(refresh=lambda pr: pr, reviews=[("bob", "COMMENTED"), ("alice", "APPROVED")],
                  merge=lambda pr: pr.model_copy(update={"status": "merged"}))
    deps = make_deps(prs=prs)
    inc, pr = seed(deps)

    out = run(host_decisions, cycle_state(), deps)

    assert [kw["pr"].id for kw in prs.called("merge")] == [pr.id]
    [decision] = deps.store.list_decisions(incident_id=inc.id)
    assert (decision.verdict, decision.actor) == ("approve", "fake-host:alice")
    assert deps.store.get_pr(pr.id).status == "merged"  # type: ignore[union-attr]
    assert out == {"errors": [], "slack_outcomes": []}   # the PR did not change in the host


def test_a_request_for_changes_blocks_the_review_approval() -> None:
    prs = FakePRs(refresh=lambda pr: pr, reviews=[("alice", "APPROVED"), ("carol", "CHANGES_REQUESTED")])
    deps = make_deps(prs=prs)   # merge forbidden
    inc, _ = seed(deps)
    assert run(host_decisions, cycle_state(), deps) == {"errors": [], "slack_outcomes": []}
    assert deps.store.get_incident(inc.id).status == "proposed"  # type: ignore[union-attr]
    assert deps.store.list_decisions(incident_id=inc.id) == []


def test_an_unreachable_host_is_an_error_and_changes_nothing() -> None:
    deps = make_deps(prs=FakePRs(refresh=TemporaryError("502 from the host", source="host")))
    inc, pr = seed(deps)
    out = run(host_decisions, cycle_state(), deps)
    assert [(e["stage"], e["source"]) for e in out["errors"]] == [("observe", pr.branch)]
    assert "502 from the host" in out["errors"][0]["message"]
    assert deps.store.get_pr(pr.id).status == "open"  # type: ignore[union-attr]
    assert out["slack_outcomes"] == []
