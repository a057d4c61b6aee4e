"""Post-merge verification by the ``checks:`` of the playbook that made the change: after a
remediation is merged and Argo CD / Flux had time to apply it, every check's signal must be back
in bounds. Back in bounds → the incident resolves (the correlate stage does that when the finding
stays away). A check still failing after its ``cycles`` (default ``verify.failed_checks``), or the
incident's own signal worse than at approval → a revert PR that references the original.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from memory.records import FieldEdit, Incident, PullRequest, fingerprint
from memory.store import Store
from playbooks.schema import Check

REF_KEY = "verify.ref:{}"
FAIL_KEY = "verify.failed:{}"
REVERT_KEY = "verify.reverted:{}"
UNCHECKED_KEY = "verify.unchecked:{}"


def own_check(inc: Incident, checks: Sequence[Check]) -> Check | None:
    """The check that measures the incident's own signal (its metric is compared with the value at
    approval), if the playbook has one."""
    return next((c for c in checks if c.kind == inc.kind), None)


def signal_value(inc: Incident, checks: Sequence[Check]) -> float | None:
    """The number that says how bad an incident is (higher = worse), as its playbook's check measures it."""
    c = own_check(inc, checks)
    v = inc.evidence.get(c.metric) if c is not None else None
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def remember_reference(store: Store, inc: Incident, at: datetime, checks: Sequence[Check]) -> None:
    """Called when a remediation is approved/merged: what the signal was at that moment."""
    own = own_check(inc, checks)
    store.set_kv(REF_KEY.format(inc.id), json.dumps({"value": signal_value(inc, checks), "at": at.isoformat(),
                                                     "metric": own.metric if own is not None else None}))


def failing_checks(inc: Incident, checks: Sequence[Check], seen: Mapping[str, Mapping[str, Any]]) -> list[Check]:
    """The checks whose signal was still found this cycle on the remediated workload (and, for
    drift and fairness, the model version the incident was about). ``seen``: fingerprint -> the
    evidence of this cycle's finding. A policy check fails only while a violation the remediation
    answered (one with a fix, same policy and reason) is still found: other policies the workload
    fails are for a human and do not count against the change."""
    out = []
    for c in checks:
        fp = fingerprint(c.kind, inc.service, inc.model_version)
        if fp not in seen:
            continue
        if c.signal == "policy":
            fixed = {(v.get("policy"), v.get("reason")) for v in inc.evidence.get("violations", []) if v.get("fixes")}
            now = {(v.get("policy"), v.get("reason")) for v in seen[fp].get("violations", [])}
            if not fixed & now:
                continue
        out.append(c)
    return out


def check(store: Store, inc: Incident, pr: PullRequest, checks: Sequence[Check], *, now: datetime,
          grace: timedelta, seen: Mapping[str, Mapping[str, Any]], default_cycles: int, worse_factor: float) -> tuple[str, dict[str, Any]]:
    """One verification step for an approved incident whose PR merged, by the checks of the
    playbook that made the change. Returns (verdict, detail): ``waiting`` (inside the reconcile
    grace), ``passing`` (every check holds), ``failing`` (a check still fails, not yet conclusive),
    ``revert`` (propose the revert), ``unchecked`` (the playbook has no checks: said once),
    ``done`` (already reverted, or unchecked already said)."""
    if store.get_kv(REVERT_KEY.format(inc.id)):
        return "done", {}
    if not checks:
        if store.get_kv(UNCHECKED_KEY.format(inc.id)):
            return "done", {}
        store.set_kv(UNCHECKED_KEY.format(inc.id), now.isoformat())
        return "unchecked", {"reason": "the playbook that made the change has no checks: nothing verifies it"}
    if now - pr.updated_at < grace:
        return "waiting", {"until": (pr.updated_at + grace).isoformat()}
    failing = failing_checks(inc, checks, seen)
    if not failing:
        store.set_kv(FAIL_KEY.format(inc.id), "0")
        return "passing", {"checks": [f"{c.signal} {c.condition}" for c in checks]}
    n = int(store.get_kv(FAIL_KEY.format(inc.id)) or 0) + 1
    store.set_kv(FAIL_KEY.format(inc.id), str(n))
    limit = min(c.cycles or default_cycles for c in failing)
    own = own_check(inc, checks)
    ref_raw = store.get_kv(REF_KEY.format(inc.id))
    ref_doc = json.loads(ref_raw) if ref_raw else {}
    # a value kept under another metric (or before the metric was kept) is not compared with this one
    ref = ref_doc.get("value") if own is not None and ref_doc.get("metric") == own.metric else None
    cur = signal_value(inc, checks)
    unmet = [f"{c.signal} {c.condition}" for c in failing]
    detail: dict[str, Any] = {"failed_checks": n, "limit": limit, "value_at_approval": ref, "value_now": cur,
                              "metric": own.metric if own is not None else None, "failing": unmet}
    worse = ref is not None and cur is not None and cur > ref * worse_factor
    if worse or n >= limit:
        detail["reason"] = (f"{detail['metric']} went from {ref} to {cur} after the merge" if worse
                            else f"still firing {n} cycles after the change went live "
                                 f"({', '.join(unmet)} not met)")
        return "revert", detail
    return "failing", detail


def inverse_edits(edits: tuple[FieldEdit, ...]) -> list[FieldEdit]:
    return [e.model_copy(update={"old": e.new, "new": e.old}) for e in edits if e.old is not None]
