"""propose: accepted plans become PRs through the provider; a dry run shows the change and
publishes nothing; Slack is left to notify (the notifier fake forbids every call)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from agents.nodes.propose import propose
from memory.records import FieldEdit, Incident, PullRequest, RemediationPlan, branch_name, fingerprint
from tests.fakes.cycle import T0, FakePRs, FakeRepo, cycle_state, make_deps, mis, mis_yaml, run, snapshot
from tools.results import PublishResult

SERVICE = "ml-serving/image-captioner"
CAPTIONER = mis("image-captioner", min_replicas=2, max_replicas=6)


def seed(deps: Any, verdict: str = "accepted", reasons: tuple[str, ...] = ()) -> tuple[Incident, RemediationPlan]:
    inc = Incident(kind="cost_anomaly", service=SERVICE, severity="warning", status="open",
                   fingerprint=fingerprint("cost_anomaly", SERVICE), summary="cost x2.4", evidence={"ratio": 2.4},
                   opened_at=T0 - timedelta(hours=1), updated_at=T0, last_seen_at=T0)
    p = RemediationPlan(incident_id=inc.id, playbook="cap_max_replicas", guard_verdict=verdict, guard_reasons=reasons,
                        params={"targets": {SERVICE: {"max_replicas": 3}}}, rationale="Cap maxReplicas 6 -> 3.",
                        edits=(FieldEdit(file=CAPTIONER.file, doc_kind=CAPTIONER.kind, doc_name=CAPTIONER.name,
                                         path=("spec", "autoscaling", "maxReplicas"), old=6, new=3),))
    deps.store.save_incident(inc)
    deps.store.save_plan(p)
    return inc, p


def state_of(p: RemediationPlan) -> Any:
    return cycle_state(snapshot=snapshot([CAPTIONER]), plans=[p.model_dump(mode="json")])


def test_dry_run_shows_the_change_and_never_publishes() -> None:
    progress: list[str] = []
    repo = FakeRepo(read_file=lambda path, ref=None: mis_yaml(CAPTIONER) if path == CAPTIONER.file else None)
    deps = make_deps(dry_run=True, repo=repo, on_progress=progress.append)   # prs.publish forbidden
    inc, p = seed(deps)

    out = run(propose, state_of(p), deps)

    branch = branch_name(inc.kind, inc.service, inc.fingerprint)
    assert f"dry-run: would publish {branch} ({CAPTIONER.file})" in progress
    [shown] = [m for m in progress if m.startswith(f"=== would open PR {branch}: ")]
    assert "-    maxReplicas: 6\n+    maxReplicas: 3" in shown
    assert f"--- a/{CAPTIONER.file}\n+++ b/{CAPTIONER.file}\n" in shown
    assert "\n--- PR body ---\n" in shown and shown.endswith(f"=== end of {branch}\n")
    assert out == {"pr_ids": [], "errors": [], "slack_posts": []}
    assert deps.store.get_incident(inc.id).status == "open"  # type: ignore[union-attr]
    assert deps.store.list_prs() == []


def test_an_accepted_plan_is_published_and_its_approval_message_queued_for_notify() -> None:
    prs = FakePRs(publish=lambda **kw: PublishResult(
        pr=PullRequest(branch=kw["branch"], title=kw["title"], head_sha="f00d", created_at=T0, updated_at=T0),
        pushed=True))
    deps = make_deps(repo=FakeRepo(read_file=mis_yaml(CAPTIONER)), prs=prs)
    inc, p = seed(deps)
    state = state_of(p)

    out = run(propose, state, deps)

    [call] = prs.called("publish")
    assert call["branch"] == branch_name(inc.kind, inc.service, inc.fingerprint) and call["existing"] is None
    assert list(call["incident_ids"]) == [inc.id] and "cost_anomaly" in call["labels"]
    assert "maxReplicas: 3" in call["files"][CAPTIONER.file]
    [pr] = deps.store.list_prs()
    assert out == {"pr_ids": [pr.id], "errors": [], "slack_posts": [{"pr_id": pr.id, "plan_id": p.id}]}
    assert (pr.incident_ids, pr.files) == ((inc.id,), (CAPTIONER.file,))
    assert deps.store.get_incident(inc.id).status == "proposed"  # type: ignore[union-attr]
    assert [(e.action, e.subject) for e in deps.store.audit.entries() if e.stage == "propose"] == [("pr_opened", pr.id)]


def test_a_deferred_plan_is_an_error_of_stage_guard_and_touches_nothing() -> None:
    deps = make_deps()   # repo and provider forbidden
    inc, p = seed(deps, verdict="deferred", reasons=("5 PRs open (limit max_open_prs=5); waiting",))
    out = run(propose, state_of(p), deps)
    assert out == {"pr_ids": [], "slack_posts": [],
                   "errors": [{"stage": "guard", "source": inc.id, "message": "5 PRs open (limit max_open_prs=5); waiting"}]}


def test_a_notify_only_plan_is_not_proposed() -> None:
    deps = make_deps()
    _, p = seed(deps, verdict="notify_only", reasons=("protected",))
    assert run(propose, state_of(p), deps) == {"pr_ids": [], "errors": [], "slack_posts": []}
