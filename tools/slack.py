"""Slack adapter (slack_sdk): notifications, the Block Kit PR message with Approve / Reject
buttons, message updates, approver checks (user IDs or user groups) and request signatures.

The bot token and the signing secret never appear in errors, logs or reprs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import Clock, SignatureVerifier

from memory.records import Incident, PullRequest, RemediationPlan
from tools.errors import PermanentError, TemporaryError, scrub
from tools.results import PostedMessage as PostedMessage  # defined with the other results; re-exported here

log = logging.getLogger("remediator.slack")

APPROVE_ACTION = "remediator_approve"
REJECT_ACTION = "remediator_reject"
ACTIONS: dict[str, str] = {APPROVE_ACTION: "approve", REJECT_ACTION: "reject"}
ACTIONS_BLOCK_PREFIX = "remediator:pr:"
MAX_AGE_S = 300  # Slack's replay window for signed requests

Block = dict[str, Any]


# ----------------------------------------------------------------------------- message content

def _esc(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plain(text: str) -> str:
    """Text built from data (summaries, service names, audit-log users) as Slack mrkdwn that shows
    it literally: no ``<!channel>``, ``<url|label>`` link or user mention can come from the data."""
    return _esc(text)


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _pr_link(pr: PullRequest) -> str:
    if pr.url.startswith(("http://", "https://")):
        label = f"#{pr.number}" if pr.number is not None else pr.branch
        return f"<{pr.url}|{_esc(label)}>"
    return f"`{_esc(pr.url or pr.branch)}`"


def pr_message_text(*, pr: PullRequest, incidents: Sequence[Incident] = ()) -> str:
    """Plain fallback text (notifications, screen readers) of the PR message."""
    what = "; ".join(f"[{i.severity}] {i.kind} {i.service}" for i in incidents) or ", ".join(pr.incident_ids)
    return _cut(plain(f"Remediation PR awaiting approval: {pr.title} ({what})"), 3000)


def pr_message_blocks(*, pr: PullRequest, incidents: Sequence[Incident] = (),
                      plan: RemediationPlan | None = None, incident_id: str | None = None) -> list[Block]:
    """Block Kit message for one PR with Approve / Reject buttons (each with a confirm dialog).

    Both buttons carry the incident id in ``value`` (``incident_id``, else the first of
    ``incidents``, else the PR's first incident); the actions block's ``block_id`` is
    ``remediator:pr:<pr id>``. A decision on that incident merges or closes the PR.
    """
    target = incident_id or (incidents[0].id if incidents else (pr.incident_ids[0] if pr.incident_ids else ""))
    if not target:
        raise ValueError(f"PR {pr.id} names no incident; nothing to decide on")
    lines = [f"*[{i.severity}]* {i.kind.replace('_', ' ')} `{_esc(i.service)}`: {_esc(i.summary)}" for i in incidents]
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(f"Remediation PR: {pr.title}", 150)}},
    ]
    if lines:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut("\n".join(lines), 3000)}})
    blocks.append({"type": "section", "fields": [
        {"type": "mrkdwn", "text": f"*PR*\n{_pr_link(pr)}"},
        {"type": "mrkdwn", "text": f"*Branch*\n`{_esc(pr.branch)}` → `{_esc(pr.base)}`"},
        {"type": "mrkdwn", "text": _cut("*Files*\n" + ("\n".join(f"`{_esc(f)}`" for f in pr.files) or "—"), 2000)},
        {"type": "mrkdwn", "text": f"*Incident*\n`{_esc(target)}`"},
    ]})
    if plan is not None:
        ctx = f"Playbook `{_esc(plan.playbook)}`" + (f": {_esc(plan.rationale)}" if plan.rationale else "")
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _cut(ctx, 3000)}]})
    branch = _cut(pr.branch, 120)
    blocks.append({
        "type": "actions",
        "block_id": _cut(f"{ACTIONS_BLOCK_PREFIX}{pr.id}", 255),
        "elements": [
            {"type": "button", "action_id": APPROVE_ACTION, "style": "primary", "value": target,
             "text": {"type": "plain_text", "text": "Approve"},
             "confirm": {"title": {"type": "plain_text", "text": "Approve this change?"},
                         "text": {"type": "mrkdwn",
                                  "text": _cut(f"This merges `{_esc(branch)}` into `{_esc(pr.base)}`; "
                                               "Argo CD / Flux then applies it.", 300)},
                         "confirm": {"type": "plain_text", "text": "Approve"},
                         "deny": {"type": "plain_text", "text": "Cancel"}}},
            {"type": "button", "action_id": REJECT_ACTION, "style": "danger", "value": target,
             "text": {"type": "plain_text", "text": "Reject"},
             "confirm": {"title": {"type": "plain_text", "text": "Reject this change?"},
                         "text": {"type": "mrkdwn",
                                  "text": _cut(f"This closes the PR on `{_esc(branch)}`; the same plan is not "
                                               "proposed again within the cooldown.", 300)},
                         "confirm": {"type": "plain_text", "text": "Reject"},
                         "deny": {"type": "plain_text", "text": "Cancel"},
                         "style": "danger"}},
        ],
    })
    return blocks


def outcome_blocks(original: Iterable[Block] | None, text: str, *, keep_actions: bool = False) -> list[Block]:
    """The original message's blocks with our Approve / Reject buttons removed (unless
    ``keep_actions``) and ``text`` appended as the outcome."""
    kept = [b for b in (original or ()) if keep_actions or not (
        b.get("type") == "actions" and str(b.get("block_id", "")).startswith(ACTIONS_BLOCK_PREFIX))]
    return [*kept, {"type": "section", "text": {"type": "mrkdwn", "text": _cut(text, 3000)}}]


# ----------------------------------------------------------------------------- request signatures

class _FnClock(Clock):
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()


class SlackSignature:
    """Verifies Slack's v0 request signature (HMAC-SHA256 of ``v0:{timestamp}:{raw body}``) and
    the 5-minute timestamp window, with slack_sdk's SignatureVerifier."""

    def __init__(self, signing_secret: str, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._verifier = SignatureVerifier(signing_secret, clock=_FnClock(clock))

    def __repr__(self) -> str:
        return "SlackSignature(signing_secret=***)"

    def problem(self, *, body: bytes, timestamp: str | None, signature: str | None) -> str | None:
        """None when the request is authentic and fresh, else why not (safe to log)."""
        if not timestamp or not signature:
            return "missing X-Slack-Request-Timestamp or X-Slack-Signature"
        if not timestamp.strip().isdigit():
            return "malformed X-Slack-Request-Timestamp"
        if abs(self._clock() - int(timestamp)) > MAX_AGE_S:
            return f"X-Slack-Request-Timestamp is more than {MAX_AGE_S // 60} minutes away from now (replay?)"
        if not signature.startswith("v0="):
            return "X-Slack-Signature is not a v0 signature"
        if not self._verifier.is_valid(body=body, timestamp=timestamp.strip(), signature=signature):
            return "X-Slack-Signature does not match the body"
        return None

    def is_valid(self, *, body: bytes, timestamp: str | None, signature: str | None) -> bool:
        return self.problem(body=body, timestamp=timestamp, signature=signature) is None


# ----------------------------------------------------------------------------- Web API client

class SlackNotifier:
    """Notifier adapter over Slack's Web API."""

    def __init__(self, *, token: str, timeout_s: float = 10, base_url: str | None = None,
                 group_cache_s: float = 300) -> None:
        url = base_url or WebClient.BASE_URL
        self._client = WebClient(token=token, timeout=max(1, int(timeout_s)), base_url=url)
        # approver checks run while Slack waits for our answer (3 s): a short timeout there
        self._quick = WebClient(token=token, timeout=2, base_url=url)
        self._group_cache_s = group_cache_s
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SlackNotifier(base_url={self._client.base_url!r}, token=***)"

    def _call(self, method: str, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except SlackApiError as e:
            code = e.response.get("error", "unknown_error") if e.response is not None else "unknown_error"
            msg = scrub(f"Slack {method} {what} failed: {code}")
            if code == "ratelimited" or (e.response is not None and (e.response.status_code or 0) >= 500):
                delay = 5.0
                if e.response is not None:
                    try:
                        delay = float(e.response.headers.get("retry-after", delay))
                    except (TypeError, ValueError):
                        pass
                raise TemporaryError(msg, source="slack", delay=delay) from None
            raise PermanentError(msg, source="slack") from None
        except OSError as e:
            raise TemporaryError(scrub(f"cannot reach Slack for {method}: {e}"), source="slack") from None

    def post_message(self, *, channel: str, text: str, blocks: list[Block] | None = None) -> PostedMessage:
        """chat.postMessage; returns the channel ID and ``ts`` that chat.update needs later."""
        resp = self._call("chat.postMessage", f"to {channel}",
                          lambda: self._client.chat_postMessage(channel=channel, text=text, blocks=blocks))
        return PostedMessage(channel=str(resp.get("channel") or channel), ts=str(resp.get("ts") or ""))

    def notify(self, *, channel: str, text: str, blocks: list[dict[str, object]] | None = None) -> str | None:
        return self.post_message(channel=channel, text=text, blocks=blocks).ts or None

    def post_pr_message(self, *, channel: str, pr: PullRequest, incidents: Sequence[Incident] = (),
                        plan: RemediationPlan | None = None) -> PostedMessage:
        """Post the Approve / Reject message for ``pr``."""
        return self.post_message(channel=channel, text=pr_message_text(pr=pr, incidents=incidents),
                                 blocks=pr_message_blocks(pr=pr, incidents=incidents, plan=plan))

    def update_message(self, *, channel: str, ts: str, text: str, blocks: list[Block] | None = None) -> None:
        """chat.update of a message this bot posted (``channel`` is the channel ID)."""
        self._call("chat.update", f"of {channel}/{ts}",
                   lambda: self._client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks or []))

    def usergroup_members(self, usergroup: str) -> frozenset[str]:
        """User IDs in a user group (usergroups.users.list), cached for ``group_cache_s``."""
        now = time.monotonic()
        with self._lock:
            hit = self._groups.get(usergroup)
            if hit is not None and now - hit[0] < self._group_cache_s:
                return hit[1]
        resp = self._call("usergroups.users.list", f"for {usergroup}",
                          lambda: self._quick.usergroups_users_list(usergroup=usergroup))
        members = frozenset(str(u) for u in (resp.get("users") or []))
        with self._lock:
            self._groups[usergroup] = (now, members)
        return members

    def is_approver(self, *, user_id: str, approvers: Iterable[str]) -> bool:
        """True when ``user_id`` is listed, or is a member of a listed user group (``S...``).
        Fails closed: a group that cannot be read grants nothing (logged)."""
        approvers = [a.strip() for a in approvers if a.strip()]
        if not user_id:
            return False
        if user_id in approvers:
            return True
        for group in (a for a in approvers if a.startswith("S")):
            try:
                if user_id in self.usergroup_members(group):
                    return True
            except (TemporaryError, PermanentError) as e:
                log.warning("cannot check membership of Slack user group %s: %s", group, e)
        return False
