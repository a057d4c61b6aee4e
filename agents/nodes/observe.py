"""observe (read-only): the desired state and policies from the GitOps repository, overlay
values as deployed, and the audit-log events since the stored cursor."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict
from typing import Any

from langgraph.runtime import Runtime

from agents.compliance import repo_policy_files, shipped_policy_files
from agents.deps import Deps, audit, now_of, retrying
from agents.state import CARRY_KEY, CURSOR_KEY, CycleState, build_views, err, event_dict, event_from_dict
from agents.workloads import dig, workload_problems
from tools import helm, kustomize
from tools.errors import CycleAborted, ToolError
from tools.results import AuditEvent, ManifestDoc

MAX_CARRIED = 5000   # events dated after the cycle kept for the next one (a skewed clock cannot grow it forever)
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")

EFFECTIVE_FIELDS: dict[str, list[tuple[str, ...]]] = {
    "MultimodalInferenceService": [("spec", "autoscaling", "minReplicas"), ("spec", "autoscaling", "maxReplicas"),
                                   ("spec", "modelRef", "version"), ("spec", "modelRef", "path"),
                                   ("spec", "resourceRequests", "cpu"), ("spec", "resourceRequests", "memory"),
                                   ("spec", "resourceRequests", "gpu")],
    "HorizontalPodAutoscaler": [("spec", "minReplicas"), ("spec", "maxReplicas")],
}
POD_TEMPLATE_KINDS = ("Deployment", "StatefulSet", "Rollout")
CONTAINER_FIELDS = [("image",), *[("resources", part, r) for part in ("requests", "limits")
                                  for r in ("cpu", "memory", "nvidia.com/gpu")]]


def effective_fields(m: ManifestDoc) -> list[tuple[str | int, ...]]:
    """The fields of a manifest whose deployed value is read: replica bounds, model, requests; for a
    pod template, replicas and each container's image and resources."""
    if m.kind not in POD_TEMPLATE_KINDS:
        return list(EFFECTIVE_FIELDS.get(m.kind, []))
    containers = dig(m.body, "spec", "template", "spec", "containers")
    out: list[tuple[str | int, ...]] = [("spec", "replicas")]
    for i in range(len(containers) if isinstance(containers, list) else 0):
        out += [("spec", "template", "spec", "containers", i, *f) for f in CONTAINER_FIELDS]
    return out


def observe(state: CycleState, runtime: Runtime[Deps]) -> CycleState:
    deps = runtime.context
    now = now_of(state)
    errors: list[dict[str, Any]] = []
    deps.on_progress(f"observe: Git {deps.repo.remote}, metrics {deps.metrics.name}")
    try:
        retrying(deps, f"metrics source {deps.metrics.name}", deps.metrics.check, retries=0)  # adapter retries
        snap = retrying(deps, f"git remote {deps.repo.remote}", deps.repo.sync)
    except ToolError as e:
        raise CycleAborted(str(e)) from None
    for p in snap.problems:
        errors.append(err("observe", p.path, str(p)))
    tree = kustomize.Tree(deps.repo.read_tree())   # one parse per file for every question below
    view = rendered_view(tree, snap.manifests)
    errors += [err("observe", file, message) for file, message in view.problems]
    rendered = rendered_identities(tree, snap.manifests, view)
    charted, helm_problems = helm_workloads(tree)
    errors += [err("observe", file, message) for file, message in helm_problems]
    snapshot = {"commit": snap.commit, "manifests": [asdict(m) for m in snap.manifests],
                "budgets": snap.budgets, "guardrails": snap.guardrails, "effective": {},
                "rendered": rendered, "patch_files": sorted(view.patch_files),
                "helm": [asdict(m) for m in charted],
                # the shipped compliance policies and the repository's (overrides, models.yaml)
                "compliance_files": {**shipped_policy_files(),
                                     **repo_policy_files(tree, deps.settings.gitops.policies_dir)}}
    # the cycle's typed views, built once here from a copy (the checkpointed snapshot stays as read)
    views = build_views(copy.deepcopy(snapshot), deps.settings.gitops.policies_dir)
    deps.views.put({**state, "snapshot": snapshot}, views)
    errors += [err("observe", p.path, str(p)) for p in
               [*views.guardrail_problems, *views.budget_problems, *workload_problems(views.workloads),
                *views.policies.problems]]

    cursor = deps.store.get_kv(CURSOR_KEY)
    since = now - deps.settings.auditlog.initial_lookback
    events: list[AuditEvent] = []
    new_cursor = cursor
    if deps.settings.auditlog.paths:
        try:
            events, new_cursor = deps.auditlog.read(cursor=cursor, since=since)
        except ToolError as e:
            errors.append(err("observe", "auditlog", str(e)))
        for problem in deps.auditlog.last_problems:
            errors.append(err("observe", "auditlog", problem))
    # events after the cycle's evaluation time belong to the next cycle: carried (the cursor is past them)
    carried = [event_from_dict(d) for d in json.loads(deps.store.get_kv(CARRY_KEY) or "[]")]
    pending = carried + events
    events = [e for e in pending if e.at <= now]
    later = [e for e in pending if e.at > now][-MAX_CARRIED:]

    audit(deps, state, "observe", "snapshot", snap.commit, manifests=len(snap.manifests),
          overlays=sum(1 for ids in rendered.values() for i in ids if i["effective"]),
          audit_events=len(events), problems=len(snap.problems))
    return {
        "snapshot": snapshot,
        "audit_events": [event_dict(e) for e in events],
        "audit_cursor": new_cursor,
        "audit_carry": [event_dict(e) for e in later],
        "errors": errors,
    }


def rendered_view(tree: kustomize.Tree, manifests: list[ManifestDoc]) -> kustomize.View:
    """How each manifest runs (rendered namespace, name, labels), which files are patches, and what
    kustomize would refuse."""
    refs = [kustomize.ObjectRef(file=m.file, kind=m.kind, name=m.name, api_version=m.api_version,
                                namespace=dig(m.body, "metadata", "namespace") or None, labels=m.labels)
            for m in manifests]
    return kustomize.render(tree, refs)


def helm_workloads(tree: kustomize.Tree) -> tuple[list[ManifestDoc], list[tuple[str, str]]]:
    """The workload objects of the Helm releases of charts in the repository (as far as their
    templates say plainly), named as they run, with the release's values filled in."""
    rels, problems = helm.releases(tree)
    docs = []
    for rel in rels:
        for obj in helm.helm_objects(tree, rel):
            docs.append(ManifestDoc(file=obj.template, index=0, kind=obj.kind, api_version="", name=obj.name,
                                    namespace=rel.namespace, labels={}, body=helm.body(obj),
                                    deployed_paths=(rel.key,)))
    return docs, problems


def rendered_identities(tree: kustomize.Tree, manifests: list[ManifestDoc],
                        view: kustomize.View) -> dict[str, list[dict[str, Any]]]:
    """file|kind|name -> how the manifest runs, one entry per rendered identity: namespace, name,
    labels, the deployed folders when it runs under several names, the values an overlay sets
    differently (``effective``) and the place that sets each value an overlay sets (``set_in``),
    both keyed by the JSON list of the field's path."""
    kustomized = any(f.rsplit("/", 1)[-1] in KUSTOMIZATION_FILES for f in tree)
    out: dict[str, list[dict[str, Any]]] = {}
    for m in manifests:
        idents = view.identities.get((m.file, m.kind, m.name), ())
        entries = []
        for ident in idents:
            paths = list(ident.paths) if len(idents) > 1 else None
            effective, set_in = effective_values(tree, m, paths) if kustomized else ({}, {})
            entries.append({"namespace": ident.namespace, "name": ident.name, "labels": dict(ident.labels),
                            "paths": paths or [], "effective": effective, "set_in": set_in})
        if entries:
            out[f"{m.file}|{m.kind}|{m.name}"] = entries
    return out


def effective_values(tree: kustomize.Tree, m: ManifestDoc,
                     deployed_paths: list[str] | None) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """The fields of ``m`` whose deployed value an overlay sets differently, and for every field an
    overlay sets (differently or not) the place that sets it, keyed by the JSON list of the path."""
    out: dict[str, Any] = {}
    set_in: dict[str, list[Any]] = {}
    for path in effective_fields(m):
        base = dig(m.body, *path)
        if base is None:
            continue
        loc = kustomize.effective_value(tree, file=m.file, doc_kind=m.kind, doc_name=m.name, path=path,
                                        deployed_paths=deployed_paths)
        key = json.dumps(list(path))
        if loc.ok and loc.moved and loc.edit is not None:
            set_in[key] = [loc.edit.file, loc.edit.doc_kind, loc.edit.doc_name, list(loc.edit.path)]
            if loc.effective is not None and loc.effective != base:
                out[key] = loc.effective
    return out, set_in
