"""guard: plans are checked against the snapshot's guardrails; a broken rule downgrades to
notify-only, a rate limit defers, a blocked LLM plan falls back to the deterministic one. The
guard walks no Git history for a cap (repo forbidden) and calls no adapter."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from agents.nodes.guard import guard
from memory.records import FieldEdit, Incident, RemediationPlan, fingerprint
from tests.fakes.cycle import T0, cycle_state, make_deps, mis, run, snapshot

SERVICE = "ml-serving/image-captioner"
FROZEN = {"protected": {"selector": {"labels": {"tier": "frozen"}}}}


def setup(labels: dict[str, str] | None = None, guardrails: dict[str, Any] | None = None,
          planner: str = "deterministic", target: str = SERVICE) -> tuple[Any, Incident, RemediationPlan, Any]:
    doc = mis("image-captioner", min_replicas=2, max_replicas=6, labels=labels)
    deps = make_deps()
    inc = Incident(kind="cost_anomaly", service=SERVICE, severity="warning", status="open",
                   fingerprint=fingerprint("cost_anomaly", SERVICE), summary="cost x2.4",
                   evidence={"ratio": 2.4, "replicas_before_p95": 2, "replicas_now": 6},
                   opened_at=T0 - timedelta(hours=1), updated_at=T0, last_seen_at=T0)
    p = RemediationPlan(incident_id=inc.id, playbook="cap_max_replicas", planner=planner,
                        params={"targets": {target: {"max_replicas": 3}}},
                        edits=(FieldEdit(file=doc.file, doc_kind=doc.kind, doc_name=doc.name,
                                         path=("spec", "autoscaling", "maxReplicas"), old=6, new=3),))
    deps.store.save_incident(inc)
    deps.store.save_plan(p)
    state = cycle_state(snapshot=snapshot([doc], guardrails=guardrails), plans=[p.model_dump(mode="json")])
    return deps, inc, p, state


def guard_entries(deps: Any) -> list[tuple[str, str, list[str]]]:
    return [(e.action, e.subject, e.data["reasons"]) for e in deps.store.audit.entries() if e.stage == "guard"]


def test_a_plan_on_an_ordinary_workload_is_accepted() -> None:
    deps, inc, p, state = setup(labels={"tier": "standard"}, guardrails=FROZEN)
    [checked] = run(guard, state, deps)["plans"]
    assert (checked["id"], checked["guard_verdict"], checked["guard_reasons"]) == (p.id, "accepted", [])
    assert guard_entries(deps) == [("accepted", inc.id, [])]
    assert deps.store.latest_plan(inc.id).guard_verdict == "accepted"  # type: ignore[union-attr]


def test_a_plan_touching_a_protected_workload_is_downgraded_to_notify_only() -> None:
    deps, inc, p, state = setup(labels={"tier": "frozen"}, guardrails=FROZEN)
    [checked] = run(guard, state, deps)["plans"]
    assert checked["id"] == p.id and checked["guard_verdict"] == "notify_only"
    assert any(f"{SERVICE} is protected" in r for r in checked["guard_reasons"])
    [(action, subject, reasons)] = guard_entries(deps)
    assert (action, subject, reasons) == ("notify_only", inc.id, checked["guard_reasons"])
    assert deps.store.latest_plan(inc.id).guard_verdict == "notify_only"  # type: ignore[union-attr]


def test_a_plan_over_the_open_pr_limit_is_deferred() -> None:
    deps, _, _, state = setup(guardrails={"limits": {"max_open_prs": 0}})
    [checked] = run(guard, state, deps)["plans"]
    assert checked["guard_verdict"] == "deferred" and "max_open_prs=0" in checked["guard_reasons"][0]


def test_a_blocked_llm_plan_falls_back_to_the_deterministic_plan() -> None:
    deps, inc, p, state = setup(planner="llm", target="ml-serving/not-in-git")
    [checked] = run(guard, state, deps)["plans"]
    assert checked["id"] != p.id and checked["planner"] == "deterministic"
    assert checked["planner_reason"].startswith("llm fallback: the guard blocked the LLM plan")
    assert checked["guard_verdict"] == "accepted"
    assert deps.store.latest_plan(inc.id).id == checked["id"]  # type: ignore[union-attr]
