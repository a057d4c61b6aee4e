"""One small Protocol per outside system. Adapters implement them; tests/fakes has one fake each.

All methods are keyword-only. Adapters raise ``tools.errors.TemporaryError`` /
``PermanentError`` (never bare exceptions) and return the structured results of
``tools.results``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

from memory.records import PullRequest
from tools.results import (
    AuditEvent,
    CommitInfo,
    PostedMessage,
    PublishResult,
    ReadAnchor,
    RepoSnapshot,
    SignalResult,
)


class MetricsSource(Protocol):
    """Signal-level metrics: each method returns series on the regular grid
    ``start, start+step, ..., end`` (NaN where there is no sample)."""

    @property
    def name(self) -> str: ...

    def check(self) -> None:
        """Raise TemporaryError naming the URL/file when the source cannot be reached."""

    def workload_cost(
        self, *, namespace: str, name: str, start: datetime, end: datetime, step_s: int,
        resources: tuple[str, ...] = ("cpu", "gpu", "memory"), kind: str = "Deployment",
    ) -> SignalResult:
        """$/h of one workload (a Deployment's pods ``<name>-<hash>-<5>``, a StatefulSet's
        ``<name>-<ordinal>``), summed over its pods; one series."""

    def workload_replicas(self, *, namespace: str, name: str, start: datetime, end: datetime, step_s: int,
                          kind: str = "Deployment") -> SignalResult:
        """``kube_deployment_status_replicas`` (``kube_statefulset_status_replicas``) of one workload; one series."""

    def request_rate(self, *, namespace: str, service: str, start: datetime, end: datetime, step_s: int) -> SignalResult:
        """Requests per second (``inference_requests_total``) of one service, all versions; one series."""

    def gpu_utilisation(self, *, namespace: str, name: str, start: datetime, end: datetime, step_s: int,
                        kind: str = "Deployment") -> SignalResult:
        """Mean GPU utilisation in % (``DCGM_FI_DEV_GPU_UTIL``) over the GPUs of one Deployment's pods;
        one series, ``no_data`` for a workload without GPUs."""

    def prediction_counters(self, *, namespace: str, service: str, start: datetime, end: datetime, step_s: int) -> SignalResult:
        """Raw ``inference_predictions_total`` samples; one series per (model_version, class)."""

    def outcome_counters(self, *, namespace: str, service: str, start: datetime, end: datetime, step_s: int) -> SignalResult:
        """Raw ``inference_outcomes_total`` samples; one series per label set."""

    def explanation_counters(self, *, namespace: str, service: str, start: datetime, end: datetime,
                             step_s: int) -> SignalResult:
        """Raw ``inference_explanations_total`` samples (by model_version); one series per label set."""


class GitOpsRepo(Protocol):
    """The GitOps repository: desired state, policies, history."""

    @property
    def remote(self) -> str: ...

    def sync(self) -> RepoSnapshot:
        """Clone or fetch, check out the tip of the base branch and parse every YAML file."""

    def read_file(self, *, path: str, ref: str | None = None) -> str | None: ...

    def read_tree(self) -> dict[str, str]:
        """Every YAML (and JSON) file of the tip checked out by the last ``sync``: repo path -> text
        (what ``tools.kustomize`` needs to follow overlays). Unreadable files are left out."""

    def field_history(
        self, *, path: str, doc_kind: str, doc_name: str, field: tuple[str | int, ...], limit: int = 50,
    ) -> list[tuple[str, datetime, object]]:
        """``(commit, committed_at, value)`` for each commit that changed the file, newest first."""

    def file_log(self, *, path: str, limit: int = 20) -> list[CommitInfo]:
        """The commits of the base branch that changed ``path``, newest first (first parent only)."""

    def reachable(self, *, timeout_s: float = 10) -> str | None:
        """None when the remote answers with the base branch, else the problem (readiness probes)."""


class PullRequests(Protocol):
    """A PR provider (local bare remote, GitHub, GitLab). Stateless: the records live in memory."""

    @property
    def name(self) -> str: ...

    def publish(
        self, *, branch: str, title: str, body: str, files: dict[str, str], message: str,
        incident_ids: Iterable[str], labels: Iterable[str] = (), existing: PullRequest | None = None,
    ) -> PublishResult:
        """Make ``branch`` one commit on top of the base branch whose tree has ``files``
        (repo path -> full new content). Idempotent: when the branch already holds exactly that
        change, nothing is pushed (``pushed=False``)."""

    def refresh(self, *, pr: PullRequest) -> PullRequest:
        """Current status of a PR (merged / closed by a human, etc.)."""

    def close(self, *, pr: PullRequest, comment: str) -> PullRequest: ...

    def merge(self, *, pr: PullRequest) -> PullRequest: ...

    def reviews(self, *, pr: PullRequest) -> list[tuple[str, str]]:
        """``(user, state)`` of each reviewer's standing verdict in the host (``APPROVED`` or
        ``CHANGES_REQUESTED``); ``[]`` where the host has no reviews (a plain git remote)."""

    def diff(self, *, pr: PullRequest) -> str | None:
        """The PR's change as a unified diff, or None when it cannot be told (the review UI shows it)."""


class AuditAnchors(Protocol):
    """Copies of the audit chain head outside the database (Git commits in the GitOps remote)."""

    @property
    def location(self) -> str:
        """Where the anchors are kept (remote and ref), for messages."""

    def write(self, *, seq: int, digest: str, at: datetime) -> str:
        """Record that audit entry ``seq`` has hash ``digest``; returns the anchor's id (a commit)."""

    def read(self) -> list[ReadAnchor]:
        """Every anchor that can be reached (anchor commits and remediation-commit trailers)."""


class AuditLog(Protocol):
    """Kubernetes audit-log events after a cursor."""

    def read(self, *, cursor: str | None, since: datetime) -> tuple[list[AuditEvent], str]:
        """Events after ``cursor`` (or with time >= ``since`` when there is no cursor), and the new cursor."""

    @property
    def last_problems(self) -> list[str]:
        """What the last ``read`` could not use (unreadable file, malformed line, bad cursor), one
        ``"where: reason"`` line each; they do not stop a read. Empty before the first read."""


class EmbeddingSource(Protocol):
    """Samples of a service's input embeddings (a reference and a current one per modality)."""

    @property
    def name(self) -> str: ...

    def load(self, *, uri: str, which: str, modality: str) -> Any:
        """A (rows, width) float array; PermanentError naming the file when it is missing or bad."""


class Notifier(Protocol):
    """A chat channel for humans (Slack): notifications and the PR approval message."""

    def notify(self, *, channel: str, text: str, blocks: list[dict[str, object]] | None = None) -> str | None:
        """Send a message; returns its id (e.g. Slack ts) when there is one."""

    def post_message(self, *, channel: str, text: str,
                     blocks: list[dict[str, object]] | None = None) -> PostedMessage:
        """Send a message and return where it landed (the channel id the host answered with, and the
        message id) so that ``update_message`` can change it later."""

    def update_message(self, *, channel: str, ts: str, text: str,
                       blocks: list[dict[str, object]] | None = None) -> None:
        """Replace the text and blocks of a message this notifier posted (``channel`` as returned by
        ``post_message``)."""
