"""notify: everything Slack. Notify-only plans are sent once per incident, severity and
playbook; outcomes queued by host_decisions / correlate update the PR's stored message; a PR
opened this cycle gets one approval message. With Slack off nothing is posted."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from agents.nodes.notify import PR_MESSAGE_KEY, notify
from memory.records import Incident, PullRequest, RemediationPlan, fingerprint
from tests.fakes.cycle import T0, FakeNotifier, cycle_state, make_deps, make_settings, run
from tools.errors import TemporaryError
from tools.slack import PostedMessage

SERVICE = "ml-serving/image-captioner"
SLACK_ON = {"enabled": True, "channel": "#ops"}


def seed(deps: Any) -> tuple[Incident, RemediationPlan]:
    inc = Incident(kind="cost_anomaly", service=SERVICE, severity="warning", fingerprint=fingerprint("cost_anomaly", SERVICE),
                   summary="cost x2.4 on image-captioner", opened_at=T0 - timedelta(hours=1), updated_at=T0,
                   last_seen_at=T0)
    p = RemediationPlan(incident_id=inc.id, playbook="cap_max_replicas", rationale="Cap maxReplicas 6 -> 3.",
                        guard_verdict="notify_only", guard_reasons=(f"{SERVICE} is protected",))
    deps.store.save_incident(inc)
    deps.store.save_plan(p)
    return inc, p


def test_a_notify_only_plan_is_sent_once() -> None:
    notifier = FakeNotifier(notify="1700000000.1")
    deps = make_deps(settings=make_settings(slack=SLACK_ON), notifier=notifier)
    inc, p = seed(deps)
    plans = [p.model_dump(mode="json")]

    out = run(notify, cycle_state(plans=plans), deps)

    summary = f"[warning] cost x2.4 on image-captioner. Cap maxReplicas 6 -> 3. Guard: {SERVICE} is protected."
    # Slack gets the text escaped for mrkdwn (shown literally there); the report keeps it as is
    assert notifier.called("notify") == [{"channel": "#ops", "text": summary.replace(">", "&gt;")}]
    assert out == {"notifications": [{"incident_id": inc.id, "channel": "#ops", "summary": summary}], "errors": []}
    assert [e.subject for e in deps.store.audit.entries() if e.action == "notified"] == [inc.id]

    notifier.forbid("notify")
    again = run(notify, cycle_state(T0 + timedelta(minutes=5), plans=plans), deps)
    assert again == {"notifications": [], "errors": []}


def test_a_failed_send_is_an_error_and_is_tried_again_next_cycle() -> None:
    notifier = FakeNotifier(notify=TemporaryError("Slack chat.postMessage failed: ratelimited", source="slack"))
    deps = make_deps(settings=make_settings(slack=SLACK_ON), notifier=notifier)
    _, p = seed(deps)
    plans = [p.model_dump(mode="json")]
    out = run(notify, cycle_state(plans=plans), deps)
    assert out["notifications"] == [] and [(e["stage"], e["source"]) for e in out["errors"]] == [("notify", "#ops")]
    notifier.allow("notify", "1700000000.2")
    assert len(run(notify, cycle_state(plans=plans), deps)["notifications"]) == 1


def test_a_queued_outcome_updates_the_stored_pr_message() -> None:
    notifier = FakeNotifier(update_message=None)   # post / notify forbidden
    deps = make_deps(settings=make_settings(slack=SLACK_ON), notifier=notifier)
    deps.store.set_kv(PR_MESSAGE_KEY.format("pr-1"), json.dumps({"channel": "C0OPS", "ts": "1700000000.3"}))
    outcomes = [{"pr_id": "pr-1", "text": "PR merged in the Git host (2025-03-03 12:00Z)."},
                {"pr_id": "pr-without-message", "text": "PR closed in the Git host."}]

    out = run(notify, cycle_state(slack_outcomes=outcomes), deps)

    [call] = notifier.called("update_message")
    assert (call["channel"], call["ts"], call["text"]) == ("C0OPS", "1700000000.3", outcomes[0]["text"])
    assert call["blocks"]   # the buttons are replaced
    assert out == {"notifications": [], "errors": []}


def test_a_pr_opened_this_cycle_gets_one_approval_message() -> None:
    notifier = FakeNotifier(post_message=PostedMessage(channel="C0OPS", ts="1700000000.4"))
    deps = make_deps(settings=make_settings(slack=SLACK_ON), notifier=notifier)
    inc, p = seed(deps)
    pr = PullRequest(branch="remediator/cost-anomaly/x", title="Cap maxReplicas", incident_ids=(inc.id,))
    deps.store.save_pr(pr)
    posts = [{"pr_id": pr.id, "plan_id": p.id}]

    assert run(notify, cycle_state(slack_posts=posts), deps) == {"notifications": [], "errors": []}
    [call] = notifier.called("post_message")
    assert call["channel"] == "#ops" and call["blocks"]
    assert json.loads(deps.store.get_kv(PR_MESSAGE_KEY.format(pr.id)) or "") == {"channel": "C0OPS",
                                                                                  "ts": "1700000000.4"}
    notifier.forbid("post_message")
    run(notify, cycle_state(slack_posts=posts), deps)   # already posted: not again


def test_with_slack_off_nothing_is_posted_and_plans_go_to_the_log() -> None:
    deps = make_deps(notifier=None)   # slack.enabled false: the composition root builds no notifier
    inc, p = seed(deps)
    out = run(notify, cycle_state(plans=[p.model_dump(mode="json")]), deps)
    assert [(n["incident_id"], n["channel"]) for n in out["notifications"]] == [(inc.id, "log")]


def test_with_slack_off_no_approval_message_even_with_a_notifier() -> None:
    deps = make_deps()   # a notifier whose every call raises
    inc, p = seed(deps)
    pr = PullRequest(branch="remediator/cost-anomaly/x", title="Cap", incident_ids=(inc.id,))
    deps.store.save_pr(pr)
    out = run(notify, cycle_state(slack_posts=[{"pr_id": pr.id, "plan_id": p.id}]), deps)
    assert out == {"notifications": [], "errors": []}
    assert deps.store.get_kv(PR_MESSAGE_KEY.format(pr.id)) is None


def test_dry_run_sends_nothing_and_remembers_nothing() -> None:
    deps = make_deps(settings=make_settings(slack=SLACK_ON), dry_run=True)   # notifier forbidden
    inc, p = seed(deps)
    plans = [p.model_dump(mode="json")]
    assert len(run(notify, cycle_state(plans=plans), deps)["notifications"]) == 1
    assert len(run(notify, cycle_state(plans=plans), deps)["notifications"]) == 1   # not marked as sent
