"""PullRequests provider for GitLab merge requests (python-gitlab, REST v4).

Same behaviour as the GitHub provider (see ``tools.providers.hosted.HostedProvider``): git
through ``LocalProvider``, one open MR per source branch, looked up before it is created
(a "409 Another open merge request already exists" is resolved by looking it up), retries
with backoff on 5xx / 429 (``Retry-After``) / connection errors, ``PermanentError`` with
GitLab's message on any other 4xx, tokens never in errors or logs.

``merge_method``: ``merge`` (merge commit), ``squash``, or ``label`` (add the approval label
and leave merging to humans). ``reviews`` reports approvals (``APPROVED``) and, where the
GitLab version has the reviewers API, reviewers who requested changes (``CHANGES_REQUESTED``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import gitlab
import requests
from gitlab.exceptions import GitlabError

from tools.errors import PermanentError
from tools.providers.hosted import Failure, HostedPR, HostedProvider


class GitLabProvider(HostedProvider):
    kind = "gitlab"
    host = "GitLab"
    git_user = "oauth2"
    merge_methods = ("merge", "squash", "label")
    api_errors = (GitlabError, requests.RequestException)

    def __init__(self, *, remote: str, base: str, workdir: Path, repository: str, token: str,
                 api_url: str | None = None, author_name: str = "remediator",
                 author_email: str = "remediator@localhost", merge_method: str = "merge",
                 approval_label: str = "remediator-approved", retries: int = 3, backoff_s: float = 0.5,
                 timeout_s: float = 30, git_timeout_s: float = 60, git_token_auth: bool = True) -> None:
        super().__init__(remote=remote, base=base, workdir=workdir, repository=repository, token=token,
                         author_name=author_name, author_email=author_email,
                         merge_method=merge_method, approval_label=approval_label, retries=retries,
                         backoff_s=backoff_s, timeout_s=timeout_s, git_timeout_s=git_timeout_s,
                         git_token_auth=git_token_auth)
        self.api_url = (api_url or "https://gitlab.com").rstrip("/")
        if self.api_url.endswith("/api/v4"):
            self.api_url = self.api_url[: -len("/api/v4")]
        self._gl = gitlab.Gitlab(self.api_url, private_token=token, retry_transient_errors=False,
                                 timeout=timeout_s, per_page=100)
        self._retry_after_seen: float | None = None
        self._gl.session.hooks["response"].append(self._remember_retry_after)
        self._path = f"/projects/{quote(repository, safe='')}/merge_requests"

    def _remember_retry_after(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._retry_after_seen = self._retry_after(response.headers) if response.status_code == 429 else None

    def _ref(self, number: int) -> str:
        return f"!{number}"

    # ------------------------------------------------------------------ wire
    def _req(self, verb: str, path: str, **kw: Any) -> Any:
        kw.setdefault("obey_rate_limit", False)  # our own loop retries 429 (honouring Retry-After)
        return getattr(self._gl, f"http_{verb}")(f"{self._path}{path}", **kw)

    def _list(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        return list(self._req("list", "", query_data=query, get_all=True))

    def _classify(self, exc: BaseException) -> Failure | None:
        if isinstance(exc, GitlabError):
            status = exc.response_code
            msg = exc.error_message
            if isinstance(msg, bytes):
                msg = msg.decode("utf-8", "replace")
            if isinstance(msg, list):
                msg = "; ".join(map(str, msg))
            elif isinstance(msg, dict):
                msg = "; ".join(f"{k} {', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in msg.items())
            retry_after = self._retry_after_seen if status == 429 else None
            return Failure(self._retryable(status), status, str(msg or "no details")[:300], retry_after)
        return super()._classify(exc)

    def _already_exists(self, exc: BaseException) -> bool:
        return (isinstance(exc, GitlabError) and exc.response_code == 409
                and "already exists" in str(exc.error_message).lower())

    def _hosted(self, m: dict[str, Any]) -> HostedPR:
        state = {"opened": "open", "merged": "merged"}.get(str(m.get("state")), "closed")
        return HostedPR(number=int(m["iid"]), url=str(m.get("web_url") or ""), state=state,
                        title=str(m.get("title") or ""), body=str(m.get("description") or ""),
                        labels=tuple(str(x) for x in m.get("labels") or ()), head_ref=str(m.get("source_branch")),
                        head_sha=m.get("sha"), raw=m)

    # ------------------------------------------------------------------ host API
    def _api_get(self, number: int) -> HostedPR:
        return self._hosted(self._req("get", f"/{number}"))

    def _find(self, branch: str, state: str) -> HostedPR | None:
        for m in self._list({"state": state, "source_branch": branch, "target_branch": self.base,
                             "order_by": "created_at", "sort": "desc"}):
            if m.get("source_branch") == branch and m.get("target_branch") == self.base:
                return self._hosted(m)
        return None

    def _api_find_open(self, branch: str) -> HostedPR | None:
        return self._find(branch, "opened")

    def _api_find_any(self, branch: str) -> HostedPR | None:
        return self._find(branch, "opened") or self._find(branch, "all")

    def _api_create(self, *, branch: str, title: str, body: str, labels: tuple[str, ...]) -> HostedPR:
        data: dict[str, Any] = {"source_branch": branch, "target_branch": self.base, "title": title,
                                "description": body}
        if labels:
            data["labels"] = ",".join(labels)
        return self._hosted(self._req("post", "", post_data=data))

    def _api_edit(self, pr: HostedPR, *, title: str | None, body: str | None) -> None:
        data = {k: v for k, v in (("title", title), ("description", body)) if v is not None}
        self._req("put", f"/{pr.number}", post_data=data)

    def _api_add_labels(self, pr: HostedPR, labels: tuple[str, ...]) -> None:
        self._req("put", f"/{pr.number}", post_data={"add_labels": ",".join(labels)})

    def _api_comment(self, pr: HostedPR, body: str) -> None:
        self._req("post", f"/{pr.number}/notes", post_data={"body": body})

    def _api_has_comment(self, pr: HostedPR, body: str) -> bool:
        return any(n.get("body") == body for n in self._req("list", f"/{pr.number}/notes", get_all=True))

    def _api_close(self, pr: HostedPR) -> None:
        self._req("put", f"/{pr.number}", post_data={"state_event": "close"})

    def _api_merge(self, pr: HostedPR, *, sha: str | None, title: str) -> None:
        data: dict[str, Any] = {"merge_commit_message": title}
        if sha:
            data["sha"] = sha
        if self.merge_method == "squash":
            data["squash"] = True
        out = self._req("put", f"/{pr.number}/merge", post_data=data)
        if isinstance(out, dict) and out.get("state") != "merged":
            raise PermanentError(f"{self.source}: MR !{pr.number} was not merged (state {out.get('state')}, "
                                 f"{out.get('detailed_merge_status') or out.get('merge_status')})", source=self.source)

    def _api_reviews(self, pr: HostedPR) -> list[tuple[str, str]]:
        approvals = self._req("get", f"/{pr.number}/approvals")
        out: dict[str, str] = {}
        for a in approvals.get("approved_by") or []:
            user = (a.get("user") or {}).get("username")
            if user:
                out[user] = "APPROVED"
        try:
            reviewers = self._req("get", f"/{pr.number}/reviewers")
        except GitlabError as exc:
            if exc.response_code != 404:  # older GitLab: no reviewers API
                raise
            reviewers = []
        for r in reviewers or []:
            user = (r.get("user") or {}).get("username")
            if user and r.get("state") == "requested_changes" and user not in out:
                out[user] = "CHANGES_REQUESTED"
        return list(out.items())
