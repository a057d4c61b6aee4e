"""A local HTTP server speaking the Slack Web API wire format, for the methods remediator uses:
chat.postMessage, chat.update and usergroups.users.list.

Requests are ``POST`` (form or JSON body) or ``GET`` (query string) to ``/api/<method>``, with
the token in ``Authorization: Bearer`` or a ``token`` parameter. Answers are HTTP 200 with
``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``, and HTTP 429 with ``Retry-After``
for ``ratelimited``, as Slack does. Every call is recorded.

    with FakeSlackAPI(token="xoxb-test") as api:
        client = SlackNotifier(token="xoxb-test", base_url=api.base_url)
        ...
        api.calls_to("chat.update")
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    token: str | None
    http_verb: str
    at: float = field(default_factory=time.time)


def _channel_id(name: str) -> str:
    if name[:1] in ("C", "G", "D") and name[1:].isalnum() and name.upper() == name:
        return name
    return "C" + hashlib.sha256(name.lstrip("#").encode()).hexdigest()[:10].upper()


class FakeSlackAPI:
    def __init__(self, *, token: str = "xoxb-test-token", host: str = "127.0.0.1") -> None:
        self.token = token
        self.usergroups: dict[str, list[str]] = {}
        self.errors: dict[str, str] = {}          # method -> error code returned (until removed)
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._seq = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def _serve(self, verb: str) -> None:
                url = urlsplit(self.path)
                if not url.path.startswith("/api/"):
                    self._send(404, {"ok": False, "error": "unknown_method"})
                    return
                method = url.path[len("/api/"):]
                args: dict[str, Any] = {k: v[-1] for k, v in parse_qs(url.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
                if raw and ctype == "application/json":
                    try:
                        args.update(json.loads(raw))
                    except ValueError:
                        self._send(200, {"ok": False, "error": "invalid_json"})
                        return
                elif raw:
                    args.update({k: v[-1] for k, v in parse_qs(raw.decode()).items()})
                auth = self.headers.get("Authorization") or ""
                token = auth[len("Bearer "):] if auth.startswith("Bearer ") else args.pop("token", None)
                status, body, headers = fake._dispatch(method, args, token, verb)
                self._send(status, body, headers)

            def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self._host = host
        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        port = self._server.server_address[1]
        return f"http://{self._host}:{port}/api/"

    def start(self) -> FakeSlackAPI:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-slack-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeSlackAPI:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()

    # -- inspection ---------------------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def channel_id(self, name: str) -> str:
        return _channel_id(name)

    # -- the API ------------------------------------------------------------------------------

    def _dispatch(self, method: str, args: dict[str, Any], token: str | None,
                  verb: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            self.calls.append(Call(method=method, args=dict(args), token=token, http_verb=verb))
            if not token:
                return 200, {"ok": False, "error": "not_authed"}, {}
            if token != self.token:
                return 200, {"ok": False, "error": "invalid_auth"}, {}
            if method in self.errors:
                code = self.errors[method]
                if code == "ratelimited":
                    return 429, {"ok": False, "error": code}, {"Retry-After": "1"}
                return 200, {"ok": False, "error": code}, {}
            handler = {"chat.postMessage": self._post, "chat.update": self._update,
                       "usergroups.users.list": self._group_users}.get(method)
            if handler is None:
                return 200, {"ok": False, "error": "unknown_method"}, {}
            return 200, handler(args), {}

    @staticmethod
    def _blocks(args: dict[str, Any]) -> list[Any] | None:
        blocks = args.get("blocks")
        if isinstance(blocks, str):  # form-encoded requests carry blocks as a JSON string
            try:
                blocks = json.loads(blocks)
            except ValueError:
                return None
        return blocks if isinstance(blocks, list) else None

    def _post(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not args.get("text") and not args.get("blocks"):
            return {"ok": False, "error": "no_text"}
        blocks = self._blocks(args)
        if args.get("blocks") and blocks is None:
            return {"ok": False, "error": "invalid_blocks"}
        self._seq += 1
        cid, ts = _channel_id(channel), f"{int(time.time())}.{self._seq:06d}"
        msg = {"type": "message", "ts": ts, "text": args.get("text", ""), "blocks": blocks or [],
               "bot_id": "BFAKE"}
        self.messages[(cid, ts)] = msg
        return {"ok": True, "channel": cid, "ts": ts, "message": msg}

    def _update(self, args: dict[str, Any]) -> dict[str, Any]:
        cid, ts = str(args.get("channel") or ""), str(args.get("ts") or "")
        if not cid:
            return {"ok": False, "error": "channel_not_found"}
        msg = self.messages.get((cid, ts))
        if msg is None:
            return {"ok": False, "error": "message_not_found"}
        blocks = self._blocks(args)
        if args.get("blocks") and blocks is None:
            return {"ok": False, "error": "invalid_blocks"}
        msg.update({"text": args.get("text", msg["text"]), "blocks": blocks if blocks is not None else msg["blocks"]})
        return {"ok": True, "channel": cid, "ts": ts, "text": msg["text"], "message": msg}

    def _group_users(self, args: dict[str, Any]) -> dict[str, Any]:
        group = str(args.get("usergroup") or "")
        if group not in self.usergroups:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": list(self.usergroups[group])}
