"""Domain records: what remediator saw, decided and did.

Every record is a frozen pydantic model with ``extra="forbid"``: a record is a fact, it is
not edited in place. To change one (an incident moving from ``open`` to ``proposed``) make a
copy with ``record.model_copy(update={...})`` and save the copy.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

IncidentKind = Literal["cost_anomaly", "budget_breach", "model_drift", "fairness_violation", "gitops_drift",
                       "policy_violation"]
Severity = Literal["info", "warning", "critical"]
IncidentStatus = Literal["open", "proposed", "approved", "rejected", "resolved", "closed"]
PRStatus = Literal["open", "merged", "closed"]
Verdict = Literal["approve", "reject"]

INCIDENT_KINDS: tuple[str, ...] = (
    "cost_anomaly",
    "budget_breach",
    "model_drift",
    "fairness_violation",
    "gitops_drift",
)
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}
ACTIVE_STATUSES: tuple[str, ...] = ("open", "proposed", "approved")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """A short random id with a readable prefix, e.g. ``inc-3f9a1c2e4b5d``."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def fingerprint(kind: str, service: str, model_version: str | None = None) -> str:
    """Stable hash of kind + service (+ model version for drift and fairness).

    While an incident is open, the same fingerprint is the same incident, branch and PR.
    """
    parts = [kind, service]
    if kind in ("model_drift", "fairness_violation") and model_version:
        parts.append(model_version)
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:8]


def branch_name(kind: str, service: str, fp: str) -> str:
    """``remediator/<kind>/<service-slug>-<fingerprint>`` (DESIGN.md's branch contract)."""
    slug = re.sub(r"[^a-z0-9]+", "-", service.lower()).strip("-") or "all"
    return f"remediator/{kind.replace('_', '-')}/{slug}-{fp}"


def revert_branch_name(branch: str) -> str:
    """The branch of the revert of the remediation on ``branch``:
    ``remediator/revert/<kind>-<service-slug>-<fingerprint>`` (still ends with the fingerprint)."""
    return "remediator/revert/" + branch.split("/", 2)[-1].replace("/", "-")


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Finding(Record):
    """One detector's verdict on one service, with the evidence an engineer needs."""

    kind: IncidentKind
    service: str = Field(description="namespace/name, namespace/* or a budget name")
    severity: Severity
    summary: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    detector: str = ""
    confidence: float = Field(default=1.0, ge=0.0, le=1.0)
    model_version: str | None = None
    file: str | None = Field(default=None, description="GitOps file of the workload, when known")
    observed_at: datetime = Field(default_factory=utcnow)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.kind, self.service, self.model_version)

    def report(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "service": self.service,
            "severity": self.severity,
            "summary": self.summary,
            "evidence": self.evidence,
        }


class Incident(Record):
    id: str = Field(default_factory=lambda: new_id("inc"))
    kind: IncidentKind
    service: str
    severity: Severity
    status: IncidentStatus = "open"
    fingerprint: str
    summary: str = ""
    evidence: dict[str, Any] = Field(default_factory=dict)
    model_version: str | None = None
    file: str | None = None
    opened_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    last_seen_at: datetime = Field(default_factory=utcnow)
    resolved_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def report(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "service": self.service,
            "severity": self.severity,
            "status": self.status,
            "fingerprint": self.fingerprint,
        }


class FieldEdit(Record):
    """One value to set in one YAML document of the GitOps repo."""

    file: str = Field(description="repo-relative path")
    doc_kind: str
    doc_name: str
    path: tuple[str | int, ...] = Field(description="field path inside the document, e.g. ('spec','autoscaling','maxReplicas')")
    old: Any = None
    new: Any
    deployed: tuple[str, ...] = Field(default=(), description="the deployed folders (overlays) this edit is for, "
                                      "when the file is deployed under several names; empty: all of them")


class RemediationPlan(Record):
    id: str = Field(default_factory=lambda: new_id("plan"))
    incident_id: str
    playbook: str
    params: dict[str, Any] = Field(default_factory=dict)
    edits: tuple[FieldEdit, ...] = ()
    rationale: str = ""
    planner: str = "deterministic"
    planner_reason: str = ""
    guard_verdict: Literal["pending", "accepted", "rejected", "notify_only", "deferred"] = "pending"
    guard_reasons: tuple[str, ...] = ()
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def files(self) -> list[str]:
        return sorted({e.file for e in self.edits})


class PullRequest(Record):
    id: str = Field(default_factory=lambda: new_id("pr"))
    provider: str = "local"
    number: int | None = None
    branch: str
    base: str = "main"
    title: str
    body: str = ""
    url: str = ""
    files: tuple[str, ...] = ()
    incident_ids: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    status: PRStatus = "open"
    head_sha: str | None = None
    base_sha: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    def report(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "branch": self.branch,
            "title": self.title,
            "url": self.url,
            "files": list(self.files),
            "incident_ids": list(self.incident_ids),
            "status": self.status,
        }


class Decision(Record):
    id: str = Field(default_factory=lambda: new_id("dec"))
    incident_id: str
    pr_id: str | None = None
    plan_id: str | None = None
    verdict: Verdict
    actor: str
    source: Literal["slack", "pr_review", "cli", "ui"] = "cli"
    reason: str = ""
    at: datetime = Field(default_factory=utcnow)


class AuditEntry(Record):
    """One link of the hash chain: ``hash = sha256(prev_hash + canonical(payload))``."""

    seq: int
    at: datetime
    cycle_id: str | None = None
    stage: str
    action: str
    subject: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
    prev_hash: str
    hash: str
