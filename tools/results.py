"""Structured results returned by adapters (status + the exact query + params), never bare exceptions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np

from memory.records import PullRequest


@dataclass(frozen=True)
class Series:
    """One series on a regular time grid. ``timestamps`` are unix seconds (float64),
    ``values`` float64 with NaN where no sample was seen."""

    labels: dict[str, str]
    timestamps: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class SignalResult:
    status: Literal["ok", "no_data", "error"]
    series: list[Series] = field(default_factory=list)
    query: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def first(self) -> Series | None:
        return self.series[0] if self.series else None


@dataclass(frozen=True)
class ReadAnchor:
    """An audit anchor as read back from the GitOps remote."""

    seq: int
    hash: str
    source: str                        # "anchor commit <id>" or "trailer of commit <id>"
    signed: bool = False
    signature_ok: bool | None = None   # None: no key configured to check it with


@dataclass(frozen=True)
class CommitInfo:
    """One commit of the GitOps repository (``git log``)."""

    sha: str
    at: datetime
    author: str
    subject: str


@dataclass(frozen=True)
class ManifestDoc:
    """One YAML document of the GitOps repo that remediator understands."""

    file: str            # repo-relative path
    index: int           # document index inside the file
    kind: str
    api_version: str
    name: str
    namespace: str
    labels: dict[str, str]
    body: dict[str, Any]  # plain (JSON-like) copy of the document
    source_name: str = ""  # the name in the file, when kustomize renders it under another (a name prefix)
    # field (JSON list of keys) -> [file, kind, name, path] of the place that sets its deployed value,
    # where that is not this document (an overlay patch): Git history of the value is read there
    set_in: dict[str, list[Any]] = field(default_factory=dict)
    # the deployed folders (overlays) of this identity, when the file is deployed under several names
    deployed_paths: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def doc_name(self) -> str:
        """``metadata.name`` as the file has it: what an edit of this document names."""
        return self.source_name or self.name


@dataclass(frozen=True)
class FileProblem:
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class RepoSnapshot:
    commit: str
    committed_at: datetime
    manifests: list[ManifestDoc]
    budgets: list[dict[str, Any]]
    guardrails: dict[str, Any]
    problems: list[FileProblem]


@dataclass(frozen=True)
class PublishResult:
    pr: PullRequest
    pushed: bool
    note: str = ""


@dataclass(frozen=True)
class PostedMessage:
    """Where a notifier's message landed: what updating it later needs."""

    channel: str  # the channel ID the host answered with (Slack's chat.update needs it, not the name)
    ts: str       # the message id (Slack: its timestamp)


@dataclass(frozen=True)
class AuditEvent:
    """The fields of a Kubernetes audit event remediator uses (all strings untrusted)."""

    audit_id: str
    at: datetime
    verb: str
    user: str
    groups: tuple[str, ...]
    user_agent: str
    source_ips: tuple[str, ...]
    resource: str
    subresource: str
    namespace: str
    name: str
    api_group: str
    request_uri: str
    code: int | None
    request_object: dict[str, Any] | None
