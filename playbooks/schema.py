"""Playbook schema: what a remediation may do, with bounded parameters and the edits it makes."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from memory.records import IncidentKind

# Kubernetes label syntax: a key is an optional DNS-subdomain prefix and "/", then a name of at most
# 63 characters; a value is at most 63 characters of the same alphabet (or empty).
_LABEL_NAME = r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)"
LABEL_KEY = re.compile(rf"^([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_LABEL_NAME}$")
LABEL_VALUE = re.compile(rf"^{_LABEL_NAME}?$")


def label_problems(name: str, value: Any) -> list[str]:
    """Why ``value`` is not a non-empty mapping of valid Kubernetes label keys to label values."""
    if not isinstance(value, dict) or not value:
        return [f"parameter {name} must be a mapping of label keys to values (got {value!r})"]
    out = []
    for k, v in value.items():
        if not isinstance(k, str) or not LABEL_KEY.fullmatch(k) or len(k) > 317:
            out.append(f"parameter {name}: {k!r} is not a Kubernetes label key")
        if not isinstance(v, str) or not LABEL_VALUE.fullmatch(v):
            out.append(f"parameter {name}: {k}={v!r} is not a Kubernetes label value (at most 63 of A-Z a-z 0-9 - _ .)")
    return out


class Parameter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["int", "str", "float", "quantity", "labels"]
    min: float | None = None
    max: float | None = None
    required: bool = True
    description: str = ""

    def check(self, name: str, value: Any) -> str | None:
        """None when ``value`` is acceptable, else the reason."""
        if value is None:
            return f"parameter {name} is required" if self.required else None
        if self.type == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            return f"parameter {name} must be an integer (got {value!r})"
        if self.type == "float" and (isinstance(value, bool) or not isinstance(value, int | float)):
            return f"parameter {name} must be a number (got {value!r})"
        if self.type == "str" and not isinstance(value, str):
            return f"parameter {name} must be a string (got {value!r})"
        if self.type == "labels":
            problems = label_problems(name, value)
            return problems[0] if problems else None
        if self.type == "quantity":   # its value is checked by the guard (Kubernetes' own parser, in tools/)
            if isinstance(value, bool) or not isinstance(value, int | float | str) or not str(value).strip():
                return f"parameter {name} must be a Kubernetes quantity such as 4, 500m or 16Gi (got {value!r})"
            return None
        if self.min is not None and isinstance(value, int | float) and value < self.min:
            return f"parameter {name}={value} is below its minimum {self.min:g}"
        if self.max is not None and isinstance(value, int | float) and value > self.max:
            return f"parameter {name}={value} is above its maximum {self.max:g}"
        return None


class EditSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: str
    path: str
    value: str = Field(description="name of the parameter whose value is written")
    only_if_present: bool = False
    # the parameter is a mapping: each of its keys is written as its own field under ``path``, and
    # only where that field is absent (an existing value is never overwritten)
    each_key: bool = False

    def allows(self, kind: str, path: tuple[str, ...], old: Any) -> bool:
        """Whether an edit of ``path`` in a ``kind`` document (whose value was ``old``) is one this spec makes."""
        if kind != self.kind:
            return False
        if self.each_key:
            return len(path) == len(self.path_tuple) + 1 and path[:-1] == self.path_tuple and old is None
        return path == self.path_tuple

    @property
    def path_tuple(self) -> tuple[str, ...]:
        return tuple(self.path.split("."))


# What a check's signal means: the incident kind whose finding carries it, the evidence field that
# measures it (higher = worse), and the condition that says the signal is back in bounds.
SIGNALS: dict[str, tuple[IncidentKind, str, str]] = {
    # $/h, not the ratio: the cost tests judge different baselines (total, per replica, a level before
    # the change), so their ratios are not comparable from one cycle to the next; the spend is
    "cost": ("cost_anomaly", "cost_usd_per_hour", "below_expected"),
    "budget": ("budget_breach", "projected_percent", "projected_below_alert"),
    "drift": ("model_drift", "distance", "below_threshold"),
    "fairness": ("fairness_violation", "dpd", "below_threshold"),
    # the policies the remediation fixed (the violations it answered) pass on the workload
    "policy": ("policy_violation", "failing_policies", "fixed_policies_pass"),
}


class Check(BaseModel):
    """A post-merge check: after the reconcile grace, ``signal`` must meet ``condition`` (its
    detector no longer finds it on the remediated workload and model version); still failing
    after ``cycles`` cycles (default: the daemon's ``verify.failed_checks``), the change is reverted."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    signal: Literal["cost", "budget", "drift", "fairness", "policy"]
    condition: str
    cycles: int | None = Field(None, ge=1, le=100)

    @model_validator(mode="after")
    def _condition_fits_signal(self) -> Check:
        expected = SIGNALS[self.signal][2]
        if self.condition != expected:
            raise ValueError(f"signal {self.signal} is checked with condition {expected!r} (got {self.condition!r})")
        return self

    @property
    def kind(self) -> IncidentKind:
        """The incident kind whose finding is this signal."""
        return SIGNALS[self.signal][0]

    @property
    def metric(self) -> str:
        """The evidence field that measures the signal (higher = worse)."""
        return SIGNALS[self.signal][1]


class Playbook(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str
    answers: list[IncidentKind]
    action: Literal["pr", "notify"]
    risk: str = ""
    rollback: str = ""
    parameters: dict[str, Parameter] = Field(default_factory=dict)
    edits: list[EditSpec] = Field(default_factory=list)
    checks: list[Check] = Field(default_factory=list)

    def check_params(self, params: dict[str, Any]) -> list[str]:
        problems = [f"unknown parameter {k!r}" for k in params if k not in self.parameters]
        for name, spec in self.parameters.items():
            p = spec.check(name, params.get(name))
            if p:
                problems.append(p)
        return problems
