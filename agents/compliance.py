"""Compliance policies in the cycle: which policies apply (the shipped defaults, overridden or
disabled by name from the GitOps repository's ``policies/compliance/``), the approved model list
(``policies/models.yaml``), the evaluation of the desired state, the findings it gives, and the
check the guard makes on a remediation's edits. The CEL evaluation itself is
``tools.detectors.compliance`` (pure)."""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agents.workloads import put
from memory.records import FieldEdit, Finding
from tools.detectors.compliance import CompiledPolicy, ObjectRef, PolicyResult, compile_policies, evaluate
from tools.results import FileProblem, ManifestDoc
from tools.yamledit import safe_load_all

# store kv: the policies an open PR would break on the latest cycle's desired state (JSON list)
PR_BREAKS_KEY = "compliance.pr_breaks:{}"
DEFAULTS_DIR = Path(__file__).resolve().parent.parent / "config" / "policies"
SEVERITY_ORDER = {"info": 0, "warning": 1, "critical": 2}


@dataclass(frozen=True)
class PolicySet:
    policies: list[CompiledPolicy]
    models: list[dict[str, Any]]
    problems: list[FileProblem]


@functools.cache
def shipped_policy_files() -> dict[str, str]:
    """The shipped default policies (config/policies/*.yaml), path -> text (read once a process)."""
    return {f"config/policies/{p.name}": p.read_text(encoding="utf-8") for p in sorted(DEFAULTS_DIR.glob("*.yaml"))}


def repo_policy_files(tree: Mapping[str, str], policies_dir: str) -> dict[str, str]:
    """The repository's compliance policies and approved-model list, path -> text."""
    prefix = f"{policies_dir.strip('/')}/compliance/"
    models = {f"{policies_dir.strip('/')}/models.yaml", f"{policies_dir.strip('/')}/models.yml"}
    return {p: t for p, t in sorted(tree.items()) if (p.startswith(prefix) and p.endswith((".yaml", ".yml")))
            or p in models}


def policy_set(files: Mapping[str, str], policies_dir: str) -> PolicySet:
    """Compile the policies of ``files`` (shipped defaults first, so the repository's override them by
    name) and read the approved model list. Every problem names its file; the rest still applies."""
    docs: list[tuple[str, Any]] = []
    problems: list[FileProblem] = []
    models: list[dict[str, Any]] = []
    models_files = {f"{policies_dir.strip('/')}/models.yaml", f"{policies_dir.strip('/')}/models.yml"}
    for path in sorted(files, key=lambda p: (not p.startswith("config/"), p)):
        try:
            parsed = [d for d in safe_load_all(files[path], path) if d is not None]
        except (yaml.YAMLError, ValueError) as e:
            problems.append(FileProblem(path, f"does not parse: {str(e).splitlines()[0]}; its policies are not evaluated"))
            continue
        if path in models_files:
            models, bad = _models(parsed)
            problems += [FileProblem(path, b) for b in bad]
            continue
        for i, d in enumerate(parsed):
            if not isinstance(d, dict) or d.get("kind") not in ("CompliancePolicy", "ValidatingAdmissionPolicy"):
                what = f"kind {d.get('kind')!r}" if isinstance(d, dict) else f"a {type(d).__name__}"
                problems.append(FileProblem(path, f"document {i} is {what}, not a CompliancePolicy (a mapping with "
                                            "kind: CompliancePolicy, metadata.name and spec; see "
                                            "config/policies/compliance.yaml); ignored"))
                continue
            docs.append((path, d))
    policies, compile_problems = compile_policies(docs)
    problems += [FileProblem(f, m) for f, m in compile_problems]
    return PolicySet(policies=policies, models=models, problems=problems)


def _models(docs: list[Any]) -> tuple[list[dict[str, Any]], list[str]]:
    raw = docs[0].get("models") if docs and isinstance(docs[0], dict) else None
    if not isinstance(raw, list):
        return [], ["`models:` must be a list of {name, version, approvedBy, date}; no model is approved"]
    out, bad = [], []
    for i, m in enumerate(raw):
        if isinstance(m, dict) and m.get("name") and m.get("version") is not None:
            out.append({"name": str(m["name"]), "version": str(m["version"]),
                        "approvedBy": str(m.get("approvedBy") or m.get("approved-by") or ""),
                        "date": str(m.get("date") or "")})
        else:
            bad.append(f"models[{i}] has no name or version; skipped")
    return out, bad


def objects_of(docs: Iterable[ManifestDoc]) -> list[ObjectRef]:
    """The deployed objects policies are evaluated on (metadata as rendered: namespace, name, labels)."""
    out = []
    for d in docs:
        body = copy.deepcopy(d.body)
        meta = body.setdefault("metadata", {}) if isinstance(body, dict) else {}
        if isinstance(meta, dict):
            meta.update({"name": d.name, "namespace": d.namespace, "labels": dict(d.labels)})
        out.append(ObjectRef(key=d.key, kind=d.kind, namespace=d.namespace, labels=dict(d.labels), body=body,
                             file=d.file))
    return out


def findings_of(results: Sequence[PolicyResult], policies: Sequence[CompiledPolicy]) -> list[Finding]:
    """One ``policy_violation`` finding per object that fails a policy that acts (Warn / Deny)."""
    acting = {p.name for p in policies if not p.audit_only}
    failing: dict[str, list[PolicyResult]] = {}
    for r in results:
        if r.status == "fail" and r.policy in acting:
            failing.setdefault(r.key, []).append(r)
    out = []
    for key, rs in sorted(failing.items()):
        severity = max((r.severity for r in rs), key=lambda s: SEVERITY_ORDER.get(s, 1))
        out.append(Finding(
            kind="policy_violation", service=key, severity=severity,  # type: ignore[arg-type]
            summary=f"{key} fails {len(rs)} compliance polic{'y' if len(rs) == 1 else 'ies'}: "
                    + "; ".join(f"{r.policy}: {r.message}" for r in rs),
            evidence={"failing_policies": len(rs), "violations": [{"policy": r.policy, "object": r.object, "file": r.file, "expression": r.expression,
                                      "message": r.message, "reason": r.reason, "severity": r.severity,
                                      "policy_file": r.policy_file,
                                      **({"fixes": [dict(f) for f in r.fixes]} if r.fixes else {})} for r in rs]},
            detector="compliance", file=rs[0].file or None))
    return out


def acting_keys(results: Sequence[PolicyResult], policies: Sequence[CompiledPolicy]) -> set[str]:
    """Objects an acting policy was evaluated on (their policy_violation incidents may resolve)."""
    acting = {p.name for p in policies if not p.audit_only}
    return {r.key for r in results if r.policy in acting and r.status in ("pass", "fail")}


def broken_by(edits: Sequence[FieldEdit], docs: Sequence[ManifestDoc], pset: PolicySet) -> list[str]:
    """The policies that pass on a touched object now and would fail once ``edits`` are made (each as
    "policy on object: message"). Edits are applied to the objects as deployed."""
    touched = [d for d in docs if any(e.file == d.file and e.doc_kind == d.kind and e.doc_name == d.doc_name
                                      and (not e.deployed or tuple(e.deployed) == d.deployed_paths or not d.deployed_paths)
                                      for e in edits)]
    if not touched or not pset.policies:
        return []
    before = {(r.policy, r.key, r.object): r for r in evaluate(pset.policies, objects_of(touched), pset.models)}
    changed = []
    for d in touched:
        body = copy.deepcopy(d.body)
        for e in edits:
            if (e.file, e.doc_kind, e.doc_name) == (d.file, d.kind, d.doc_name):
                put(body, list(e.path), e.new)
        changed.append(ManifestDoc(file=d.file, index=d.index, kind=d.kind, api_version=d.api_version, name=d.name,
                                   namespace=d.namespace, labels=d.labels, body=body, source_name=d.source_name))
    out = []
    for r in evaluate(pset.policies, objects_of(changed), pset.models):
        was = before.get((r.policy, r.key, r.object))
        if r.status == "fail" and (was is None or was.status == "pass"):
            out.append(f"{r.policy} on {r.object}: {r.message}")
    return out


def posture(results: Sequence[PolicyResult]) -> list[dict[str, Any]]:
    """The report's ``compliance`` section: one entry per (object, policy) evaluated."""
    return [{"service": r.key, "object": r.object, "policy": r.policy, "status": r.status, "severity": r.severity,
             **({"message": r.message, "expression": r.expression} if r.status in ("fail", "error") else {})}
            for r in results]


def posture_since(cycles: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The posture of the newest cycle report that has one, each (service, policy) with ``since``: the
    start of the earliest cycle of the unbroken run of cycles (newest first in ``cycles``) in which it
    had the same status."""
    reports = [c for c in cycles if isinstance((c.get("report") or {}).get("compliance"), list)]
    if not reports:
        return []
    latest = reports[0]["report"]["compliance"]
    history = [{(e.get("service"), e.get("policy"), e.get("object")): e.get("status")
                for e in c["report"]["compliance"]} for c in reports]
    out = []
    for e in latest:
        key = (e.get("service"), e.get("policy"), e.get("object"))
        since = reports[0]["started_at"]
        for c, seen in zip(reports, history, strict=True):
            if seen.get(key) != e.get("status"):
                break
            since = c["started_at"]
        out.append({**e, "since": since.isoformat() if hasattr(since, "isoformat") else str(since)})
    return sorted(out, key=lambda x: (x["status"] == "pass", str(x.get("service")), str(x.get("policy"))))
