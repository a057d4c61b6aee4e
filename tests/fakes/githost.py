"""Local GitHub (REST v3) and GitLab (v4) API servers for the PR-provider tests.

Each is a stdlib ``http.server`` in a thread on ``127.0.0.1:0`` that speaks the real wire
format for exactly the endpoints remediator uses: status codes, JSON error bodies, token
auth, and pagination (GitHub: ``Link`` header; GitLab: ``Link`` + ``X-Page`` /
``X-Next-Page`` / ``X-Total-Pages``). Pull/merge requests point at branches of a real bare
git remote: head SHAs are read from it and an API merge really merges into the base branch
(``git merge-tree --write-tree``), so the git side and the API side agree.

Tests steer them with:
- ``fail_next(n, status=502, method=..., path=..., after=False, headers=...)``: the next
  ``n`` matching requests fail with that status (``after=True``: the request is carried out
  first and only the response is lost, like a gateway timeout after the write);
- helpers that act as a human in the host (``add_review``, ``approve``, ``close``,
  ``merge``, ``seed_prs``);
- ``calls`` (every request seen) and ``writes`` (the non-GET ones).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

Json = Any
Reply = tuple[int, Json, dict[str, str]]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: Json
    headers: dict[str, str]


@dataclass
class _Failure:
    status: int
    body: Json
    headers: dict[str, str]
    method: str | None
    path: str | None
    after: bool

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (self.path is None or self.path in path)


class _HTTPError(Exception):
    def __init__(self, status: int, body: Json, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    wbufsize = -1  # one write per response (flushed by handle_one_request)
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        status, body, headers = self.server.host.handle(self.command, self.path, raw, dict(self.headers.items()))
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: FakeHost) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.host = host


class FakeHost:
    """Common machinery: thread, auth, failure queue, pagination, call log, git access."""

    prefix = ""
    default_per_page = 30
    max_per_page = 100

    def __init__(self, *, token: str, git_dir: Path | None = None, base: str = "main") -> None:
        self.token = token
        self.git_dir = Path(git_dir) if git_dir else None
        self.base = base
        self.calls: list[Call] = []
        self.lock = threading.RLock()
        self._failures: list[_Failure] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._refs: dict[str, str] | None = None  # branch -> sha, read once per request
        self.honour_head_filter = True  # False: list endpoints ignore the branch filter (pagination tests)

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> FakeHost:
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        return self.url + self.prefix

    # ---------------------------------------------------------------- steering
    def fail_next(self, n: int = 1, *, status: int = 502, body: Json = None, headers: dict[str, str] | None = None,
                  method: str | None = None, path: str | None = None, after: bool = False) -> None:
        """The next ``n`` requests matching ``method`` / ``path`` (substring) answer ``status``."""
        if body is None:
            body = self.default_error(status)
        with self.lock:
            self._failures += [_Failure(status, body, dict(headers or {}), method, path, after) for _ in range(n)]

    def default_error(self, status: int) -> Json:
        return {"message": {429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
                            503: "Service Unavailable", 504: "Gateway Timeout"}.get(status, "Error")}

    @property
    def writes(self) -> list[Call]:
        return [c for c in self.calls if c.method != "GET"]

    def calls_to(self, method: str, path_contains: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and path_contains in c.path]

    # ---------------------------------------------------------------- request handling
    def handle(self, method: str, target: str, raw: bytes, headers: dict[str, str]) -> Reply:
        parts = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return 400, {"message": "Problems parsing JSON"}, {}
        with self.lock:
            self._refs = None
            self.calls.append(Call(method, parts.path, query, body, headers))
            failure = next((f for f in self._failures if f.matches(method, parts.path)), None)
            if failure is not None:
                self._failures.remove(failure)
                if not failure.after:
                    return failure.status, failure.body, failure.headers
            try:
                if not parts.path.startswith(self.prefix + "/"):
                    raise _HTTPError(404, self.not_found())
                if not self.authorized(headers):
                    raise _HTTPError(401, self.unauthorized())
                segments = [unquote(s) for s in parts.path[len(self.prefix):].strip("/").split("/")]
                reply = self.route(method, segments, query, body, parts.path)
            except _HTTPError as e:
                reply = e.status, e.body, e.headers
            if failure is not None:  # the write happened, the answer is lost
                return failure.status, failure.body, failure.headers
            return reply

    def authorized(self, headers: dict[str, str]) -> bool:
        raise NotImplementedError

    def unauthorized(self) -> Json:
        raise NotImplementedError

    def not_found(self) -> Json:
        raise NotImplementedError

    def route(self, method: str, seg: list[str], query: dict[str, str], body: Json, path: str) -> Reply:
        raise NotImplementedError

    def page(self, items: list[Json], query: dict[str, str], path: str) -> Reply:
        """One page of ``items`` with GitHub-style ``Link`` headers (GitLab adds its X-* headers)."""
        per_page = max(1, min(int(query.get("per_page") or self.default_per_page), self.max_per_page))
        page = max(1, int(query.get("page") or 1))
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page: page * per_page]

        def link(p: int) -> str:
            return f"{self.url}{path}?{urlencode({**query, 'per_page': per_page, 'page': p})}"

        rels = []
        if page < last:
            rels += [f'<{link(page + 1)}>; rel="next"', f'<{link(last)}>; rel="last"']
        if page > 1:
            rels += [f'<{link(1)}>; rel="first"', f'<{link(page - 1)}>; rel="prev"']
        headers = {"Link": ", ".join(rels)} if rels else {}
        headers.update(self.page_headers(page=page, per_page=per_page, last=last, total=len(items)))
        return 200, chunk, headers

    def page_headers(self, *, page: int, per_page: int, last: int, total: int) -> dict[str, str]:
        return {}

    # ---------------------------------------------------------------- git
    def _git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self.git_dir is not None
        env = {**os.environ, "GIT_AUTHOR_NAME": "Host Bot", "GIT_AUTHOR_EMAIL": "host@example.com",
               "GIT_COMMITTER_NAME": "Host Bot", "GIT_COMMITTER_EMAIL": "host@example.com"}
        return subprocess.run(["git", "--git-dir", str(self.git_dir), *args], capture_output=True, text=True,
                              env=env, check=check)

    def branch_sha(self, branch: str) -> str | None:
        if self.git_dir is None:
            return None
        with self.lock:
            if self._refs is None:
                out = self._git("for-each-ref", "--format=%(objectname) %(refname)", "refs/heads/").stdout
                self._refs = {ref.removeprefix("refs/heads/"): sha
                              for sha, ref in (line.split(" ", 1) for line in out.splitlines())}
            return self._refs.get(branch)

    def git_merge(self, head: str, base: str, message: str, squash: bool = False) -> str | None:
        """Merge ``head`` into ``base`` in the bare remote; None on conflict (no git: a made-up sha)."""
        if self.git_dir is None:
            return "0" * 40
        self._refs = None
        base_sha = self.branch_sha(base)
        head_sha = self.branch_sha(head)
        if base_sha is None or head_sha is None:
            return None
        tree = self._git("merge-tree", "--write-tree", base_sha, head_sha, check=False)
        if tree.returncode != 0:
            return None
        parents = ["-p", base_sha] if squash else ["-p", base_sha, "-p", head_sha]
        sha = self._git("commit-tree", tree.stdout.split()[0], *parents, "-m", message).stdout.strip()
        self._git("update-ref", f"refs/heads/{base}", sha, base_sha)
        self._refs = None
        return sha


# ============================================================================ GitHub

@dataclass
class GHPull:
    number: int
    title: str
    body: str | None
    head: str
    base: str
    user: str = "remediator-bot"
    state: str = "open"
    head_sha: str | None = None
    labels: list[str] = field(default_factory=list)
    merged_at: str | None = None
    merged_by: str | None = None
    merge_commit_sha: str | None = None
    closed_at: str | None = None
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    reviews: list[dict[str, Any]] = field(default_factory=list)
    comments: list[dict[str, Any]] = field(default_factory=list)


class FakeGitHub(FakeHost):
    """GitHub REST v3 (Enterprise layout: API under ``/api/v3``) for one repository."""

    prefix = "/api/v3"
    default_per_page = 30

    def __init__(self, *, repository: str = "acme/gitops", token: str = "ghp_" + "A" * 36,
                 git_dir: Path | None = None, base: str = "main") -> None:
        super().__init__(token=token, git_dir=git_dir, base=base)
        self.owner, self.repo = repository.split("/", 1)
        self.pulls: dict[int, GHPull] = {}
        self._next = 1
        self._ids = 1000

    @property
    def web_url(self) -> str:
        return self.url

    def _id(self) -> int:
        self._ids += 1
        return self._ids

    # ---------------------------------------------------------------- wire format
    def authorized(self, headers: dict[str, str]) -> bool:
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        scheme, _, value = auth.partition(" ")
        return scheme.lower() in ("token", "bearer") and value == self.token

    def unauthorized(self) -> Json:
        return {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest", "status": "401"}

    def not_found(self) -> Json:
        return {"message": "Not Found", "documentation_url": "https://docs.github.com/rest", "status": "404"}

    def default_error(self, status: int) -> Json:
        if status == 429:
            return {"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you "
                               "try again.", "documentation_url": "https://docs.github.com/rest"}
        return super().default_error(status)

    def _api(self, path: str) -> str:
        return f"{self.api_url}/repos/{self.owner}/{self.repo}{path}"

    def _user(self, login: str) -> Json:
        return {"login": login, "id": abs(hash(login)) % 10**6, "type": "User",
                "url": f"{self.api_url}/users/{login}", "html_url": f"{self.web_url}/{login}"}

    def _repo_json(self) -> Json:
        full = f"{self.owner}/{self.repo}"
        return {"id": 1, "name": self.repo, "full_name": full, "private": True, "owner": self._user(self.owner),
                "html_url": f"{self.web_url}/{full}", "url": self._api(""), "default_branch": self.base}

    def _label(self, name: str) -> Json:
        return {"id": abs(hash(name)) % 10**6, "name": name, "color": "ededed", "default": False,
                "description": None, "url": self._api(f"/labels/{quote(name)}")}

    def pull_json(self, p: GHPull) -> Json:
        sha = self.branch_sha(p.head) if p.state == "open" else None
        if sha:
            p.head_sha = sha
        ref = {"label": f"{self.owner}:{p.head}", "ref": p.head, "sha": p.head_sha or "0" * 40,
               "user": self._user(self.owner), "repo": self._repo_json()}
        base = {"label": f"{self.owner}:{p.base}", "ref": p.base, "sha": self.branch_sha(p.base) or "0" * 40,
                "user": self._user(self.owner), "repo": self._repo_json()}
        return {
            "url": self._api(f"/pulls/{p.number}"), "id": 5000 + p.number, "node_id": f"PR_{p.number}",
            "html_url": f"{self.web_url}/{self.owner}/{self.repo}/pull/{p.number}",
            "diff_url": f"{self.web_url}/{self.owner}/{self.repo}/pull/{p.number}.diff",
            "issue_url": self._api(f"/issues/{p.number}"),
            "comments_url": self._api(f"/issues/{p.number}/comments"),
            "review_comments_url": self._api(f"/pulls/{p.number}/comments"),
            "commits_url": self._api(f"/pulls/{p.number}/commits"),
            "statuses_url": self._api(f"/statuses/{p.head_sha or '0' * 40}"),
            "number": p.number, "state": p.state, "locked": False, "title": p.title, "body": p.body,
            "user": self._user(p.user), "labels": [self._label(n) for n in p.labels], "assignees": [],
            "requested_reviewers": [], "milestone": None, "draft": False,
            "created_at": p.created_at, "updated_at": p.updated_at, "closed_at": p.closed_at,
            "merged_at": p.merged_at, "merge_commit_sha": p.merge_commit_sha,
            "head": ref, "base": base, "author_association": "MEMBER",
            "merged": p.merged_at is not None, "mergeable": p.state == "open", "mergeable_state": "clean",
            "merged_by": self._user(p.merged_by) if p.merged_by else None,
            "comments": len(p.comments), "review_comments": 0, "commits": 1, "additions": 1, "deletions": 1,
            "changed_files": 1, "maintainer_can_modify": False,
        }

    # ---------------------------------------------------------------- routes
    def route(self, method: str, seg: list[str], query: dict[str, str], body: Json, path: str) -> Reply:
        if len(seg) < 3 or seg[0] != "repos" or (seg[1], seg[2]) != (self.owner, self.repo):
            raise _HTTPError(404, self.not_found())
        rest = seg[3:]
        if not rest and method == "GET":
            return 200, self._repo_json(), {}
        if rest == ["pulls"] and method == "GET":
            return self.page([self.pull_json(p) for p in self._list(query)], query, path)
        if rest == ["pulls"] and method == "POST":
            return self._create(body or {})
        if len(rest) >= 2 and rest[0] in ("pulls", "issues") and rest[1].isdigit():
            p = self.pulls.get(int(rest[1]))
            if p is None:
                raise _HTTPError(404, self.not_found())
            tail = (rest[0], *rest[2:], method)
            if tail == ("pulls", "GET"):
                return 200, self.pull_json(p), {}
            if tail == ("pulls", "PATCH"):
                return self._edit(p, body or {})
            if tail == ("pulls", "merge", "PUT"):
                return self._merge(p, body or {})
            if tail == ("pulls", "merge", "GET"):
                return (204, None, {}) if p.merged_at else (404, self.not_found(), {})
            if tail == ("pulls", "reviews", "GET"):
                return self.page(p.reviews, query, path)
            if tail == ("issues", "comments", "GET"):
                return self.page(p.comments, query, path)
            if tail == ("issues", "comments", "POST"):
                return self._comment(p, body or {})
            if tail == ("issues", "labels", "GET"):
                return self.page([self._label(n) for n in p.labels], query, path)
            if tail == ("issues", "labels", "POST"):
                names = body.get("labels") if isinstance(body, dict) else body
                if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                    raise _HTTPError(422, {"message": "Invalid request.\n\nFor 'links/0/schema', nil is not an array.",
                                           "documentation_url": "https://docs.github.com/rest/issues/labels"})
                p.labels += [n for n in names if n not in p.labels]
                p.updated_at = _now()
                return 200, [self._label(n) for n in p.labels], {}
        raise _HTTPError(404, self.not_found())

    def _list(self, query: dict[str, str]) -> list[GHPull]:
        state = query.get("state", "open")
        out = []
        for p in sorted(self.pulls.values(), key=lambda p: -p.number):  # newest first, like GitHub
            if state != "all" and p.state != state:
                continue
            if query.get("base") and p.base != query["base"]:
                continue
            head = query.get("head")
            if head and self.honour_head_filter:
                owner, _, ref = head.partition(":")
                if owner != self.owner or p.head != ref:
                    continue
            out.append(p)
        return out

    def _validation(self, *errors: dict[str, Any]) -> _HTTPError:
        return _HTTPError(422, {"message": "Validation Failed", "errors": list(errors),
                                "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request",
                                "status": "422"})

    def _create(self, body: dict[str, Any]) -> Reply:
        head, base, title = body.get("head"), body.get("base"), body.get("title")
        if not isinstance(title, str) or not title:
            raise self._validation({"resource": "PullRequest", "field": "title", "code": "missing_field"})
        ref = str(head or "").split(":", 1)[-1]
        if not ref or (self.git_dir is not None and self.branch_sha(ref) is None):
            raise self._validation({"resource": "PullRequest", "field": "head", "code": "invalid"})
        if not base or (self.git_dir is not None and self.branch_sha(str(base)) is None):
            raise self._validation({"resource": "PullRequest", "field": "base", "code": "invalid"})
        if any(p.state == "open" and p.head == ref and p.base == base for p in self.pulls.values()):
            raise self._validation({"resource": "PullRequest", "code": "custom",
                                    "message": f"A pull request already exists for {self.owner}:{ref}."})
        p = GHPull(number=self._next, title=title, body=body.get("body"), head=ref, base=str(base))
        self._next += 1
        self.pulls[p.number] = p
        return 201, self.pull_json(p), {"Location": self._api(f"/pulls/{p.number}")}

    def _edit(self, p: GHPull, body: dict[str, Any]) -> Reply:
        if "title" in body:
            p.title = body["title"]
        if "body" in body:
            p.body = body["body"]
        if body.get("state") in ("open", "closed"):
            if p.merged_at and body["state"] == "open":
                raise self._validation({"resource": "PullRequest", "code": "custom",
                                        "message": "state cannot be changed. The pull request has been merged."})
            p.state = body["state"]
            p.closed_at = _now() if p.state == "closed" else None
        p.updated_at = _now()
        return 200, self.pull_json(p), {}

    def _merge(self, p: GHPull, body: dict[str, Any]) -> Reply:
        method = body.get("merge_method", "merge")
        if method not in ("merge", "squash", "rebase"):
            raise self._validation({"resource": "PullRequest", "field": "merge_method", "code": "invalid"})
        if p.state != "open":
            raise _HTTPError(405, {"message": "Pull Request is not mergeable",
                                   "documentation_url": "https://docs.github.com/rest/pulls/pulls#merge-a-pull-request"})
        current = self.branch_sha(p.head) or p.head_sha
        if body.get("sha") and body["sha"] != current:
            raise _HTTPError(409, {"message": "Head branch was modified. Review and try the merge again.",
                                   "documentation_url": "https://docs.github.com/rest/pulls/pulls#merge-a-pull-request"})
        title = body.get("commit_title") or f"Merge pull request #{p.number} from {self.owner}/{p.head}"
        sha = self.git_merge(p.head, p.base, title, squash=method != "merge")
        if sha is None:
            raise _HTTPError(405, {"message": "Pull Request is not mergeable",
                                   "documentation_url": "https://docs.github.com/rest/pulls/pulls#merge-a-pull-request"})
        p.head_sha = current
        p.state, p.merged_at, p.closed_at, p.merged_by, p.merge_commit_sha = "closed", _now(), _now(), "approver", sha
        return 200, {"sha": sha, "merged": True, "message": "Pull Request successfully merged"}, {}

    def _comment(self, p: GHPull, body: dict[str, Any]) -> Reply:
        if not isinstance(body.get("body"), str):
            raise self._validation({"resource": "IssueComment", "field": "body", "code": "missing_field"})
        cid = self._id()
        c = {"id": cid, "node_id": f"IC_{cid}", "body": body["body"], "user": self._user("remediator-bot"),
             "created_at": _now(), "updated_at": _now(), "author_association": "MEMBER",
             "url": self._api(f"/issues/comments/{cid}"), "issue_url": self._api(f"/issues/{p.number}"),
             "html_url": f"{self.web_url}/{self.owner}/{self.repo}/pull/{p.number}#issuecomment-{cid}"}
        p.comments.append(c)
        return 201, c, {}

    # ---------------------------------------------------------------- acting as a human in the host
    def add_review(self, number: int, user: str, state: str = "APPROVED", body: str = "") -> None:
        with self.lock:
            p = self.pulls[number]
            self._refs = None
            rid = self._id()
            p.reviews.append({"id": rid, "node_id": f"PRR_{rid}", "user": self._user(user), "body": body,
                              "state": state, "commit_id": p.head_sha or self.branch_sha(p.head),
                              "submitted_at": _now(), "author_association": "MEMBER",
                              "html_url": f"{self.web_url}/{self.owner}/{self.repo}/pull/{number}#pullrequestreview-{rid}",
                              "pull_request_url": self._api(f"/pulls/{number}")})

    def close(self, number: int) -> None:
        with self.lock:
            p = self.pulls[number]
            p.state, p.closed_at = "closed", _now()

    def merge(self, number: int, user: str = "approver") -> str | None:
        with self.lock:
            p = self.pulls[number]
            p.head_sha = self.branch_sha(p.head) or p.head_sha
            sha = self.git_merge(p.head, p.base, f"Merge pull request #{number} from {self.owner}/{p.head}")
            p.state, p.merged_at, p.closed_at, p.merged_by, p.merge_commit_sha = "closed", _now(), _now(), user, sha
            return sha

    def seed_prs(self, count: int, *, prefix: str = "feature/other-") -> list[int]:
        """``count`` unrelated open PRs (no git branch needed)."""
        with self.lock:
            out = []
            for i in range(count):
                p = GHPull(number=self._next, title=f"Unrelated change {i}", body="", head=f"{prefix}{i}",
                           base=self.base, user="someone", head_sha=f"{i:040x}")
                self.pulls[p.number] = p
                self._next += 1
                out.append(p.number)
            return out

    def open_for(self, branch: str) -> list[GHPull]:
        return [p for p in self.pulls.values() if p.head == branch and p.state == "open"]


# ============================================================================ GitLab

@dataclass
class GLMergeRequest:
    iid: int
    title: str
    description: str | None
    source_branch: str
    target_branch: str
    author: str = "remediator-bot"
    state: str = "opened"
    sha: str | None = None
    labels: list[str] = field(default_factory=list)
    merged_at: str | None = None
    merged_by: str | None = None
    merge_commit_sha: str | None = None
    squash_commit_sha: str | None = None
    closed_at: str | None = None
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    approved_by: list[str] = field(default_factory=list)
    reviewers: dict[str, str] = field(default_factory=dict)  # username -> state
    notes: list[dict[str, Any]] = field(default_factory=list)


class FakeGitLab(FakeHost):
    """GitLab REST v4 for one project (``group/project``; addressed by URL-encoded path or id)."""

    prefix = "/api/v4"
    default_per_page = 20

    def __init__(self, *, project: str = "acme/gitops", token: str = "glpat-" + "B" * 20,
                 git_dir: Path | None = None, base: str = "main", project_id: int = 42) -> None:
        super().__init__(token=token, git_dir=git_dir, base=base)
        self.project, self.project_id = project, project_id
        self.mrs: dict[int, GLMergeRequest] = {}
        self._next = 1
        self._ids = 9000
        self.reviewers_endpoint = True  # False: an older GitLab without /reviewers (404)

    def _id(self) -> int:
        self._ids += 1
        return self._ids

    def authorized(self, headers: dict[str, str]) -> bool:
        low = {k.lower(): v for k, v in headers.items()}
        if low.get("private-token") == self.token:
            return True
        scheme, _, value = low.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and value == self.token

    def unauthorized(self) -> Json:
        return {"message": "401 Unauthorized"}

    def not_found(self) -> Json:
        return {"message": "404 Not found"}

    def default_error(self, status: int) -> Json:
        if status == 429:
            return {"message": "429 Too Many Requests"}
        if status >= 500:
            return {"message": f"{status} {super().default_error(status)['message']}"}
        return super().default_error(status)

    def page_headers(self, *, page: int, per_page: int, last: int, total: int) -> dict[str, str]:
        return {"X-Page": str(page), "X-Per-Page": str(per_page), "X-Total": str(total),
                "X-Total-Pages": str(last), "X-Next-Page": str(page + 1) if page < last else "",
                "X-Prev-Page": str(page - 1) if page > 1 else ""}

    def _user(self, username: str) -> Json:
        return {"id": abs(hash(username)) % 10**6, "username": username, "name": username.title(),
                "state": "active", "avatar_url": None, "web_url": f"{self.url}/{username}"}

    def mr_json(self, m: GLMergeRequest) -> Json:
        if m.state == "opened":
            m.sha = self.branch_sha(m.source_branch) or m.sha
        return {
            "id": 7000 + m.iid, "iid": m.iid, "project_id": self.project_id, "title": m.title,
            "description": m.description, "state": m.state, "created_at": m.created_at, "updated_at": m.updated_at,
            "merged_by": self._user(m.merged_by) if m.merged_by else None,
            "merge_user": self._user(m.merged_by) if m.merged_by else None,
            "merged_at": m.merged_at, "closed_by": None, "closed_at": m.closed_at,
            "target_branch": m.target_branch, "source_branch": m.source_branch,
            "source_project_id": self.project_id, "target_project_id": self.project_id,
            "author": self._user(m.author), "assignees": [], "reviewers": [self._user(u) for u in m.reviewers],
            "labels": list(m.labels), "draft": False, "work_in_progress": False,
            "merge_when_pipeline_succeeds": False, "merge_status": "can_be_merged",
            "detailed_merge_status": "mergeable" if m.state == "opened" else "not_open", "has_conflicts": False,
            "sha": m.sha, "merge_commit_sha": m.merge_commit_sha, "squash_commit_sha": m.squash_commit_sha,
            "user_notes_count": len(m.notes), "should_remove_source_branch": None,
            "force_remove_source_branch": False, "squash": False,
            "web_url": f"{self.url}/{self.project}/-/merge_requests/{m.iid}",
            "references": {"short": f"!{m.iid}", "full": f"{self.project}!{m.iid}"},
        }

    def route(self, method: str, seg: list[str], query: dict[str, str], body: Json, path: str) -> Reply:
        if len(seg) < 2 or seg[0] != "projects" or seg[1] not in (self.project, str(self.project_id)):
            raise _HTTPError(404, {"message": "404 Project Not Found"})
        rest = seg[2:]
        body = body if isinstance(body, dict) else {}
        if not rest and method == "GET":
            return 200, {"id": self.project_id, "path_with_namespace": self.project,
                         "default_branch": self.base, "web_url": f"{self.url}/{self.project}"}, {}
        if rest == ["merge_requests"] and method == "GET":
            return self.page([self.mr_json(m) for m in self._list(query)], query, path)
        if rest == ["merge_requests"] and method == "POST":
            return self._create(body)
        if len(rest) >= 2 and rest[0] == "merge_requests" and rest[1].isdigit():
            m = self.mrs.get(int(rest[1]))
            if m is None:
                raise _HTTPError(404, {"message": "404 Not found"})
            tail = (*rest[2:], method)
            if tail == ("GET",):
                return 200, self.mr_json(m), {}
            if tail == ("PUT",):
                return self._update(m, body)
            if tail == ("merge", "PUT"):
                return self._merge(m, body)
            if tail == ("approvals", "GET"):
                return 200, {"id": 7000 + m.iid, "iid": m.iid, "project_id": self.project_id, "title": m.title,
                             "state": m.state, "merge_status": "can_be_merged", "approved": bool(m.approved_by),
                             "approvals_required": 0, "approvals_left": 0,
                             "approved_by": [{"user": self._user(u)} for u in m.approved_by]}, {}
            if tail == ("reviewers", "GET") and self.reviewers_endpoint:
                return 200, [{"user": self._user(u), "state": s, "created_at": m.created_at}
                             for u, s in m.reviewers.items()], {}
            if tail == ("notes", "GET"):
                return self.page(m.notes, query, path)
            if tail == ("notes", "POST"):
                if not isinstance(body.get("body"), str) or not body["body"]:
                    raise _HTTPError(400, {"message": {"note": ["can't be blank"]}})
                nid = self._id()
                note = {"id": nid, "type": None, "body": body["body"], "author": self._user("remediator-bot"),
                        "created_at": _now(), "updated_at": _now(), "system": False, "noteable_id": 7000 + m.iid,
                        "noteable_type": "MergeRequest", "noteable_iid": m.iid, "resolvable": False,
                        "confidential": False, "internal": False}
                m.notes.append(note)
                return 201, note, {}
        raise _HTTPError(404, {"message": "404 Not found"})

    def _list(self, query: dict[str, str]) -> list[GLMergeRequest]:
        state = query.get("state", "all")
        out = []
        for m in sorted(self.mrs.values(), key=lambda m: -m.iid):
            if state != "all" and m.state != state:
                continue
            if query.get("target_branch") and m.target_branch != query["target_branch"]:
                continue
            if query.get("source_branch") and self.honour_head_filter and m.source_branch != query["source_branch"]:
                continue
            out.append(m)
        return out

    @staticmethod
    def _labels(value: Any) -> list[str]:
        if isinstance(value, list):
            return [str(v) for v in value if str(v)]
        return [s.strip() for s in str(value or "").split(",") if s.strip()]

    def _create(self, body: dict[str, Any]) -> Reply:
        src, dst, title = body.get("source_branch"), body.get("target_branch"), body.get("title")
        missing = [k for k, v in (("source_branch", src), ("target_branch", dst), ("title", title)) if not v]
        if missing:
            raise _HTTPError(400, {"error": f"{', '.join(missing)} is missing"})
        if self.git_dir is not None and self.branch_sha(str(src)) is None:
            raise _HTTPError(422, {"message": [f"Source branch \"{src}\" does not exist"]})
        if self.git_dir is not None and self.branch_sha(str(dst)) is None:
            raise _HTTPError(422, {"message": [f"Target branch \"{dst}\" does not exist"]})
        dup = next((m for m in self.mrs.values() if m.state == "opened" and m.source_branch == src
                    and m.target_branch == dst), None)
        if dup is not None:
            raise _HTTPError(409, {"message": ["Another open merge request already exists for this source branch: "
                                               f"!{dup.iid}"]})
        m = GLMergeRequest(iid=self._next, title=str(title), description=body.get("description"),
                           source_branch=str(src), target_branch=str(dst), labels=self._labels(body.get("labels")))
        self._next += 1
        self.mrs[m.iid] = m
        return 201, self.mr_json(m), {}

    def _update(self, m: GLMergeRequest, body: dict[str, Any]) -> Reply:
        for key in ("title", "description"):
            if key in body:
                setattr(m, key, body[key])
        if "labels" in body:
            m.labels = self._labels(body["labels"])
        m.labels += [n for n in self._labels(body.get("add_labels")) if n not in m.labels]
        m.labels = [n for n in m.labels if n not in self._labels(body.get("remove_labels"))]
        event = body.get("state_event")
        if event == "close" and m.state == "opened":
            m.state, m.closed_at = "closed", _now()
        elif event == "reopen" and m.state == "closed":
            m.state, m.closed_at = "opened", None
        m.updated_at = _now()
        return 200, self.mr_json(m), {}

    def _merge(self, m: GLMergeRequest, body: dict[str, Any]) -> Reply:
        if m.state != "opened":
            raise _HTTPError(405, {"message": "405 Method Not Allowed"})
        current = self.branch_sha(m.source_branch) or m.sha
        if body.get("sha") and body["sha"] != current:
            raise _HTTPError(409, {"message": f"SHA does not match HEAD of source branch: {current}"})
        msg = body.get("merge_commit_message") or (f"Merge branch '{m.source_branch}' into '{m.target_branch}'\n\n"
                                                   f"See merge request {self.project}!{m.iid}")
        squash = bool(body.get("squash"))
        sha = self.git_merge(m.source_branch, m.target_branch, msg, squash=squash)
        if sha is None:
            raise _HTTPError(422, {"message": "Branch cannot be merged"})
        m.sha = current
        m.state, m.merged_at, m.merged_by = "merged", _now(), "approver"
        if squash:
            m.squash_commit_sha = sha
        else:
            m.merge_commit_sha = sha
        return 200, self.mr_json(m), {}

    # ---------------------------------------------------------------- acting as a human in the host
    def approve(self, iid: int, user: str) -> None:
        with self.lock:
            self.mrs[iid].approved_by.append(user)

    def request_changes(self, iid: int, user: str) -> None:
        with self.lock:
            self.mrs[iid].reviewers[user] = "requested_changes"

    def close(self, iid: int) -> None:
        with self.lock:
            m = self.mrs[iid]
            m.state, m.closed_at = "closed", _now()

    def merge(self, iid: int, user: str = "approver") -> str | None:
        with self.lock:
            m = self.mrs[iid]
            m.sha = self.branch_sha(m.source_branch) or m.sha
            sha = self.git_merge(m.source_branch, m.target_branch, f"Merge branch '{m.source_branch}'")
            m.state, m.merged_at, m.merged_by, m.merge_commit_sha = "merged", _now(), user, sha
            return sha

    def seed_mrs(self, count: int, *, prefix: str = "feature/other-") -> list[int]:
        with self.lock:
            out = []
            for i in range(count):
                m = GLMergeRequest(iid=self._next, title=f"Unrelated change {i}", description="",
                                   source_branch=f"{prefix}{i}", target_branch=self.base, author="someone",
                                   sha=f"{i:040x}")
                self.mrs[m.iid] = m
                self._next += 1
                out.append(m.iid)
            return out

    def open_for(self, branch: str) -> list[GLMergeRequest]:
        return [m for m in self.mrs.values() if m.source_branch == branch and m.state == "opened"]
