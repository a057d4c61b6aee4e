"""A scripted OpenAI-compatible chat-completions server for offline, replayable LLM tests.

Real HTTP on 127.0.0.1 (an ephemeral port, a background thread, stdlib only) speaking the
``POST /v1/chat/completions`` wire format: the client under test is the real ``openai`` SDK,
exactly as against OpenAI, vLLM, Ollama or llama.cpp. Each *case* has a list of scripted
turns that are replayed in order, one per request:

``{"tool_calls": [{"name": "query_signal", "arguments": {...} | "raw text"}]}``
    an assistant turn that calls tools (``finish_reason: tool_calls``);
``{"content": {...} | "raw text", "finish_reason": "stop"}``
    an assistant answer (a dict is sent as JSON text: the structured output);
``{"fail": "429", "retry_after": 2}`` / ``{"fail": "500"}`` / ``{"fail": "401"}``
    an HTTP error with an OpenAI-style error body;
``{"fail": "truncated"}``
    a 200 whose body is cut off mid-JSON (Content-Length promises more, then the connection closes);
``{"fail": "garbage"}``
    a complete 200 whose body is not JSON;
``{"fail": "hang", "seconds": 5}``
    no answer until the client's timeout has passed (released at shutdown).

Any turn may carry ``"usage": {"prompt_tokens": n, "completion_tokens": m}``; without it the
server reports ~4 characters a token of the request and of the answer, so token counts follow
prompt size. A turn with ``"repeat": true`` is served again for every later request.

Requests are checked like a strict real endpoint would: JSON body with ``model`` and
``messages``; a Bearer token; every assistant ``tool_calls`` id answered by a ``tool``
message; ``response_format`` / ``tools`` well-formed. A broken request gets HTTP 400. Every
request is recorded (``server.requests(case)``) so tests can look at the prompt on the wire.

Cases are addressed by URL prefix: ``server.base_url(case)`` = ``http://127.0.0.1:PORT/cases/<case>/v1``.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_CASE = "default"


class ScriptedOpenAIServer:
    def __init__(self, scripts: dict[str, list[dict[str, Any]]] | None = None, *, require_key: str | None = None) -> None:
        self._scripts: dict[str, list[dict[str, Any]]] = {k: list(v) for k, v in (scripts or {}).items()}
        self._pos: dict[str, int] = defaultdict(int)
        self._requests: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._lock = threading.Lock()
        self._release = threading.Event()
        self.require_key = require_key
        self.errors: list[str] = []  # protocol violations seen (also answered with HTTP 400)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="scripted-openai", daemon=True)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> ScriptedOpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def base_url(self, case: str = DEFAULT_CASE) -> str:
        return f"http://127.0.0.1:{self.port}/cases/{case}/v1"

    # ------------------------------------------------------------------ scripts

    def script(self, case: str, turns: list[dict[str, Any]]) -> None:
        with self._lock:
            self._scripts[case] = list(turns)
            self._pos[case] = 0
            self._requests[case] = []

    def requests(self, case: str = DEFAULT_CASE) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._requests[case])

    def served(self, case: str = DEFAULT_CASE) -> int:
        with self._lock:
            return self._pos[case]

    def _next_turn(self, case: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any] | None:
        with self._lock:
            self._requests[case].append({"body": body, "headers": headers})
            turns = self._scripts.get(case, [])
            i = self._pos[case]
            if i >= len(turns):
                if turns and turns[-1].get("repeat"):
                    return turns[-1]
                return None
            self._pos[case] = i + 1
            return turns[i]


def check_request(body: Any) -> str | None:
    """What a strict endpoint would refuse in this request body (None when fine)."""
    if not isinstance(body, dict):
        return "body must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model is required"
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return "messages must be a non-empty array"
    pending: set[str] = set()
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ("system", "developer", "user", "assistant", "tool"):
            return f"messages[{i}]: bad role"
        if m["role"] == "tool":
            tid = m.get("tool_call_id")
            if tid not in pending:
                return f"messages[{i}]: tool message answers no pending tool_call_id {tid!r}"
            pending.discard(tid)
            if not isinstance(m.get("content"), str):
                return f"messages[{i}]: tool content must be a string"
            continue
        if pending:
            return f"messages[{i}]: tool_calls {sorted(pending)} were not answered by tool messages"
        for c in m.get("tool_calls") or []:
            if not isinstance(c, dict) or not c.get("id") or not isinstance(c.get("function"), dict):
                return f"messages[{i}]: malformed tool_calls entry"
            pending.add(c["id"])
    if pending:
        return f"tool_calls {sorted(pending)} were not answered by tool messages"
    rf = body.get("response_format")
    if rf is not None:
        if not isinstance(rf, dict) or rf.get("type") not in ("json_schema", "json_object", "text"):
            return "response_format.type must be json_schema, json_object or text"
        if rf["type"] == "json_schema" and not isinstance((rf.get("json_schema") or {}).get("schema"), dict):
            return "response_format.json_schema.schema is required"
    for t in body.get("tools") or []:
        if not isinstance(t, dict) or t.get("type") != "function" or not (t.get("function") or {}).get("name"):
            return "tools entries must be function tools with a name"
    for key in ("max_tokens", "max_completion_tokens"):
        if key in body and (not isinstance(body[key], int) or body[key] < 1):
            return f"{key} must be a positive integer"
    return None


def _tokens(obj: Any) -> int:
    return max(1, len(obj if isinstance(obj, str) else json.dumps(obj)) // 4)


def _handler(server: ScriptedOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, etype: str, headers: dict[str, str] | None = None) -> None:
            self._send(status, {"error": {"message": message, "type": etype, "param": None, "code": None}}, headers)

        def do_GET(self) -> None:  # noqa: N802  (/v1/models, for clients that probe)
            self._send(200, {"object": "list", "data": [{"id": "scripted", "object": "model", "owned_by": "tests"}]})

        def do_POST(self) -> None:  # noqa: N802
            path = self.path.split("?")[0]
            case = DEFAULT_CASE
            if path.startswith("/cases/"):
                parts = path.split("/")
                case, path = parts[2], "/" + "/".join(parts[3:])
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if path != "/v1/chat/completions":
                return self._error(404, f"no route {path}", "invalid_request_error")
            auth = self.headers.get("Authorization") or ""
            if not auth.startswith("Bearer ") or (server.require_key and auth != f"Bearer {server.require_key}"):
                return self._error(401, "Incorrect API key provided.", "invalid_request_error")
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                body = None
            problem = check_request(body)
            headers = {k.lower(): v for k, v in self.headers.items() if k.lower() != "authorization"}
            turn = server._next_turn(case, body if isinstance(body, dict) else {}, headers)
            if problem:
                server.errors.append(f"{case}: {problem}")
                return self._error(400, problem, "invalid_request_error")
            if turn is None:
                server.errors.append(f"{case}: script exhausted")
                return self._error(400, f"scripted server: no more turns for case {case!r}", "invalid_request_error")
            fail = str(turn.get("fail", ""))
            if fail == "429":
                hdr = {"Retry-After": str(turn["retry_after"])} if "retry_after" in turn else {}
                return self._error(429, "Rate limit reached for requests", "requests", hdr)
            if fail and fail.isdigit():
                return self._error(int(fail), f"scripted failure {fail}", "server_error" if fail >= "500" else "invalid_request_error")
            if fail == "hang":
                server._release.wait(float(turn.get("seconds", 5)))
                try:
                    return self._error(503, "too late", "server_error")
                except OSError:
                    return None
            if fail == "garbage":
                data = b"<html>502 Bad Gateway from a proxy</html>"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return None
            payload = _completion(turn, body)
            if fail == "truncated":
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                time.sleep(0.01)
                return None
            return self._send(200, payload)

    return Handler


def _completion(turn: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
    finish = turn.get("finish_reason")
    if "tool_calls" in turn:
        calls = []
        for i, c in enumerate(turn["tool_calls"]):
            args = c.get("arguments", {})
            calls.append({"id": c.get("id", f"call_{i}_{abs(hash(json.dumps(args, sort_keys=True, default=str))) % 10**8}"),
                          "type": "function",
                          "function": {"name": c["name"],
                                       "arguments": args if isinstance(args, str) else json.dumps(args)}})
        message["tool_calls"] = calls
        finish = finish or "tool_calls"
        out: Any = calls
    else:
        content = turn.get("content", "")
        message["content"] = content if isinstance(content, str) else json.dumps(content)
        finish = finish or "stop"
        out = message["content"]
    usage = dict(turn.get("usage") or {})
    pt = int(usage.get("prompt_tokens", _tokens(body.get("messages", [])) + _tokens(body.get("tools", []))
                        + _tokens(body.get("response_format", {}))))
    ct = int(usage.get("completion_tokens", _tokens(out)))
    return {"id": "chatcmpl-scripted", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "scripted"), "system_fingerprint": "fp_scripted",
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}}
