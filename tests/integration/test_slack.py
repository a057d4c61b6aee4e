"""Slack interactions end to end: the FastAPI app under uvicorn on loopback, real HTTP requests
signed in the test (v0 HMAC-SHA256), a real SQLite store, a real bare Git remote with open PRs
made by a real cycle, and a fake Slack Web API (chat.postMessage / chat.update /
usergroups.users.list) on loopback."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import git
import httpx
import pytest
import uvicorn
import yaml

from agents.checkpoint import sqlite_checkpointer
from agents.compose import build_deps, checkpoint_path
from agents.config import Settings, load_settings
from agents.demo import prepare_workspace
from agents.deps import Deps
from agents.graph import run_cycle
from agents.http import create_app
from memory.records import PullRequest
from memory.store import Store
from tests.fakes.slackapi import FakeSlackAPI
from tools.slack import APPROVE_ACTION, REJECT_ACTION, PostedMessage, SlackNotifier

pytestmark = pytest.mark.integration

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TOKEN = "xoxb-123-456-fakefakefake"
APPROVER = "U0APPROVER"
GROUP, GROUPIE = "S0ONCALL", "U0GROUPIE"
STRANGER = "U0STRANGER"
CAPTIONER_BRANCH = "remediator/cost-anomaly/ml-serving-image-captioner-"


# ----------------------------------------------------------------------------- helpers

def sign(body: bytes, ts: int | str, secret: str = SECRET) -> str:
    base = f"v0:{ts}:".encode() + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


@contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def wait_for(what: str, fn: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Workspace:
    tmp: Path
    cfg: Path
    remote: Path
    now: datetime
    settings: Settings
    api: FakeSlackAPI
    url: str
    prs: dict[str, PullRequest]          # branch prefix -> PR
    messages: dict[str, PostedMessage]    # PR id -> posted Slack message
    blocks: dict[str, list[dict[str, Any]]]

    def store(self) -> Store:
        return Store.open(self.settings.memory.url)

    def pr(self, prefix: str = CAPTIONER_BRANCH) -> PullRequest:
        return self.prs[prefix]

    def payload(self, *, user: str = APPROVER, action_id: str = APPROVE_ACTION, pr: PullRequest | None = None,
                value: str | None = None, kind: str = "block_actions") -> dict[str, Any]:
        pr = pr or self.pr()
        msg = self.messages[pr.id]
        blocks = self.blocks[pr.id]
        button = next(e for b in blocks if b["type"] == "actions" for e in b["elements"]
                      if e["action_id"] == (action_id if action_id in (APPROVE_ACTION, REJECT_ACTION)
                                            else APPROVE_ACTION))
        actions_block = next(b for b in blocks if b["type"] == "actions")
        return {
            "type": kind,
            "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T0TEAM"},
            "api_app_id": "A0APP", "token": "legacy-verification-token",
            "container": {"type": "message", "message_ts": msg.ts, "channel_id": msg.channel, "is_ephemeral": False},
            "trigger_id": f"{int(time.time())}.{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex}",
            "team": {"id": "T0TEAM", "domain": "example"},
            "enterprise": None, "is_enterprise_install": False,
            "channel": {"id": msg.channel, "name": "remediator"},
            "message": {"type": "message", "ts": msg.ts, "bot_id": "BFAKE", "text": "Remediation PR", "blocks": blocks},
            "state": {"values": {}},
            "response_url": "https://hooks.slack.invalid/actions/T0TEAM/1/abc",
            "actions": [{**button, "action_id": action_id, "block_id": actions_block["block_id"],
                         "value": value if value is not None else button["value"],
                         "action_ts": f"{time.time():.6f}"}],
        }

    def post(self, payload: dict[str, Any] | None = None, *, body: bytes | None = None, ts: int | None = None,
             secret: str = SECRET, headers: dict[str, str] | None = None) -> httpx.Response:
        body = body if body is not None else urlencode({"payload": json.dumps(payload)}).encode()
        ts = int(time.time()) if ts is None else ts
        hdrs = {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": str(ts),
                "X-Slack-Signature": sign(body, ts, secret)}
        if headers is not None:
            hdrs = headers
        return httpx.post(f"{self.url}/slack/interactions", content=body, headers=hdrs, timeout=30)

    def final_update(self, pr: PullRequest | None = None, n: int = 1) -> list[Any]:
        msg = self.messages[(pr or self.pr()).id]

        def done() -> list[Any]:
            ups = [c for c in self.api.calls_to("chat.update") if c.args.get("ts") == msg.ts
                   and not c.args.get("text", "").startswith(("Approving", "Rejecting"))]
            return ups if len(ups) >= n else []
        found: list[Any] = wait_for("the final chat.update", done)
        return found

    def state(self) -> dict[str, Any]:
        """Everything a decision could change."""
        store = self.store()
        try:
            return {
                "decisions": [d.id for d in store.list_decisions()],
                "audit": len(list(store.audit.entries())),
                "prs": {p.id: p.status for p in store.list_prs()},
                "incidents": {i.id: i.status for i in store.list_incidents()},
                "heads": sorted((h.name, h.commit.hexsha) for h in git.Repo(self.remote).heads),
                "updates": len(self.api.calls_to("chat.update")),
            }
        finally:
            store.close()


class SlowMerges:
    """Wraps the PR provider: merge/close sleep first, like a Git host that takes its time."""

    def __init__(self, inner: Any, delay: float) -> None:
        self.inner, self.delay = inner, delay

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def merge(self, **kw: Any) -> Any:
        time.sleep(self.delay)
        return self.inner.merge(**kw)

    def close(self, **kw: Any) -> Any:
        time.sleep(self.delay)
        return self.inner.close(**kw)


@contextmanager
def workspace(tmp: Path, *, merge_delay: float = 0.0) -> Iterator[Workspace]:
    now = datetime.now(UTC).replace(microsecond=0)
    cfg, cfg_path, remote = prepare_workspace(tmp, now)
    (tmp / "signing_secret").write_text(SECRET + "\n")
    (tmp / "bot_token").write_text(TOKEN + "\n")
    cfg["slack"] = {"enabled": True, "channel": "#remediator", "approvers": [APPROVER, GROUP],
                    "bot_token_file": str(tmp / "bot_token"), "signing_secret_file": str(tmp / "signing_secret")}
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    settings = load_settings(cfg_path)
    with FakeSlackAPI(token=TOKEN) as api:
        api.usergroups[GROUP] = [GROUPIE, "U0OTHER"]
        client = SlackNotifier(token=TOKEN, base_url=api.base_url)
        deps = build_deps(settings, replay_shift_to=now.replace(second=0))
        deps = replace(deps, notifier=client)
        with sqlite_checkpointer(checkpoint_path(settings)) as cp:
            report = run_cycle(deps, cp, started_at=now)
        store = deps.store
        prs: dict[str, PullRequest] = {}
        messages: dict[str, PostedMessage] = {}
        blocks: dict[str, list[dict[str, Any]]] = {}
        for p in report["pull_requests"]:
            pr = store.get_pr(p["id"])
            assert pr is not None and pr.status == "open"
            prs[pr.branch.rsplit("-", 1)[0] + "-"] = pr
            incs = [i for i in (store.get_incident(x) for x in pr.incident_ids) if i is not None]
            messages[pr.id] = client.post_pr_message(channel="#remediator", pr=pr, incidents=incs,
                                                     plan=store.latest_plan(incs[0].id))
            blocks[pr.id] = api.messages[(messages[pr.id].channel, messages[pr.id].ts)]["blocks"]
        store.close()
        assert CAPTIONER_BRANCH in prs, report["pull_requests"]

        def deps_factory() -> Deps:
            d = build_deps(settings)
            return replace(d, prs=SlowMerges(d.prs, merge_delay)) if merge_delay else d

        app = create_app(deps_factory, settings, slack=SlackNotifier(token=TOKEN, base_url=api.base_url))
        with serve_in_thread(app) as url:
            yield Workspace(tmp=tmp, cfg=cfg_path, remote=remote, now=now, settings=settings, api=api, url=url,
                            prs=prs, messages=messages, blocks=blocks)


@pytest.fixture()
def ws(tmp_path: Path) -> Iterator[Workspace]:
    with workspace(tmp_path) as w:
        yield w


@pytest.fixture(scope="module")
def shared_ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """One workspace for the requests that must change nothing."""
    with workspace(tmp_path_factory.mktemp("slack-shared")) as w:
        yield w


def _branch_merged(remote: Path, pr: PullRequest) -> bool:
    repo = git.Repo(remote)
    return bool(pr.head_sha) and repo.is_ancestor(repo.commit(pr.head_sha), repo.heads["main"].commit)


# ----------------------------------------------------------------------------- the message

def test_pr_message_has_buttons_with_confirm_dialogs(shared_ws: Workspace) -> None:
    pr = shared_ws.pr()
    blocks = shared_ws.blocks[pr.id]
    (actions,) = [b for b in blocks if b["type"] == "actions"]
    by_id = {e["action_id"]: e for e in actions["elements"]}
    assert set(by_id) == {APPROVE_ACTION, REJECT_ACTION}
    for e in by_id.values():
        assert e["value"] == pr.incident_ids[0]
        assert {"title", "text", "confirm", "deny"} <= set(e["confirm"])
    post = shared_ws.api.calls_to("chat.postMessage")[0]
    assert post.token == TOKEN and post.args["channel"] == "#remediator" and post.args["text"]


# ----------------------------------------------------------------------------- decisions

def test_approve_acks_fast_merges_records_and_updates_message(tmp_path: Path) -> None:
    with workspace(tmp_path, merge_delay=3.5) as ws:
        pr = ws.pr()
        t0 = time.monotonic()
        r = ws.post(ws.payload(user=APPROVER))
        elapsed = time.monotonic() - t0
        assert r.status_code == 200, r.text
        assert elapsed < 3.0, f"acknowledged after {elapsed:.1f}s (the merge takes 3.5s)"
        store = ws.store()
        assert store.list_decisions() == []  # the merge runs after the answer

        (final,) = ws.final_update()
        assert f"<@{APPROVER}>" in final.args["text"] and "Approved" in final.args["text"]
        assert final.args["channel"] == ws.messages[pr.id].channel
        assert not [b for b in final.args["blocks"] if b["type"] == "actions"]  # buttons gone

        (d,) = store.list_decisions()
        assert (d.verdict, d.actor, d.source, d.incident_id, d.pr_id) == (
            "approve", f"slack:{APPROVER}", "slack", pr.incident_ids[0], pr.id)
        assert store.get_pr(pr.id).status == "merged"  # type: ignore[union-attr]
        assert store.get_incident(pr.incident_ids[0]).status == "approved"  # type: ignore[union-attr]
        entries = [e for e in store.audit.entries() if e.stage == "decision"]
        assert [(e.action, e.subject, e.data["actor"], e.data["source"]) for e in entries] == [
            ("approve", pr.incident_ids[0], f"slack:{APPROVER}", "slack")]
        store.close()
        assert _branch_merged(ws.remote, pr)
        assert pr.branch not in [h.name for h in git.Repo(ws.remote).heads]

        metrics = httpx.get(f"{ws.url}/metrics", timeout=10)
        assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
        assert 'remediator_decisions_total{source="slack",verdict="approve"} 1.0' in metrics.text
        assert "remediator_open_pull_requests 1.0" in metrics.text  # the other PR is still open
        assert 'remediator_open_incidents{kind="cost_anomaly"}' in metrics.text
        assert httpx.get(f"{ws.url}/healthz", timeout=10).json()["status"] == "ok"


def test_double_click_makes_one_decision(ws: Workspace) -> None:
    pr = ws.pr()
    clicks = [ws.payload(user=APPROVER), ws.payload(user=GROUPIE), ws.payload(user=APPROVER)]
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(ws.post, clicks))
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
    assert sum("Already" in a.json().get("text", "") for a in answers) == 2
    ws.final_update()
    time.sleep(0.5)  # let any (wrong) second decision show up
    store = ws.store()
    assert len(store.list_decisions()) == 1
    assert len([e for e in store.audit.entries() if e.stage == "decision"]) == 1
    assert store.get_pr(pr.id).status == "merged"  # type: ignore[union-attr]
    store.close()
    assert _branch_merged(ws.remote, pr)
    # a later Reject click on the decided incident changes nothing
    before = ws.state()
    r = ws.post(ws.payload(user=GROUPIE, action_id=REJECT_ACTION))
    assert r.status_code == 200 and "Already approved" in r.json()["text"]
    time.sleep(0.3)
    assert ws.state() == before


def test_group_member_may_decide(ws: Workspace) -> None:
    r = ws.post(ws.payload(user=GROUPIE))
    assert r.status_code == 200, r.text
    (final,) = ws.final_update()
    assert f"<@{GROUPIE}>" in final.args["text"]
    assert [c.args["usergroup"] for c in ws.api.calls_to("usergroups.users.list")] == [GROUP]
    store = ws.store()
    assert [d.actor for d in store.list_decisions()] == [f"slack:{GROUPIE}"]
    store.close()


def test_replayed_request_has_no_second_effect(ws: Workspace) -> None:
    body = urlencode({"payload": json.dumps(ws.payload(user=APPROVER))}).encode()
    ts = int(time.time())
    first = ws.post(body=body, ts=ts)
    assert first.status_code == 200
    ws.final_update()
    before = ws.state()
    again = ws.post(body=body, ts=ts)  # the very same signed request, within the 5 minutes
    assert again.status_code == 200 and "already processed" in again.json()["text"]
    time.sleep(0.5)
    assert ws.state() == before
    assert len(before["decisions"]) == 1


def test_reject_closes_pr_records_and_is_not_reproposed(ws: Workspace) -> None:
    pr = ws.pr()
    main_before = git.Repo(ws.remote).heads["main"].commit.hexsha
    r = ws.post(ws.payload(user=APPROVER, action_id=REJECT_ACTION))
    assert r.status_code == 200, r.text
    (final,) = ws.final_update()
    assert "Rejected" in final.args["text"] and f"<@{APPROVER}>" in final.args["text"]
    store = ws.store()
    (d,) = store.list_decisions()
    assert (d.verdict, d.actor, d.source, d.pr_id) == ("reject", f"slack:{APPROVER}", "slack", pr.id)
    assert store.get_pr(pr.id).status == "closed"  # type: ignore[union-attr]
    assert store.get_incident(pr.incident_ids[0]).status == "rejected"  # type: ignore[union-attr]
    assert [e.action for e in store.audit.entries() if e.stage == "decision"] == ["reject"]
    store.close()
    repo = git.Repo(ws.remote)
    assert pr.branch not in [h.name for h in repo.heads]
    assert repo.heads["main"].commit.hexsha == main_before

    # the next cycle does not propose the same plan again (cooldown)
    deps = build_deps(ws.settings, replay_shift_to=ws.now.replace(second=0))
    deps = replace(deps, notifier=SlackNotifier(token=TOKEN, base_url=ws.api.base_url))
    with sqlite_checkpointer(checkpoint_path(ws.settings)) as cp:
        report = run_cycle(deps, cp, started_at=ws.now + timedelta(minutes=5))
    deps.store.close()
    assert not [p for p in report["pull_requests"]
                if p["branch"].startswith(CAPTIONER_BRANCH) and p["status"] == "open"]
    assert pr.branch not in [h.name for h in git.Repo(ws.remote).heads]


# ----------------------------------------------------------------------------- refusals: nothing changes

def _unchanged(ws: Workspace, fn: Callable[[], httpx.Response]) -> httpx.Response:
    before = ws.state()
    r = fn()
    time.sleep(0.3)  # a (wrong) background task would have started by now
    assert ws.state() == before
    assert ws.pr().branch in [h.name for h in git.Repo(ws.remote).heads]
    return r


def test_forged_signature_is_401(shared_ws: Workspace) -> None:
    r = _unchanged(shared_ws, lambda: shared_ws.post(shared_ws.payload(), secret="not-the-secret"))
    assert r.status_code == 401


def test_tampered_body_is_401(shared_ws: Workspace) -> None:
    good = urlencode({"payload": json.dumps(shared_ws.payload(user=STRANGER))}).encode()
    ts = int(time.time())
    evil = good.replace(STRANGER.encode(), APPROVER.encode())
    hdrs = {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": sign(good, ts)}
    r = _unchanged(shared_ws, lambda: shared_ws.post(body=evil, headers=hdrs))
    assert r.status_code == 401


@pytest.mark.parametrize("drop", ["X-Slack-Signature", "X-Slack-Request-Timestamp"])
def test_missing_signature_headers_are_401(shared_ws: Workspace, drop: str) -> None:
    body = urlencode({"payload": json.dumps(shared_ws.payload())}).encode()
    ts = int(time.time())
    hdrs = {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": sign(body, ts)}
    del hdrs[drop]
    r = _unchanged(shared_ws, lambda: shared_ws.post(body=body, headers=hdrs))
    assert r.status_code == 401


@pytest.mark.parametrize("skew", [-301, -3600, 600])  # +301 would drift into the window as the clock moves on
def test_expired_or_future_timestamp_is_401(shared_ws: Workspace, skew: int) -> None:
    ts = int(time.time()) + skew  # correctly signed, but outside the 5-minute window
    r = _unchanged(shared_ws, lambda: shared_ws.post(shared_ws.payload(), ts=ts))
    assert r.status_code == 401


def test_unknown_user_is_403(shared_ws: Workspace) -> None:
    r = _unchanged(shared_ws, lambda: shared_ws.post(shared_ws.payload(user=STRANGER)))
    assert r.status_code == 403
    body = r.json()
    assert body["response_type"] == "ephemeral" and "not an approver" in body["text"]


def test_unknown_action_is_400(shared_ws: Workspace) -> None:
    r = _unchanged(shared_ws, lambda: shared_ws.post(shared_ws.payload(action_id="remediator_merge_everything")))
    assert r.status_code == 400


def test_other_interaction_types_and_garbage_are_400(shared_ws: Workspace) -> None:
    r = _unchanged(shared_ws, lambda: shared_ws.post(shared_ws.payload(kind="view_submission")))
    assert r.status_code == 400
    r = _unchanged(shared_ws, lambda: shared_ws.post(body=b"payload=%7Bnot-json"))
    assert r.status_code == 400


def test_unknown_incident_is_404(shared_ws: Workspace) -> None:
    r = _unchanged(shared_ws, lambda: shared_ws.post(shared_ws.payload(value="inc-doesnotexist")))
    assert r.status_code == 404


def test_healthz_and_metrics(shared_ws: Workspace) -> None:
    assert httpx.get(f"{shared_ws.url}/healthz", timeout=10).json() == {"status": "ok", "store": "ok", "slack": True}
    text = httpx.get(f"{shared_ws.url}/metrics", timeout=10).text
    assert "remediator_open_pull_requests 2.0" in text
    assert 'remediator_open_incidents{kind="cost_anomaly"} 1.0' in text
    assert "# TYPE remediator_slack_interactions_total counter" in text


def test_group_lookup_is_cached_and_fails_closed() -> None:
    with FakeSlackAPI(token=TOKEN) as api:
        api.usergroups[GROUP] = [GROUPIE]
        client = SlackNotifier(token=TOKEN, base_url=api.base_url)
        assert client.is_approver(user_id=GROUPIE, approvers=[APPROVER, GROUP])
        assert client.is_approver(user_id=GROUPIE, approvers=[APPROVER, GROUP])
        assert len(api.calls_to("usergroups.users.list")) == 1  # cached
        assert client.is_approver(user_id=APPROVER, approvers=[APPROVER, GROUP])
        assert not client.is_approver(user_id="", approvers=[APPROVER, GROUP])
        api.errors["usergroups.users.list"] = "missing_scope"
        fresh = SlackNotifier(token=TOKEN, base_url=api.base_url)
        assert not fresh.is_approver(user_id=GROUPIE, approvers=[GROUP])  # cannot read the group: deny
        bad = SlackNotifier(token="xoxb-wrong", base_url=api.base_url)
        assert not bad.is_approver(user_id=GROUPIE, approvers=["S0OTHER"])
