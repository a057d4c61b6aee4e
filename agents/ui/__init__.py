"""The review UI served by ``remediator serve``: server-rendered pages (Jinja2 templates and one
stylesheet shipped in this package; no script, nothing from a CDN).

    GET  /                          -> /ui/
    GET  /ui/                       dashboard (open incidents by kind, PRs, spend avoided, posture)
    GET  /incidents                 -> /ui/incidents
    GET  /ui/incidents              list: kind, status (or active), service, severity, since; page, per_page
    GET  /ui/incidents/{id}         evidence chart, findings, plan and rationale, guard, PR body + diff,
                                    decisions, audit entries and the chain's status
    POST /ui/incidents/{id}/decide  verdict=approve|reject, reason, csrf: the one decision path
                                    (agents.approvals.decide), recorded as ui:<user>, source ui
    GET/POST /ui/login, POST /ui/logout   bearer-token sign-in (a session cookie)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from agents.approvals import NothingToDecide, decide
from agents.config import ConfigError, Settings
from agents.deps import Deps
from agents.metrics import KINDS, STATUSES
from agents.ui.auth import SESSION_COOKIE, Auth, LoginThrottle, User, cross_site
from agents.ui.views import (
    SEVERITIES,
    BadFilter,
    CycleReports,
    age,
    dashboard,
    incident_view,
    incidents_page,
    parse_filters,
)
from tools.errors import ToolError, scrub

log = logging.getLogger("remediator.ui")
HERE = Path(__file__).parent
PREFIX = "/ui"
MAX_FORM = 16 * 1024
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _version() -> str:
    try:
        return version("remediator")
    except PackageNotFoundError:
        return "(not installed)"


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                      trim_blocks=False, lstrip_blocks=False)
    env.globals.update(prefix=PREFIX, age=age, version=_version(), kinds=KINDS, severities=SEVERITIES,
                       statuses=("active", *STATUSES))
    env.filters["urlencode"] = lambda s: quote(str(s), safe="/")
    return env


def mount_ui(app: FastAPI, *, deps: Callable[[], Deps], settings: Settings, token: str | None,
             decide_lock: threading.Lock) -> Auth:
    """Add the review UI's routes to ``app``. ``token``: the bearer token (None: no token sign-in)."""
    env = _environment()
    auth = Auth(settings, token)
    reports = CycleReports()
    throttle = LoginThrottle()
    if not auth.enabled:
        log.warning("review UI: no http.ui_token_file and no http.trusted_user_header: the pages are read-only")

    def page(request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        user = auth.user(request)
        html = env.get_template(template).render(
            user=user, csrf=auth.csrf_token(user) if user else "", can_login=auth.can_login,
            request_path=request.url.path + (f"?{request.url.query}" if request.url.query else ""), **ctx)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def message(request: Request, status: int, heading: str, text: str, back: str | None = None,
                kind: str = "error") -> HTMLResponse:
        return page(request, "message.html", status, heading=heading, message=text, back=back, kind=kind, page="")

    def sign_in_first(request: Request) -> Response | None:
        """With http.ui_require_sign_in, a page for signed-in users only: the sign-in page, or 401."""
        if not settings.http.ui_require_sign_in or auth.user(request) is not None:
            return None
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if auth.can_login:
            return RedirectResponse(f"{PREFIX}/login?next={quote(path)}", status_code=303)
        return message(request, 401, "Sign in first", "These pages are for signed-in reviewers "
                       "(http.ui_require_sign_in); sign in through your proxy.")

    async def form(request: Request) -> dict[str, str] | None:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_FORM):
            return None
        body = await request.body()
        if len(body) > MAX_FORM:
            return None
        from urllib.parse import parse_qs

        try:
            parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            return None
        return {k: v[-1] for k, v in parsed.items()}

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse(f"{PREFIX}/", status_code=302)

    @app.get("/incidents", include_in_schema=False)
    def incidents_redirect(request: Request) -> Response:
        q = request.url.query
        return RedirectResponse(f"{PREFIX}/incidents" + (f"?{q}" if q else ""), status_code=302)

    @app.get(PREFIX, include_in_schema=False)
    def ui_redirect() -> Response:
        return RedirectResponse(f"{PREFIX}/", status_code=302)

    @app.get(f"{PREFIX}/")
    def dashboard_page(request: Request) -> Response:
        if (gate := sign_in_first(request)) is not None:
            return gate
        return page(request, "dashboard.html", d=dashboard(deps().store, reports=reports), page="dashboard")

    @app.get(f"{PREFIX}/incidents")
    def incidents_list(request: Request) -> Response:
        if (gate := sign_in_first(request)) is not None:
            return gate
        try:
            f = parse_filters(dict(request.query_params))
        except BadFilter as e:
            return page(request, "incidents.html", 400, f=parse_filters({}), p=None, error=str(e), page="incidents")
        return page(request, "incidents.html", f=f, p=incidents_page(deps().store, f), error=None, page="incidents")

    @app.get(PREFIX + "/incidents/{incident_id}")
    def incident_page(request: Request, incident_id: str) -> Response:
        if (gate := sign_in_first(request)) is not None:
            return gate
        v = incident_view(deps(), incident_id, reports=reports)
        if v is None:
            return message(request, 404, "No such incident", f"There is no incident {incident_id!r}.",
                           back=f"{PREFIX}/incidents")
        decided = request.query_params.get("decided")
        flash = {"approve": "Approved.", "reject": "Rejected."}.get(decided or "")
        return page(request, "incident.html", v=v, flash=flash, page="incidents")

    @app.post(PREFIX + "/incidents/{incident_id}/decide")
    async def decide_page(request: Request, incident_id: str) -> Response:
        back = f"{PREFIX}/incidents/{quote(incident_id, safe='')}"
        why = cross_site(request)
        if why is not None:
            log.warning("refused a cross-site decision on %s (%s)", incident_id, why)
            return message(request, 403, "Refused", f"This request came from another site ({why}); nothing was "
                           "changed. Decide from the incident's own page.", back=back)
        user = auth.user(request)
        if user is None:
            if not auth.enabled:
                return message(request, 403, "Decisions are off in the UI",
                               "Set http.ui_token_file or http.trusted_user_header to decide here; meanwhile use "
                               f"`remediator decisions approve|reject {incident_id}`.", back=back)
            return message(request, 401, "Sign in first", "Only a signed-in reviewer can approve or reject; "
                           "nothing was changed.", back=f"{PREFIX}/login?next={quote(back)}")
        data = await form(request)
        if data is None:
            return message(request, 400, "Bad request", "The form could not be read.", back=back)
        if user.method != "bearer" and not auth.csrf_ok(user, data.get("csrf")):
            log.warning("refused a decision on %s by %s: missing or wrong CSRF token", incident_id, user.actor)
            return message(request, 403, "Refused", "The form's CSRF token is missing or wrong (reload the page "
                           "and try again); nothing was changed.", back=back)
        verdict = data.get("verdict", "")
        if verdict not in ("approve", "reject"):
            return message(request, 400, "Bad request", f"verdict must be approve or reject, not {verdict[:40]!r}.",
                           back=back)
        reason = " ".join(data.get("reason", "").split())[:500]
        return await run_in_threadpool(_decide, request, incident_id, verdict, user, reason, back)

    def _decide(request: Request, incident_id: str, verdict: str, user: User, reason: str, back: str) -> Response:
        d = deps()
        if d.store.get_incident(incident_id) is None:
            return message(request, 404, "No such incident", f"There is no incident {incident_id!r}.")
        try:
            with decide_lock:
                dec = decide(d, incident_id=incident_id, verdict=verdict, actor=user.actor, source="ui",
                             reason=reason or f"{'approved' if verdict == 'approve' else 'rejected'} in the review UI")
        except NothingToDecide as e:
            return message(request, 409, "Not done", scrub(str(e)), back=back)
        except ConfigError as e:
            return message(request, 409, "Not done", scrub(str(e)), back=back)
        except ToolError as e:
            log.warning("UI %s of %s by %s failed: %s", verdict, incident_id, user.actor, scrub(str(e)))
            return message(request, 502, "Not done", f"The Git host did not take it: {scrub(str(e))}. Try again.",
                           back=back)
        log.info("%s %s in the review UI by %s (decision %s)", dec.verdict, incident_id, user.actor, dec.id)
        return RedirectResponse(f"{back}?decided={dec.verdict}", status_code=303, headers={"Cache-Control": "no-store"})

    @app.get(f"{PREFIX}/login")
    def login_page(request: Request) -> HTMLResponse:
        nxt = _safe_next(request.query_params.get("next"))
        if not auth.can_login:
            return message(request, 404, "No sign-in here", "Token sign-in is off (no http.ui_token_file); an "
                           "authenticating proxy signs you in through http.trusted_user_header.", kind="muted")
        return page(request, "login.html", next=nxt, error=None, page="")

    @app.post(f"{PREFIX}/login")
    async def login(request: Request) -> Response:
        if cross_site(request) is not None or not auth.can_login:
            return message(request, 403, "Refused", "Sign in from this site's own sign-in page.")
        data = await form(request) or {}
        nxt = _safe_next(data.get("next"))
        client = request.client.host if request.client else "?"
        if throttle.blocked(client):
            return page(request, "login.html", 429, next=nxt, page="",
                        error="Too many failed sign-ins from your address; wait a few minutes.")
        if not auth.check_token(data.get("token", "")):
            throttle.failed(client)
            log.warning("review UI: failed sign-in from %s", client)
            return page(request, "login.html", 401, next=nxt, error="That token is not right.", page="")
        resp = RedirectResponse(nxt, status_code=303)
        resp.set_cookie(SESSION_COOKIE, auth.session_cookie(auth.token_user), httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/", max_age=12 * 3600)
        return resp

    @app.post(f"{PREFIX}/logout")
    async def logout(request: Request) -> Response:
        user = auth.user(request)
        data = await form(request) or {}
        if cross_site(request) is not None or user is None or not auth.csrf_ok(user, data.get("csrf")):
            return message(request, 403, "Refused", "Sign out from this site's own pages.")
        resp = RedirectResponse(f"{PREFIX}/", status_code=303)
        resp.delete_cookie(SESSION_COOKIE, path="/")
        return resp

    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="ui-static")
    return auth


def _safe_next(value: str | None) -> str:
    """Only a path of this UI (no other host, no scheme)."""
    if value and value.startswith(f"{PREFIX}/") and not value.startswith("//") and "\\" not in value:
        return value
    return f"{PREFIX}/"


__all__ = ["PREFIX", "mount_ui"]
