"""Who may decide in the review UI, and CSRF protection of its forms.

Three ways in, checked in this order:
1. ``http.trusted_user_header`` (e.g. ``X-Forwarded-User``), believed only on a connection from one
   of ``http.trusted_proxies`` (an authenticating proxy in front);
2. ``Authorization: Bearer <token>`` with the token of ``http.ui_token_file`` (scripts);
3. a session cookie, set by ``POST /ui/login`` with that token: HttpOnly, SameSite=Strict, signed
   with a key derived from the token, valid 12 hours.

Every form that changes something carries a CSRF token bound to the user (an HMAC of the user
under the same key); and a POST whose ``Origin`` is not this host, or whose ``Sec-Fetch-Site`` says
``cross-site`` / ``same-site``, is refused before anything else.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import Request

from agents.config import Settings

SESSION_COOKIE = "remediator_session"
SESSION_TTL_S = 12 * 3600
_USER = re.compile(r"[^\x00-\x1f\x7f|]{1,200}")


@dataclass(frozen=True)
class User:
    name: str
    method: str   # header | bearer | session

    @property
    def actor(self) -> str:
        """How a decision is recorded: ``ui:<name>``."""
        return f"ui:{self.name}"


class Auth:
    def __init__(self, settings: Settings, token: str | None) -> None:
        h = settings.http
        self.token = token or None
        self.header = h.trusted_user_header
        self.proxies = [ipaddress.ip_network(p, strict=False) for p in h.trusted_proxies]
        self.token_user = h.ui_token_user
        self.key = hashlib.sha256(b"remediator-ui\0" + self.token.encode()).digest() if self.token \
            else secrets.token_bytes(32)

    @property
    def enabled(self) -> bool:
        return bool(self.token or self.header)

    @property
    def can_login(self) -> bool:
        return self.token is not None

    def _sign(self, text: str) -> str:
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()

    def from_trusted_proxy(self, request: Request) -> bool:
        host = request.client.host if request.client else ""
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(addr in net for net in self.proxies)

    def user(self, request: Request) -> User | None:
        if self.header and self.from_trusted_proxy(request):
            name = (request.headers.get(self.header) or "").strip()
            if name and _USER.fullmatch(name):
                return User(name, "header")
        if self.token is not None:
            auth = request.headers.get("authorization", "")
            if auth[:7].lower() == "bearer " and hmac.compare_digest(auth[7:].strip().encode(), self.token.encode()):
                return User(self.token_user, "bearer")
            cookie = request.cookies.get(SESSION_COOKIE)
            session = self.session_user(cookie) if cookie else None
            if session is not None:
                return User(session, "session")
        return None

    def check_token(self, given: str) -> bool:
        return self.token is not None and hmac.compare_digest(given.strip().encode(), self.token.encode())

    def session_cookie(self, name: str, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + SESSION_TTL_S)
        body = f"{name}|{expires}"
        return f"{body}|{self._sign('session|' + body)}"

    def session_user(self, cookie: str, now: float | None = None) -> str | None:
        parts = cookie.rsplit("|", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        name, expires, sig = parts
        if not hmac.compare_digest(sig, self._sign(f"session|{name}|{expires}")):
            return None
        if int(expires) < (time.time() if now is None else now):
            return None
        return name

    def csrf_token(self, user: User) -> str:
        return self._sign(f"csrf|{user.name}")[:40]

    def csrf_ok(self, user: User, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(str(given), self.csrf_token(user))


class LoginThrottle:
    """At most ``limit`` failed sign-ins per client address within ``window_s`` (then 429 until the
    oldest failure ages out). Per process, in memory."""

    def __init__(self, limit: int = 5, window_s: float = 300.0) -> None:
        self.limit, self.window_s = limit, window_s
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> list[float]:
        kept = [t for t in self._failures.get(client, []) if now - t < self.window_s]
        if kept:
            self._failures[client] = kept
        else:
            self._failures.pop(client, None)
        return kept

    def blocked(self, client: str, now: float | None = None) -> bool:
        with self._lock:
            return len(self._recent(client, time.time() if now is None else now)) >= self.limit

    def failed(self, client: str, now: float | None = None) -> None:
        with self._lock:
            t = time.time() if now is None else now
            self._failures[client] = [*self._recent(client, t), t]
            if len(self._failures) > 10_000:   # bounded: forget the quietest clients
                for key in sorted(self._failures, key=lambda k: self._failures[k][-1])[:1000]:
                    del self._failures[key]


def cross_site(request: Request) -> str | None:
    """Why a state-changing request looks cross-site (None when it does not): a browser sends
    ``Sec-Fetch-Site`` and ``Origin`` on a form POST; either naming another site refuses it."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return f"Sec-Fetch-Site: {fetch_site}"
    origin = request.headers.get("origin")
    if origin is not None:
        host = request.headers.get("host", "")
        if origin == "null" or urlsplit(origin).netloc.lower() != host.lower():
            return f"Origin {origin} is not this host ({host})"
    return None


__all__ = ["SESSION_COOKIE", "Auth", "LoginThrottle", "User", "cross_site"]
