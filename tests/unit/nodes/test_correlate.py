"""correlate: one incident per fingerprint while it is active; an incident resolves only where
its kind|service had data this cycle, and its open PR is closed through the provider."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from agents.nodes.correlate import correlate
from memory.records import Finding, Incident, PullRequest, fingerprint
from tests.fakes.cycle import T0, FakePRs, cycle_state, make_deps, make_settings, mis, run, snapshot

SERVICE = "ml-serving/image-captioner"
SNAP = snapshot([mis("image-captioner")])


def finding(ratio: float = 2.5) -> dict[str, Any]:
    return Finding(kind="cost_anomaly", service=SERVICE, severity="warning", summary=f"cost x{ratio}",
                   evidence={"ratio": ratio}, observed_at=T0).model_dump(mode="json")


def quiet_incident(**kw: Any) -> Incident:
    """An active incident last seen two hours ago (longer than the default detection.resolve_after, 1 h)."""
    values: dict[str, Any] = {"kind": "cost_anomaly", "service": SERVICE, "severity": "warning",
                              "fingerprint": fingerprint("cost_anomaly", SERVICE), "opened_at": T0 - timedelta(hours=3),
                              "updated_at": T0 - timedelta(hours=2), "last_seen_at": T0 - timedelta(hours=2)}
    values.update(kw)
    return Incident(**values)


def test_a_finding_opens_an_incident_and_the_same_finding_next_cycle_is_the_same_incident() -> None:
    deps = make_deps()   # no provider call while nothing resolves
    first = run(correlate, cycle_state(snapshot=SNAP, findings=[finding(2.5)]), deps)
    [inc] = deps.store.list_incidents()
    assert first["touched"] == [inc.id]
    assert (inc.status, inc.opened_at, inc.evidence) == ("open", T0, {"ratio": 2.5})

    later = T0 + timedelta(minutes=5)
    again = run(correlate, cycle_state(later, snapshot=SNAP, findings=[finding(3.0)]), deps)
    [same] = deps.store.list_incidents()
    assert again["touched"] == [inc.id] and same.id == inc.id
    assert (same.opened_at, same.last_seen_at, same.evidence) == (T0, later, {"ratio": 3.0})
    actions = [e.action for e in deps.store.audit.entries() if e.stage == "correlate"]
    assert actions == ["incident_opened", "incident_seen_again"]


def test_an_incident_without_data_this_cycle_is_not_resolved() -> None:
    deps = make_deps()
    inc = quiet_incident()
    deps.store.save_incident(inc)
    out = run(correlate, cycle_state(snapshot=SNAP, findings=[], evaluated=["cost_anomaly|ml-serving/other"]), deps)
    assert out["touched"] == []
    assert deps.store.get_incident(inc.id).status == "open"  # type: ignore[union-attr]


def test_an_evaluated_incident_not_seen_resolves_and_its_open_pr_is_closed() -> None:
    prs = FakePRs(close=lambda pr, comment: pr.model_copy(update={"status": "closed"}))
    deps = make_deps(prs=prs)
    inc = quiet_incident(status="proposed")
    pr = PullRequest(branch="remediator/cost-anomaly/x", title="Cap", incident_ids=(inc.id,))
    deps.store.save_incident(inc)
    deps.store.save_pr(pr)

    out = run(correlate, cycle_state(snapshot=SNAP, findings=[], evaluated=[f"cost_anomaly|{SERVICE}"]), deps)

    resolved = deps.store.get_incident(inc.id)
    assert resolved is not None and (resolved.status, resolved.resolved_at) == ("resolved", T0)
    assert out["touched"] == [inc.id] and out["errors"] == []
    [call] = prs.called("close")
    assert call["pr"].id == pr.id and "resolved before merge" in call["comment"]
    assert deps.store.get_pr(pr.id).status == "closed"  # type: ignore[union-attr]
    [outcome] = out["slack_outcomes"]
    assert outcome["pr_id"] == pr.id and outcome["text"].startswith("Closed by remediator")


def test_a_recently_seen_incident_waits_for_the_quiet_period() -> None:
    deps = make_deps()
    inc = quiet_incident(last_seen_at=T0 - timedelta(minutes=5))
    deps.store.save_incident(inc)
    out = run(correlate, cycle_state(snapshot=SNAP, findings=[], evaluated=[f"cost_anomaly|{SERVICE}"]), deps)
    assert out["touched"] == [] and deps.store.get_incident(inc.id).status == "open"  # type: ignore[union-attr]


def test_detection_resolve_after_keeps_a_flapping_signal_one_incident() -> None:
    """An incident quiet for two hours resolves by default (1 h) but not with detection.resolve_after:
    3h; the finding returning then is the same incident, not a new one."""
    deps = make_deps(settings=make_settings(detection={"resolve_after": "3h"}))
    inc = quiet_incident()
    deps.store.save_incident(inc)
    out = run(correlate, cycle_state(snapshot=SNAP, findings=[], evaluated=[f"cost_anomaly|{SERVICE}"]), deps)
    assert out["touched"] == [] and deps.store.get_incident(inc.id).status == "open"  # type: ignore[union-attr]
    back = run(correlate, cycle_state(T0 + timedelta(minutes=5), snapshot=SNAP, findings=[finding()]), deps)
    assert back["touched"] == [inc.id] and len(deps.store.list_incidents()) == 1
    assert make_settings().detection.quiet_before_resolve == timedelta(hours=1)
    later = run(correlate, cycle_state(T0 + timedelta(hours=4), snapshot=SNAP, findings=[],
                                       evaluated=[f"cost_anomaly|{SERVICE}"]), deps)
    assert later["touched"] == [inc.id] and deps.store.get_incident(inc.id).status == "resolved"  # type: ignore[union-attr]


def test_dry_run_resolves_without_closing_the_pr() -> None:
    deps = make_deps(dry_run=True)   # prs.close forbidden
    inc = quiet_incident(status="proposed")
    deps.store.save_incident(inc)
    deps.store.save_pr(PullRequest(branch="remediator/cost-anomaly/x", title="Cap", incident_ids=(inc.id,)))
    out = run(correlate, cycle_state(snapshot=SNAP, findings=[], evaluated=[f"cost_anomaly|{SERVICE}"]), deps)
    assert out["slack_outcomes"] == [] and out["touched"] == [inc.id]


def test_by_default_a_finding_away_for_half_an_hour_is_still_the_same_incident() -> None:
    """A noisy cost series dips under its gate for a cycle or two while the excursion goes on: by
    default the incident (and its PR) waits an hour, not min_duration (15 min), before resolving;
    a longer min_duration is the floor."""
    deps = make_deps()
    inc = quiet_incident(last_seen_at=T0 - timedelta(minutes=30), updated_at=T0 - timedelta(minutes=30))
    deps.store.save_incident(inc)
    out = run(correlate, cycle_state(snapshot=SNAP, findings=[], evaluated=[f"cost_anomaly|{SERVICE}"]), deps)
    assert out["touched"] == [] and deps.store.get_incident(inc.id).status == "open"  # type: ignore[union-attr]
    out = run(correlate, cycle_state(T0 + timedelta(minutes=31), snapshot=SNAP, findings=[],
                                     evaluated=[f"cost_anomaly|{SERVICE}"]), deps)
    assert out["touched"] == [inc.id] and deps.store.get_incident(inc.id).status == "resolved"  # type: ignore[union-attr]
    assert make_settings(detection={"min_duration": "2h"}).detection.quiet_before_resolve == timedelta(hours=2)
    assert make_settings(detection={"resolve_after": "10m"}).detection.quiet_before_resolve == timedelta(minutes=10)
