"""The deterministic guard: the only thing that decides what may be proposed.

Whatever planner produced a plan (deterministic or LLM), the guard checks it against the
playbook schema and the repo's guardrails. A plan that breaks a rule is downgraded to
notify-only with the reasons; one over a rate limit is deferred (it waits and says so).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agents.workloads import Guardrails, Workload
from memory.records import FieldEdit, Incident, RemediationPlan
from playbooks.schema import Playbook
from tools.kube import quantity

REPLICA_FIELDS = ("minReplicas", "maxReplicas", "replicas")
BUDGET_KINDS = ("budget_breach",)


@dataclass
class GuardContext:
    guardrails: Guardrails
    playbooks: dict[str, Playbook]
    workloads: dict[str, Workload]
    open_prs_other: int = 0          # open PRs not for this incident's branch
    prs_last_hour: int = 0
    has_open_pr: bool = False        # this incident already has its PR (updates are not new PRs)
    rejected_within_cooldown: bool = False
    scope: set[str] | None = None    # workloads this incident may touch (its service; a budget's selection)
    rollback_versions: set[str] | None = None  # versions a rollback may go to (Git history, baseline ref)
    request_values: dict[str, set[str]] | None = None  # values each resource request had in Git history
    # the compliance policies a set of edits would newly break ("policy on object: message" each)
    policy_breaks: Callable[[Sequence[FieldEdit]], list[str]] | None = None


def check(plan: RemediationPlan, incident: Incident, ctx: GuardContext) -> RemediationPlan:
    g = ctx.guardrails
    reasons: list[str] = []
    pb = ctx.playbooks.get(plan.playbook)
    if pb is None:
        return _verdict(plan, "rejected", [f"unknown playbook {plan.playbook!r}"])
    if plan.playbook not in g.allowed_playbooks:
        return _verdict(plan, "rejected", [f"playbook {plan.playbook} is not in guardrails.allowed_playbooks"])
    if incident.kind not in pb.answers:
        return _verdict(plan, "rejected", [f"playbook {plan.playbook} does not answer {incident.kind}"])
    if pb.action == "notify":
        if plan.edits:
            return _verdict(plan, "rejected", [f"notify playbook {plan.playbook} may not edit files"])
        return _verdict(plan, "notify_only", ["notify playbook"])
    if not plan.edits:
        return _verdict(plan, "notify_only", ["plan changes nothing"])
    if not pb.checks:
        return _verdict(plan, "notify_only", [f"playbook {pb.name} has no checks: after a merge nothing would verify "
                                              "the change, so it is not proposed (add checks: to the playbook)"])

    targets = (plan.params or {}).get("targets")
    if not isinstance(targets, dict) or not targets:
        return _verdict(plan, "rejected", ["plan names no target workload"])
    allowed_files: set[str] = set()
    for key, params in targets.items():
        w = ctx.workloads.get(str(key))
        if w is None:
            reasons.append(f"target {key} is not a workload in Git")
            continue
        if not isinstance(params, dict):
            reasons.append(f"parameters of {key} are not a mapping")
            continue
        reasons += [f"{key}: {p}" for p in pb.check_params(params)]
        if w.is_protected(g):
            reasons.append(f"{key} is protected ({g.protected.selector.labels}): notify only")
        if incident.kind in BUDGET_KINDS and w.is_critical(g):
            reasons.append(f"{key} is critical: budget actions never touch critical workloads")
        allowed_files |= {d.file for d in (w.doc, w.hpa) if d is not None}
        if ctx.scope is not None and w.key not in ctx.scope:
            reasons.append(f"target {key} is outside the incident's scope ({', '.join(sorted(ctx.scope)) or 'none'})")
        version = params.get("version")
        if pb.name == "rollback_model_version" and ctx.rollback_versions is not None \
                and str(version) not in ctx.rollback_versions:
            reasons.append(f"{key}: rollback to {version!r} is neither the previous version in Git history nor the "
                           f"baseline ref ({', '.join(sorted(ctx.rollback_versions)) or 'none known'})")
        new_max, new_min = params.get("max_replicas"), params.get("min_replicas", w.min_replicas)
        if isinstance(new_max, int) and isinstance(new_min, int) and new_max < new_min:
            reasons.append(f"{key}: maxReplicas {new_max} would be below minReplicas {new_min}")

    files = {e.file for e in plan.edits}
    if not files <= allowed_files:
        reasons.append(f"edits files outside the target workloads: {sorted(files - allowed_files)}")
    if len(files) > g.limits.max_files_per_pr:
        reasons.append(f"touches {len(files)} files (guardrails.limits.max_files_per_pr = {g.limits.max_files_per_pr})")
    for e in plan.edits:
        if not any(s.allows(e.doc_kind, tuple(str(p) for p in e.path), e.old) for s in pb.edits):
            reasons.append(f"edit {e.file} {e.doc_kind} {'.'.join(map(str, e.path))} is not one playbook {pb.name} makes")
        if pb.name == "rightsize_requests":
            reasons += _request_rule(e.new, e.old, str(e.path[-1]), f"{e.file} {'.'.join(map(str, e.path))}", ctx)
        if str(e.path[-1]) in REPLICA_FIELDS:
            reasons += _replica_rule(e.new, e.old, f"{e.file} {'.'.join(map(str, e.path))}", g,
                                     lowering_only=pb.name in ("cap_max_replicas", "scale_down_noncritical"))
    reasons += _min_le_max(plan)
    if ctx.policy_breaks is not None:
        reasons += [f"would break compliance policy {b}" for b in ctx.policy_breaks(plan.edits)]
    if reasons:
        return _verdict(plan, "notify_only", reasons)

    if ctx.rejected_within_cooldown:
        return _verdict(plan, "notify_only", [f"an approver rejected this plan within the cooldown ({g.limits.cooldown})"])
    if not ctx.has_open_pr:
        if ctx.open_prs_other >= g.limits.max_open_prs:
            return _verdict(plan, "deferred", [f"{ctx.open_prs_other} PRs open (limit max_open_prs={g.limits.max_open_prs}); waiting"])
        if ctx.prs_last_hour >= g.limits.max_prs_per_hour:
            return _verdict(plan, "deferred", [f"{ctx.prs_last_hour} PRs opened in the last hour (limit max_prs_per_hour={g.limits.max_prs_per_hour}); waiting"])
    return _verdict(plan, "accepted", [])


def _request_rule(new: object, old: object, resource: str, where: str, ctx: GuardContext) -> list[str]:
    """A request may only be lowered, and only to a value it had in Git history."""
    qn, qo = quantity(new), quantity(old)
    if qn is None or qn <= 0:
        return [f"{where}: {new!r} is not a positive Kubernetes quantity"]
    if qo is None or qn >= qo:
        return [f"{where}: {old!r} -> {new!r} does not lower the request (rightsize_requests only lowers)"]
    if ctx.request_values is not None and str(new) not in ctx.request_values.get(resource, set()):
        seen = ", ".join(sorted(ctx.request_values.get(resource, set()))) or "none"
        return [f"{where}: {new!r} is not a value this request had in Git history ({seen})"]
    return []


def _replica_rule(new: object, old: object, where: str, g: Guardrails, *, lowering_only: bool) -> list[str]:
    if isinstance(new, bool) or not isinstance(new, int):
        return [f"{where}: replica value {new!r} is not an integer"]
    out = []
    if new < g.replicas.floor:
        out.append(f"{where}: {new} is below the replicas floor {g.replicas.floor}")
    if isinstance(old, int) and not isinstance(old, bool):
        if lowering_only and new > old:
            out.append(f"{where}: {old} -> {new} raises a bound; this playbook may only lower it")
        if new < old and old > 0 and (old - new) * 100.0 / old > g.replicas.max_decrease_percent + 1e-9:
            out.append(f"{where}: {old} -> {new} lowers by more than max_decrease_percent={g.replicas.max_decrease_percent:g}")
    return out


def _min_le_max(plan: RemediationPlan) -> list[str]:
    out = []
    for key, params in ((plan.params or {}).get("targets") or {}).items():
        if isinstance(params, dict) and isinstance(params.get("min_replicas"), int) and isinstance(params.get("max_replicas"), int):
            if params["min_replicas"] > params["max_replicas"]:
                out.append(f"{key}: min_replicas {params['min_replicas']} > max_replicas {params['max_replicas']}")
    return out


def _verdict(plan: RemediationPlan, verdict: str, reasons: list[str]) -> RemediationPlan:
    return plan.model_copy(update={"guard_verdict": verdict, "guard_reasons": tuple(reasons)})
