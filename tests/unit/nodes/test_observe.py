"""observe: Git sync and the metrics check, the audit-log window of the cycle, and nothing else
(no PR, no Slack: those are host_decisions' and notify's)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from agents.nodes.observe import observe
from agents.state import CURSOR_KEY
from tests.fakes.cycle import (
    T0,
    FakeAuditLog,
    FakeMetrics,
    FakeRepo,
    cycle_state,
    make_deps,
    make_settings,
    mis,
    run,
)
from tools.errors import CycleAborted, PermanentError, TemporaryError
from tools.results import AuditEvent, FileProblem, RepoSnapshot


def repo_snapshot(**kw: object) -> RepoSnapshot:
    values: dict[str, object] = {"commit": "abc123", "committed_at": T0 - timedelta(hours=1),
                                 "manifests": [mis("image-captioner")],
                                 "budgets": [{"name": "gpu", "monthly_usd": 1000}], "guardrails": {}, "problems": []}
    values.update(kw)
    return RepoSnapshot(**values)  # type: ignore[arg-type]


def event(audit_id: str, at_offset: timedelta) -> AuditEvent:
    return AuditEvent(audit_id=audit_id, at=T0 + at_offset, verb="patch", user="alice", groups=("devs",),
                      user_agent="kubectl", source_ips=("10.0.0.1",), resource="deployments", subresource="",
                      namespace="ml-serving", name="image-captioner", api_group="apps", request_uri="/apis/apps",
                      code=200, request_object=None)


def test_syncs_git_checks_metrics_and_keeps_only_events_up_to_the_evaluation_time() -> None:
    metrics = FakeMetrics(check=None)
    repo = FakeRepo(sync=repo_snapshot(), read_tree={"apps/ml-serving/image-captioner.yaml": ""})
    auditlog = FakeAuditLog(read=([event("before", -timedelta(minutes=5)), event("at", timedelta(0)),
                                   event("after", timedelta(seconds=1))], "cursor-2"))
    deps = make_deps(settings=make_settings(auditlog={"paths": ["audit.log"], "initial_lookback": "2h"}),
                     metrics=metrics, repo=repo, auditlog=auditlog)   # prs and notifier: forbidden
    deps.store.set_kv(CURSOR_KEY, "cursor-1")
    state = cycle_state()

    out = run(observe, state, deps)

    assert len(metrics.called("check")) == 1 and len(repo.called("sync")) == 1
    assert auditlog.called("read") == [{"cursor": "cursor-1", "since": T0 - timedelta(hours=2)}]
    assert [e["audit_id"] for e in out["audit_events"]] == ["before", "at"]
    assert out["audit_events"][0]["at"] == (T0 - timedelta(minutes=5)).isoformat()   # JSON-able for the checkpoint
    assert out["audit_cursor"] == "cursor-2"
    assert deps.store.get_kv(CURSOR_KEY) == "cursor-1"   # moved by record, not here
    snap = out["snapshot"]
    assert snap["commit"] == "abc123" and snap["effective"] == {}
    assert [m["name"] for m in snap["manifests"]] == ["image-captioner"]
    assert snap["budgets"] == [{"name": "gpu", "monthly_usd": 1000}]
    assert out["errors"] == []
    [entry] = [e for e in deps.store.audit.entries() if e.stage == "observe"]
    assert (entry.action, entry.subject, entry.cycle_id) == ("snapshot", "abc123", state["cycle_id"])
    assert entry.data["audit_events"] == 2


def test_without_audit_log_paths_the_audit_log_is_not_read() -> None:
    deps = make_deps(metrics=FakeMetrics(check=None), repo=FakeRepo(sync=repo_snapshot(), read_tree={}))
    deps.store.set_kv(CURSOR_KEY, "cursor-1")
    out = run(observe, cycle_state(), deps)   # FakeAuditLog().read would raise
    assert out["audit_events"] == [] and out["audit_cursor"] == "cursor-1"


def test_repo_problems_audit_log_problems_and_bad_guardrails_are_report_errors() -> None:
    snap = repo_snapshot(problems=[FileProblem("apps/broken.yaml", "not valid YAML", line=3)],
                         guardrails={"limits": {"max_open_prs": "many"}})
    auditlog = FakeAuditLog(read=PermanentError("audit.log: permission denied"),
                            last_problems=["audit.log:7: malformed audit event"])
    deps = make_deps(settings=make_settings(auditlog={"paths": ["audit.log"]}), metrics=FakeMetrics(check=None),
                     repo=FakeRepo(sync=snap, read_tree={}), auditlog=auditlog)
    out = run(observe, cycle_state(), deps)
    sources = [(e["stage"], e["source"]) for e in out["errors"]]
    assert sources == [("observe", "apps/broken.yaml"), ("observe", "policies/guardrails.yaml"),
                       ("observe", "auditlog"), ("observe", "auditlog")]
    assert "apps/broken.yaml:3: not valid YAML" in out["errors"][0]["message"]
    assert "permission denied" in out["errors"][2]["message"]
    assert out["audit_events"] == [] and out["audit_cursor"] is None


def test_unreachable_metrics_abort_the_cycle_before_git_is_synced() -> None:
    metrics = FakeMetrics(check=TemporaryError("cannot reach prometheus", source="prom"))
    deps = make_deps(metrics=metrics)   # repo.sync forbidden: the check comes first
    with pytest.raises(CycleAborted, match="cannot reach prometheus"):
        run(observe, cycle_state(), deps)
    assert len(metrics.called("check")) == 1   # the adapter retries itself; observe does not


def test_git_sync_is_retried_then_aborts_the_cycle() -> None:
    repo = FakeRepo(sync=TemporaryError("remote hung up", source="git"))
    deps = make_deps(metrics=FakeMetrics(check=None), repo=repo, retries=2)
    with pytest.raises(CycleAborted, match="remote hung up"):
        run(observe, cycle_state(), deps)
    assert len(repo.called("sync")) == 3
    assert not [e for e in deps.store.audit.entries() if e.stage == "observe"]


def test_a_temporary_git_failure_that_clears_is_not_an_error() -> None:
    answers = iter([TemporaryError("blip", source="git"), repo_snapshot()])

    def sync() -> RepoSnapshot:
        a = next(answers)
        if isinstance(a, Exception):
            raise a
        return a

    repo = FakeRepo(sync=sync, read_tree={})
    out = run(observe, cycle_state(), make_deps(metrics=FakeMetrics(check=None), repo=repo))
    assert out["snapshot"]["commit"] == "abc123" and out["errors"] == []
    assert len(repo.called("sync")) == 2


def test_events_after_the_evaluation_time_are_carried_to_the_next_cycle_not_lost() -> None:
    """The cursor moves past every event read, so one dated after this cycle's time is kept for the next."""
    from agents.nodes.record import record
    from agents.state import CARRY_KEY

    repo = FakeRepo(sync=repo_snapshot(), read_tree={})
    auditlog = FakeAuditLog(read=([event("now", timedelta(0)), event("later", timedelta(seconds=30))], "cursor-2"))
    deps = make_deps(settings=make_settings(auditlog={"paths": ["audit.log"]}), metrics=FakeMetrics(check=None),
                     repo=repo, auditlog=auditlog)
    first = cycle_state()
    out = run(observe, first, deps)
    assert [e["audit_id"] for e in out["audit_events"]] == ["now"]
    run(record, {**first, **out}, deps)                          # the cursor and the carried event are stored
    assert deps.store.get_kv(CURSOR_KEY) == "cursor-2" and "later" in (deps.store.get_kv(CARRY_KEY) or "")

    auditlog.allow("read", ([], "cursor-2"))                      # nothing new in the file
    second = run(observe, cycle_state(at=T0 + timedelta(minutes=5)), deps)
    assert [e["audit_id"] for e in second["audit_events"]] == ["later"] and second["audit_carry"] == []


def test_a_base_deployed_by_two_overlays_is_two_workloads_each_with_its_values_and_edit_place() -> None:
    """The promotion test repository: staging and prod deploy one base under different names."""
    from pathlib import Path

    import yaml

    from agents.planners.deterministic import render_edits
    from agents.state import build_views
    from playbooks.loader import load_playbooks
    from tools import kustomize
    from tools.gitops import GitRepo

    root = Path(__file__).resolve().parents[2] / "gitops_repos" / "promotion"
    files = {p.relative_to(root).as_posix(): p.read_text() for p in root.rglob("*.yaml")}
    manifests = [m for f, text in sorted(files.items()) for i, d in enumerate(yaml.safe_load_all(text))
                 if isinstance(d, dict) and d.get("kind") in ("Deployment", "HorizontalPodAutoscaler")
                 and (m := GitRepo._manifest(f, i, d, [])) is not None]
    repo = FakeRepo(sync=repo_snapshot(manifests=manifests), read_tree=files)
    deps = make_deps(metrics=FakeMetrics(check=None), repo=repo, auditlog=FakeAuditLog(read=([], "")))

    out = run(observe, cycle_state(), deps)

    assert out["errors"] == []
    views = build_views(out["snapshot"], "policies")
    prod, staging = views.workloads["ml-prod/prod-model-server"], views.workloads["ml-staging/model-server-stg"]
    assert set(views.workloads) == {"ml-prod/prod-model-server", "ml-staging/model-server-stg"}
    assert (prod.max_replicas, staging.max_replicas) == (12, 3)
    assert prod.labels["env"] == "prod" and "env" not in staging.labels
    assert prod.doc.body["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "registry.acme.example/mirror/model-server:1.4.2"
    cap = load_playbooks()["cap_max_replicas"]
    for w, place in ((prod, ("envs/prod/hpa-bounds.yaml", ("spec", "maxReplicas"))),
                     (staging, ("envs/staging/kustomization.yaml", ("patches", 0, "patch", 0, "value")))):
        rel = kustomize.relocate(files, render_edits(cap, w, {"max_replicas": 2}))
        assert rel.ok, rel.problems
        assert [(e.file, e.path) for e in rel.edits] == [place]


def test_a_helm_release_of_a_chart_in_the_repository_is_watched_and_edited_in_its_values_file() -> None:
    """The helm-mixed test repository: a chart deployed by an Application beside a plain folder."""
    from pathlib import Path

    import yaml

    from agents.edits import relocate
    from agents.planners.deterministic import render_edits
    from agents.state import build_views
    from playbooks.loader import load_playbooks
    from tools.gitops import GitRepo

    root = Path(__file__).resolve().parents[2] / "gitops_repos" / "helm-mixed"
    files = {p.relative_to(root).as_posix(): p.read_text() for p in root.rglob("*") if p.is_file()}
    manifests = [m for f, text in sorted(files.items()) if f.startswith("apps/")
                 for i, d in enumerate(yaml.safe_load_all(text)) if (m := GitRepo._manifest(f, i, d, [])) is not None]
    tree = {k: v for k, v in files.items() if k.endswith((".yaml", ".yml"))}   # as GitRepo.read_tree gives it
    repo = FakeRepo(sync=repo_snapshot(manifests=manifests), read_tree=tree)
    deps = make_deps(metrics=FakeMetrics(check=None), repo=repo, auditlog=FakeAuditLog(read=([], "")))
    state = cycle_state()

    out = run(observe, state, deps)

    assert out["errors"] == []
    views = build_views(out["snapshot"], "policies")
    assert set(views.workloads) == {"search/ranker", "web/storefront"}   # web: the Application's namespace
    ranker = views.workloads["search/ranker"]
    assert ranker.hpa is not None and (ranker.min_replicas, ranker.max_replicas) == (2, 10)
    edits = render_edits(load_playbooks()["cap_max_replicas"], ranker, {"max_replicas": 6})
    moved, notes, problem = relocate(deps, {**state, **out}, edits)
    assert problem == "" and [(e.file, e.path, e.old, e.new) for e in moved] == [
        ("charts/ranker/values-prod.yaml", ("autoscaling", "maxReplicas"), 10, 6)]
    assert "valueFiles values-prod.yaml" in notes[0]
