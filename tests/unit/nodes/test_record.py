"""record: the audit-log cursor and the cycle's report are stored (not in a dry run); the report
keeps the run-once JSON contract."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from agents.nodes.record import build_report, record
from agents.state import ANCHOR_KEY, CURSOR_KEY
from memory.records import Finding, Incident, PullRequest, fingerprint
from tests.fakes.cycle import T0, FakeAnchors, cycle_state, make_deps, make_settings, run
from tools.errors import TemporaryError

SERVICE = "ml-serving/image-captioner"
CONTRACT = {"cycle_id", "started_at", "findings", "incidents", "pull_requests", "notifications", "errors", "compliance"}


@pytest.mark.parametrize("dry_run", [False, True])
def test_the_cursor_and_the_report_are_stored_unless_dry_run(dry_run: bool) -> None:
    deps = make_deps(dry_run=dry_run)   # record calls no adapter
    deps.store.set_kv(CURSOR_KEY, "cursor-1")
    state = cycle_state(audit_cursor="cursor-2")

    assert run(record, state, deps) == {}

    assert deps.store.get_kv(CURSOR_KEY) == ("cursor-1" if dry_run else "cursor-2")
    cycles = deps.store.list_cycles()
    assert [c["cycle_id"] for c in cycles] == ([] if dry_run else [state["cycle_id"]])
    if not dry_run:
        assert set(cycles[0]["report"]) == CONTRACT and cycles[0]["started_at"] == T0
    [entry] = [e for e in deps.store.audit.entries() if e.stage == "record"]
    assert (entry.action, entry.subject) == ("cycle_finished", state["cycle_id"])


def test_no_cursor_leaves_the_stored_one() -> None:
    deps = make_deps()
    deps.store.set_kv(CURSOR_KEY, "cursor-1")
    run(record, cycle_state(), deps)
    assert deps.store.get_kv(CURSOR_KEY) == "cursor-1"


def test_the_report_has_the_contract_keys_and_what_changed_this_cycle() -> None:
    deps = make_deps()
    fp = fingerprint("cost_anomaly", SERVICE)
    active = Incident(kind="cost_anomaly", service=SERVICE, severity="warning", fingerprint=fp,
                      opened_at=T0 - timedelta(hours=2))
    resolved_now = Incident(kind="budget_breach", service="gpu", severity="warning", status="resolved",
                            fingerprint=fingerprint("budget_breach", "gpu"), opened_at=T0 - timedelta(hours=3))
    resolved_before = Incident(kind="budget_breach", service="old", severity="info", status="resolved",
                               fingerprint=fingerprint("budget_breach", "old"), opened_at=T0 - timedelta(days=3))
    merged_now = PullRequest(branch="b-merged", title="merged", status="merged", created_at=T0 - timedelta(hours=1),
                             updated_at=T0)
    merged_before = PullRequest(branch="b-old", title="old", status="merged", created_at=T0 - timedelta(days=2),
                                updated_at=T0 - timedelta(days=1))
    for i in (active, resolved_now, resolved_before):
        deps.store.save_incident(i)
    for p in (merged_now, merged_before):
        deps.store.save_pr(p)
    finding = Finding(kind="cost_anomaly", service=SERVICE, severity="warning", summary="cost x2", observed_at=T0)
    errors = [{"stage": "detect", "source": "cost x", "message": "timeout"}]
    notes = [{"incident_id": active.id, "channel": "log", "summary": "s"}]
    state = cycle_state(touched=[resolved_now.id], findings=[finding.model_dump(mode="json")], errors=errors,
                        notifications=notes)

    report = build_report(deps, state)

    assert set(report) == CONTRACT
    assert (report["cycle_id"], report["started_at"]) == (state["cycle_id"], T0.isoformat())
    assert report["findings"] == [finding.report()]
    assert [i["id"] for i in report["incidents"]] == [resolved_now.id, active.id]   # oldest first
    assert [p["id"] for p in report["pull_requests"]] == [merged_now.id]
    assert (report["errors"], report["notifications"]) == (errors, notes)


def test_the_chain_head_is_anchored_when_it_moved_and_the_interval_passed() -> None:
    anchors = FakeAnchors(write=lambda **kw: "c0ffee" * 6 + "abcd")
    deps = make_deps(anchors=anchors, settings=make_settings(audit={"anchor_interval": "1h"}))
    deps.store.audit.append(stage="test", action="seen")
    seq, digest = deps.store.audit.head()

    assert run(record, cycle_state(), deps) == {}
    assert anchors.called("write") == [{"seq": seq, "digest": digest, "at": T0}]
    assert {k: v for k, v in json.loads(deps.store.get_kv(ANCHOR_KEY) or "{}").items()
            if k != "commit"} == {"seq": seq, "hash": digest, "at": T0.isoformat()}
    assert [e.action for e in deps.store.audit.entries() if e.stage == "record"] == ["anchored", "cycle_finished"]

    run(record, cycle_state(at=T0 + timedelta(minutes=30)), deps)   # moved, but within the interval
    assert len(anchors.called("write")) == 1
    run(record, cycle_state(at=T0 + timedelta(hours=2)), deps)      # moved and due
    assert len(anchors.called("write")) == 2

    failing = make_deps(anchors=FakeAnchors(write=TemporaryError("remote down")),
                        settings=make_settings(audit={"anchor_interval": "0s"}), retries=0)
    failing.store.audit.append(stage="test", action="seen")
    out = run(record, cycle_state(), failing)
    assert [(e["stage"], e["source"]) for e in out["errors"]] == [("record", FakeAnchors.location)]
    assert "cannot anchor the audit chain head" in out["errors"][0]["message"]


def test_a_dry_run_never_anchors() -> None:
    deps = make_deps(anchors=FakeAnchors(), dry_run=True)   # write is forbidden
    deps.store.audit.append(stage="test", action="seen")
    run(record, cycle_state(), deps)
