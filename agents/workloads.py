"""Workloads and guardrails as the agents see them, built from a RepoSnapshot."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agents.config import parse_duration
from memory.records import Incident
from tools.detectors.oob import DEFAULT_ACTORS
from tools.results import FileProblem, ManifestDoc

WORKLOAD_KINDS = ("MultimodalInferenceService", "Deployment", "StatefulSet", "Rollout")
PLAYBOOKS_DEFAULT = ["cap_max_replicas", "scale_down_noncritical", "rightsize_requests",
                     "rollback_model_version", "add_required_label", "revert_out_of_band_change", "notify_only"]


def dig(d: Any, *path: str | int) -> Any:
    for p in path:
        if isinstance(d, dict):
            d = d.get(p)
        elif isinstance(d, list) and isinstance(p, int) and -len(d) <= p < len(d):
            d = d[p]
        else:
            return None
    return d


def put(node: Any, path: Sequence[str | int], value: Any) -> None:
    """Set ``value`` at ``path`` (mapping keys and list indexes) in ``node``, making missing mappings;
    a path through a missing list item or a scalar changes nothing."""
    for k in path[:-1]:
        if isinstance(node, dict):
            node = node.setdefault(k, {})
        elif isinstance(node, list) and isinstance(k, int) and 0 <= k < len(node):
            node = node[k]
        else:
            return
    last = path[-1]
    if isinstance(node, dict):
        node[last] = value
    elif isinstance(node, list) and isinstance(last, int) and 0 <= last < len(node):
        node[last] = value


class _G(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Selector(_G):
    labels: dict[str, str] = Field(default_factory=dict)


class Protected(_G):
    selector: Selector = Field(default_factory=lambda: Selector(labels={"remediation.apexlogic.com/protected": "true"}))
    action: str = "notify_only"


class Criticality(_G):
    label: str = "criticality"
    critical_values: list[str] = Field(default_factory=lambda: ["critical"])


class Replicas(_G):
    floor: int = Field(default=1, ge=0)
    max_decrease_percent: float = Field(default=60, ge=0, le=100)


class Limits(_G):
    max_open_prs: int = Field(default=5, ge=0)
    max_prs_per_hour: int = Field(default=6, ge=0)
    max_files_per_pr: int = Field(default=3, ge=1)
    cooldown: str = "6h"

    @property
    def cooldown_s(self) -> float:
        return parse_duration(self.cooldown).total_seconds()


class Actors(_G):
    gitops: list[str] = Field(default_factory=list)
    controllers: list[str] = Field(default_factory=list)


class Guardrails(_G):
    protected: Protected = Field(default_factory=Protected)
    criticality: Criticality = Field(default_factory=Criticality)
    replicas: Replicas = Field(default_factory=Replicas)
    allowed_playbooks: list[str] = Field(default_factory=lambda: list(PLAYBOOKS_DEFAULT))
    limits: Limits = Field(default_factory=Limits)
    actors: Actors = Field(default_factory=Actors)

    @property
    def allowed_actors(self) -> set[str]:
        return set(DEFAULT_ACTORS) | set(self.actors.gitops) | set(self.actors.controllers)


def load_guardrails(raw: dict[str, Any], policies_dir: str = "policies") -> tuple[Guardrails, list[FileProblem]]:
    try:
        return Guardrails.model_validate(raw or {}), []
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        return Guardrails(), [FileProblem(f"{policies_dir}/guardrails.yaml",
                                          f"guardrails.{loc}: {err['msg']}; using the default guardrails")]


@dataclass
class Workload:
    namespace: str
    name: str
    kind: str
    file: str
    labels: dict[str, str]
    doc: ManifestDoc
    hpa: ManifestDoc | None = None
    extra_docs: list[ManifestDoc] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def bounds_doc(self) -> ManifestDoc | None:
        """The document holding min/max replicas: the MIS itself, else the HPA."""
        if self.kind == "MultimodalInferenceService" and dig(self.doc.body, "spec", "autoscaling") is not None:
            return self.doc
        return self.hpa

    @property
    def min_replicas(self) -> int | None:
        d = self.bounds_doc
        if d is None:
            return None
        v = dig(d.body, "spec", "autoscaling", "minReplicas") if d.kind == "MultimodalInferenceService" else dig(d.body, "spec", "minReplicas")
        return _int(v) if v is not None else 1

    @property
    def max_replicas(self) -> int | None:
        d = self.bounds_doc
        if d is None:
            return None
        v = dig(d.body, "spec", "autoscaling", "maxReplicas") if d.kind == "MultimodalInferenceService" else dig(d.body, "spec", "maxReplicas")
        return _int(v)

    @property
    def model(self) -> dict[str, Any]:
        return dig(self.doc.body, "spec", "modelRef") or {}

    @property
    def responsible_ai(self) -> dict[str, Any]:
        return dig(self.doc.body, "spec", "responsibleAI") or {}

    def is_critical(self, g: Guardrails) -> bool:
        return str(self.labels.get(g.criticality.label, "")) in g.criticality.critical_values

    def is_protected(self, g: Guardrails) -> bool:
        sel = g.protected.selector.labels
        return bool(sel) and all(str(self.labels.get(k)) == str(v) for k, v in sel.items())


def _int(v: Any) -> int | None:
    """A whole number of replicas, or None (not a number, not whole, infinite: ``1.0e+400``)."""
    if isinstance(v, bool):
        return None
    try:
        n = int(v)
    except (TypeError, ValueError, OverflowError):
        return None
    return n if n == v or isinstance(v, str) else None


def workload_problems(workloads: dict[str, Workload]) -> list[FileProblem]:
    """Replica bounds no controller would accept (not whole numbers, negative, min above max): each
    is a problem naming the file; such a workload's bounds are not remediated."""
    out: list[FileProblem] = []
    for w in sorted(workloads.values(), key=lambda w: w.key):
        d = w.bounds_doc
        if d is None:
            continue
        base = ("spec", "autoscaling") if d.kind == "MultimodalInferenceService" else ("spec",)
        raw = {k: dig(d.body, *base, k) for k in ("minReplicas", "maxReplicas")}
        where = f"{d.kind}/{d.name} {'.'.join(base)}"
        for k, v in raw.items():
            if v is not None and (_int(v) is None or (_int(v) or 0) < 0):
                out.append(FileProblem(d.file, f"{where}.{k} is {v!r}: replica bounds are whole numbers >= 0"))
        lo, hi = w.min_replicas, w.max_replicas
        if lo is not None and hi is not None and lo > hi:
            out.append(FileProblem(d.file, f"{where}: minReplicas {lo} is above maxReplicas {hi}"))
    return out


def build_workloads(manifests: list[ManifestDoc]) -> dict[str, Workload]:
    wl: dict[str, Workload] = {}
    for m in manifests:
        if m.kind in WORKLOAD_KINDS:
            key = m.key
            if key in wl and wl[key].kind == "MultimodalInferenceService":
                wl[key].extra_docs.append(m)
                continue
            w = Workload(m.namespace, m.name, m.kind, m.file, dict(m.labels), m)
            if key in wl:  # a Deployment and an MIS of the same name: the MIS owns it
                if m.kind == "MultimodalInferenceService":
                    w.extra_docs.append(wl[key].doc)
                    w.hpa = wl[key].hpa
                else:
                    wl[key].extra_docs.append(m)
                    continue
            wl[key] = w
    for m in manifests:
        if m.kind != "HorizontalPodAutoscaler":
            continue
        target = dig(m.body, "spec", "scaleTargetRef", "name") or m.doc_name
        # kustomize renames the reference with its target: match the name in the file too
        scaled = wl.get(f"{m.namespace}/{target}") or next(
            (w for w in wl.values() if w.namespace == m.namespace and w.doc.doc_name == target), None)
        if scaled is not None:
            scaled.hpa = m
    return wl


def managed_objects(workloads: dict[str, Workload], manifests: list[ManifestDoc]) -> dict[tuple[str, str], str | None]:
    managed: dict[tuple[str, str], str | None] = {(m.namespace, m.name): m.file for m in manifests}
    for w in workloads.values():
        managed[(w.namespace, w.name)] = w.file
    return managed


class BudgetSelector(_G):
    """Which workloads a budget covers: every key given must match (none given: none)."""

    namespace: str | None = None
    service: str | None = Field(default=None, pattern=r"^[^/]+/[^/]+$")
    labels: dict[str, str] | None = None

    @field_validator("labels", mode="before")
    @classmethod
    def _label_values_as_text(cls, v: Any) -> Any:
        return {str(k): str(x) for k, x in v.items()} if isinstance(v, dict) else v


class Budget(_G):
    """One entry of ``policies/budgets.yaml``."""

    name: str = Field(min_length=1)
    selector: BudgetSelector = Field(default_factory=BudgetSelector)
    monthly_usd: float = Field(gt=0, allow_inf_nan=False)
    alert_at_percent: float = Field(default=80, gt=0, le=1000, allow_inf_nan=False)
    action: Literal["alert", "scale_down_noncritical", "cap_max_replicas"] = "alert"
    resources: tuple[Literal["cpu", "gpu", "memory"], ...] = Field(default=("cpu", "gpu", "memory"), min_length=1)

    @property
    def service(self) -> str:
        """How incidents name the budget: ``namespace/*``, ``namespace/name``, or the budget's name."""
        if self.selector.namespace is not None:
            return f"{self.selector.namespace}/*"
        if self.selector.service is not None:
            return self.selector.service
        return self.name


def load_budgets(raw: list[Any], policies_dir: str = "policies") -> tuple[list[Budget], list[FileProblem]]:
    """The valid budgets; each invalid one is a problem naming it and its field (it is skipped)."""
    out: list[Budget] = []
    problems: list[FileProblem] = []
    for i, item in enumerate(raw or []):
        name = item.get("name") if isinstance(item, dict) else None
        try:
            out.append(Budget.model_validate(item))
        except ValidationError as e:
            where = f"budgets[{i}]" + (f" ({name})" if isinstance(name, str) else "")
            what = "; ".join(f"{'.'.join(str(x) for x in er['loc']) or 'entry'}: {er['msg']}" for er in e.errors()[:3])
            problems.append(FileProblem(f"{policies_dir}/budgets.yaml", f"{where}: {what}; this budget is skipped"))
    return out, problems


def select_workloads(budget: Budget, workloads: dict[str, Workload]) -> list[Workload]:
    sel = budget.selector
    if sel.namespace is None and sel.service is None and sel.labels is None:
        return []
    out = []
    for w in workloads.values():
        if sel.namespace is not None and w.namespace != sel.namespace:
            continue
        if sel.service is not None and w.key != sel.service:
            continue
        if sel.labels is not None and not all(str(w.labels.get(k)) == v for k, v in sel.labels.items()):
            continue
        out.append(w)
    return sorted(out, key=lambda w: w.key)


def find_budget(budgets: list[Budget], name: object) -> Budget | None:
    """The budget named ``name`` in the policies (None when it is gone)."""
    return next((b for b in budgets if b.name == name), None)


def incident_scope(incident: Incident, budgets: list[Budget],
                   workloads: dict[str, Workload]) -> list[Workload]:
    """The workloads an incident may change: those its budget selects (a budget breach), else its
    own service. The one answer used by both planners and the guard."""
    if incident.kind == "budget_breach":
        budget = find_budget(budgets, incident.evidence.get("budget"))
        return select_workloads(budget, workloads) if budget is not None else []
    w = workloads.get(incident.service)
    return [w] if w is not None else []
