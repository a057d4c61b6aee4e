"""The dev scenario end to end, with Slack: a cost spike → PR → signed Slack Approve → merge →
metrics recover → resolved, and every step in the tamper-evident audit chain.

Real pieces: the demo workspace (a bare Git remote seeded with the demo history, the replayed
metrics, a SQLite store), cycles run in-process through LangGraph, the FastAPI app under uvicorn
on loopback with requests signed in the test, and the production wiring of the Slack client
(``build_deps`` → ``build_notifier`` for the cycle's approval message, ``create_app`` building its
own client and signature checker from the settings). Only the Slack Web API is a fake on loopback:
the first test points slack_sdk's default ``WebClient.BASE_URL`` at it (the default config path),
the second uses the ``slack.api_url`` setting.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import git
import pytest
import slack_sdk
import yaml

from agents.compose import build_deps
from agents.config import load_settings
from agents.demo import prepare_workspace
from agents.deps import Deps
from agents.http import create_app
from memory.records import AuditEntry, PullRequest
from memory.store import Store
from tests.fakes.metrics import flatten_tail
from tests.fakes.slackapi import FakeSlackAPI
from tests.integration.test_lifecycle import CAPTIONER, _cost, cycle
from tests.integration.test_slack import (
    APPROVER,
    CAPTIONER_BRANCH,
    SECRET,
    TOKEN,
    SlowMerges,
    Workspace,
    _branch_merged,
    serve_in_thread,
)
from tools.results import SignalResult
from tools.slack import ACTIONS_BLOCK_PREFIX, APPROVE_ACTION, REJECT_ACTION, PostedMessage

pytestmark = pytest.mark.integration

MANIFEST = "apps/ml-serving/image-captioner.yaml"
MERGE_DELAY_S = 3.0  # the Git host takes its time; the Slack answer must not wait for it


def recovered(signal: str, kw: dict[str, Any], res: SignalResult) -> SignalResult:
    """The fix worked: the captioner's cost is back at its baseline for the last 8 hours."""
    return flatten_tail(res, 8) if signal == "workload_cost" and kw["name"] == "image-captioner" else res


def approval_message(api: FakeSlackAPI, pr: PullRequest) -> tuple[PostedMessage, list[dict[str, Any]]]:
    """The Block Kit message the cycle posted for ``pr`` (found by its actions block id)."""
    hits = [(PostedMessage(channel=cid, ts=ts), m["blocks"]) for (cid, ts), m in api.messages.items()
            if any(b.get("type") == "actions" and b.get("block_id") == f"{ACTIONS_BLOCK_PREFIX}{pr.id}"
                   for b in m["blocks"])]
    assert len(hits) == 1, f"expected one approval message for {pr.id}, got {len(hits)}"
    return hits[0]


def in_order(entries: list[AuditEntry], steps: list[tuple[str, Callable[[AuditEntry], bool]]]) -> list[AuditEntry]:
    """The first entry matching each step, each one after the previous; fails naming the missing step."""
    found: list[AuditEntry] = []
    i = 0
    for name, match in steps:
        while i < len(entries) and not match(entries[i]):
            i += 1
        assert i < len(entries), (f"audit step {name!r} missing after {found[-1].stage}/{found[-1].action}"
                                  if found else f"audit step {name!r} missing")
        found.append(entries[i])
        i += 1
    return found


def test_spike_pr_slack_approve_merge_recover_resolved_all_audited(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    cfg, cfg_path, remote = prepare_workspace(tmp_path, now)
    (tmp_path / "bot_token").write_text(TOKEN + "\n")
    cfg["slack"] = {"enabled": True, "channel": "#remediator", "approvers": [APPROVER],
                    "bot_token_file": str(tmp_path / "bot_token")}  # the signing secret comes from the env
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    monkeypatch.setenv("REMEDIATOR_SLACK__SIGNING_SECRET", SECRET)
    settings = load_settings(cfg_path)
    assert settings.slack.signing_secret is not None and settings.slack.signing_secret.get_secret_value() == SECRET
    before = git.Repo(remote).git.show(f"main:{MANIFEST}")
    assert "maxReplicas: 6" in before

    with FakeSlackAPI(token=TOKEN) as api:
        monkeypatch.setattr(slack_sdk.WebClient, "BASE_URL", api.base_url)

        # -- cycle 1: the spike is detected, the PR opened and the approval message posted
        r1 = cycle(cfg_path, now)
        inc = _cost(r1)
        assert inc is not None and inc["status"] == "proposed", r1["incidents"]
        iid = inc["id"]
        store = Store.open(settings.memory.url)
        (pr,) = [p for p in store.list_prs(statuses=["open"]) if iid in p.incident_ids]
        assert pr.branch.startswith(CAPTIONER_BRANCH)
        assert "maxReplicas: 3" in git.Repo(remote).git.show(f"{pr.branch}:{MANIFEST}")

        msg, blocks = approval_message(api, pr)
        posted = json.loads(store.get_kv(f"slack.pr_msg:{pr.id}") or "{}")  # posted once, remembered
        assert posted["ts"] == msg.ts and posted["channel"]
        store.close()
        post = next(c for c in api.calls_to("chat.postMessage")
                    if c.args.get("blocks") and f"{ACTIONS_BLOCK_PREFIX}{pr.id}" in str(c.args["blocks"]))
        assert post.token == TOKEN and post.args["channel"] == "#remediator"
        assert f"cost_anomaly {CAPTIONER}" in post.args["text"]
        (actions,) = [b for b in blocks if b["type"] == "actions"]
        assert {e["action_id"]: e["value"] for e in actions["elements"]} == {APPROVE_ACTION: iid, REJECT_ACTION: iid}
        assert all(e["text"]["text"] in ("Approve", "Reject") and "confirm" in e for e in actions["elements"])

        # -- the signed Approve click on the HTTP endpoint: 200 at once, merge in the background
        def deps_factory() -> Deps:
            d = build_deps(settings)
            return replace(d, prs=SlowMerges(d.prs, MERGE_DELAY_S))

        app = create_app(deps_factory, settings)  # its Slack client and signature check come from the settings
        with serve_in_thread(app) as url:
            ws = Workspace(tmp=tmp_path, cfg=cfg_path, remote=remote, now=now, settings=settings, api=api, url=url,
                           prs={CAPTIONER_BRANCH: pr}, messages={pr.id: msg}, blocks={pr.id: blocks})
            t0 = time.monotonic()
            r = ws.post(ws.payload(user=APPROVER))
            elapsed = time.monotonic() - t0
            assert r.status_code == 200, r.text
            assert elapsed < MERGE_DELAY_S - 0.5, f"acknowledged after {elapsed:.1f}s (the merge takes {MERGE_DELAY_S}s)"
            assert "Approving" in r.json()["text"]
            (final,) = ws.final_update()
        assert f"<@{APPROVER}>" in final.args["text"] and "Approved" in final.args["text"]
        assert "merged" in final.args["text"] and final.args["channel"] == msg.channel
        assert not [b for b in final.args["blocks"] if b["type"] == "actions"]  # the buttons are gone

        store = Store.open(settings.memory.url)
        (d,) = store.list_decisions(incident_id=iid)
        assert (d.verdict, d.source, d.actor, d.pr_id) == ("approve", "slack", f"slack:{APPROVER}", pr.id)
        merged = store.get_pr(pr.id)
        assert merged is not None and merged.status == "merged"
        assert store.get_incident(iid).status == "approved"  # type: ignore[union-attr]
        store.close()
        assert _branch_merged(remote, pr)
        on_main = git.Repo(remote).git.show(f"main:{MANIFEST}")
        assert "maxReplicas: 3" in on_main and "maxReplicas: 6" not in on_main

        # -- inside the reconcile grace: nothing is judged yet, even though the cost already looks fine
        r2 = cycle(cfg_path, now + timedelta(minutes=5), rewrite=recovered)
        assert next(i for i in r2["incidents"] if i["id"] == iid)["status"] == "approved"
        # -- after the grace (15m), still within the quiet time before resolving (1h, the default
        #    detection.resolve_after, longer than min_duration's 30m) of the last sighting: verify passes
        r3 = cycle(cfg_path, now + timedelta(minutes=20), rewrite=recovered)
        assert next(i for i in r3["incidents"] if i["id"] == iid)["status"] == "approved"
        r3b = cycle(cfg_path, now + timedelta(minutes=40), rewrite=recovered)
        assert next(i for i in r3b["incidents"] if i["id"] == iid)["status"] == "approved"
        # -- quiet for long enough: resolved, and no revert PR anywhere
        r4 = cycle(cfg_path, now + timedelta(minutes=65), rewrite=recovered)
        assert next(i for i in r4["incidents"] if i["id"] == iid)["status"] == "resolved"
        assert not [p for p in r4["pull_requests"] if p["branch"].startswith("remediator/revert/")]
        assert not [h for h in git.Repo(remote).heads if h.name.startswith("remediator/revert/")]
        assert len([c for c in api.calls_to("chat.postMessage") if f"{ACTIONS_BLOCK_PREFIX}{pr.id}"
                    in str(c.args.get("blocks"))]) == 1  # later cycles did not post the message again

    # -- the audit trail: intact, and it tells the whole story in order
    store = Store.open(settings.memory.url)
    try:
        result = store.audit.verify()
        assert result.ok, result.reason
        entries = list(store.audit.entries())
        assert result.count == len(entries)
        c1, c2, c3, c4 = (r["cycle_id"] for r in (r1, r2, r3, r4))
        steps = in_order(entries, [
            ("cycle started", lambda e: (e.stage, e.action, e.cycle_id) == ("cycle", "started", c1)),
            ("incident_opened", lambda e: e.action == "incident_opened" and e.subject == iid),
            ("planned", lambda e: e.action == "planned" and e.subject == iid),
            ("pr_opened", lambda e: e.action == "pr_opened" and e.subject == pr.id),
            ("slack decision", lambda e: (e.stage, e.action, e.subject) == ("decision", "approve", iid)),
            ("verify passing", lambda e: (e.stage, e.action, e.subject) == ("verify", "passing", iid)),
            ("incident_resolved", lambda e: e.action == "incident_resolved" and e.subject == iid),
            ("cycle_finished", lambda e: e.action == "cycle_finished" and e.cycle_id == c4),
        ])
        started, opened, planned, pr_opened, decision, passing, resolved, finished = steps
        assert {opened.cycle_id, planned.cycle_id, pr_opened.cycle_id} == {c1}
        assert (opened.data["kind"], opened.data["service"]) == ("cost_anomaly", CAPTIONER)
        assert pr_opened.data["branch"] == pr.branch and pr_opened.data["incident_ids"] == [iid]
        assert decision.cycle_id is None  # made in the HTTP app, between cycles
        assert decision.data["source"] == "slack" and decision.data["actor"] == f"slack:{APPROVER}"
        assert decision.data["pr"] == pr.branch and decision.data["pr_status"] == "merged"
        assert passing.cycle_id == c3 and passing.data["pr"] == pr.branch
        assert resolved.cycle_id == c4 and finished.subject == c4
        # cycle 1 finished before the decision, and nothing was verified inside the grace (cycle 2)
        assert any(e.action == "cycle_finished" and e.cycle_id == c1 and started.seq < e.seq < decision.seq
                   for e in entries)
        assert not [e for e in entries if e.stage == "verify" and e.cycle_id == c2]
        assert [e.action for e in entries if e.stage == "decision"] == ["approve"]
        assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    finally:
        store.close()

    # -- tamper-evident: one raw SQL edit of the decision entry (who approved) breaks the chain there
    db = settings.memory.sqlite_path
    assert db is not None
    with sqlite3.connect(db) as conn:
        cur = conn.execute("UPDATE audit_entries SET data = replace(data, ?, ?) WHERE seq = ?",
                           (f"slack:{APPROVER}", "slack:U0MALLORY", decision.seq))
        assert cur.rowcount == 1
    conn.close()
    store = Store.open(settings.memory.url)
    try:
        edited = next(e for e in store.audit.entries() if e.seq == decision.seq)
        assert edited.data["actor"] == "slack:U0MALLORY"  # the edit took
        broken = store.audit.verify()
        assert not broken.ok
        assert broken.first_bad_seq == decision.seq and "edited" in broken.reason
        assert broken.count == decision.seq - 1
    finally:
        store.close()


def test_slack_message_shows_a_close_done_outside_slack(tmp_path: Path) -> None:
    """Regression: when the cycle closed a PR (incident resolved before merge) its Slack message
    kept live Approve / Reject buttons, so a late click could revive the incident."""
    now = datetime.now(UTC).replace(microsecond=0)
    cfg, cfg_path, _ = prepare_workspace(tmp_path, now)
    (tmp_path / "bot_token").write_text(TOKEN + "\n")
    with FakeSlackAPI(token=TOKEN) as api:
        cfg["slack"] = {"enabled": True, "channel": "#remediator", "approvers": [APPROVER],
                        "bot_token_file": str(tmp_path / "bot_token"), "api_url": api.base_url}
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        inc = _cost(cycle(cfg_path, now))
        assert inc is not None
        store = Store.open(load_settings(cfg_path).memory.url)
        (pr,) = [p for p in store.list_prs(statuses=["open"]) if inc["id"] in p.incident_ids]
        msg, _ = approval_message(api, pr)
        cycle(cfg_path, now + timedelta(hours=1), rewrite=recovered)
        updates = [c for c in api.calls_to("chat.update") if c.args.get("ts") == msg.ts]
        assert updates and "resolved before merge" in updates[-1].args["text"]
        assert not any(b.get("type") == "actions" for b in api.messages[(msg.channel, msg.ts)]["blocks"])
