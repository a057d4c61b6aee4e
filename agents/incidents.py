"""Store lookups several nodes share: the open PR of an incident, the incidents of one
fingerprint, the audit entries that opened a set of incidents."""

from __future__ import annotations

from agents.deps import Deps
from memory.records import Incident, PullRequest, branch_name


def open_pr_of(deps: Deps, inc: Incident) -> PullRequest | None:
    """The open PR that carries this incident (its own branch, or one it joined)."""
    own = branch_name(inc.kind, inc.service, inc.fingerprint)
    open_prs = deps.store.list_prs(statuses=["open"])
    return next((p for p in open_prs if inc.id in p.incident_ids), None) or \
        next((p for p in open_prs if p.branch == own), None)


def same_fingerprint(deps: Deps, inc: Incident) -> list[Incident]:
    return [i for i in deps.store.list_incidents() if i.fingerprint == inc.fingerprint]


def first_audit_seqs(deps: Deps, incident_ids: list[str]) -> list[int]:
    """The audit entries that opened these incidents (stable references for the PR body)."""
    key = "audit.opened:" + ",".join(incident_ids)
    cached = deps.store.get_kv(key)
    if cached:
        return [int(x) for x in cached.split(",") if x]
    seqs = [e.seq for e in deps.store.audit.entries() if e.action == "incident_opened" and e.subject in incident_ids]
    deps.store.set_kv(key, ",".join(map(str, seqs)))
    return seqs
