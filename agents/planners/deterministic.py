"""The deterministic planner: a fixed mapping from incident kind + evidence to a playbook and
bounded parameters. Always available; the LLM planner falls back to it."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agents.workloads import Budget, Guardrails, Workload, dig, find_budget, incident_scope
from memory.records import FieldEdit, Incident, RemediationPlan
from playbooks.schema import Playbook

PreviousModel = Callable[[Workload], dict[str, Any] | None]


@dataclass
class PlanContext:
    workloads: dict[str, Workload]
    guardrails: Guardrails
    budgets: list[Budget]
    playbooks: dict[str, Playbook]
    previous_model: PreviousModel
    approved_model: PreviousModel = lambda w: None   # the newest approved version in Git history


def lowest_allowed(current: int, g: Guardrails) -> int:
    """The smallest bound one PR may set: the floor, and at most max_decrease_percent lower."""
    return max(g.replicas.floor, math.ceil(current * (1 - g.replicas.max_decrease_percent / 100.0) - 1e-9))


def render_edits(pb: Playbook, w: Workload, params: dict[str, Any]) -> list[FieldEdit]:
    """Turn a playbook's edit specs into concrete field edits on this workload's documents."""
    edits: list[FieldEdit] = []
    docs = [d for d in (w.doc, w.hpa) if d is not None]
    for spec in pb.edits:
        value = params.get(spec.value)
        if value is None:
            continue
        for d in docs:
            if d.kind != spec.kind:
                continue
            if d.kind == "HorizontalPodAutoscaler" and w.bounds_doc is not d:
                continue
            if spec.each_key:   # one new field per key, where it is absent
                present = dig(d.body, *spec.path_tuple)
                if isinstance(present, dict) and isinstance(value, dict):
                    edits += [FieldEdit(file=d.file, doc_kind=d.kind, doc_name=d.doc_name, path=(*spec.path_tuple, k),
                                        old=None, new=v, deployed=d.deployed_paths)
                              for k, v in value.items() if k not in present]
                continue
            old = dig(d.body, *spec.path_tuple)
            if old is None and spec.only_if_present:
                continue
            if old is not None and str(old) == str(value):
                continue
            edits.append(FieldEdit(file=d.file, doc_kind=d.kind, doc_name=d.doc_name, path=spec.path_tuple, old=old,
                                   new=value, deployed=d.deployed_paths))
    return edits


def notify(incident: Incident, reason: str, playbook: str = "notify_only") -> RemediationPlan:
    return RemediationPlan(incident_id=incident.id, playbook=playbook, params={}, rationale=reason,
                           planner="deterministic")


def plan(incident: Incident, ctx: PlanContext) -> RemediationPlan:
    kind = incident.kind
    if kind == "cost_anomaly":
        return _plan_cost(incident, ctx)
    if kind == "budget_breach":
        return _plan_budget(incident, ctx)
    if kind in ("model_drift", "fairness_violation"):
        return _plan_rollback(incident, ctx)
    if kind == "policy_violation":
        return _plan_policy(incident, ctx)
    ev = incident.evidence
    n = ev.get("count", 1)
    return notify(incident, (f"{n} out-of-band write(s) to a Git-managed object; Git stays the source of truth "
                             "(Argo CD / Flux restore it on the next sync). No PR unless an approver asks to adopt "
                             "the change."), playbook="revert_out_of_band_change")


def _plan_policy(incident: Incident, ctx: PlanContext) -> RemediationPlan:
    """A model version outside the approved list goes back to the newest approved one in Git
    history (rollback_model_version); every other violation is for a human to fix (notify-only)."""
    violations = incident.evidence.get("violations", [])
    listed = "; ".join(f"{v.get('policy')}: {v.get('message')} ({v.get('file') or 'file unknown'})" for v in violations)
    w = ctx.workloads.get(incident.service)
    if w is not None and w.kind == "MultimodalInferenceService" and any(
            v.get("policy") == "approved-model-version" for v in violations):
        prev = ctx.approved_model(w)
        if prev is not None:
            params = {"version": str(prev["version"])}
            if prev.get("path"):
                params["path"] = str(prev["path"])
            others = [v for v in violations if v.get("policy") != "approved-model-version"]
            return _make(incident, ctx, "rollback_model_version", {w.key: params},
                         f"Model {w.model.get('version')} of {w.key} is not in the approved list (policies/models.yaml). "
                         f"Roll back to {prev['version']}, the newest approved version in Git history (commit "
                         f"{str(prev.get('commit', ''))[:8]})."
                         + (f" Still for a human: {'; '.join(str(v.get('message')) for v in others)}." if others else ""))
    fixes = {str(f["label"]): str(f["value"]) for v in violations for f in (v.get("fixes") or [])
             if isinstance(f, dict) and f.get("label") and f.get("value")}
    if w is not None and fixes and w.doc is not None:
        others = [v for v in violations if not v.get("fixes")]
        if not isinstance(dig(w.doc.body, "metadata", "labels"), dict):
            return notify(incident, "Compliance: " + listed + f". {w.doc.file} has no metadata.labels mapping to add "
                          "the required labels to; add them in Git (no PR is proposed).")
        return _make(incident, ctx, "add_required_label", {w.key: {"labels": fixes}},
                     f"{w.key} lacks the label(s) a compliance policy requires: "
                     + ", ".join(f"{k}={v}" for k, v in sorted(fixes.items()))
                     + " (values from the policy's parameters). Add them in Git."
                     + (f" Still for a human: {'; '.join(str(v.get('message')) for v in others)}." if others else ""))
    return notify(incident, "Compliance: " + listed + ". Fix the manifest in Git; no PR is proposed.")


def _make(incident: Incident, ctx: PlanContext, playbook: str, targets: dict[str, dict[str, Any]],
          rationale: str) -> RemediationPlan:
    pb = ctx.playbooks[playbook]
    edits: list[FieldEdit] = []
    for key, params in targets.items():
        edits += render_edits(pb, ctx.workloads[key], params)
    if not edits:
        return notify(incident, rationale + " Nothing to change in Git (values already there).")
    return RemediationPlan(incident_id=incident.id, playbook=playbook, params={"targets": targets},
                           edits=tuple(edits), rationale=rationale, planner="deterministic")


def _cost_head(ev: dict[str, Any]) -> str:
    return (f"Cost ${ev.get('cost_usd_per_hour')}/h vs expected ${ev.get('expected_usd_per_hour')}/h "
            f"(x{ev.get('ratio')}) for {dig(ev, 'window', 'minutes')} min since {dig(ev, 'window', 'start')}; ")


def _cost_context(ev: dict[str, Any]) -> str:
    """Traffic and GPU utilisation over the excursion, when known."""
    return ((f", traffic x{ev['traffic_ratio']}" if "traffic_ratio" in ev else "")
            + (f", GPU utilisation {ev['gpu_util_percent']}% (usually {ev['gpu_util_expected_percent']}%)"
               if "gpu_util_percent" in ev and "gpu_util_expected_percent" in ev else ""))


def _plan_cost(incident: Incident, ctx: PlanContext) -> RemediationPlan:
    ev = incident.evidence
    w = ctx.workloads.get(incident.service)
    base = ev.get("replicas_before_p95") or ev.get("replicas_before_median")
    now = ev.get("replicas_now")
    # a rise of the cost per replica (evidence.method per_replica) is a price, request or node change:
    # replica counts that move with the autoscaler during its window did not cause it
    replicas_rose = (ev.get("method") != "per_replica" and base is not None and now is not None
                     and float(now) > float(base))
    if w is not None and isinstance(ev.get("request_change"), dict) and not replicas_rose:
        return _plan_rightsize(incident, ctx, w)
    if w is None or w.bounds_doc is None or w.max_replicas is None:
        return notify(incident, f"{incident.service} has no autoscaler bounds in Git to cap; notifying the owners.")
    if base is None:
        return notify(incident, "No replica history to size a cap from; notifying the owners.")
    if (now is not None or ev.get("method") == "per_replica") and not replicas_rose:
        return notify(incident, _cost_head(ev) + f"replicas {now:g} did not rise above the p95 {float(base):g} before"
                      + _cost_context(ev) + ", so a lower maxReplicas would not lower this cost (a price, request or "
                      "node change?); notifying the owners.")
    cur_max, cur_min = w.max_replicas, w.min_replicas or 1
    g = ctx.guardrails
    target = max(cur_min, g.replicas.floor, math.ceil(float(base) * 1.25 - 1e-9), lowest_allowed(cur_max, g))
    if target >= cur_max:
        return notify(incident, (f"Replicas before the rise (p95 {base:g}) do not justify a lower cap than "
                                 f"maxReplicas {cur_max}; notifying the owners."))
    rationale = (_cost_head(ev) + f"replicas {ev.get('replicas_now', '?')} vs p95 {base:g} before"
                 + _cost_context(ev) + f". Cap maxReplicas {cur_max} -> {target} (1.25 x the p95 before the rise, at least minReplicas "
                   f"{cur_min}, at most {g.replicas.max_decrease_percent:g}% lower in one PR).")
    return _make(incident, ctx, "cap_max_replicas", {w.key: {"max_replicas": target}}, rationale)


def _plan_rightsize(incident: Incident, ctx: PlanContext, w: Workload) -> RemediationPlan:
    """Replicas did not rise, but a commit raised a resource request just before the cost did:
    set each raised request back to its value before that commit."""
    ev = incident.evidence
    rc = ev["request_change"]
    raised = {k: v for k, v in (rc.get("raised") or {}).items() if isinstance(v, dict) and v.get("old") is not None}
    what = ", ".join(f"{k} {v['old']} -> {v['new']}" for k, v in raised.items())
    head = (_cost_head(ev) + f"replicas {ev.get('replicas_now', '?')} (not above the "
            f"{ev.get('replicas_before_p95', '?')} before){_cost_context(ev)}; commit {rc.get('commit')} at {rc.get('at')} raised "
            f"{rc.get('path')} {what}")
    pb = ctx.playbooks.get("rightsize_requests")
    params = {k: v["old"] for k, v in raised.items() if pb is not None and k in pb.parameters}
    if pb is None or not params:
        return notify(incident, head + ". No request this playbook can set back; notifying the owners.")
    return _make(incident, ctx, "rightsize_requests", {w.key: params},
                 head + f". Set {', '.join(f'{k} back to {v}' for k, v in params.items())} (the values before that "
                        f"commit); if the raise was needed, reject this PR and the owners keep it.")


def _plan_budget(incident: Incident, ctx: PlanContext) -> RemediationPlan:
    ev = incident.evidence
    budget = find_budget(ctx.budgets, ev.get("budget"))
    action = budget.action if budget is not None else "alert"
    head = (f"Budget {ev.get('budget')}: projected ${ev.get('projected_monthly_usd')}/month = "
            f"{ev.get('projected_percent')}% of ${ev.get('monthly_usd')} (alert at {ev.get('alert_at_percent')}%).")
    if budget is None or action == "alert":
        return notify(incident, head + " The budget's action is alert: notifying.")
    g = ctx.guardrails
    share = {c["workload"]: c.get("usd_per_hour", 0) for c in ev.get("top_contributors", [])}
    cands = [w for w in incident_scope(incident, ctx.budgets, ctx.workloads)
             if not w.is_critical(g) and not w.is_protected(g) and w.bounds_doc is not None and w.max_replicas]
    cands.sort(key=lambda w: -float(share.get(w.key, 0.0)))
    if not cands:
        return notify(incident, head + " No non-critical, unprotected workload with autoscaler bounds to scale down.")
    targets: dict[str, dict[str, Any]] = {}
    if action == "cap_max_replicas":
        w = cands[0]
        assert w.max_replicas is not None
        new_max = max(w.min_replicas or 1, lowest_allowed(w.max_replicas, g), math.ceil(w.max_replicas * 0.5))
        if new_max < w.max_replicas:
            targets[w.key] = {"max_replicas": new_max}
        playbook = "cap_max_replicas"
    else:
        for w in cands[: g.limits.max_files_per_pr]:
            assert w.max_replicas is not None
            cur_min = w.min_replicas or 1
            new_min = max(lowest_allowed(cur_min, g), math.ceil(cur_min * 0.5))
            new_max = max(new_min, lowest_allowed(w.max_replicas, g), math.ceil(w.max_replicas * 0.5))
            if new_min < cur_min or new_max < w.max_replicas:
                targets[w.key] = {"min_replicas": min(new_min, cur_min), "max_replicas": min(new_max, w.max_replicas)}
        playbook = "scale_down_noncritical"
    if not targets:
        return notify(incident, head + " Replica bounds are already at the guardrail floor.")
    desc = "; ".join(f"{k}: " + ", ".join(f"{p}={v}" for p, v in t.items()) for k, t in targets.items())
    rationale = head + f" Action {action} on non-critical workloads by spend: {desc} (critical workloads untouched)."
    return _make(incident, ctx, playbook, targets, rationale)


def _plan_rollback(incident: Incident, ctx: PlanContext) -> RemediationPlan:
    w = ctx.workloads.get(incident.service)
    if w is None or w.kind != "MultimodalInferenceService":
        return notify(incident, f"{incident.service} is not a MultimodalInferenceService in Git; notifying.")
    prev = ctx.previous_model(w)
    ev = incident.evidence
    what = (f"JS distance {ev.get('distance')} > {ev.get('threshold')} vs {ev.get('baseline_version')}"
            if incident.kind == "model_drift" else
            f"{str(ev.get('metric', 'demographic_parity_difference')).replace('_', ' ')} "
            f"{ev.get('value', ev.get('dpd'))} on {ev.get('attribute')} > {ev.get('threshold')}")
    if prev is None:
        return notify(incident, f"Model {w.model.get('version')}: {what}; no previous version in Git history to roll back to.")
    params = {"version": str(prev["version"])}
    if prev.get("path"):
        params["path"] = str(prev["path"])
    rationale = (f"Model {w.model.get('version')} of {w.key}: {what} since {ev.get('rollout_at', 'the rollout')}. "
                 f"Roll back to {prev['version']}, the version before it in Git history (commit {str(prev.get('commit', ''))[:8]}).")
    return _make(incident, ctx, "rollback_model_version", {w.key: params}, rationale)
