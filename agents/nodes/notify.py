"""notify: everything Slack (or the log when Slack is off).

- outcomes: a PR merged or closed outside Slack (in the Git host, or closed because its incident
  resolved) has its Slack message updated: the text says what happened, the buttons go away;
- approval messages: a PR opened this cycle gets one message with Approve / Reject (its channel
  and ts are kept so later outcomes can update it);
- notify-only plans (and plans the guard refused) are sent once per incident, severity and
  playbook.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from langgraph.runtime import Runtime

from agents.deps import Deps, audit
from agents.state import CycleState, err
from memory.records import RemediationPlan
from tools.errors import ToolError
from tools.slack import outcome_blocks, plain, pr_message_blocks, pr_message_text

log = logging.getLogger("remediator.cycle")
PR_MESSAGE_KEY = "slack.pr_msg:{}"


def notify(state: CycleState, runtime: Runtime[Deps]) -> CycleState:
    deps = runtime.context
    for o in state.get("slack_outcomes", []):
        show_outcome(deps, o["pr_id"], o["text"])
    errors: list[dict[str, Any]] = []
    for post in state.get("slack_posts", []):
        errors += _post_approval_message(deps, post["pr_id"], post["plan_id"])
    notes, more = _notify_plans(deps, state)
    return {"notifications": notes, "errors": errors + more}


def show_outcome(deps: Deps, pr_id: str, text: str) -> None:
    """Show on the PR's Slack message what happened outside Slack; the Approve / Reject buttons
    go away."""
    raw = deps.store.get_kv(PR_MESSAGE_KEY.format(pr_id))
    if not raw or deps.notifier is None or deps.dry_run:
        return
    try:
        ref = json.loads(raw)
    except ValueError:
        return
    if not isinstance(ref, dict) or not ref.get("channel") or not ref.get("ts"):
        return
    text = plain(text)   # built from data (kind, service): shown literally
    try:
        deps.notifier.update_message(channel=ref["channel"], ts=ref["ts"], text=text, blocks=outcome_blocks(None, text))
    except ToolError as e:
        log.warning("cannot update the Slack message of PR %s: %s", pr_id, e)


def _post_approval_message(deps: Deps, pr_id: str, plan_id: str) -> list[dict[str, Any]]:
    s = deps.settings.slack
    if deps.notifier is None or not s.enabled or deps.store.get_kv(PR_MESSAGE_KEY.format(pr_id)):
        return []
    pr = deps.store.get_pr(pr_id)
    if pr is None:
        return []
    incidents = [i for i in (deps.store.get_incident(iid) for iid in pr.incident_ids) if i is not None]
    try:
        m = deps.notifier.post_message(channel=s.channel, text=pr_message_text(pr=pr, incidents=incidents),
                                       blocks=pr_message_blocks(pr=pr, incidents=incidents,
                                                                plan=deps.store.get_plan(plan_id)))
        deps.store.set_kv(PR_MESSAGE_KEY.format(pr.id), json.dumps({"channel": m.channel, "ts": m.ts}))
    except ToolError as e:
        return [err("notify", s.channel, f"cannot post the approval message: {e}")]
    return []


def _notify_plans(deps: Deps, state: CycleState) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    s = deps.settings
    channel = s.slack.channel if s.slack.enabled else "log"
    notes = []
    errors: list[dict[str, Any]] = []
    for pd in state.get("plans", []):
        p = RemediationPlan.model_validate(pd)
        if p.guard_verdict not in ("notify_only", "rejected"):
            continue
        inc = deps.store.get_incident(p.incident_id)
        if inc is None:
            continue
        key = f"notified:{inc.id}:{inc.severity}:{p.playbook}"
        if deps.store.get_kv(key):
            continue
        why = "" if p.guard_verdict == "notify_only" and p.guard_reasons == ("notify playbook",) else \
            f" Guard: {'; '.join(p.guard_reasons)}."
        summary = f"[{inc.severity}] {inc.summary}. {p.rationale}{why}"
        if deps.notifier is not None and not deps.dry_run:
            try:
                deps.notifier.notify(channel=channel, text=plain(summary))   # audit-log users etc.: literal
            except ToolError as e:
                errors.append(err("notify", channel, str(e)))
                continue
        else:
            log.info("notify %s: %s", channel, summary)
        if not deps.dry_run:
            deps.store.set_kv(key, state["cycle_id"])
        audit(deps, state, "notify", "notified", inc.id, channel=channel, playbook=p.playbook,
              guard=p.guard_verdict, reasons=list(p.guard_reasons))
        notes.append({"incident_id": inc.id, "channel": channel, "summary": summary})
    return notes, errors
