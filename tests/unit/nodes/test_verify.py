"""verify: a merged remediation whose signal still fires after the grace gets a revert PR; inside
the grace, or with the signal quiet, nothing is published (the provider fake forbids it)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from agents.nodes.verify import verify
from agents.verify import REVERT_KEY
from memory.records import (
    FieldEdit,
    Finding,
    Incident,
    PullRequest,
    RemediationPlan,
    fingerprint,
    revert_branch_name,
)
from playbooks.schema import Check
from tests.fakes.cycle import (
    T0,
    FakePRs,
    FakeRepo,
    cycle_state,
    make_deps,
    make_settings,
    mis,
    mis_yaml,
    run,
    snapshot,
)
from tools.results import PublishResult

SERVICE = "ml-serving/image-captioner"
CAPPED = mis("image-captioner", min_replicas=2, max_replicas=3)   # the merged PR set maxReplicas 6 -> 3
FIRING = Finding(kind="cost_anomaly", service=SERVICE, severity="warning", summary="cost x2.4",
                 evidence={"ratio": 2.4}, observed_at=T0).model_dump(mode="json")


def seed(deps: Any, merged_ago: timedelta) -> tuple[Incident, PullRequest]:
    inc = Incident(kind="cost_anomaly", service=SERVICE, severity="warning", status="approved",
                   fingerprint=fingerprint("cost_anomaly", SERVICE), evidence={"ratio": 2.4},
                   opened_at=T0 - timedelta(hours=3), updated_at=T0 - merged_ago, last_seen_at=T0)
    pr = PullRequest(branch="remediator/cost-anomaly/ml-serving-image-captioner-1234", title="Cap maxReplicas",
                     status="merged", incident_ids=(inc.id,), created_at=T0 - timedelta(hours=2),
                     updated_at=T0 - merged_ago)
    deps.store.save_incident(inc)
    deps.store.save_pr(pr)
    deps.store.save_plan(RemediationPlan(incident_id=inc.id, playbook="cap_max_replicas", guard_verdict="accepted",
                                         edits=(FieldEdit(file=CAPPED.file, doc_kind=CAPPED.kind, doc_name=CAPPED.name,
                                                          path=("spec", "autoscaling", "maxReplicas"), old=6, new=3),)))
    return inc, pr


def settings() -> Any:
    return make_settings(verify={"grace": "15m", "failed_checks": 1})


def verify_actions(deps: Any) -> list[str]:
    return [e.action for e in deps.store.audit.entries() if e.stage == "verify"]


def test_inside_the_grace_nothing_is_judged() -> None:
    deps = make_deps(settings=settings())
    seed(deps, merged_ago=timedelta(minutes=5))
    out = run(verify, cycle_state(snapshot=snapshot([CAPPED]), findings=[FIRING]), deps)
    assert out == {"pr_ids": [], "errors": []} and verify_actions(deps) == []


def test_a_quiet_signal_after_the_grace_passes() -> None:
    deps = make_deps(settings=settings())
    seed(deps, merged_ago=timedelta(hours=1))
    out = run(verify, cycle_state(snapshot=snapshot([CAPPED]), findings=[]), deps)
    assert out == {"pr_ids": [], "errors": []} and verify_actions(deps) == ["passing"]


def test_still_firing_after_the_grace_proposes_the_revert() -> None:
    prs = FakePRs(publish=lambda **kw: PublishResult(pr=PullRequest(branch=kw["branch"], title=kw["title"]), pushed=True))
    deps = make_deps(settings=settings(), prs=prs, repo=FakeRepo(read_file=mis_yaml(CAPPED)))
    inc, pr = seed(deps, merged_ago=timedelta(hours=1))

    out = run(verify, cycle_state(snapshot=snapshot([CAPPED]), findings=[FIRING]), deps)

    [call] = prs.called("publish")
    assert call["branch"] == revert_branch_name(pr.branch) and tuple(call["labels"]) == ("remediator", "revert")
    assert "maxReplicas: 6" in call["files"][CAPPED.file]
    [revert] = [p for p in deps.store.list_prs() if p.id != pr.id]
    assert out == {"pr_ids": [revert.id], "errors": []}
    assert deps.store.get_kv(REVERT_KEY.format(inc.id)) == revert.id
    assert verify_actions(deps) == ["revert", "revert_proposed"]
    assert deps.store.get_incident(inc.id).status == "approved"  # type: ignore[union-attr]


def test_dry_run_judges_but_never_publishes_the_revert() -> None:
    deps = make_deps(settings=settings(), dry_run=True)   # repo and provider forbidden
    seed(deps, merged_ago=timedelta(hours=1))
    out = run(verify, cycle_state(snapshot=snapshot([CAPPED]), findings=[FIRING]), deps)
    assert out == {"pr_ids": [], "errors": []} and verify_actions(deps) == ["revert"]


def _with_checks(deps: Any, checks: list[dict[str, Any]]) -> Any:
    """Deps whose cap_max_replicas playbook has these checks (the playbook that made the change)."""
    pb = deps.playbooks["cap_max_replicas"]
    books = {**deps.playbooks, "cap_max_replicas": pb.model_copy(update={
        "checks": [Check.model_validate(c) for c in checks]})}
    return replace(deps, playbooks=books)


def test_the_playbooks_checks_decide_not_the_incident_kind() -> None:
    """A check of another signal that still fires fails the change; the incident's own (quiet) does not save it."""
    deps = _with_checks(make_deps(settings=make_settings(verify={"grace": "15m", "failed_checks": 5})),
                        [{"signal": "cost", "condition": "below_expected"},
                         {"signal": "budget", "condition": "projected_below_alert", "cycles": 2}])
    seed(deps, merged_ago=timedelta(hours=1))
    budget_firing = Finding(kind="budget_breach", service=SERVICE, severity="warning", summary="over budget",
                            evidence={"projected_percent": 130}, observed_at=T0).model_dump(mode="json")
    state = cycle_state(snapshot=snapshot([CAPPED]), findings=[budget_firing])   # cost quiet, budget not

    run(verify, state, deps)
    assert verify_actions(deps) == ["failing"]
    [entry] = [e for e in deps.store.audit.entries() if e.stage == "verify"]
    assert entry.data["failing"] == ["budget projected_below_alert"] and entry.data["limit"] == 2

    judge_only = replace(deps, dry_run=True)   # the revert itself is tested above
    run(verify, cycle_state(snapshot=snapshot([CAPPED]), findings=[budget_firing]), judge_only)
    assert verify_actions(deps) == ["failing", "revert"]   # the check's own cycles (2), not the default (5)


def test_a_playbook_without_checks_is_said_once_and_never_reverted() -> None:
    deps = _with_checks(make_deps(settings=settings(), dry_run=True), [])
    seed(deps, merged_ago=timedelta(hours=1))
    for _ in range(3):
        run(verify, cycle_state(snapshot=snapshot([CAPPED]), findings=[FIRING]), deps)
    assert verify_actions(deps) == ["unchecked"]


def test_worse_is_judged_in_dollars_and_never_against_a_value_kept_under_another_metric() -> None:
    """The cost tests judge different baselines (total, per replica, a level before the change), so a
    later finding's ratio is not comparable with the one at approval: $/h is. A reference kept
    before the metric was recorded with it is not compared at all (no revert from a mismatch)."""
    import json

    from agents.verify import FAIL_KEY, REF_KEY, check, remember_reference

    deps = make_deps(settings=settings())
    inc, pr = seed(deps, merged_ago=timedelta(hours=1))
    checks = [Check(signal="cost", condition="below_expected")]
    at_approval = inc.model_copy(update={"evidence": {"cost_usd_per_hour": 8.0, "ratio": 3.0, "method": "seasonal"}})
    remember_reference(deps.store, at_approval, T0 - timedelta(hours=1), checks)
    # after the merge the per-replica test fires: its ratio (1.5) is lower, the spend is higher
    now = inc.model_copy(update={"evidence": {"cost_usd_per_hour": 12.0, "ratio": 1.5, "method": "per_replica"}})
    seen = {inc.fingerprint: now.evidence}
    kw = {"now": T0, "grace": timedelta(minutes=15), "seen": seen, "default_cycles": 5, "worse_factor": 1.1}
    verdict, detail = check(deps.store, now, pr, checks, **kw)  # type: ignore[arg-type]
    assert verdict == "revert" and detail["reason"] == "cost_usd_per_hour went from 8.0 to 12.0 after the merge"

    deps.store.set_kv(REF_KEY.format(inc.id), json.dumps({"value": 2.4, "at": T0.isoformat()}))  # an older ratio
    deps.store.set_kv(FAIL_KEY.format(inc.id), "0")
    verdict, detail = check(deps.store, now, pr, checks, **kw)  # type: ignore[arg-type]
    assert verdict == "failing" and detail["value_at_approval"] is None
