"""PullRequests provider for GitHub pull requests (PyGithub).

The shared behaviour (git through ``LocalProvider``, one open PR per head branch, retries,
token scrubbing) is ``tools.providers.hosted.HostedProvider``; this module maps it to the
GitHub REST API: a "422 ... already exists" on create is resolved by looking the PR up, and a
403 rate limit is retried after ``Retry-After`` or ``X-RateLimit-Reset``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import requests
from github import Auth, Github
from github.GithubException import GithubException, RateLimitExceededException

from tools.errors import PermanentError
from tools.providers.hosted import Failure, HostedPR, HostedProvider

__all__ = ["GitHubProvider"]


class GitHubProvider(HostedProvider):
    kind = "github"
    host = "GitHub"
    git_user = "x-access-token"
    merge_methods = ("merge", "squash", "rebase", "label")
    api_errors = (GithubException, requests.RequestException)

    def __init__(self, *, remote: str, base: str, workdir: Path, repository: str, token: str,
                 api_url: str | None = None, author_name: str = "remediator",
                 author_email: str = "remediator@localhost", merge_method: str = "merge",
                 approval_label: str = "remediator-approved", retries: int = 3, backoff_s: float = 0.5,
                 timeout_s: float = 30, git_timeout_s: float = 60, git_token_auth: bool = True,
                 write_interval_s: float | None = 1.0) -> None:
        super().__init__(remote=remote, base=base, workdir=workdir, repository=repository, token=token,
                         author_name=author_name, author_email=author_email,
                         merge_method=merge_method, approval_label=approval_label, retries=retries,
                         backoff_s=backoff_s, timeout_s=timeout_s, git_timeout_s=git_timeout_s,
                         git_token_auth=git_token_auth)
        self.api_url = (api_url or "https://api.github.com").rstrip("/")
        self.owner = repository.split("/", 1)[0]
        self._gh = Github(auth=Auth.Token(token), base_url=self.api_url, retry=None, timeout=int(timeout_s),
                          per_page=100, seconds_between_requests=None,
                          seconds_between_writes=write_interval_s or None)
        self._repo_obj: Any = None

    @property
    def _repo(self) -> Any:
        """The repository object, read on first use (inside a retried call, never in the constructor)."""
        if self._repo_obj is None:
            self._repo_obj = self._gh.get_repo(self.repository)
        return self._repo_obj

    def _classify(self, exc: BaseException) -> Failure | None:
        if isinstance(exc, RateLimitExceededException):  # 403 primary / secondary rate limit
            retry_after = self._retry_after(exc.headers)
            reset = {str(k).lower(): v for k, v in dict(exc.headers or {}).items()}.get("x-ratelimit-reset")
            if retry_after is None and reset is not None and str(reset).isdigit():
                retry_after = max(0.0, float(reset) - time.time())
            return Failure(True, exc.status, self._message(exc), retry_after)
        if isinstance(exc, GithubException):
            return Failure(self._retryable(exc.status), exc.status, self._message(exc),
                           self._retry_after(exc.headers))
        return super()._classify(exc)

    @staticmethod
    def _message(exc: GithubException) -> str:
        data = exc.data
        if not isinstance(data, dict):
            return str(data or exc.message or "no details")[:300]
        msg = str(data.get("message") or exc.message or "no details")
        details = []
        for e in data.get("errors") or []:
            if isinstance(e, dict):
                details.append(str(e.get("message") or " ".join(str(e.get(k)) for k in ("resource", "field", "code")
                                                                 if e.get(k))))
            else:
                details.append(str(e))
        return f"{msg} ({'; '.join(details)})" if details else msg

    def _already_exists(self, exc: BaseException) -> bool:
        return (isinstance(exc, GithubException) and exc.status == 422
                and "already exists" in self._message(exc).lower())

    def _hosted(self, p: Any) -> HostedPR:
        state = "merged" if p.merged_at is not None else ("open" if p.state == "open" else "closed")
        return HostedPR(number=p.number, url=p.html_url, state=state, title=p.title or "", body=p.body or "",
                        labels=tuple(lb.name for lb in p.labels), head_ref=p.head.ref, head_sha=p.head.sha, raw=p)

    def _mine(self, p: Any, branch: str) -> bool:
        repo = p.head.repo
        return bool(p.head.ref == branch and (repo is None or repo.full_name.lower() == self.repository.lower()))

    def _api_get(self, number: int) -> HostedPR:
        return self._hosted(self._repo.get_pull(number))

    def _api_find_open(self, branch: str) -> HostedPR | None:
        for p in self._repo.get_pulls(state="open", head=f"{self.owner}:{branch}", base=self.base):
            if self._mine(p, branch):
                return self._hosted(p)
        return None

    def _api_find_any(self, branch: str) -> HostedPR | None:
        found = self._api_find_open(branch)
        if found is not None:
            return found
        for p in self._repo.get_pulls(state="closed", head=f"{self.owner}:{branch}", base=self.base):
            if self._mine(p, branch):  # newest first
                return self._hosted(p)
        return None

    def _api_create(self, *, branch: str, title: str, body: str, labels: tuple[str, ...]) -> HostedPR:
        return self._hosted(self._repo.create_pull(base=self.base, head=branch, title=title, body=body))

    def _api_edit(self, pr: HostedPR, *, title: str | None, body: str | None) -> None:
        kw = {k: v for k, v in (("title", title), ("body", body)) if v is not None}
        pr.raw.edit(**kw)

    def _api_add_labels(self, pr: HostedPR, labels: tuple[str, ...]) -> None:
        pr.raw.add_to_labels(*labels)

    def _api_comment(self, pr: HostedPR, body: str) -> None:
        pr.raw.create_issue_comment(body)

    def _api_has_comment(self, pr: HostedPR, body: str) -> bool:
        return any(c.body == body for c in pr.raw.get_issue_comments())

    def _api_close(self, pr: HostedPR) -> None:
        pr.raw.edit(state="closed")

    def _api_merge(self, pr: HostedPR, *, sha: str | None, title: str) -> None:
        kw: dict[str, Any] = {"merge_method": self.merge_method, "commit_title": title}
        if sha:
            kw["sha"] = sha
        status = pr.raw.merge(**kw)
        if not status.merged:
            raise PermanentError(f"{self.source}: PR {self._ref(pr.number)} was not merged: {status.message}",
                                 source=self.source)

    def _api_reviews(self, pr: HostedPR) -> list[tuple[str, str]]:
        latest: dict[str, str] = {}
        for r in pr.raw.get_reviews():  # oldest first; a reviewer's last verdict stands
            if r.user is None:
                continue
            if r.state in ("APPROVED", "CHANGES_REQUESTED"):
                latest[r.user.login] = r.state
            elif r.state == "DISMISSED":
                latest.pop(r.user.login, None)
        return list(latest.items())
