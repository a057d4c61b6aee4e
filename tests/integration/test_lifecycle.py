"""Incident lifecycle across cycles: resolved when the signal is back in bounds (its open PR
closed and branch deleted), but never on missing data."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import git
import pytest
import yaml

from agents.checkpoint import sqlite_checkpointer
from agents.compose import build_deps, checkpoint_path
from agents.config import load_settings
from agents.demo import prepare_workspace
from agents.graph import run_cycle
from tests.fakes.metrics import FakeMetrics, flatten_tail

pytestmark = pytest.mark.integration
CAPTIONER = "ml-serving/image-captioner"


def cycle(cfg: Path, now: datetime, **fake: object) -> dict:
    settings = load_settings(cfg)
    deps = build_deps(settings, replay_shift_to=now.replace(second=0))
    deps = replace(deps, metrics=FakeMetrics(deps.metrics, **fake))  # type: ignore[arg-type]
    with sqlite_checkpointer(checkpoint_path(settings)) as cp:
        return run_cycle(deps, cp, started_at=now)


@pytest.fixture()
def ws(tmp_path: Path) -> tuple[Path, Path, datetime]:
    now = datetime.now(UTC).replace(microsecond=0)
    _, cfg, remote = prepare_workspace(tmp_path, now)
    return cfg, remote, now


def _cost(r: dict) -> dict | None:
    return next((i for i in r["incidents"] if i["kind"] == "cost_anomaly" and i["service"] == CAPTIONER), None)


def test_missing_data_does_not_resolve_but_recovery_does(ws: tuple[Path, Path, datetime]) -> None:
    cfg, remote, now = ws
    r1 = cycle(cfg, now)
    inc = _cost(r1)
    assert inc is not None and inc["status"] == "proposed"
    branch = next(p["branch"] for p in r1["pull_requests"] if inc["id"] in p["incident_ids"])

    later = now + timedelta(hours=1)
    r2 = cycle(cfg, later, fail={("workload_cost", "image-captioner")})
    assert any(e["source"] == f"cost {CAPTIONER}" for e in r2["errors"])
    assert (_cost(r2) or {}).get("status") == "proposed"  # still open: no data is not good news
    assert branch in [h.name for h in git.Repo(remote).heads]

    def recovered(signal: str, kw: dict, res):  # type: ignore[no-untyped-def]
        return flatten_tail(res, 8) if signal == "workload_cost" and kw["name"] == "image-captioner" else res

    r3 = cycle(cfg, later + timedelta(minutes=5), rewrite=recovered)
    resolved = next(i for i in r3["incidents"] if i["id"] == inc["id"])
    assert resolved["status"] == "resolved"
    closed = next(p for p in r3["pull_requests"] if p["branch"] == branch)
    assert closed["status"] == "closed"
    assert branch not in [h.name for h in git.Repo(remote).heads]


def test_merge_in_the_git_host_is_recorded_as_a_pr_review_decision(ws: tuple[Path, Path, datetime], tmp_path: Path) -> None:
    cfg, remote, now = ws
    r1 = cycle(cfg, now)
    inc = _cost(r1)
    assert inc is not None
    pr = next(p for p in r1["pull_requests"] if inc["id"] in p["incident_ids"])
    clone = git.Repo.clone_from(str(remote), tmp_path / "human")
    env = {"GIT_AUTHOR_NAME": "Dana", "GIT_AUTHOR_EMAIL": "dana@example.com",
           "GIT_COMMITTER_NAME": "Dana", "GIT_COMMITTER_EMAIL": "dana@example.com"}
    with clone.git.custom_environment(**env):
        clone.git.merge("--no-ff", f"origin/{pr['branch']}", "-m", "Merge remediation (reviewed)")
        clone.git.push("origin", "main")
    r2 = cycle(cfg, now + timedelta(minutes=5))
    merged = next(p for p in r2["pull_requests"] if p["id"] == pr["id"])
    assert merged["status"] == "merged"
    assert next(i for i in r2["incidents"] if i["id"] == inc["id"])["status"] == "approved"
    from memory.store import Store

    store = Store.open(load_settings(cfg).memory.url)
    (d,) = store.list_decisions(incident_id=inc["id"])
    assert d.source == "pr_review" and d.verdict == "approve"
    assert any(e.action == "pr_merged" for e in store.audit.entries())


def test_human_push_on_the_branch_stops_updates(ws: tuple[Path, Path, datetime], tmp_path: Path) -> None:
    cfg, remote, now = ws
    r1 = cycle(cfg, now)
    pr = next(p for p in r1["pull_requests"] if p["branch"].startswith("remediator/cost-anomaly/"))
    clone = git.Repo.clone_from(str(remote), tmp_path / "human", branch=pr["branch"])
    f = tmp_path / "human" / pr["files"][0]
    f.write_text(f.read_text().replace("maxReplicas: 3", "maxReplicas: 4"))
    env = {"GIT_AUTHOR_NAME": "Dana", "GIT_AUTHOR_EMAIL": "dana@example.com",
           "GIT_COMMITTER_NAME": "Dana", "GIT_COMMITTER_EMAIL": "dana@example.com"}
    with clone.git.custom_environment(**env):
        clone.git.commit("-am", "4 is safer")
        clone.git.push("origin", pr["branch"])
    head = git.Repo(remote).heads[pr["branch"]].commit.hexsha
    r2 = cycle(cfg, now + timedelta(minutes=5))
    assert git.Repo(remote).heads[pr["branch"]].commit.hexsha == head
    assert any(pr["branch"] == e["source"] and "human" in e["message"].lower() for e in r2["errors"])


def _approve(cfg: Path, incident_id: str) -> None:
    from agents.approvals import decide

    deps = build_deps(load_settings(cfg))
    decide(deps, incident_id=incident_id, verdict="approve", actor="carol", source="cli")


def _worse(signal: str, kw: dict, res):  # type: ignore[no-untyped-def]
    if signal == "workload_cost" and kw["name"] == "image-captioner" and res.first is not None:
        from dataclasses import replace

        s = res.first
        v = s.values.copy()
        v[-12:] *= 1.5
        return replace(res, series=[replace(s, values=v)])
    return res


def test_approve_then_recovery_resolves(ws: tuple[Path, Path, datetime]) -> None:
    cfg, remote, now = ws
    inc = _cost(cycle(cfg, now))
    assert inc is not None
    _approve(cfg, inc["id"])
    assert "maxReplicas: 3" in git.Repo(remote).git.show("main:apps/ml-serving/image-captioner.yaml")

    def recovered(signal: str, kw: dict, res):  # type: ignore[no-untyped-def]
        return flatten_tail(res, 8) if signal == "workload_cost" and kw["name"] == "image-captioner" else res

    r = cycle(cfg, now + timedelta(minutes=30), rewrite=recovered)   # quiet for 30 min: not yet (resolve_after 1h)
    assert next(i for i in r["incidents"] if i["id"] == inc["id"])["status"] == "approved"
    r = cycle(cfg, now + timedelta(minutes=65), rewrite=recovered)
    assert next(i for i in r["incidents"] if i["id"] == inc["id"])["status"] == "resolved"
    assert not [p for p in r["pull_requests"] if p["branch"].startswith("remediator/revert/")]


def test_approve_then_worse_opens_a_revert_pr(ws: tuple[Path, Path, datetime]) -> None:
    cfg, remote, now = ws
    inc = _cost(cycle(cfg, now))
    assert inc is not None
    _approve(cfg, inc["id"])
    r_wait = cycle(cfg, now + timedelta(minutes=5), rewrite=_worse)  # inside the reconcile grace: wait
    assert not [p for p in r_wait["pull_requests"] if p["branch"].startswith("remediator/revert/")]
    r = cycle(cfg, now + timedelta(minutes=30), rewrite=_worse)
    reverts = [p for p in r["pull_requests"] if p["branch"].startswith("remediator/revert/")]
    assert len(reverts) == 1 and reverts[0]["incident_ids"] == [inc["id"]]
    diff = git.Repo(remote).git.diff(f"main...{reverts[0]['branch']}")
    assert "-    maxReplicas: 3" in diff and "+    maxReplicas: 6" in diff
    again = cycle(cfg, now + timedelta(minutes=35), rewrite=_worse)  # no second revert
    assert len([p for p in again["pull_requests"] if p["branch"].startswith("remediator/revert/")]) <= 1
    assert len([h for h in git.Repo(remote).heads if h.name.startswith("remediator/revert/")]) == 1


def _commit_guardrails(remote: Path, tmp_path: Path, text: str) -> None:
    clone = git.Repo.clone_from(str(remote), tmp_path / "g")
    (tmp_path / "g" / "policies" / "guardrails.yaml").write_text(text)
    env = {"GIT_AUTHOR_NAME": "Sam", "GIT_AUTHOR_EMAIL": "sam@example.com",
           "GIT_COMMITTER_NAME": "Sam", "GIT_COMMITTER_EMAIL": "sam@example.com"}
    with clone.git.custom_environment(**env):
        clone.git.commit("-am", "guardrails: one open PR at a time")
        clone.git.push("origin", "main")


def test_rate_limit_defers_and_says_so(ws: tuple[Path, Path, datetime], tmp_path: Path) -> None:
    cfg, remote, now = ws
    _commit_guardrails(remote, tmp_path, "guardrails:\n  limits: {max_open_prs: 1, max_prs_per_hour: 6}\n")
    r = cycle(cfg, now)
    assert len([p for p in r["pull_requests"] if p["status"] == "open"]) == 1
    assert any(e["stage"] == "guard" and "max_open_prs" in e["message"] for e in r["errors"])
    assert len([h for h in git.Repo(remote).heads if h.name.startswith("remediator/")]) == 1


def test_remote_rejecting_the_push_is_reported_and_nothing_is_lost(ws: tuple[Path, Path, datetime]) -> None:
    cfg, remote, now = ws
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'branch protection: remediator/* needs a signed commit' >&2\nexit 1\n")
    hook.chmod(0o755)
    r = cycle(cfg, now)
    assert r["pull_requests"] == []
    errs = [e for e in r["errors"] if e["stage"] == "propose"]
    assert errs and all("remediator/" in e["source"] for e in errs)
    assert any("rejected" in e["message"] or "declined" in e["message"] for e in errs)
    assert {i["kind"] for i in r["incidents"]} >= {"cost_anomaly", "model_drift", "gitops_drift"}
    hook.unlink()  # the remote accepts again: same incidents, PRs now open, none twice
    r2 = cycle(cfg, now + timedelta(minutes=5))
    assert len(r2["pull_requests"]) == 2
    assert {i["id"] for i in r2["incidents"]} == {i["id"] for i in r["incidents"]}


class _Killed(BaseException):
    pass


def test_approval_waits_at_interrupt_and_resumes_once_even_after_a_kill(ws: tuple[Path, Path, datetime]) -> None:
    from agents.approvals import approval_thread, build_approval_graph, decide
    from agents.checkpoint import sqlite_checkpointer

    cfg, remote, now = ws
    inc = _cost(cycle(cfg, now))
    assert inc is not None
    settings = load_settings(cfg)
    deps = build_deps(settings)
    with sqlite_checkpointer(settings.checkpoint_path) as cp:
        snap = build_approval_graph(cp).get_state(approval_thread(inc["id"]))
        assert snap.next == ("await_decision",) and snap.interrupts  # paused, waiting for a human
    real_merge = deps.prs.merge

    def merge_then_die(**kw):  # type: ignore[no-untyped-def]
        real_merge(**kw)
        raise _Killed()

    deps.prs.merge = merge_then_die  # type: ignore[method-assign]
    with pytest.raises(_Killed):
        decide(deps, incident_id=inc["id"], verdict="approve", actor="carol", source="cli")
    deps2 = build_deps(settings)  # "restart"
    d = decide(deps2, incident_id=inc["id"], verdict="approve", actor="carol", source="cli")
    assert d.verdict == "approve" and d.actor == "carol"
    assert [x.id for x in deps2.store.list_decisions(incident_id=inc["id"])] == [d.id]
    assert "maxReplicas: 3" in git.Repo(remote).git.show("main:apps/ml-serving/image-captioner.yaml")
    with sqlite_checkpointer(settings.checkpoint_path) as cp:
        assert build_approval_graph(cp).get_state(approval_thread(inc["id"])).next == ()


def test_an_approving_review_in_the_host_lands_the_pr(ws: tuple[Path, Path, datetime]) -> None:
    cfg, remote, now = ws
    inc = _cost(cycle(cfg, now))
    assert inc is not None
    settings = load_settings(cfg)
    deps = build_deps(settings, replay_shift_to=now.replace(second=0))
    deps = replace(deps, metrics=FakeMetrics(deps.metrics))  # type: ignore[arg-type]

    class ReviewedProvider:  # the local provider plus what a Git host says about reviews
        def __init__(self, inner):  # type: ignore[no-untyped-def]
            self.inner = inner

        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return getattr(self.inner, name)

        def reviews(self, *, pr):  # type: ignore[no-untyped-def]
            return [("frank", "COMMENTED"), ("grace", "APPROVED")]

    deps = replace(deps, prs=ReviewedProvider(deps.prs))  # type: ignore[assignment]
    with sqlite_checkpointer(checkpoint_path(settings)) as cp:
        r = run_cycle(deps, cp, started_at=now + timedelta(minutes=5))
    assert next(i for i in r["incidents"] if i["id"] == inc["id"])["status"] == "approved"
    (d,) = deps.store.list_decisions(incident_id=inc["id"])
    assert d.source == "pr_review" and d.actor == "local:grace"
    assert "maxReplicas: 3" in git.Repo(remote).git.show("main:apps/ml-serving/image-captioner.yaml")


def test_a_late_approval_does_not_revive_a_resolved_incident(ws: tuple[Path, Path, datetime]) -> None:
    from agents.approvals import decide
    from agents.config import ConfigError

    cfg, _, now = ws
    inc = _cost(cycle(cfg, now))
    assert inc is not None

    def recovered(signal: str, kw: dict, res):  # type: ignore[no-untyped-def]
        return flatten_tail(res, 8) if signal == "workload_cost" and kw["name"] == "image-captioner" else res

    r = cycle(cfg, now + timedelta(hours=1), rewrite=recovered)
    assert next(i for i in r["incidents"] if i["id"] == inc["id"])["status"] == "resolved"
    deps = build_deps(load_settings(cfg))
    with pytest.raises(ConfigError, match="already resolved"):
        decide(deps, incident_id=inc["id"], verdict="approve", actor="late", source="slack")
    assert deps.store.get_incident(inc["id"]).status == "resolved"  # type: ignore[union-attr]
    assert deps.store.list_decisions(incident_id=inc["id"]) == []


def test_value_set_by_a_kustomize_patch_is_changed_in_the_patch(ws: tuple[Path, Path, datetime], tmp_path: Path) -> None:
    cfg, remote, now = ws
    clone = git.Repo.clone_from(str(remote), tmp_path / "k")
    root = tmp_path / "k" / "apps" / "ml-serving"
    (root / "kustomization.yaml").write_text((root / "kustomization.yaml").read_text()
                                             + "patches:\n  - path: captioner-capacity.yaml\n")
    (root / "captioner-capacity.yaml").write_text(
        "# prod capacity for the captioner (quota agreed with the GPU pool owners)\n"
        "apiVersion: ai.apexlogic.com/v1alpha1\nkind: MultimodalInferenceService\n"
        "metadata:\n  name: image-captioner\n  namespace: ml-serving\n"
        "spec:\n  autoscaling:\n    maxReplicas: 5  # was 6 in the base\n")
    env = {"GIT_AUTHOR_NAME": "Sam", "GIT_AUTHOR_EMAIL": "sam@example.com",
           "GIT_COMMITTER_NAME": "Sam", "GIT_COMMITTER_EMAIL": "sam@example.com"}
    with clone.git.custom_environment(**env):
        clone.git.add("-A")
        clone.git.commit("-m", "captioner: prod cap via a kustomize patch")
        clone.git.push("origin", "main")
    r = cycle(cfg, now)
    pr = next(p for p in r["pull_requests"] if p["branch"].startswith("remediator/cost-anomaly/"))
    assert pr["files"] == ["apps/ml-serving/captioner-capacity.yaml"]
    diff = git.Repo(remote).git.diff("-U0", f"main...{pr['branch']}")
    changed = [ln for ln in diff.splitlines() if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    assert changed == ["-    maxReplicas: 5  # was 6 in the base", "+    maxReplicas: 3  # was 6 in the base"]


def test_pr_body_is_decidable_and_stable_while_the_change_is(ws: tuple[Path, Path, datetime]) -> None:
    from memory.store import Store

    cfg, _, now = ws
    inc = _cost(cycle(cfg, now))
    assert inc is not None
    store = Store.open(load_settings(cfg).memory.url)
    (pr,) = [p for p in store.list_prs(statuses=["open"]) if inc["id"] in p.incident_ids]
    body = pr.body
    for needle in ("## What remediator saw", "xychart-beta", "maxReplicas", "`6` -> `3`", "**Why:**",
                   "**Risk:**", "**Roll back:**", "Expected effect", inc["id"], "audit entries #"):
        assert needle in body, needle
    cycle(cfg, now + timedelta(minutes=5))  # evidence numbers move; the change does not
    assert store.get_pr(pr.id).body == body  # type: ignore[union-attr]


def test_an_llm_failure_falls_back_with_a_clear_line_in_the_report(ws: tuple[Path, Path, datetime]) -> None:
    """An OpenAI-compatible endpoint that keeps answering 500: retried within limits, then the
    deterministic planner decides, the report says why, and the PRs are the same."""
    from tests.fakes.openai_server import ScriptedOpenAIServer

    cfg, remote, now = ws
    raw = yaml.safe_load(cfg.read_text())
    with ScriptedOpenAIServer({"default": [{"fail": "500", "repeat": True}]}) as server:
        raw["llm"] = {"provider": "openai", "base_url": server.base_url(), "model": "m", "timeout_s": 5}
        cfg.write_text(yaml.safe_dump(raw))
        settings = load_settings(cfg)
        deps = build_deps(settings, replay_shift_to=now.replace(second=0))
        deps.planner.llm._sleep = lambda s: None  # no real backoff waits in the test
        with sqlite_checkpointer(checkpoint_path(settings)) as cp:
            r = run_cycle(deps, cp, started_at=now)
        assert len(server.requests()) >= 6  # 3 incidents x (1 try + retries)
    lines = [e for e in r["errors"] if e["stage"] == "plan"]
    assert lines and all("llm fallback" in e["message"] and "500" in e["message"] for e in lines)
    assert {p["branch"].split("/")[1] for p in r["pull_requests"]} == {"cost-anomaly", "model-drift"}
