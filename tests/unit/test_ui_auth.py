"""The review UI's authentication and CSRF rules, on requests built by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request

from agents.config import validate_settings
from agents.ui.auth import SESSION_COOKIE, Auth, User, cross_site

TOKEN = "a-token-of-some-length-1234"


def req(client: str = "127.0.0.1", headers: dict[str, str] | None = None, cookies: str = "") -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if cookies:
        raw.append((b"cookie", cookies.encode()))
    raw.append((b"host", b"review.example:8080"))
    scope: dict[str, Any] = {"type": "http", "method": "POST", "path": "/", "headers": raw, "client": (client, 1234),
                             "query_string": b"", "scheme": "http", "server": ("review.example", 8080)}
    return Request(scope)


def auth(tmp_path: Path, **http: Any) -> Auth:
    s = validate_settings({"gitops": {"remote": str(tmp_path)}, "http": http})
    return Auth(s, http.pop("token", TOKEN))


def test_trusted_header_only_from_trusted_proxies(tmp_path: Path) -> None:
    a = auth(tmp_path, trusted_user_header="X-Forwarded-User", trusted_proxies=["10.0.0.0/8"])
    assert a.user(req("10.1.2.3", {"X-Forwarded-User": "alice"})) == User("alice", "header")
    assert a.user(req("192.168.1.5", {"X-Forwarded-User": "alice"})) is None     # not from the proxy
    assert a.user(req("10.1.2.3", {"X-Forwarded-User": "a\nb"})) is None         # no control characters
    assert a.user(req("10.1.2.3", {"X-Forwarded-User": ""})) is None
    no_header = auth(tmp_path)
    assert no_header.user(req("127.0.0.1", {"X-Forwarded-User": "alice"})) is None  # not configured: ignored


def test_bearer_and_session(tmp_path: Path) -> None:
    a = auth(tmp_path, ui_token_user="oncall")
    assert a.user(req(headers={"Authorization": f"Bearer {TOKEN}"})) == User("oncall", "bearer")
    assert a.user(req(headers={"Authorization": f"Bearer {TOKEN}x"})) is None
    cookie = a.session_cookie("oncall")
    assert a.user(req(cookies=f"{SESSION_COOKIE}={cookie}")) == User("oncall", "session")
    forged = cookie.replace("oncall", "admin", 1)
    assert a.user(req(cookies=f"{SESSION_COOKIE}={forged}")) is None
    assert a.session_user(a.session_cookie("oncall", now=0)) is None            # expired
    other = Auth(validate_settings({"gitops": {"remote": str(tmp_path)}}), "another-token-0123456789")
    assert other.session_user(cookie) is None                                   # another key


def test_csrf_is_bound_to_the_user(tmp_path: Path) -> None:
    a = auth(tmp_path)
    alice, bob = User("alice", "header"), User("bob", "header")
    assert a.csrf_ok(alice, a.csrf_token(alice))
    assert not a.csrf_ok(alice, a.csrf_token(bob)) and not a.csrf_ok(alice, None) and not a.csrf_ok(alice, "")


def test_cross_site_requests() -> None:
    assert cross_site(req()) is None
    assert cross_site(req(headers={"Origin": "http://review.example:8080", "Sec-Fetch-Site": "same-origin"})) is None
    assert cross_site(req(headers={"Origin": "http://evil.example"})) is not None
    assert cross_site(req(headers={"Origin": "null"})) is not None
    assert cross_site(req(headers={"Sec-Fetch-Site": "same-site"})) is not None
    assert cross_site(req(headers={"Sec-Fetch-Site": "cross-site"})) is not None


def test_login_throttle() -> None:
    from agents.ui.auth import LoginThrottle

    t = LoginThrottle(limit=3, window_s=60)
    for i in range(3):
        assert not t.blocked("10.0.0.1", now=100 + i)
        t.failed("10.0.0.1", now=100 + i)
    assert t.blocked("10.0.0.1", now=103) and not t.blocked("10.0.0.2", now=103)
    assert not t.blocked("10.0.0.1", now=161)   # the first failure aged out
