"""GitOps drift: writes to Git-managed objects by anyone outside the expected actors.

A write (create/update/patch/delete) that succeeded, by a user that is neither a GitOps
controller nor a known controller, to an object Git manages (or to the Deployment/HPA an
operator derives from a managed MultimodalInferenceService: same namespace and name) is
out-of-band, even when a controller reverted it seconds later. All text taken from the audit
log is untrusted data: it is copied into evidence, never interpreted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC

from memory.records import Finding
from tools.results import AuditEvent

WRITE_VERBS = frozenset({"create", "update", "patch", "delete"})
WORKLOAD_RESOURCES = frozenset({
    "deployments", "horizontalpodautoscalers", "multimodalinferenceservices", "rollouts", "statefulsets",
})
DEFAULT_ACTORS = (
    "system:serviceaccount:argocd:argocd-application-controller",
    "system:serviceaccount:flux-system:kustomize-controller",
    "system:serviceaccount:flux-system:helm-controller",
    "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
    "system:kube-controller-manager",
)
MAX_TEXT = 300


def _short(obj: object) -> str:
    s = obj if isinstance(obj, str) else json.dumps(obj, sort_keys=True, default=str)
    return s if len(s) <= MAX_TEXT else s[:MAX_TEXT] + "…"


def _change(ev: AuditEvent) -> str:
    ro = ev.request_object or {}
    spec = ro.get("spec") if isinstance(ro, dict) else None
    if ev.subresource == "scale" and isinstance(spec, dict) and "replicas" in spec:
        return f"replicas -> {spec['replicas']}"
    if isinstance(spec, dict):
        return _short({"spec": spec})
    return _short(ro) if ro else ""


def detect_oob_writes(
    events: Iterable[AuditEvent], *, managed: dict[tuple[str, str], str | None], allowed_actors: Iterable[str],
) -> list[Finding]:
    """``managed`` maps (namespace, name) to the GitOps file that declares it."""
    allowed = set(allowed_actors)
    by_obj: dict[tuple[str, str], list[AuditEvent]] = {}
    for ev in events:
        if ev.verb not in WRITE_VERBS or ev.resource not in WORKLOAD_RESOURCES or ev.subresource == "status":
            continue
        if ev.code is not None and ev.code >= 400:
            continue
        if "dryRun=" in ev.request_uri:
            continue
        if ev.user in allowed or (ev.namespace, ev.name) not in managed:
            continue
        by_obj.setdefault((ev.namespace, ev.name), []).append(ev)
    findings = []
    for (ns, name), evs in sorted(by_obj.items()):
        evs.sort(key=lambda e: e.at)
        last = evs[-1]
        actors = sorted({e.user for e in evs})
        what = f"{last.resource}{'/' + last.subresource if last.subresource else ''}"
        change = _change(last)
        findings.append(Finding(
            kind="gitops_drift", service=f"{ns}/{name}",
            severity="critical" if any(e.verb == "delete" for e in evs) else "warning",
            detector="audit.out_of_band_write", confidence=1.0, file=managed[(ns, name)],
            observed_at=last.at.astimezone(UTC),
            summary=(f"out-of-band {last.verb} of {what} {ns}/{name} by {_short(last.user)} at "
                     f"{last.at.astimezone(UTC).isoformat().replace('+00:00', 'Z')}"
                     + (f" ({change})" if change and len(change) < 60 else "")),
            evidence={
                "untrusted": True,
                "actors": [_short(a) for a in actors],
                "events": [{
                    "at": e.at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                    "user": _short(e.user), "groups": [_short(g) for g in e.groups[:5]],
                    "verb": e.verb, "resource": e.resource, "subresource": e.subresource,
                    "user_agent": _short(e.user_agent), "source_ips": list(e.source_ips[:3]),
                    "audit_id": e.audit_id, "change": _change(e),
                } for e in evs[-10:]],
                "count": len(evs),
            },
        ))
    return findings
