"""The model's answer: what the LLM planner asks for, sent as a strict JSON schema.

The model decides a playbook, its parameters per target workload and a rationale; it never
writes edits. remediator renders the field edits from the playbook (``render_edits``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TargetProposal(BaseModel):
    model_config = ConfigDict(extra="forbid")
    workload: str = Field(description="namespace/name of a workload listed under 'Workloads'")
    min_replicas: int | None = Field(None, description="new minReplicas (scale_down_noncritical), else null")
    max_replicas: int | None = Field(None, description="new maxReplicas (cap_max_replicas, scale_down_noncritical), else null")
    version: str | None = Field(None, description="model version to roll back to (rollback_model_version), else null")
    path: str | None = Field(None, description="model artifact path of that version (rollback_model_version), else null")
    cpu: str | None = Field(None, description="CPU request to set back to (rightsize_requests), else null")
    memory: str | None = Field(None, description="memory request to set back to (rightsize_requests), else null")
    gpu: str | None = Field(None, description="GPUs per replica to set back to (rightsize_requests), else null")


class PlanProposal(BaseModel):
    """What the model decides. Edits are rendered by remediator from the playbook, not by the model."""

    model_config = ConfigDict(extra="forbid")
    playbook: str = Field(description="name of one playbook listed under 'Playbooks'")
    targets: list[TargetProposal] = Field(default_factory=list, description="empty for notify playbooks")
    rationale: str = Field(description="why, citing the evidence: numbers, units and the time window")


PARAM_FIELDS = ("min_replicas", "max_replicas", "version", "path", "cpu", "memory", "gpu")
