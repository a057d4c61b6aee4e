"""The part the hosted PullRequests providers (GitHub, GitLab) share: ``HostedProvider``.

The git side (the branch is exactly one bot commit on top of the base branch, pushed with
lease, left alone when it already holds the change or a human pushed to it) is delegated to
a ``LocalProvider`` on the same remote. The API side keeps one open PR per head branch:
it looks the PR up before creating one (a retry after a lost response never makes a
duplicate; an "already exists" answer is resolved by looking it up), updates title / body /
labels only when they changed, and reads status and reviews back from the host. Subclasses
supply the host's calls (``_api_*``) and classify the client library's exceptions
(``_classify`` -> ``Failure``) into what ``HostedPR`` / retries need.

API calls are retried with backoff on 5xx, 429 (honouring ``Retry-After``) and connection
errors, then raise ``TemporaryError``; any other 4xx raises ``PermanentError`` with the
host's message. Tokens never appear in errors or logs. This module imports no host client
library (only ``requests``, for connection errors).
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

import requests

from memory.records import PullRequest, utcnow
from tools.errors import PermanentError, TemporaryError, ToolError, scrub
from tools.providers.local import LocalProvider
from tools.results import PublishResult

__all__ = ["MAX_SLEEP_S", "Failure", "HostedPR", "HostedProvider"]

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_SLEEP_S = 30.0  # a longer Retry-After is handed to the caller as TemporaryError(delay)


@dataclass(frozen=True)
class HostedPR:
    """A PR / MR as the host reports it (the library object in ``raw``)."""

    number: int
    url: str
    state: str  # open | closed | merged
    title: str
    body: str
    labels: tuple[str, ...]
    head_ref: str
    head_sha: str | None
    raw: Any = None


@dataclass(frozen=True)
class Failure:
    """A classified API failure."""

    retry: bool
    status: int | None
    message: str
    retry_after: float | None = None


class HostedProvider:
    """Git through ``LocalProvider``; the host's PR API through the subclass's ``_api_*`` methods."""

    kind: ClassVar[str] = ""
    host: ClassVar[str] = ""
    git_user: ClassVar[str] = "x-access-token"
    merge_methods: ClassVar[tuple[str, ...]] = ("merge", "label")
    api_errors: ClassVar[tuple[type[BaseException], ...]] = (requests.RequestException,)

    def __init__(self, *, remote: str, base: str, workdir: Path, repository: str, token: str,
                 author_name: str = "remediator", author_email: str = "remediator@localhost",
                 merge_method: str = "merge", approval_label: str = "remediator-approved", retries: int = 3,
                 backoff_s: float = 0.5, timeout_s: float = 30, git_timeout_s: float = 60,
                 git_token_auth: bool = True) -> None:
        if not token:
            raise PermanentError(f"{self.host} provider needs a token: set it through the environment or a "
                                 "token file (gitops.token)", source=self.kind)
        if repository.count("/") < 1 or not all(repository.split("/")):
            raise PermanentError(f"{self.host} repository {repository!r} must be written owner/name "
                                 "(group/project for GitLab)", source=self.kind)
        if merge_method not in self.merge_methods:
            raise PermanentError(f"{self.host} merge_method {merge_method!r} is not one of "
                                 f"{', '.join(self.merge_methods)}", source=self.kind)
        self.local = LocalProvider(remote=remote, base=base, workdir=workdir, author_name=author_name,
                                   author_email=author_email, timeout_s=git_timeout_s)
        self.base = base
        self.repository = repository
        self.merge_method = merge_method
        self.approval_label = approval_label
        self.retries = max(0, retries)
        self.backoff_s = max(0.0, backoff_s)
        self.timeout_s = timeout_s
        self.__token = token
        self._sleep: Callable[[float], None] = time.sleep
        if git_token_auth:
            self._git_auth(remote, token)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(repository={self.repository!r}, base={self.base!r})"

    @property
    def name(self) -> str:
        return self.kind

    @property
    def source(self) -> str:
        return f"{self.host} {self.repository}"

    def _git_auth(self, remote: str, token: str) -> None:
        """HTTPS remotes without credentials authenticate with the token through an extra header
        passed in the environment of each git command (never written to a config file or the URL)."""
        parts = urlsplit(remote)
        if parts.scheme not in ("http", "https") or "@" in parts.netloc:
            return
        cred = base64.b64encode(f"{self.git_user}:{token}".encode()).decode()
        self.local.git.env.update({
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": f"http.{parts.scheme}://{parts.netloc}/.extraHeader",
            "GIT_CONFIG_VALUE_0": f"Authorization: Basic {cred}",
        })

    def _safe(self, text: str) -> str:
        text = scrub(text)
        return text.replace(self.__token, "***") if self.__token else text

    # ------------------------------------------------------------------ retries
    def _classify(self, exc: BaseException) -> Failure | None:
        """A ``Failure`` for the library's exceptions; None for anything else (re-raised)."""
        if isinstance(exc, requests.RequestException):
            return Failure(True, None, f"{type(exc).__name__}: {exc}")
        return None

    @staticmethod
    def _retryable(status: int | None) -> bool:
        return status is None or status == 429 or status >= 500

    @staticmethod
    def _retry_after(headers: Any) -> float | None:
        for k, v in dict(headers or {}).items():
            if str(k).lower() == "retry-after":
                try:
                    return max(0.0, float(v))
                except (TypeError, ValueError):
                    return None
        return None

    def _hint(self, status: int | None) -> str:
        return {401: "; check the token (gitops token env / file)",
                403: "; check the token's permissions on the repository (pull requests: write)",
                404: "; check gitops.repository and that the token can see it"}.get(status or 0, "")

    def _call(self, what: str, fn: Callable[[], T], *, recheck: Callable[[], T | None] | None = None) -> T:
        """Run one API operation with retries. ``recheck`` (for non-idempotent writes) is asked
        before each retry whether the failed attempt took effect after all."""
        last: Failure | None = None
        for attempt in range(self.retries + 1):
            if attempt and recheck is not None:
                try:
                    done = recheck()
                except self.api_errors as exc:
                    if self._classify(exc) is None:
                        raise
                    done = None
                if done is not None:
                    return done
            try:
                return fn()
            except self.api_errors as exc:
                failure = self._classify(exc)
                if failure is None:
                    raise
            if not failure.retry:
                status = f"{failure.status} " if failure.status else ""
                raise PermanentError(self._safe(f"{self.source}: {what} refused: {status}{failure.message}"
                                                f"{self._hint(failure.status)}"), source=self.source) from None
            last = failure
            delay = failure.retry_after if failure.retry_after is not None else self.backoff_s * (2 ** attempt)
            if delay > MAX_SLEEP_S:
                break
            if attempt < self.retries:
                log.warning("%s", self._safe(f"{self.source}: {what} failed ({failure.status or ''} "
                                             f"{failure.message}); retry {attempt + 1}/{self.retries} in {delay:.1f}s"))
                self._sleep(delay)
        assert last is not None
        delay = last.retry_after if last.retry_after is not None else max(self.backoff_s, 1.0)
        status = f"{last.status} " if last.status else ""
        raise TemporaryError(self._safe(f"{self.source}: {what} failed after {attempt + 1} attempt(s): "
                                        f"{status}{last.message}; the host is unavailable, retry later"),
                             source=self.source, delay=delay)

    # ------------------------------------------------------------------ host API (subclasses)
    def _api_get(self, number: int) -> HostedPR:
        raise NotImplementedError

    def _api_find_open(self, branch: str) -> HostedPR | None:
        raise NotImplementedError

    def _api_find_any(self, branch: str) -> HostedPR | None:
        """The most recent PR (any state) for ``branch``."""
        raise NotImplementedError

    def _api_create(self, *, branch: str, title: str, body: str, labels: tuple[str, ...]) -> HostedPR:
        raise NotImplementedError

    def _already_exists(self, exc: BaseException) -> bool:
        raise NotImplementedError

    def _api_edit(self, pr: HostedPR, *, title: str | None, body: str | None) -> None:
        raise NotImplementedError

    def _api_add_labels(self, pr: HostedPR, labels: tuple[str, ...]) -> None:
        raise NotImplementedError

    def _api_comment(self, pr: HostedPR, body: str) -> None:
        raise NotImplementedError

    def _api_has_comment(self, pr: HostedPR, body: str) -> bool:
        raise NotImplementedError

    def _api_close(self, pr: HostedPR) -> None:
        raise NotImplementedError

    def _api_merge(self, pr: HostedPR, *, sha: str | None, title: str) -> None:
        raise NotImplementedError

    def _api_reviews(self, pr: HostedPR) -> list[tuple[str, str]]:
        raise NotImplementedError

    # ------------------------------------------------------------------ PullRequests Protocol
    def _ref(self, number: int) -> str:
        return f"#{number}"

    def _get(self, number: int) -> HostedPR:
        return self._call(f"reading PR {self._ref(number)}", lambda: self._api_get(number))

    def _locate(self, pr: PullRequest) -> HostedPR | None:
        """The host's PR for a record: by number when it has one, else by branch."""
        if pr.provider == self.kind and pr.number is not None:
            return self._get(pr.number)
        return self._call(f"looking up the PR of {pr.branch}", lambda: self._api_find_any(pr.branch))

    def publish(self, *, branch: str, title: str, body: str, files: dict[str, str], message: str,
                incident_ids: Iterable[str], labels: Iterable[str] = (),
                existing: PullRequest | None = None) -> PublishResult:
        labels = tuple(dict.fromkeys(labels))
        res = self.local.publish(branch=branch, title=title, body=body, files=files, message=message,
                                 incident_ids=incident_ids, labels=labels)
        hosted: HostedPR | None = None
        if existing is not None and existing.provider == self.kind and existing.number is not None:
            cur = self._get(existing.number)
            if cur.state == "open" and cur.head_ref == branch:
                hosted = cur
        if hosted is None:
            hosted = self._call(f"looking up the open PR of {branch}", lambda: self._api_find_open(branch))
        if hosted is None:
            hosted = self._create(branch=branch, title=title, body=body, labels=labels)
        elif res.note:
            log.info("%s", self._safe(f"{self.source}: not editing PR {self._ref(hosted.number)}: {res.note}"))
        elif (hosted.title, hosted.body) != (title, body):
            edit_title = title if hosted.title != title else None
            edit_body = body if hosted.body != body else None
            pr_ = hosted
            self._call(f"updating PR {self._ref(hosted.number)}",
                       lambda: self._api_edit(pr_, title=edit_title, body=edit_body))
        missing = tuple(label for label in labels if label not in hosted.labels)
        if missing:
            pr_ = hosted
            self._call(f"labelling PR {self._ref(hosted.number)}", lambda: self._api_add_labels(pr_, missing))
        fields: dict[str, Any] = {
            "branch": branch, "base": self.base, "title": title, "body": body, "url": hosted.url,
            "number": hosted.number, "provider": self.kind, "files": res.pr.files,
            "incident_ids": res.pr.incident_ids, "labels": labels, "status": "open",
            "head_sha": res.pr.head_sha, "base_sha": res.pr.base_sha,
        }
        if existing is None:
            pr = PullRequest(**fields)
        elif (pr := existing.model_copy(update=fields)) != existing:
            pr = pr.model_copy(update={"updated_at": utcnow()})
        return PublishResult(pr=pr, pushed=res.pushed, note=res.note)

    def _create(self, *, branch: str, title: str, body: str, labels: tuple[str, ...]) -> HostedPR:
        def create() -> HostedPR:
            try:
                return self._api_create(branch=branch, title=title, body=body, labels=labels)
            except self.api_errors as exc:
                if not self._already_exists(exc):
                    raise
            found = self._api_find_open(branch)
            if found is None:
                raise PermanentError(f"{self.source}: the host says a PR for {branch} already exists but none "
                                     "is open for it; check the repository's open PRs", source=self.source)
            return found

        return self._call(f"opening a PR for {branch}", create, recheck=lambda: self._api_find_open(branch))

    def refresh(self, *, pr: PullRequest) -> PullRequest:
        if pr.status == "merged":  # final
            return pr
        hosted = self._locate(pr)
        if hosted is None:  # never opened in the host (e.g. the API refused): what git says
            return self.local.refresh(pr=pr)
        update: dict[str, Any] = {}
        if hosted.state != pr.status:
            update["status"] = hosted.state
        if hosted.head_sha and hosted.state == "open" and hosted.head_sha != pr.head_sha:
            update["head_sha"] = hosted.head_sha
        if pr.number != hosted.number or pr.url != hosted.url or pr.provider != self.kind:
            update.update(number=hosted.number, url=hosted.url, provider=self.kind)
        if not update:
            return pr
        return pr.model_copy(update={**update, "updated_at": utcnow()})

    def reviews(self, *, pr: PullRequest) -> list[tuple[str, str]]:
        """``(user, state)`` of each reviewer's standing verdict: ``APPROVED`` or ``CHANGES_REQUESTED``."""
        hosted = self._locate(pr)
        if hosted is None:
            return []
        return self._call(f"reading the reviews of PR {self._ref(hosted.number)}", lambda: self._api_reviews(hosted))

    def diff(self, *, pr: PullRequest) -> str | None:
        """From the branch pushed by the clone (no API call)."""
        return self.local.diff(pr=pr)

    def merge(self, *, pr: PullRequest) -> PullRequest:
        hosted = self._locate(pr)
        if hosted is None:
            raise PermanentError(f"{self.source}: cannot merge {pr.branch}: no PR for it in the host",
                                 source=self.source)
        ref = self._ref(hosted.number)
        if hosted.state == "merged":
            return pr.model_copy(update={"status": "merged", "updated_at": utcnow()})
        if hosted.state == "closed":
            raise PermanentError(f"{self.source}: cannot merge PR {ref}: it was closed in the host; reopen it "
                                 "there or let remediator propose again", source=self.source)
        if self.merge_method == "label":
            if self.approval_label not in hosted.labels:
                self._call(f"labelling PR {ref} {self.approval_label}",
                           lambda: self._api_add_labels(hosted, (self.approval_label,)))
            labels = tuple(dict.fromkeys((*pr.labels, self.approval_label)))
            return pr.model_copy(update={"labels": labels, "status": "open", "updated_at": utcnow()})

        def merged() -> bool | None:
            return True if self._api_get(hosted.number).state == "merged" else None

        sha = pr.head_sha or hosted.head_sha
        self._call(f"merging PR {ref}", lambda: self._api_merge(hosted, sha=sha, title=f"{pr.title} ({ref})"),
                   recheck=merged)
        try:
            self.local.close(pr=pr, comment="")  # delete the merged branch (with lease)
        except ToolError as e:
            log.warning("%s", self._safe(f"{self.source}: PR {ref} merged but its branch stays: {e}"))
        return pr.model_copy(update={"status": "merged", "updated_at": utcnow()})

    def close(self, *, pr: PullRequest, comment: str) -> PullRequest:
        hosted = self._locate(pr)
        if hosted is not None and hosted.state == "merged":
            return pr.model_copy(update={"status": "merged", "updated_at": utcnow()})
        if hosted is not None and hosted.state == "open":
            ref = self._ref(hosted.number)
            if comment:
                self._call(f"commenting on PR {ref}", lambda: self._api_comment(hosted, comment),
                           recheck=lambda: True if self._api_has_comment(hosted, comment) else None)
            self._call(f"closing PR {ref}", lambda: self._api_close(hosted))
        try:
            self.local.close(pr=pr, comment=comment)  # delete the branch (with lease)
        except ToolError as e:
            log.warning("%s", self._safe(f"{self.source}: PR {pr.branch} closed but its branch stays: {e}"))
        return pr.model_copy(update={"status": "closed", "updated_at": utcnow()})
