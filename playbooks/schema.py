"""Playbook schema: what a remediation may do, with bounded parameters and the edits it makes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from memory.records import IncidentKind


class Parameter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["int", "str", "float", "quantity"]
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

    @property
    def path_tuple(self) -> tuple[str, ...]:
        return tuple(self.path.split("."))


# What a check's signal means: the incident kind whose finding carries it, the evidence field that
# measures it (higher = worse), and the condition that says the signal is back in bounds.
SIGNALS: dict[str, tuple[IncidentKind, str, str]] = {
    "cost": ("cost_anomaly", "ratio", "below_expected"),
    "budget": ("budget_breach", "projected_percent", "projected_below_alert"),
    "drift": ("model_drift", "distance", "below_threshold"),
    "fairness": ("fairness_violation", "dpd", "below_threshold"),
}


class Check(BaseModel):
    """A post-merge check: after the reconcile grace, ``signal`` must meet ``condition`` (its
    detector no longer finds it on the remediated workload and model version); still failing
    after ``cycles`` cycles (default: the daemon's ``verify.failed_checks``), the change is reverted."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    signal: Literal["cost", "budget", "drift", "fairness"]
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
