"""Post-merge verification: after a remediation is merged and Argo CD / Flux had time to apply
it, the triggering signal must come back in bounds. Back in bounds → the incident resolves (the
correlate stage does that when the finding stays away). Still firing for ``failed_checks``
cycles, or worse than at approval → a revert PR that references the original.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from memory.records import FieldEdit, Incident, PullRequest
from memory.store import Store

REF_KEY = "verify.ref:{}"
FAIL_KEY = "verify.failed:{}"
REVERT_KEY = "verify.reverted:{}"
METRIC = {"cost_anomaly": "ratio", "budget_breach": "projected_percent", "model_drift": "distance",
          "fairness_violation": "dpd"}


def signal_value(inc: Incident) -> float | None:
    """The number that says how bad an incident is (higher = worse)."""
    v = inc.evidence.get(METRIC.get(inc.kind, ""))
    return float(v) if isinstance(v, int | float) else None


def remember_reference(store: Store, inc: Incident, at: datetime) -> None:
    """Called when a remediation is approved/merged: what the signal was at that moment."""
    store.set_kv(REF_KEY.format(inc.id), json.dumps({"value": signal_value(inc), "at": at.isoformat()}))


def check(store: Store, inc: Incident, pr: PullRequest, *, now: datetime, grace: timedelta, still_firing: bool,
          failed_checks: int, worse_factor: float) -> tuple[str, dict[str, Any]]:
    """One verification step for an approved incident whose PR merged. Returns (verdict, detail):
    ``waiting`` (inside the reconcile grace), ``passing`` (signal quiet), ``failing`` (still firing,
    not yet conclusive), ``revert`` (propose the revert), ``done`` (already reverted)."""
    if store.get_kv(REVERT_KEY.format(inc.id)):
        return "done", {}
    if now - pr.updated_at < grace:
        return "waiting", {"until": (pr.updated_at + grace).isoformat()}
    if not still_firing:
        store.set_kv(FAIL_KEY.format(inc.id), "0")
        return "passing", {}
    n = int(store.get_kv(FAIL_KEY.format(inc.id)) or 0) + 1
    store.set_kv(FAIL_KEY.format(inc.id), str(n))
    ref_raw = store.get_kv(REF_KEY.format(inc.id))
    ref = json.loads(ref_raw).get("value") if ref_raw else None
    cur = signal_value(inc)
    detail = {"failed_checks": n, "limit": failed_checks, "value_at_approval": ref, "value_now": cur,
              "metric": METRIC.get(inc.kind)}
    worse = ref is not None and cur is not None and cur > ref * worse_factor
    if worse or n >= failed_checks:
        detail["reason"] = (f"{detail['metric']} went from {ref} to {cur} after the merge" if worse
                            else f"still firing {n} cycles after the change went live")
        return "revert", detail
    return "failing", detail


def inverse_edits(edits: tuple[FieldEdit, ...]) -> list[FieldEdit]:
    return [e.model_copy(update={"old": e.new, "new": e.old}) for e in edits if e.old is not None]
