"""HTTP app (FastAPI): Slack interactions, health and Prometheus metrics.

``POST /slack/interactions`` takes Slack's Approve / Reject button clicks:

1. the v0 signature (HMAC-SHA256 of ``v0:{timestamp}:{raw body}``) and the 5-minute
   timestamp window are checked on the raw body before anything is parsed (401 otherwise);
2. the payload must be a ``block_actions`` click on our buttons (400 otherwise);
3. the clicking user must be in ``slack.approvers``, directly (``U...``/``W...``) or through a
   user group (``S...``) (403 with an ephemeral-style text otherwise; nothing changes);
4. a request already processed (same ``trigger_id`` + ``action_ts``) and a second click on an
   incident already being decided answer 200 and change nothing;
5. the answer (200) goes out at once; the decision (merge / close through the provider, which
   may take seconds) runs afterwards as a background task through ``agents.approvals.decide``,
   and the original message is updated (chat.update) with the outcome and who decided.

Processed request keys and per-incident decision claims live in the store's kv table, so
they hold across restarts and replicas.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from agents.approvals import NothingToDecide, decide
from agents.compose import build_deps, build_notifier, build_slack_signature, build_ui_token
from agents.config import ConfigError, Settings
from agents.deps import Deps
from agents.metrics import store_registry
from agents.probes import Readiness, add_readiness_and_metrics
from agents.ui import mount_ui
from tools.errors import TemporaryError, ToolError, scrub
from tools.slack import ACTIONS, SlackNotifier, SlackSignature, outcome_blocks

log = logging.getLogger("remediator.http")
MAX_BODY = 1 << 20
REQUEST_KEY = "slack.request:"
CLAIM_KEY = "slack.decision:"


def _json(value: str | None) -> dict[str, Any]:
    try:
        d = json.loads(value or "{}")
    except ValueError:
        return {}
    return d if isinstance(d, dict) else {}


def _obj(d: Mapping[str, Any], key: str) -> dict[str, Any]:
    v = d.get(key)
    return v if isinstance(v, dict) else {}


def _now() -> str:
    return datetime.now(UTC).isoformat()


# ----------------------------------------------------------------------------- the app

class _Interactions:
    def __init__(self, *, deps_factory: Callable[[], Deps], settings: Settings,
                 slack: SlackNotifier | None, signature: SlackSignature | None) -> None:
        self.deps_factory = deps_factory
        self.settings = settings
        self.slack = slack
        self.signature = signature
        self.outcomes: Counter[str] = Counter()
        self._deps: Deps | None = None
        self._deps_lock = threading.Lock()
        self._decide_lock = threading.Lock()  # one decision at a time: they share one git workdir

    @property
    def deps(self) -> Deps:
        with self._deps_lock:
            if self._deps is None:
                self._deps = self.deps_factory()
            return self._deps

    def close(self) -> None:
        with self._deps_lock:
            if self._deps is not None:
                self._deps.store.close()
                self._deps = None

    def _answer(self, outcome: str, status: int, body: dict[str, Any]) -> tuple[int, dict[str, Any], None]:
        self.outcomes[outcome] += 1
        return status, body, None

    # -- the request --------------------------------------------------------------------------

    def handle(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, dict[str, Any], Callable[[], None] | None]:
        """(status, JSON answer, background job or None). Checks in the order the module doc lists."""
        if self.signature is None or self.slack is None:
            return self._answer("disabled", 404, {"error": "Slack interactions are not enabled (slack.enabled)"})
        problem = self.signature.problem(body=body, timestamp=headers.get("x-slack-request-timestamp"),
                                         signature=headers.get("x-slack-signature"))
        if problem is not None:
            log.warning("rejected Slack request: %s", problem)
            return self._answer("bad_signature", 401, {"error": f"invalid Slack request: {problem}"})
        try:
            form = parse_qs(body.decode("utf-8"), strict_parsing=False)
            payload = json.loads(form["payload"][-1])
            if not isinstance(payload, dict):
                raise ValueError("payload is not an object")
        except (UnicodeDecodeError, KeyError, IndexError, ValueError) as e:
            return self._answer("bad_request", 400, {"error": f"expected a form field 'payload' holding JSON ({e})"})
        if payload.get("type") != "block_actions":
            return self._answer("bad_request", 400, {"error": f"unsupported interaction type {payload.get('type')!r}"})
        actions = payload.get("actions")
        action = actions[0] if isinstance(actions, list) and actions and isinstance(actions[0], dict) else {}
        verdict = ACTIONS.get(str(action.get("action_id", "")))
        if verdict is None:
            log.warning("rejected Slack action %r: not one of ours", action.get("action_id"))
            return self._answer("unknown_action", 400, {"error": f"unknown action {action.get('action_id')!r}"})
        incident_id = str(action.get("value") or "")
        user_id = str(_obj(payload, "user").get("id") or "")
        if not self.slack.is_approver(user_id=user_id, approvers=self.settings.slack.approvers):
            log.warning("Slack user %s may not %s incident %s (not in slack.approvers)", user_id, verdict, incident_id)
            return self._answer("forbidden", 403, {
                "response_type": "ephemeral", "replace_original": False,
                "text": f"Sorry <@{user_id}>, you are not an approver for remediator changes "
                        "(ask an admin to add you or your user group to slack.approvers). Nothing was changed."})
        store = self.deps.store
        if not incident_id or store.get_incident(incident_id) is None:
            return self._answer("unknown_incident", 404, {"error": f"no incident {incident_id!r}"})

        trigger, action_ts = payload.get("trigger_id"), action.get("action_ts")
        rkey = REQUEST_KEY + (f"{trigger}:{action_ts}" if trigger and action_ts
                              else hashlib.sha256(body).hexdigest())
        if not store.claim_kv(rkey, json.dumps({"user": user_id, "incident": incident_id, "at": _now()})):
            log.info("Slack request %s already processed; ignored", rkey)
            return self._answer("replay", 200, {"response_type": "ephemeral", "replace_original": False,
                                                "text": "This click was already processed."})
        claim = json.dumps({"verdict": verdict, "user": user_id, "state": "pending", "at": _now()})
        ckey = CLAIM_KEY + incident_id
        if not store.claim_kv(ckey, claim, retake_if=lambda old: _json(old).get("state") == "failed"):
            prev = _json(store.get_kv(ckey))
            return self._answer("duplicate", 200, {
                "response_type": "ephemeral", "replace_original": False,
                "text": f"Already {'approved' if prev.get('verdict') == 'approve' else 'rejected'} "
                        f"by <@{prev.get('user', '?')}>; nothing more to do."})

        container, message = _obj(payload, "container"), _obj(payload, "message")
        channel = _obj(payload, "channel").get("id") or container.get("channel_id")
        ts = message.get("ts") or container.get("message_ts")
        blocks = message.get("blocks") if isinstance(message.get("blocks"), list) else None

        def job() -> None:
            self.run_decision(incident_id=incident_id, verdict=verdict, user_id=user_id,
                              channel=str(channel) if channel else None, ts=str(ts) if ts else None, blocks=blocks)

        verb = "Approving" if verdict == "approve" else "Rejecting"
        self.outcomes[f"accepted_{verdict}"] += 1
        return 200, {"response_type": "ephemeral", "replace_original": False,
                     "text": f"{verb} incident {incident_id} (requested by <@{user_id}>)…"}, job

    # -- the decision (background) ------------------------------------------------------------

    def _update(self, channel: str | None, ts: str | None, text: str, blocks: list[dict[str, Any]]) -> None:
        if not channel or not ts or self.slack is None:
            log.info("no channel/ts in the Slack payload; message not updated: %s", text)
            return
        for attempt in range(3):
            try:
                self.slack.update_message(channel=channel, ts=ts, text=text, blocks=blocks)
                return
            except TemporaryError as e:
                log.warning("chat.update of %s/%s failed (%s); attempt %d", channel, ts, e, attempt + 1)
                time.sleep(min(e.delay, 5))
            except ToolError as e:
                log.warning("chat.update of %s/%s failed: %s", channel, ts, e)
                return

    def run_decision(self, *, incident_id: str, verdict: str, user_id: str, channel: str | None,
                     ts: str | None, blocks: list[dict[str, Any]] | None) -> None:
        deps = self.deps
        actor = f"slack:{user_id}"
        ckey = CLAIM_KEY + incident_id
        verb = "Approving" if verdict == "approve" else "Rejecting"
        self._update(channel, ts, f"{verb}, requested by <@{user_id}>…",
                     outcome_blocks(blocks, f":hourglass_flowing_sand: *{verb}*, requested by <@{user_id}>…"))
        try:
            with self._decide_lock:
                d = decide(deps, incident_id=incident_id, verdict=verdict, actor=actor, source="slack",
                           reason=f"{'approved' if verdict == 'approve' else 'rejected'} in Slack by <@{user_id}>")
        except (ToolError, ConfigError, NothingToDecide) as e:
            msg = scrub(str(e))
            log.warning("Slack %s of %s by %s failed: %s", verdict, incident_id, user_id, msg)
            deps.store.set_kv(ckey, json.dumps({"verdict": verdict, "user": user_id, "state": "failed",
                                                "error": msg, "at": _now()}))
            self.outcomes[f"failed_{verdict}"] += 1
            self._update(channel, ts, f"{verb} failed: {msg}",
                         outcome_blocks(blocks, f":warning: *{verb} failed* (requested by <@{user_id}>): "
                                                f"{msg}\nYou can try again.", keep_actions=True))
            return
        except Exception:
            log.exception("Slack %s of %s by %s failed unexpectedly", verdict, incident_id, user_id)
            deps.store.set_kv(ckey, json.dumps({"verdict": verdict, "user": user_id, "state": "failed",
                                                "error": "internal error", "at": _now()}))
            self.outcomes[f"failed_{verdict}"] += 1
            self._update(channel, ts, f"{verb} failed (internal error; see the remediator logs)",
                         outcome_blocks(blocks, f":warning: *{verb} failed* (internal error, see the remediator "
                                                "logs); you can try again.", keep_actions=True))
            raise
        deps.store.set_kv(ckey, json.dumps({"verdict": d.verdict, "user": user_id, "state": "done",
                                            "decision_id": d.id, "at": _now()}))
        self.outcomes[f"decided_{verdict}"] += 1
        pr = deps.store.get_pr(d.pr_id) if d.pr_id else None
        who = f"<@{d.actor[len('slack:'):]}>" if d.actor.startswith("slack:") else f"`{d.actor}` ({d.source})"
        if d.actor != actor or d.verdict != verdict:
            head = f"Already {'approved' if d.verdict == 'approve' else 'rejected'} by {who}"
        else:
            head = f"{'Approved' if d.verdict == 'approve' else 'Rejected'} by {who}"
        if pr is None:
            tail = "no open PR"
        elif pr.status == "merged":
            tail = f"PR merged into `{pr.base}` (`{pr.branch}`)"
        elif pr.status == "closed":
            tail = f"PR closed (`{pr.branch}`); the same plan is not proposed again within the cooldown"
        else:
            tail = f"PR `{pr.branch}` stays open (approval label added; merging is left to humans)"
        icon = ":white_check_mark:" if d.verdict == "approve" else ":x:"
        self._update(channel, ts, f"{head}: {tail}", outcome_blocks(blocks, f"{icon} *{head}*: {tail}"))


# ----------------------------------------------------------------------------- factory / serve

def create_app(deps_factory: Callable[[], Deps], settings: Settings, *, slack: SlackNotifier | None = None,
               clock: Callable[[], float] = time.time) -> FastAPI:
    """The HTTP app. ``deps_factory`` is called once, on first use. With ``slack.enabled`` the
    signing secret and bot token are required (ConfigError otherwise); ``slack`` overrides the
    Web API client built from the settings (tests point it at a fake)."""
    signature = build_slack_signature(settings, clock)  # the secrets are read by the composition root
    if settings.slack.enabled:
        if slack is None:
            slack = build_notifier(settings)
        if not settings.slack.approvers:
            log.warning("slack.approvers is empty: every Approve / Reject click will be refused")
    handler = _Interactions(deps_factory=deps_factory, settings=settings, slack=slack, signature=signature)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:  # build the deps before the first click, so its answer is not slowed down by it
            await run_in_threadpool(lambda: handler.deps)
        except (ToolError, ConfigError, OSError, SQLAlchemyError) as e:
            log.warning("could not prepare the store / Git adapters yet (will retry on use): %s", scrub(str(e)))
        try:
            yield
        finally:
            handler.close()

    app = FastAPI(title="remediator", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.interactions = handler
    mount_ui(app, deps=lambda: handler.deps, settings=settings, token=build_ui_token(settings),
             decide_lock=handler._decide_lock)

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        try:
            handler.deps.store.get_kv("healthz")
        except (SQLAlchemyError, OSError, ToolError, ConfigError) as e:  # report: the probe must answer
            log.warning("health check: store unavailable: %s", scrub(str(e)))
            return JSONResponse({"status": "unavailable", "store": "error"}, status_code=503)
        return JSONResponse({"status": "ok", "store": "ok", "slack": settings.slack.enabled})

    registry = store_registry(lambda: handler.deps.store, outcomes=lambda: dict(handler.outcomes),
                              monthly_budget_usd=settings.llm.monthly_budget_usd)

    readiness = Readiness(settings=settings, store=lambda: handler.deps.store,
                          git=lambda: handler.deps.repo.reachable(), cycles=None)

    add_readiness_and_metrics(app, readiness, registry)

    @app.post("/slack/interactions")
    async def slack_interactions(request: Request, background: BackgroundTasks) -> Response:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY:
            return JSONResponse({"error": "request too large"}, status_code=413)
        body = await request.body()
        if len(body) > MAX_BODY:
            return JSONResponse({"error": "request too large"}, status_code=413)
        status, answer, job = await run_in_threadpool(handler.handle, body, request.headers)
        if job is not None:
            background.add_task(job)
        return JSONResponse(answer, status_code=status)

    return app


def serve(settings: Settings, host: str | None = None, port: int | None = None, *, log_level: str = "info") -> None:
    """Run the HTTP app with uvicorn until SIGINT/SIGTERM, on ``host``/``port`` (default: http.host,
    http.port). A port that cannot be bound is a ConfigError naming the key."""
    import uvicorn  # only the serve command needs the server

    from agents.probes import listen

    host = host or settings.http.host
    port = port or settings.http.port
    app = create_app(lambda: build_deps(settings), settings)
    sock = listen(host, port, key="http.port")
    log.info("serving the review UI on http://%s:%d/ui/ (Slack interactions, /metrics, /healthz)", host, port)
    # log_config=None: uvicorn's records go through the process' handler (JSON lines off a terminal)
    config = uvicorn.Config(app, log_level=log_level, proxy_headers=True, server_header=False, log_config=None,
                            forwarded_allow_ips=",".join(settings.http.trusted_proxies))
    uvicorn.Server(config).run(sockets=[sock])
