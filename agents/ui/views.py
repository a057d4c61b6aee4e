"""What the review UI's pages show, computed from the store (and the PR provider for diffs).
Plain functions returning plain data: the templates only lay it out."""

from __future__ import annotations

import math
import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from agents.charts import evidence_lines, svg_chart, svg_distributions
from agents.compliance import posture_since
from agents.config import parse_duration
from agents.deps import Deps
from agents.metrics import KINDS, STATUSES
from memory.records import ACTIVE_STATUSES, AuditEntry, Decision, Incident, PullRequest, RemediationPlan
from memory.store import Store
from tools.errors import ToolError, scrub

SEVERITIES = ("info", "warning", "critical")
PER_PAGE = 50
MAX_PER_PAGE = 200
REVERT_PREFIX = "remediator/revert/"


class BadFilter(ValueError):
    """A filter value the list cannot use (the page says which)."""


# ----------------------------------------------------------------------------- cycle reports

class CycleReports:
    """The newest cycle reports, read from the store once each: a finished cycle's report does not
    change, so it is kept (at most ``keep``); a cycle still running is read again each time."""

    def __init__(self, keep: int = 200) -> None:
        self.keep = keep
        self._done: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def __call__(self, store: Store, *, limit: int) -> list[dict[str, Any]]:
        heads = store.cycle_heads(limit=limit)
        with self._lock:
            missing = [cid for cid, finished in heads if finished is None or cid not in self._done]
        fresh = {c["cycle_id"]: c for c in store.list_cycles(limit=len(missing), ids=missing)} if missing else {}
        with self._lock:
            for cid, finished in heads:
                if finished is not None and cid in fresh:
                    self._done[cid] = fresh[cid]
            out = [fresh.get(cid) or self._done.get(cid) for cid, _ in heads]
            if len(self._done) > self.keep:
                wanted = {cid for cid, _ in heads}
                for cid in [c for c in self._done if c not in wanted][:len(self._done) - self.keep]:
                    del self._done[cid]
        return [c for c in out if c is not None]


def _latest(store: Store, limit: int) -> list[dict[str, Any]]:
    return store.list_cycles(limit=limit)


# ----------------------------------------------------------------------------- incidents list

@dataclass(frozen=True)
class Filters:
    kind: str = ""
    status: str = ""
    service: str = ""
    severity: str = ""
    since: str = ""
    page: int = 1
    per_page: int = PER_PAGE

    def query(self, **override: Any) -> str:
        """The query string of these filters (with ``override``), for links."""
        from urllib.parse import urlencode

        d = {k: v for k, v in {**self.__dict__, **override}.items() if v not in ("", None)}
        if d.get("page") == 1:
            d.pop("page")
        if d.get("per_page") == PER_PAGE:
            d.pop("per_page")
        return urlencode(d)


def parse_filters(params: dict[str, str]) -> Filters:
    def pick(name: str, allowed: tuple[str, ...]) -> str:
        v = (params.get(name) or "").strip()
        if v and v not in allowed:
            raise BadFilter(f"{name}: {v!r} is not one of {', '.join(allowed)}")
        return v

    status = (params.get("status") or "").strip()
    if status and status != "active" and status not in STATUSES:
        raise BadFilter(f"status: {status!r} is not one of active, {', '.join(STATUSES)}")
    try:
        page = int(params.get("page") or 1)
        per_page = int(params.get("per_page") or PER_PAGE)
    except ValueError:
        raise BadFilter("page and per_page must be whole numbers") from None
    if page < 1 or not 1 <= per_page <= MAX_PER_PAGE:
        raise BadFilter(f"page must be >= 1 and per_page within 1..{MAX_PER_PAGE}")
    since = (params.get("since") or "").strip()
    if since:
        since_time(since, datetime.now(UTC))   # refuse a bad one now, naming the field
    return Filters(kind=pick("kind", KINDS), status=status, service=(params.get("service") or "").strip()[:200],
                   severity=pick("severity", SEVERITIES), since=since, page=page, per_page=per_page)


def since_time(value: str, now: datetime) -> datetime:
    """``24h`` / ``7d`` (a duration back from now) or an ISO date / time (UTC when it names no zone)."""
    try:
        return now - parse_duration(value)
    except (ValueError, TypeError):
        pass
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadFilter(f"since: {value!r} is neither a duration (24h, 7d) nor an ISO date or time") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@dataclass
class Page:
    items: list[Incident]
    total: int
    page: int
    pages: int
    filters: Filters
    prs: dict[str, PullRequest] = field(default_factory=dict)   # incident id -> its PR


def incidents_page(store: Store, f: Filters, now: datetime | None = None) -> Page:
    now = now or datetime.now(UTC)
    statuses = ACTIVE_STATUSES if f.status == "active" else (f.status,) if f.status else None
    items = store.list_incidents(statuses=statuses)
    if f.kind:
        items = [i for i in items if i.kind == f.kind]
    if f.severity:
        items = [i for i in items if i.severity == f.severity]
    if f.service:
        needle = f.service.lower()
        items = [i for i in items if needle in i.service.lower()]
    if f.since:
        t = since_time(f.since, now)
        items = [i for i in items if i.last_seen_at >= t]
    items.sort(key=lambda i: (i.last_seen_at, i.id), reverse=True)
    total = len(items)
    pages = max(1, math.ceil(total / f.per_page))
    shown = items[(f.page - 1) * f.per_page:f.page * f.per_page]
    ids = {i.id for i in shown}
    prs: dict[str, PullRequest] = {}
    for p in sorted(store.list_prs(), key=lambda p: p.created_at):
        for iid in p.incident_ids:
            if iid in ids:
                prs[iid] = p
    return Page(items=shown, total=total, page=f.page, pages=pages, filters=f, prs=prs)


# ----------------------------------------------------------------------------- one incident

GUARD_RULES = (
    "the playbook exists, is in guardrails.allowed_playbooks and answers this kind of incident",
    "the targets are workloads in Git, inside the incident's scope",
    "parameters within the playbook's bounds",
    "no protected workload; budget actions never touch critical workloads",
    "only the target workloads' files, at most limits.max_files_per_pr",
    "each edit is one the playbook makes; replica bounds above the floor, lowered at most max_decrease_percent",
    "no passing compliance policy would fail",
    "not rejected by an approver within the cooldown",
    "within max_open_prs and max_prs_per_hour",
)


@dataclass
class IncidentView:
    incident: Incident
    chart_svg: str
    evidence: list[str]
    findings: list[dict[str, Any]]
    plan: RemediationPlan | None
    guard_rules: tuple[str, ...]
    prs: list[tuple[PullRequest, str | None, str]]          # (pr, diff or None, where the diff came from)
    decisions: list[Decision]
    audit: list[AuditEntry]
    chain_ok: bool
    chain_text: str
    decidable: bool
    refused: list[str]


def plan_diff(plan: RemediationPlan | None) -> str:
    """The plan's field edits written like a diff, when the PR's own commits cannot be read."""
    if plan is None:
        return ""
    out = []
    for e in plan.edits:
        out += [f"--- {e.file} {e.doc_kind}/{e.doc_name} {'.'.join(map(str, e.path))}",
                f"-{e.old}", f"+{e.new}"]
    return "\n".join(out)


Reports = Callable[..., list[dict[str, Any]]]


def incident_view(deps: Deps, incident_id: str, *, cycles_back: int = 20,
                  reports: Reports | None = None) -> IncidentView | None:
    import json

    from agents.compliance import PR_BREAKS_KEY

    store = deps.store
    inc = store.get_incident(incident_id)
    if inc is None:
        return None
    plan = store.latest_plan(inc.id)
    prs = sorted((p for p in store.list_prs() if inc.id in p.incident_ids), key=lambda p: p.created_at)
    with_diffs: list[tuple[PullRequest, str | None, str]] = []
    for p in prs:
        try:
            d = deps.prs.diff(pr=p)
        except ToolError as e:
            d, src = None, f"the PR's commits could not be read ({scrub(str(e))[:200]}); the plan's edits"
        else:
            src = "the PR's commits" if d is not None else "the plan's edits (the PR's commits are not in the clone)"
        with_diffs.append((p, d if d is not None else plan_diff(plan), src))
    findings = []
    for c in (reports or _latest)(store, limit=cycles_back):
        for f in (c.get("report") or {}).get("findings") or []:
            if f.get("kind") == inc.kind and f.get("service") == inc.service:
                findings.append({"cycle_id": c["cycle_id"], "at": c["started_at"], **f})
    audit = store.audit.entries_about([inc.id, *(p.id for p in prs)])
    chain = store.audit.verify()
    chain_text = f"intact: {chain.count} entries" if chain.ok else \
        f"BROKEN at entry {chain.first_bad_seq}: {chain.reason}"
    open_pr = next((p for p in prs if p.status == "open"), None)
    refused = json.loads(store.get_kv(PR_BREAKS_KEY.format(open_pr.id)) or "[]") if open_pr is not None else []
    return IncidentView(
        incident=inc, chart_svg=svg_chart(inc.evidence, title=f"{inc.kind} {inc.service}")
        or svg_distributions(inc.evidence, title=inc.service),
        evidence=evidence_lines(inc.evidence), findings=findings, plan=plan,
        guard_rules=GUARD_RULES, prs=with_diffs, decisions=list(reversed(store.list_decisions(incident_id=inc.id))),
        audit=audit, chain_ok=chain.ok, chain_text=chain_text,
        decidable=open_pr is not None and inc.status in ("open", "proposed"), refused=[str(r) for r in refused])


# ----------------------------------------------------------------------------- dashboard

SPEND_METHOD = (
    "Estimated from merged remediations that were not reverted: for a cost anomaly, the extra spend "
    "per month measured when it was detected (actual minus expected $/h x 730 h); for a budget breach, the "
    "projected month-end overrun above the budget. It assumes the excursion would have lasted a month "
    "and does not subtract what the remediation itself may cost; verification reverts count nothing.")


@dataclass
class Dashboard:
    open_by_kind: list[tuple[str, int]]
    by_severity: dict[str, int]
    prs: dict[str, int]
    spend_avoided_usd_per_month: float
    spend_rows: list[tuple[Incident, float]]
    spend_method: str
    posture: list[dict[str, Any]]
    last_cycle: dict[str, Any] | None


def _avoided(inc: Incident) -> float:
    ev = inc.evidence
    if inc.kind == "cost_anomaly":
        v = ev.get("extra_usd_per_month")
        return float(v) if isinstance(v, int | float) and math.isfinite(v) and v > 0 else 0.0
    if inc.kind == "budget_breach":
        proj, budget = ev.get("projected_monthly_usd"), ev.get("monthly_usd")
        if isinstance(proj, int | float) and isinstance(budget, int | float):
            return max(0.0, float(proj) - float(budget))
    return 0.0


def dashboard(store: Store, *, cycles_back: int = 50, reports: Reports | None = None) -> Dashboard:
    incidents = store.list_incidents()
    active = [i for i in incidents if i.status in ACTIVE_STATUSES]
    by_kind = Counter(str(i.kind) for i in active)
    prs = store.list_prs()
    remediation = [p for p in prs if not p.branch.startswith(REVERT_PREFIX)]
    reverts = [p for p in prs if p.branch.startswith(REVERT_PREFIX)]
    decisions = store.list_decisions()
    rejected_prs = {d.pr_id for d in decisions if d.verdict == "reject" and d.pr_id}
    reverted_incidents = {iid for p in reverts if p.status == "merged" for iid in p.incident_ids}
    counts = {"opened": len(remediation), "open": sum(p.status == "open" for p in remediation),
              "merged": sum(p.status == "merged" for p in remediation),
              "rejected": sum(p.id in rejected_prs for p in remediation),
              "closed otherwise": sum(p.status == "closed" and p.id not in rejected_prs for p in remediation),
              "reverted": sum(p.status == "merged" for p in reverts)}
    by_id = {i.id: i for i in incidents}
    spend: dict[str, float] = {}
    for p in remediation:
        if p.status != "merged":
            continue
        for iid in p.incident_ids:
            inc = by_id.get(iid)
            if inc is not None and iid not in reverted_incidents:
                spend[iid] = _avoided(inc)
    spend_rows = sorted(((by_id[i], v) for i, v in spend.items() if v > 0), key=lambda x: -x[1])
    cycles = (reports or _latest)(store, limit=cycles_back)
    return Dashboard(
        open_by_kind=[(k, by_kind.get(k, 0)) for k in KINDS],
        by_severity={s: sum(i.severity == s for i in active) for s in SEVERITIES},
        prs=counts, spend_avoided_usd_per_month=round(sum(spend.values()), 2), spend_rows=spend_rows[:20],
        spend_method=SPEND_METHOD, posture=posture(active, cycles),
        last_cycle=cycles[0] if cycles else None)


def posture(active: list[Incident], cycles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per service: its active drift / fairness / policy incidents and its compliance policies
    (pass / fail / error counts and the failing ones) from the newest cycle report."""
    rows: dict[str, dict[str, Any]] = defaultdict(lambda: {"drift": [], "fairness": [], "policy": [],
                                                           "pass": 0, "fail": 0, "error": 0, "failing": []})
    for i in active:
        key = {"model_drift": "drift", "fairness_violation": "fairness", "policy_violation": "policy"}.get(i.kind)
        if key is not None:
            rows[i.service][key].append(i)
    for e in posture_since(cycles):
        r = rows[str(e.get("service"))]
        status = str(e.get("status"))
        if status in ("pass", "fail", "error"):
            r[status] += 1
        if status != "pass":
            r["failing"].append(f"{e.get('policy')} ({status} since {str(e.get('since'))[:16]})")
    return [{"service": s, **r} for s, r in sorted(rows.items())]


def age(t: datetime, now: datetime | None = None) -> str:
    d = (now or datetime.now(UTC)) - t
    if d < timedelta(minutes=1):
        return "just now"
    if d < timedelta(hours=1):
        return f"{int(d.total_seconds() // 60)} min ago"
    if d < timedelta(days=2):
        return f"{int(d.total_seconds() // 3600)} h ago"
    return f"{d.days} days ago"


__all__ = ["BadFilter", "Dashboard", "Filters", "IncidentView", "Page", "dashboard", "incident_view",
           "incidents_page", "parse_filters"]
