"""The stages of one cycle (observe, detect, correlate, plan, guard, propose, notify, record).

Each stage is a function ``(deps, state) -> partial state`` used as a LangGraph node (see
agents/graph.py). The state holds only JSON-able values so that checkpoints can resume a
cycle killed mid-way; every stage is idempotent (branches are keyed by the incident's
fingerprint), so replaying a stage never opens a second PR.
"""

from __future__ import annotations

import hashlib
import json
import logging
import operator
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Annotated, Any, TypedDict, TypeVar

from agents.config import Settings
from agents.guard import GuardContext
from agents.guard import check as guard_check
from agents.planners.deterministic import PlanContext
from agents.planners.deterministic import plan as deterministic_plan
from agents.planners.llm import guard_or_fallback
from agents.prbody import pr_body, pr_title
from agents.verify import REVERT_KEY, inverse_edits
from agents.verify import check as verify_check
from agents.workloads import (
    Workload,
    build_workloads,
    dig,
    load_guardrails,
    managed_objects,
    select_workloads,
)
from memory.records import (
    ACTIVE_STATUSES,
    FieldEdit,
    Finding,
    Incident,
    PullRequest,
    RemediationPlan,
    branch_name,
    new_id,
)
from memory.store import Store
from playbooks.schema import Playbook
from tools.detectors.budget import BudgetInput, budget_service, detect_budget_breach
from tools.detectors.common import InputStats
from tools.detectors.cost import CostSettings, WorkloadSeries, detect_cost_anomalies
from tools.detectors.drift import CounterSeries, DriftInput, detect_drift
from tools.detectors.fairness import FairnessInput, detect_fairness
from tools.detectors.oob import detect_oob_writes
from tools.errors import CycleAborted, PermanentError, TemporaryError, ToolError
from tools.kube import quantity
from tools.kustomize import apply_edits as apply_kustomize_edits
from tools.protocols import AuditLog, GitOpsRepo, MetricsSource, Notifier, PullRequests
from tools.results import AuditEvent, ManifestDoc, SignalResult

log = logging.getLogger("remediator.cycle")
T = TypeVar("T")
CURSOR_KEY = "auditlog.cursor"


class CycleState(TypedDict, total=False):
    cycle_id: str
    started_at: str
    snapshot: dict[str, Any]
    audit_events: list[dict[str, Any]]
    audit_cursor: str | None
    findings: list[dict[str, Any]]
    evaluated: list[str]
    touched: list[str]
    plans: list[dict[str, Any]]
    pr_ids: list[str]
    notifications: list[dict[str, Any]]
    errors: Annotated[list[dict[str, Any]], operator.add]


@dataclass
class Deps:
    settings: Settings
    store: Store
    metrics: MetricsSource
    repo: GitOpsRepo
    prs: PullRequests
    auditlog: AuditLog
    playbooks: dict[str, Playbook]
    notifier: Notifier | None = None
    dry_run: bool = False
    retries: int = 3
    retry_base_s: float = 0.5
    checkpointer: Any = None  # set by run_cycle; approval threads live beside the cycle's
    planner: Any = None       # agents.planners.llm.LLMPlanner (falls back to the deterministic planner)
    on_progress: Callable[[str], None] = field(default=lambda msg: log.info(msg))


def err(stage: str, source: str, message: str) -> dict[str, Any]:
    return {"stage": stage, "source": source, "message": message}


def retrying(deps: Deps, what: str, fn: Callable[[], T], retries: int | None = None) -> T:
    """Retry TemporaryErrors with exponential backoff; re-raise the last one."""
    retries = deps.retries if retries is None else retries
    for attempt in range(retries + 1):
        try:
            return fn()
        except TemporaryError as e:
            if attempt == retries:
                raise
            delay = max(e.delay, deps.retry_base_s) * (2**attempt) if deps.retry_base_s else 0
            log.warning("%s failed (%s); retrying in %.1fs", what, e, delay)
            time.sleep(min(delay, 10))
    raise AssertionError("unreachable")


def _now(state: CycleState) -> datetime:
    return datetime.fromisoformat(state["started_at"])


def _audit(deps: Deps, state: CycleState, stage: str, action: str, subject: str = "", **data: Any) -> int:
    return deps.store.audit.append(stage=stage, action=action, subject=subject, data=data,
                                   cycle_id=state["cycle_id"]).seq


# ----------------------------------------------------------------------------- snapshot helpers

EFFECTIVE_FIELDS = {
    "MultimodalInferenceService": [("spec", "autoscaling", "minReplicas"), ("spec", "autoscaling", "maxReplicas"),
                                   ("spec", "modelRef", "version"), ("spec", "modelRef", "path")],
    "HorizontalPodAutoscaler": [("spec", "minReplicas"), ("spec", "maxReplicas")],
}


def _docs(state: CycleState) -> list[ManifestDoc]:
    """The manifests as deployed: a value a kustomize overlay patches replaces the base's."""
    eff = state["snapshot"].get("effective") or {}
    docs = []
    for m in state["snapshot"]["manifests"]:
        d = ManifestDoc(**m)
        for key, value in eff.items():
            file, kind, name, path = key.split("|", 3)
            if (file, kind, name) == (d.file, d.kind, d.name):
                node = d.body
                keys = path.split(".")
                for k in keys[:-1]:
                    node = node.setdefault(k, {}) if isinstance(node, dict) else {}
                if isinstance(node, dict):
                    node[keys[-1]] = value
        docs.append(d)
    return docs


def _effective_values(deps: Deps, manifests: list[ManifestDoc], errors: list[dict[str, Any]]) -> dict[str, Any]:
    """Fields of the manifests whose deployed value an overlay sets differently (key file|kind|name|path)."""
    read_tree = getattr(deps.repo, "read_tree", None)
    if read_tree is None:
        return {}
    tree = read_tree()
    if not any(f.rsplit("/", 1)[-1] in ("kustomization.yaml", "kustomization.yml", "Kustomization") for f in tree):
        return {}
    from tools import kustomize

    out: dict[str, Any] = {}
    for m in manifests:
        for path in EFFECTIVE_FIELDS.get(m.kind, []):
            base = dig(m.body, *path)
            if base is None:
                continue
            loc = kustomize.effective_value(tree, file=m.file, doc_kind=m.kind, doc_name=m.name, path=path)
            if loc.ok and loc.moved and loc.effective is not None and loc.effective != base:
                out[f"{m.file}|{m.kind}|{m.name}|{'.'.join(path)}"] = loc.effective
    return out


def _workloads(state: CycleState) -> dict[str, Workload]:
    return build_workloads(_docs(state))


def _guardrails(deps: Deps, state: CycleState):  # type: ignore[no-untyped-def]
    g, _ = load_guardrails(state["snapshot"]["guardrails"], deps.settings.gitops.policies_dir)
    return g


# ----------------------------------------------------------------------------- observe

def observe(deps: Deps, state: CycleState) -> CycleState:
    now = _now(state)
    errors: list[dict[str, Any]] = []
    deps.on_progress(f"observe: Git {deps.repo.remote}, metrics {deps.metrics.name}")
    try:
        retrying(deps, f"metrics source {deps.metrics.name}", deps.metrics.check, retries=0)  # adapter retries
        snap = retrying(deps, f"git remote {deps.repo.remote}", deps.repo.sync)
    except ToolError as e:
        raise CycleAborted(str(e)) from None
    for p in snap.problems:
        errors.append(err("observe", p.path, str(p)))
    _, gproblems = load_guardrails(snap.guardrails, deps.settings.gitops.policies_dir)
    errors += [err("observe", p.path, str(p)) for p in gproblems]

    cursor = deps.store.get_kv(CURSOR_KEY)
    since = now - deps.settings.auditlog.initial_lookback
    events: list[AuditEvent] = []
    new_cursor = cursor
    if deps.settings.auditlog.paths:
        try:
            events, new_cursor = deps.auditlog.read(cursor=cursor, since=since)
        except ToolError as e:
            errors.append(err("observe", "auditlog", str(e)))
        for p in getattr(deps.auditlog, "last_problems", []) or []:
            errors.append(err("observe", "auditlog", str(p)))
    # events after the cycle's evaluation time belong to the next cycle
    events = [e for e in events if e.at <= now]

    _refresh_prs(deps, state, errors)
    effective = _effective_values(deps, snap.manifests, errors)
    _audit(deps, state, "observe", "snapshot", snap.commit, manifests=len(snap.manifests), overlays=len(effective),
           audit_events=len(events), problems=len(snap.problems))
    return {
        "snapshot": {"commit": snap.commit, "manifests": [asdict(m) for m in snap.manifests],
                     "budgets": snap.budgets, "guardrails": snap.guardrails, "effective": effective},
        "audit_events": [_event_dict(e) for e in events],
        "audit_cursor": new_cursor,
        "errors": errors,
    }


def _event_dict(e: AuditEvent) -> dict[str, Any]:
    d = asdict(e)
    d["at"] = e.at.isoformat()
    return d


def _refresh_prs(deps: Deps, state: CycleState, errors: list[dict[str, Any]]) -> None:
    """PR-review approval: merges and closures done in the Git host are recorded as decisions."""
    for pr in deps.store.list_prs(statuses=["open"]):
        try:
            fresh = deps.prs.refresh(pr=pr)
        except ToolError as e:
            errors.append(err("observe", pr.branch, f"cannot refresh PR: {e}"))
            continue
        if fresh.status == pr.status:
            _review_approvals(deps, state, fresh, errors)
            continue
        fresh = fresh.model_copy(update={"updated_at": _now(state)})
        deps.store.save_pr(fresh)
        slack_outcome(deps, fresh, f"PR {fresh.status} in the Git host ({_now(state):%Y-%m-%d %H:%M}Z).")
        verdict = "approve" if fresh.status == "merged" else "reject"
        from agents.approvals import decide  # the approval thread lives there (imports this module)

        for iid in fresh.incident_ids:
            inc = deps.store.get_incident(iid)
            if inc is None or not inc.active or inc.status == "approved":
                continue
            try:
                decide(deps, incident_id=iid, verdict=verdict, actor="git-host", source="pr_review",
                       reason=f"PR {fresh.status} in the Git host")
            except ToolError as e:
                errors.append(err("observe", pr.branch, f"cannot record the host's decision: {e}"))
        _audit(deps, state, "observe", f"pr_{fresh.status}", pr.branch, pr_id=pr.id)


def slack_outcome(deps: Deps, pr: PullRequest, text: str) -> None:
    """Show on the PR's Slack message what happened outside Slack (closed, merged in the host);
    the Approve / Reject buttons go away."""
    raw = deps.store.get_kv(f"slack.pr_msg:{pr.id}")
    update = getattr(deps.notifier, "update_message", None)
    if not raw or update is None:
        return
    try:
        ref = json.loads(raw)
    except ValueError:
        return
    if not isinstance(ref, dict) or not ref.get("channel") or not ref.get("ts"):
        return
    from tools.slack import outcome_blocks

    try:
        update(channel=ref["channel"], ts=ref["ts"], text=text, blocks=outcome_blocks(None, text))
    except ToolError as e:
        log.warning("cannot update the Slack message of %s: %s", pr.branch, e)


def _review_approvals(deps: Deps, state: CycleState, pr: PullRequest, errors: list[dict[str, Any]]) -> None:
    """An approving review in the Git host (GitHub / GitLab) counts as an approval: it lands the
    PR through the provider, like a Slack click would."""
    reviews = getattr(deps.prs, "reviews", None)
    if reviews is None or pr.status != "open":
        return
    try:
        approvers = sorted({user for user, st in reviews(pr=pr) if st == "APPROVED"})
        blocked = any(st == "CHANGES_REQUESTED" for _, st in reviews(pr=pr))
    except ToolError as e:
        errors.append(err("observe", pr.branch, f"cannot read reviews: {e}"))
        return
    if not approvers or blocked:
        return
    from agents.approvals import decide

    for iid in pr.incident_ids:
        inc = deps.store.get_incident(iid)
        if inc is None or inc.status not in ("open", "proposed"):
            continue
        try:
            decide(deps, incident_id=iid, verdict="approve", actor=f"{deps.prs.name}:{approvers[0]}",
                   source="pr_review", reason=f"approving review by {', '.join(approvers)}")
        except ToolError as e:
            errors.append(err("observe", pr.branch, f"cannot apply the review approval: {e}"))
        break  # one decision lands the PR; the other incidents follow on the next refresh


# ----------------------------------------------------------------------------- detect

def detect(deps: Deps, state: CycleState) -> CycleState:
    s = deps.settings
    now = _now(state)
    end_ts = now.timestamp()
    errors: list[dict[str, Any]] = []
    stats = InputStats()
    workloads = _workloads(state)
    guard = _guardrails(deps, state)
    step = int(max(60, s.prometheus.scrape_interval.total_seconds()))
    start = now - s.detection.history
    findings: list[Finding] = []
    costs: dict[str, SignalResult] = {}
    evaluated: set[str] = set()  # kind|service that had data this cycle (only those may resolve)

    def fetch(label: str, fn: Callable[[], SignalResult]) -> SignalResult | None:
        try:
            res = retrying(deps, label, fn, retries=0)  # the adapter retries itself
        except ToolError as e:
            errors.append(err("detect", label, str(e)))
            return None
        if res.status == "error":
            errors.append(err("detect", label, res.error or "query failed"))
            return None
        return res

    deps.on_progress(f"detect: {len(workloads)} workloads, {len(state['snapshot']['budgets'])} budgets")
    series: list[WorkloadSeries] = []
    for key, w in sorted(workloads.items()):
        c = fetch(f"cost {key}", lambda w=w: deps.metrics.workload_cost(namespace=w.namespace, name=w.name,
                                                                          start=start, end=now, step_s=step))
        if c is None or c.first is None:
            continue
        costs[key] = c
        evaluated.add(f"cost_anomaly|{key}")
        r = fetch(f"replicas {key}", lambda w=w: deps.metrics.workload_replicas(namespace=w.namespace, name=w.name,
                                                                                  start=start, end=now, step_s=step))
        rr = None
        if w.kind == "MultimodalInferenceService":
            rr = fetch(f"requests {key}", lambda w=w: deps.metrics.request_rate(namespace=w.namespace, service=w.name,
                                                                                  start=start, end=now, step_s=step))
        u = fetch(f"gpu_util {key}", lambda w=w: deps.metrics.gpu_utilisation(namespace=w.namespace, name=w.name,
                                                                                 start=start, end=now, step_s=step))
        series.append(WorkloadSeries(
            service=key, file=w.file, ts=c.first.timestamps, cost=c.first.values,
            replicas=r.first.values if r is not None and r.first is not None else None,
            request_rate=rr.first.values if rr is not None and rr.first is not None else None,
            gpu_util=u.first.values if u is not None and u.first is not None else None))
    series = _with_anomaly_scores(deps, series, errors)
    cost_settings = CostSettings(min_duration_s=s.detection.min_duration.total_seconds(),
                                 min_ratio=s.detection.cost_min_ratio, z=s.detection.cost_z)
    for f in detect_cost_anomalies(series, cost_settings, stats):
        change = _request_change(deps, workloads.get(f.service), f.evidence)
        findings.append(f.model_copy(update={"evidence": {**f.evidence, "request_change": change}}) if change else f)

    for b in state["snapshot"]["budgets"]:
        name = str(b.get("name", "?"))
        try:
            monthly = float(b.get("monthly_usd"))  # type: ignore[arg-type]
            alert = float(b.get("alert_at_percent", 80))
        except (TypeError, ValueError):
            errors.append(err("detect", f"budget {name}", "monthly_usd / alert_at_percent must be numbers"))
            continue
        resources = tuple(b.get("resources") or ("cpu", "gpu", "memory"))
        selected = select_workloads(b, workloads)
        bcosts: dict[str, tuple[object, object]] = {}
        for w in selected:
            res = costs.get(w.key) if set(resources) == {"cpu", "gpu", "memory"} else fetch(
                f"cost {w.key} {resources}", partial(deps.metrics.workload_cost, namespace=w.namespace, name=w.name,
                                                     start=start, end=now, step_s=step, resources=resources))
            if res is not None and res.first is not None:
                bcosts[w.key] = (res.first.timestamps, res.first.values)
        if bcosts:
            evaluated.add(f"budget_breach|{budget_service(b)}")
        f = detect_budget_breach(BudgetInput(name=name, service=budget_service(b), monthly_usd=monthly,
                                             alert_at_percent=alert, action=str(b.get("action", "alert")),
                                             costs=bcosts, resources=resources), now=end_ts, stats=stats)
        if f is not None:
            findings.append(f)

    for key, w in sorted(workloads.items()):
        if w.kind != "MultimodalInferenceService":
            continue
        rai = w.responsible_ai
        drift_cfg = rai.get("driftDetection") or {}
        fair_cfg = rai.get("fairness") or {}
        version = str(w.model.get("version", ""))
        if not version or not (drift_cfg.get("enabled") or fair_cfg.get("enabled")):
            continue
        hstart = now - s.detection.history - timedelta(days=1)
        prev = _previous_model(deps, w)  # one walk of the file's Git history for drift and fairness
        if drift_cfg.get("enabled"):
            pc = fetch(f"predictions {key}", partial(deps.metrics.prediction_counters, namespace=w.namespace,
                                                     service=w.name, start=hstart, end=now, step_s=step))
            if pc is not None and pc.series:
                evaluated.add(f"model_drift|{key}")
                threshold = _cfg_number(drift_cfg, "threshold", "responsibleAI.driftDetection", w.file, errors)
                f = detect_drift(DriftInput(
                    service=key, file=w.file, current_version=version,
                    counters=[CounterSeries(x.labels, x.timestamps, x.values) for x in pc.series],
                    threshold=threshold, metric=drift_cfg.get("metric"),
                    baseline_ref=str(drift_cfg.get("baselineModelRef") or "") or None,
                    previous_version=prev["version"] if prev else None,
                    version_set_at=prev["set_at"] if prev else None,
                    min_samples=s.detection.drift_min_samples), now=end_ts, stats=stats)
                if f is not None:
                    findings.append(f)
        if fair_cfg.get("enabled"):
            oc = fetch(f"outcomes {key}", partial(deps.metrics.outcome_counters, namespace=w.namespace,
                                                  service=w.name, start=hstart, end=now, step_s=step))
            if oc is not None and oc.series:
                evaluated.add(f"fairness_violation|{key}")
                fair_threshold = _cfg_number(fair_cfg, "threshold", "responsibleAI.fairness", w.file, errors)
                f = detect_fairness(FairnessInput(
                    service=key, file=w.file, current_version=version,
                    counters=[CounterSeries(x.labels, x.timestamps, x.values) for x in oc.series],
                    attributes=tuple(str(a) for a in fair_cfg.get("protectedAttributes") or ()),
                    threshold=fair_threshold if fair_threshold is not None else 0.05,
                    min_group=s.detection.fairness_min_group, version_set_at=(prev or {}).get("set_at")),
                    now=end_ts, stats=stats)
                if f is not None:
                    findings.append(f)

    events = [AuditEvent(**{**e, "at": datetime.fromisoformat(e["at"]), "groups": tuple(e["groups"]),
                            "source_ips": tuple(e["source_ips"])}) for e in state.get("audit_events", [])]
    findings += detect_oob_writes(events, managed=managed_objects(workloads, _docs(state)),
                                  allowed_actors=guard.allowed_actors)
    for r in stats.rejected:
        errors.append(err("detect", r.split(":", 1)[0], r.split(":", 1)[-1].strip()))
    _audit(deps, state, "detect", "findings", "", count=len(findings),
           findings=[{"kind": f.kind, "service": f.service, "severity": f.severity} for f in findings])
    return {"findings": [f.model_dump(mode="json") for f in findings], "evaluated": sorted(evaluated),
            "errors": errors}


def _cfg_number(cfg: dict[str, Any], key: str, where: str, file: str, errors: list[dict[str, Any]]) -> float | None:
    """A number from a manifest section; a bad one is reported (the default applies), never a crash."""
    raw = cfg.get(key)
    if raw is None:
        return None
    try:
        return float(raw)
    except (TypeError, ValueError):
        errors.append(err("detect", file, f"{where}.{key} must be a number (got {raw!r}); using the default"))
        return None


def _with_anomaly_scores(deps: Deps, series: list[WorkloadSeries], errors: list[dict[str, Any]]) -> list[WorkloadSeries]:
    """Score every $/h and GPU-utilisation series of the cycle as one batch ([series, time]) with the
    torch streaming detector."""
    import numpy as np

    from agents.scoring import score_batch

    grids = {len(np.asarray(w.ts)) for w in series}
    if len(grids) != 1:
        return series
    util_key = "{} gpu_util".format
    n = grids.pop()
    rows = [(w.service, w.cost) for w in series] + [(util_key(w.service), w.gpu_util) for w in series
                                                     if w.gpu_util is not None and np.size(w.gpu_util) == n]
    try:
        ts = np.asarray(series[0].ts, dtype=np.float64)
        values = np.vstack([np.asarray(v, dtype=np.float64) for _, v in rows])
        scored = score_batch(deps.store, [k for k, _ in rows], ts, values)
    except (RuntimeError, ValueError) as e:
        errors.append(err("detect", "anomaly", f"streaming detector skipped: {e}"))
        return series
    return [replace(w, anomaly_scores=scored[w.service]["scores"], anomaly_alarm_ts=scored[w.service]["alarm_ts"],
                    gpu_util_alarm_ts=scored.get(util_key(w.service), {}).get("alarm_ts")) for w in series]


REQUESTS_PATH = ("spec", "resourceRequests")   # a MultimodalInferenceService's per-replica requests
REQUEST_CHANGE_SLACK_S = 3600.0                # a commit up to this long before the rise may explain it


def _request_history(deps: Deps, w: Workload) -> list[tuple[str, datetime, dict[str, Any]]]:
    """``(commit, committed_at, resourceRequests)`` of the workload's manifest, newest first."""
    if w.kind != "MultimodalInferenceService":
        return []
    try:
        hist = deps.repo.field_history(path=w.file, doc_kind=w.kind, doc_name=w.name, field=REQUESTS_PATH)
    except ToolError as e:
        log.warning("git history of %s unavailable: %s", w.file, e)
        return []
    return [(sha, at, v if isinstance(v, dict) else {}) for sha, at, v in hist]


def _request_change(deps: Deps, w: Workload | None, evidence: dict[str, Any]) -> dict[str, Any] | None:
    """The Git commit that raised a resource request of ``w`` shortly before (or during) the cost
    excursion in ``evidence``, with the values before and after; None when there is none."""
    if w is None:
        return None
    try:
        lo = datetime.fromisoformat(str(evidence["window"]["start"])).timestamp() - REQUEST_CHANGE_SLACK_S
        hi = datetime.fromisoformat(str(evidence["window"]["end"])).timestamp()
    except (KeyError, TypeError, ValueError):
        return None
    hist = _request_history(deps, w)
    for (sha, at, new), (_, _, old) in zip(hist, hist[1:], strict=False):
        if new == old:
            continue
        if not lo <= at.timestamp() <= hi:   # the latest change to the requests is not this excursion's
            return None
        raised = {str(k): {"old": old.get(k), "new": v} for k, v in new.items()
                  if (qn := quantity(v)) is not None and (qo := quantity(old.get(k))) is not None and qn > qo}
        if not raised:
            return None
        return {"commit": sha[:12], "at": at.isoformat().replace("+00:00", "Z"), "file": w.file,
                "path": ".".join(REQUESTS_PATH), "raised": raised}
    return None


def _previous_model(deps: Deps, w: Workload) -> dict[str, Any] | None:
    """The model version before the current one in Git history, with its artifact path and the
    time the current version was committed."""
    current = str(w.model.get("version", ""))
    try:
        hist = deps.repo.field_history(path=w.file, doc_kind=w.kind, doc_name=w.name, field=("spec", "modelRef"))
    except ToolError as e:
        log.warning("git history of %s unavailable: %s", w.file, e)
        return None
    set_at = None
    for sha, at, value in hist:
        ref = value if isinstance(value, dict) else {}
        v = str(ref.get("version", "")) if ref else ""
        if v == current:
            set_at = at.timestamp()
            continue
        if v:
            return {"version": v, "path": ref.get("path"), "commit": sha, "set_at": set_at}
    return None


# ----------------------------------------------------------------------------- correlate

def correlate(deps: Deps, state: CycleState) -> CycleState:
    now = _now(state)
    store = deps.store
    touched: list[str] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for fd in state.get("findings", []):
        f = Finding.model_validate(fd)
        fp = f.fingerprint
        seen.add(fp)
        inc = store.find_active_incident(fp)
        if inc is None:
            inc = Incident(kind=f.kind, service=f.service, severity=f.severity, fingerprint=fp, summary=f.summary,
                           evidence=f.evidence, model_version=f.model_version, file=f.file,
                           opened_at=now, updated_at=now, last_seen_at=now)
            store.save_incident(inc)
            _audit(deps, state, "correlate", "incident_opened", inc.id, kind=inc.kind, service=inc.service,
                   fingerprint=fp, severity=inc.severity, summary=inc.summary)
        else:
            inc = inc.model_copy(update={"severity": f.severity, "summary": f.summary, "evidence": f.evidence,
                                         "last_seen_at": now, "updated_at": now})
            store.save_incident(inc)
            _audit(deps, state, "correlate", "incident_seen_again", inc.id, fingerprint=fp, severity=inc.severity)
        touched.append(inc.id)

    # incidents no longer seen: resolved once quiet for long enough (and their open PR closed)
    min_quiet = deps.settings.detection.min_duration
    g = _guardrails(deps, state)
    evaluated = set(state.get("evaluated", []))
    for inc in store.list_incidents(statuses=ACTIVE_STATUSES):
        if inc.fingerprint in seen:
            continue
        if inc.kind != "gitops_drift" and f"{inc.kind}|{inc.service}" not in evaluated:
            continue  # no data this cycle (query failed, workload gone): absence of a finding proves nothing
        if inc.status == "approved" and any(
                inc.id in p.incident_ids and now - p.updated_at < deps.settings.verify.grace
                for p in store.list_prs(statuses=["merged"])):
            continue  # merged moments ago: verification judges it once Argo CD / Flux had time to apply it
        quiet = timedelta(seconds=g.limits.cooldown_s) if inc.kind == "gitops_drift" else min_quiet
        if now - inc.last_seen_at < quiet:
            continue
        for pr in store.list_prs(statuses=["open"]):
            others = [store.get_incident(i) for i in pr.incident_ids if i != inc.id]
            if any(o is not None and o.active and o.fingerprint in seen for o in others):
                continue  # the PR still answers another live incident
            if inc.id in pr.incident_ids and not deps.dry_run:
                try:
                    closed = deps.prs.close(pr=pr, comment=f"{inc.kind} on {inc.service} resolved before merge; closing.")
                    closed = closed.model_copy(update={"updated_at": now})
                    store.save_pr(closed)
                    slack_outcome(deps, closed, f"Closed by remediator: {inc.kind} on {inc.service} resolved "
                                                f"before merge ({now:%Y-%m-%d %H:%M}Z). Nothing to approve.")
                    _audit(deps, state, "correlate", "pr_closed", closed.id, branch=closed.branch,
                           reason=f"{inc.id} resolved before merge")
                except ToolError as e:
                    errors.append(err("correlate", pr.branch, f"cannot close PR of resolved incident: {e}"))
        store.save_incident(inc.model_copy(update={"status": "resolved", "resolved_at": now, "updated_at": now}))
        _audit(deps, state, "correlate", "incident_resolved", inc.id, reason=f"not seen since {inc.last_seen_at.isoformat()}")
        touched.append(inc.id)
    return {"touched": touched, "errors": errors}


# ----------------------------------------------------------------------------- verify

def verify(deps: Deps, state: CycleState) -> CycleState:
    """Approved + merged remediations: did the signal come back in bounds? If not, propose the revert."""
    now = _now(state)
    v = deps.settings.verify
    seen = {Finding.model_validate(f).fingerprint for f in state.get("findings", [])}
    errors: list[dict[str, Any]] = []
    pr_ids: list[str] = []
    for inc in deps.store.list_incidents(statuses=["approved"]):
        merged = [p for p in deps.store.list_prs(statuses=["merged"]) if inc.id in p.incident_ids]
        if not merged:
            continue
        pr = merged[0]
        verdict, detail = verify_check(deps.store, inc, pr, now=now, grace=v.grace, still_firing=inc.fingerprint in seen,
                                       failed_checks=v.failed_checks, worse_factor=v.worse_factor)
        if verdict in ("waiting", "done"):
            continue
        _audit(deps, state, "verify", verdict, inc.id, pr=pr.branch, **detail)
        if verdict != "revert" or deps.dry_run:
            continue
        plan = deps.store.latest_plan(inc.id)
        edits = inverse_edits(plan.edits) if plan is not None else []
        if not edits:
            errors.append(err("verify", inc.id, "remediation did not work but there is nothing to revert"))
            continue
        branch = "remediator/revert/" + pr.branch.split("/", 2)[-1].replace("/", "-")
        edits, _, problem = _relocate(deps, state, edits)
        if problem:
            errors.append(err("verify", inc.id, f"cannot place the revert: {problem}"))
            continue
        try:
            files = {f: apply_kustomize_edits(deps.repo.read_file(path=f) or "", [e for e in edits if e.file == f])
                     for f in sorted({e.file for e in edits})}
            title = f"remediator: revert {pr.title.removeprefix('remediator: ')}"[:200]
            body = (f"## Revert of {pr.url or pr.branch}\n\nThe remediation merged in `{pr.branch}` did not bring "
                    f"{inc.kind} on `{inc.service}` back in bounds: {detail.get('reason')}.\n\n"
                    + "\n".join(f"- `{e.file}` `{'.'.join(map(str, e.path))}`: `{e.old}` -> `{e.new}`" for e in edits)
                    + f"\n\nIncident {inc.id}; original PR {pr.id}.")
            res = retrying(deps, f"publish {branch}", partial(
                deps.prs.publish, branch=branch, title=title, body=body, files=files,
                message=f"{title}\n\nReverts {pr.branch} for incident {inc.id}: {detail.get('reason')}",
                incident_ids=[inc.id], labels=("remediator", "revert"), existing=deps.store.get_pr_by_branch(branch)))
        except ToolError as e:
            errors.append(err("verify", branch, f"cannot open the revert PR: {e}"))
            continue
        deps.store.save_pr(res.pr.model_copy(update={"updated_at": now}))
        deps.store.set_kv(REVERT_KEY.format(inc.id), res.pr.id)
        deps.store.save_incident(inc.model_copy(update={"updated_at": now}))  # stays approved: no re-planning
        _audit(deps, state, "verify", "revert_proposed", inc.id, branch=branch, original_pr=pr.id, revert_pr=res.pr.id)
        pr_ids.append(res.pr.id)
    return {"pr_ids": pr_ids, "errors": errors}


# ----------------------------------------------------------------------------- plan + guard

def plan(deps: Deps, state: CycleState) -> CycleState:
    workloads = _workloads(state)
    ctx = PlanContext(workloads=workloads, guardrails=_guardrails(deps, state), budgets=state["snapshot"]["budgets"],
                      playbooks=deps.playbooks, previous_model=lambda w: _previous_model(deps, w))
    plans = []
    errors: list[dict[str, Any]] = []
    now = _now(state)
    for iid in state.get("touched", []):
        inc = deps.store.get_incident(iid)
        if inc is None or inc.status not in ("open", "proposed"):
            continue
        prev = deps.store.latest_plan(iid)
        pr = _open_pr_of(deps, inc)
        reuse_llm = prev is not None and prev.planner == "llm" and now - prev.created_at < timedelta(hours=1) \
            and prev.guard_verdict != "deferred"
        if prev is not None and ((prev.guard_verdict == "accepted" and pr is not None) or reuse_llm):
            p = prev  # keep the open PR stable while its incident lasts; do not pay tokens twice an hour
        else:
            if deps.planner is not None:
                from agents.planners.llm import PlannerTools

                tools = PlannerTools.from_context(ctx, query_signal=partial(_query_signal, deps, now),
                                                  similar_incidents=partial(_similar_incidents, deps))
                p = deps.planner.plan(inc, ctx, tools)
            else:
                p = deterministic_plan(inc, ctx)
            if p.planner_reason.startswith("llm fallback"):
                errors.append(err("plan", inc.id, p.planner_reason))
            deps.store.save_plan(p)
            _audit(deps, state, "plan", "planned", inc.id, plan_id=p.id, playbook=p.playbook, planner=p.planner,
                   planner_reason=p.planner_reason, params=p.params, rationale=p.rationale)
        plans.append(p.model_dump(mode="json"))
    return {"plans": plans, "errors": errors}


def _query_signal(deps: Deps, now: datetime, *, service: str, signal: str, window_minutes: int) -> SignalResult | None:
    """Read-only tool for the LLM planner: one signal of one workload over a window ending now."""
    ns, _, name = service.partition("/")
    step = int(max(60, deps.settings.prometheus.scrape_interval.total_seconds()))
    start = now - timedelta(minutes=max(step // 60, min(int(window_minutes), 7 * 24 * 60)))
    fn = {"cost": deps.metrics.workload_cost, "replicas": deps.metrics.workload_replicas}.get(signal)
    try:
        if fn is not None:
            return fn(namespace=ns, name=name, start=start, end=now, step_s=step)
        if signal == "requests":
            return deps.metrics.request_rate(namespace=ns, service=name, start=start, end=now, step_s=step)
        if signal == "gpu_util":
            return deps.metrics.gpu_utilisation(namespace=ns, name=name, start=start, end=now, step_s=step)
    except ToolError:
        return None
    return None


def _similar_incidents(deps: Deps, *, kind: str, service: str, limit: int = 5) -> list[dict[str, Any]]:
    """Read-only tool for the LLM planner: past incidents of this kind/service and how they ended."""
    out = []
    for i in deps.store.list_incidents():
        if i.kind != kind or (service and i.service != service):
            continue
        plan = deps.store.latest_plan(i.id)
        d = deps.store.list_decisions(incident_id=i.id)
        out.append({"id": i.id, "kind": i.kind, "service": i.service, "opened_at": i.opened_at.isoformat(),
                    "playbook": plan.playbook if plan else None, "verdict": d[0].verdict if d else None,
                    "outcome": i.status, "summary": i.summary[:200]})
        if len(out) >= limit:
            break
    return out


def guard(deps: Deps, state: CycleState) -> CycleState:
    g = _guardrails(deps, state)
    workloads = _workloads(state)
    now = _now(state)
    out = []
    open_prs = deps.store.list_prs(statuses=["open"])
    recent = len([x for x in deps.store.list_prs() if now - x.created_at < timedelta(hours=1)])
    new_files: list[set[str]] = []  # PRs this cycle will open (plans accepted so far without a PR)
    plan_ctx = PlanContext(workloads=workloads, guardrails=g, budgets=state["snapshot"]["budgets"],
                           playbooks=deps.playbooks, previous_model=lambda w: _previous_model(deps, w))
    for pd in state.get("plans", []):
        p = RemediationPlan.model_validate(pd)
        inc = deps.store.get_incident(p.incident_id)
        if inc is None:
            continue
        existing = _open_pr_of(deps, inc) or next((x for x in open_prs if set(x.files) & set(p.files)), None)
        joins_new = any(f & set(p.files) for f in new_files)
        rejected = any(d.verdict == "reject" and now - d.at < timedelta(seconds=g.limits.cooldown_s)
                       for i in _same_fingerprint(deps, inc) for d in deps.store.list_decisions(incident_id=i.id))
        ctx = GuardContext(guardrails=g, playbooks=deps.playbooks, workloads=workloads,
                           open_prs_other=len(open_prs) + len(new_files) - (1 if existing is not None else 0),
                           prs_last_hour=recent + len(new_files),
                           has_open_pr=existing is not None or joins_new, rejected_within_cooldown=rejected,
                           scope=_scope(inc, state, workloads),
                           rollback_versions=_rollback_versions(deps, inc, workloads),
                           request_values=_request_values(deps, inc, p, workloads))
        checked = guard_or_fallback(p, inc, check=partial(guard_check, incident=inc, ctx=ctx),
                                    fallback=partial(deterministic_plan, inc, plan_ctx))
        if checked.id != p.id:
            deps.store.save_plan(checked)
        if checked.guard_verdict == "accepted" and existing is None and not joins_new:
            new_files.append(set(p.files))
        if (checked.guard_verdict, checked.guard_reasons) != (p.guard_verdict, p.guard_reasons):
            deps.store.save_plan(checked)
            _audit(deps, state, "guard", checked.guard_verdict, inc.id, plan_id=p.id, reasons=list(checked.guard_reasons))
        out.append(checked.model_dump(mode="json"))
    return {"plans": out}


def _scope(inc: Incident, state: CycleState, workloads: dict[str, Workload]) -> set[str]:
    if inc.kind == "budget_breach":
        budget = next((b for b in state["snapshot"]["budgets"] if b.get("name") == inc.evidence.get("budget")), None)
        return {w.key for w in select_workloads(budget, workloads)} if budget else set()
    return {inc.service}


def _rollback_versions(deps: Deps, inc: Incident, workloads: dict[str, Workload]) -> set[str] | None:
    w = workloads.get(inc.service)
    if inc.kind not in ("model_drift", "fairness_violation") or w is None:
        return None
    prev = _previous_model(deps, w)
    base = ((w.responsible_ai.get("driftDetection") or {}).get("baselineModelRef"))
    return {str(v) for v in ((prev or {}).get("version"), base) if v}


def _request_values(deps: Deps, inc: Incident, plan: RemediationPlan,
                    workloads: dict[str, Workload]) -> dict[str, set[str]] | None:
    """Where a rightsize may be checked (the plan is one, or the incident's deterministic fallback
    would be: a raised request in the evidence): the values each resource request of the workload
    had in Git history, the only values a rightsize may go back to. None otherwise (no Git walk)."""
    w = workloads.get(inc.service)
    if inc.kind != "cost_anomaly" or w is None or (
            plan.playbook != "rightsize_requests" and not inc.evidence.get("request_change")):
        return None
    out: dict[str, set[str]] = {}
    for _, _, requests in _request_history(deps, w):
        for k, v in requests.items():
            out.setdefault(str(k), set()).add(str(v))
    return out


def _same_fingerprint(deps: Deps, inc: Incident) -> list[Incident]:
    return [i for i in deps.store.list_incidents() if i.fingerprint == inc.fingerprint]


# ----------------------------------------------------------------------------- propose

def _open_pr_of(deps: Deps, inc: Incident) -> PullRequest | None:
    """The open PR that carries this incident (its own branch, or one it joined)."""
    own = branch_name(inc.kind, inc.service, inc.fingerprint)
    open_prs = deps.store.list_prs(statuses=["open"])
    return next((p for p in open_prs if inc.id in p.incident_ids), None) or \
        next((p for p in open_prs if p.branch == own), None)


def _edit_key(e: FieldEdit) -> tuple[str, str, str, tuple[str | int, ...]]:
    return (e.file, e.doc_kind, e.doc_name, tuple(e.path))


def propose(deps: Deps, state: CycleState) -> CycleState:
    """Publish accepted plans. At most one open PR per workload file: an incident whose files are
    in another incident's open PR joins it, and a PR's content is always the union of the
    accepted plans of all its incidents (oldest incident first), so re-running on unchanged
    inputs rebuilds exactly the same commit and pushes nothing."""
    now = _now(state)
    errors: list[dict[str, Any]] = []
    pr_ids: list[str] = []
    for pd in state.get("plans", []):
        p = RemediationPlan.model_validate(pd)
        if p.guard_verdict == "deferred":
            errors.append(err("guard", p.incident_id, "; ".join(p.guard_reasons)))
            continue
        if p.guard_verdict != "accepted":
            continue
        inc = deps.store.get_incident(p.incident_id)
        if inc is None:
            continue
        target = _open_pr_of(deps, inc) or next(
            (o for o in deps.store.list_prs(statuses=["open"]) if set(o.files) & set(p.files)), None)
        branch = target.branch if target is not None else branch_name(inc.kind, inc.service, inc.fingerprint)
        members = {inc.id: inc}
        for iid in (target.incident_ids if target is not None else ()):
            other = deps.store.get_incident(iid)
            if other is not None and other.active:
                members[other.id] = other
        incidents = sorted(members.values(), key=lambda i: (i.opened_at, i.id))
        plans = [x for x in (p if i.id == inc.id else deps.store.latest_plan(i.id) for i in incidents)
                 if x is not None and x.guard_verdict == "accepted"]
        edits: dict[tuple[str, str, str, tuple[str | int, ...]], FieldEdit] = {}
        for x in plans:
            for e in x.edits:
                edits.setdefault(_edit_key(e), e)
        lead = plans[0] if plans else p
        moved, notes, problem = _relocate(deps, state, list(edits.values()))
        if problem:
            errors.append(err("propose", inc.service, f"not edited (notify only): {problem}"))
            continue
        files: dict[str, str] = {}
        try:
            for fname in sorted({e.file for e in moved}):
                text = deps.repo.read_file(path=fname)
                if text is None:
                    raise PermanentError(f"{fname} is not in the base branch any more")
                files[fname] = apply_kustomize_edits(text, [e for e in moved if e.file == fname])
        except ToolError as e:
            errors.append(err("propose", inc.service, f"cannot edit: {e}"))
            continue
        combined = lead.model_copy(update={"edits": tuple(moved), "rationale": lead.rationale + "".join(
            f" {n}." for n in notes)})
        # the body describes the change: while the change and its incidents stay the same, keep the
        # PR's title and body as they were (no edit in the Git host every cycle for moving numbers)
        change_key = hashlib.sha256(json.dumps(
            [sorted(files.items()), [i.id for i in incidents]], default=str).encode()).hexdigest()
        if target is not None and deps.store.get_kv(f"pr.change:{target.id}") == change_key:
            title, body = target.title, target.body
        else:
            opened = _first_audit_seq(deps, [i.id for i in incidents])
            title = pr_title(combined, incidents)
            body = pr_body(combined, incidents, deps.playbooks.get(lead.playbook), plans, audit_seqs=opened)
        if deps.dry_run:
            deps.on_progress(f"dry-run: would publish {branch} ({', '.join(sorted(files))})")
            _dry_run_show(deps, branch, files, title, body)
            continue
        try:
            res = retrying(deps, f"publish {branch}", partial(
                deps.prs.publish, branch=branch, title=title, body=body, files=files,
                message=f"{title}\n\n" + "\n".join(f"Incident {i.id} ({i.kind}, fingerprint {i.fingerprint})" for i in incidents)
                + f"\nPlan {lead.id}: {lead.rationale}",
                incident_ids=[i.id for i in incidents], labels=("remediator", *sorted({i.kind for i in incidents})),
                existing=target))
        except ToolError as e:
            errors.append(err("propose", branch, str(e)))
            continue
        pr = res.pr.model_copy(update={"title": title, "body": body, "files": tuple(sorted(files)),
                                       "incident_ids": tuple(i.id for i in incidents)})
        deps.store.set_kv(f"pr.change:{pr.id}", change_key)
        if res.pushed:
            pr = pr.model_copy(update={"updated_at": now})
        if target is None or pr != target:
            deps.store.save_pr(pr)
        if res.note:
            errors.append(err("propose", branch, res.note))
        if res.pushed:
            _audit(deps, state, "propose", "pr_opened" if target is None else "pr_updated", pr.id, branch=branch,
                   head=pr.head_sha, incident_ids=list(pr.incident_ids), files=sorted(files))
        if deps.notifier is not None and deps.settings.slack.enabled and not deps.store.get_kv(f"slack.pr_msg:{pr.id}"):
            from tools.slack import pr_message_blocks, pr_message_text

            try:
                text = pr_message_text(pr=pr, incidents=incidents)
                blocks = pr_message_blocks(pr=pr, incidents=incidents, plan=lead)
                post = getattr(deps.notifier, "post_message", None)
                if post is not None:  # keep channel id + ts so the message can show later outcomes
                    m = post(channel=deps.settings.slack.channel, text=text, blocks=blocks)
                    ref = json.dumps({"channel": m.channel, "ts": m.ts})
                else:
                    ref = deps.notifier.notify(channel=deps.settings.slack.channel, text=text, blocks=blocks) or "posted"
                deps.store.set_kv(f"slack.pr_msg:{pr.id}", ref)
            except ToolError as e:
                errors.append(err("notify", deps.settings.slack.channel, f"cannot post the approval message: {e}"))
        if deps.checkpointer is not None:
            from agents.approvals import await_approval

            for i in incidents:
                await_approval(deps, deps.checkpointer, i.id)  # pauses at interrupt() until a decision
        for i in incidents:
            if i.status == "open":
                deps.store.save_incident(i.model_copy(update={"status": "proposed", "updated_at": now}))
        pr_ids.append(pr.id)
    return {"pr_ids": sorted(set(pr_ids) | set(state.get("pr_ids", []))), "errors": errors}


def _first_audit_seq(deps: Deps, incident_ids: list[str]) -> list[int]:
    """The audit entries that opened these incidents (stable references for the PR body)."""
    key = "audit.opened:" + ",".join(incident_ids)
    cached = deps.store.get_kv(key)
    if cached:
        return [int(x) for x in cached.split(",") if x]
    seqs = [e.seq for e in deps.store.audit.entries() if e.action == "incident_opened" and e.subject in incident_ids]
    deps.store.set_kv(key, ",".join(map(str, seqs)))
    return seqs


def _relocate(deps: Deps, state: CycleState, edits: list[FieldEdit]) -> tuple[list[FieldEdit], list[str], str]:
    """Move each edit to where its value is really set (a kustomize overlay patch) when the repo
    has overlays; an ambiguous location is a problem (the caller notifies instead of editing)."""
    if not state["snapshot"].get("effective") or getattr(deps.repo, "read_tree", None) is None:
        return edits, [], ""
    from tools import kustomize

    rel = kustomize.relocate(deps.repo.read_tree(), edits)  # type: ignore[attr-defined]
    if not rel.ok:
        return edits, [], "; ".join(rel.problems)
    return list(rel.edits), list(rel.notes), ""


def _dry_run_show(deps: Deps, branch: str, files: dict[str, str], title: str, body: str) -> None:
    import difflib

    for fname, new in files.items():
        old = deps.repo.read_file(path=fname) or ""
        diff = "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"a/{fname}", f"b/{fname}"))
        deps.on_progress(f"--- {branch}: {title}\n{diff}\n{body}")


# ----------------------------------------------------------------------------- notify + record

def notify(deps: Deps, state: CycleState) -> CycleState:
    s = deps.settings
    channel = s.slack.channel if s.slack.enabled else "log"
    notes = []
    errors: list[dict[str, Any]] = []
    for pd in state.get("plans", []):
        p = RemediationPlan.model_validate(pd)
        if p.guard_verdict not in ("notify_only", "rejected"):
            continue
        inc = deps.store.get_incident(p.incident_id)
        if inc is None:
            continue
        key = f"notified:{inc.id}:{inc.severity}:{p.playbook}"
        if deps.store.get_kv(key):
            continue
        why = "" if p.guard_verdict == "notify_only" and p.guard_reasons == ("notify playbook",) else \
            f" Guard: {'; '.join(p.guard_reasons)}."
        summary = f"[{inc.severity}] {inc.summary}. {p.rationale}{why}"
        if deps.notifier is not None and not deps.dry_run:
            try:
                deps.notifier.notify(channel=channel, text=summary)
            except ToolError as e:
                errors.append(err("notify", channel, str(e)))
                continue
        else:
            log.info("notify %s: %s", channel, summary)
        if not deps.dry_run:
            deps.store.set_kv(key, state["cycle_id"])
        _audit(deps, state, "notify", "notified", inc.id, channel=channel, playbook=p.playbook,
               guard=p.guard_verdict, reasons=list(p.guard_reasons))
        notes.append({"incident_id": inc.id, "channel": channel, "summary": summary})
    return {"notifications": notes, "errors": errors}


def record(deps: Deps, state: CycleState) -> CycleState:
    if not deps.dry_run and state.get("audit_cursor") is not None:
        deps.store.set_kv(CURSOR_KEY, str(state["audit_cursor"]))
    report = build_report(deps, state)
    if not deps.dry_run:
        deps.store.save_cycle(cycle_id=state["cycle_id"], started_at=_now(state), finished_at=datetime.now(UTC),
                              report=report)
    _audit(deps, state, "record", "cycle_finished", state["cycle_id"], findings=len(report["findings"]),
           incidents=len(report["incidents"]), pull_requests=len(report["pull_requests"]),
           notifications=len(report["notifications"]), errors=len(report["errors"]))
    return {}


def build_report(deps: Deps, state: CycleState) -> dict[str, Any]:
    store = deps.store
    touched = set(state.get("touched", []))
    incidents = {i.id: i for i in store.list_incidents(statuses=ACTIVE_STATUSES)}
    for iid in touched:
        i = store.get_incident(iid)
        if i is not None:
            incidents[i.id] = i
    prs = {p.id: p for p in store.list_prs(statuses=["open"])}
    for pid in state.get("pr_ids", []):
        p = store.get_pr(pid)
        if p is not None:
            prs[p.id] = p
    started = _now(state)
    for p in store.list_prs():
        if p.updated_at >= started:
            prs[p.id] = p
    return {
        "cycle_id": state["cycle_id"],
        "started_at": state["started_at"],
        "findings": [Finding.model_validate(f).report() for f in state.get("findings", [])],
        "incidents": [i.report() for i in sorted(incidents.values(), key=lambda i: (i.opened_at, i.id))],
        "pull_requests": [p.report() for p in sorted(prs.values(), key=lambda p: (p.created_at, p.id))],
        "notifications": state.get("notifications", []),
        "errors": state.get("errors", []),
    }


def new_cycle_state(started_at: datetime | None = None) -> CycleState:
    started = (started_at or datetime.now(UTC)).astimezone(UTC)
    return {"cycle_id": new_id("cyc"), "started_at": started.isoformat(), "errors": []}


STAGES: list[tuple[str, Callable[[Deps, CycleState], CycleState]]] = [
    ("observe", observe), ("detect", detect), ("correlate", correlate), ("verify", verify), ("plan", plan),
    ("guard", guard), ("propose", propose), ("notify", notify), ("record", record),
]

__all__ = ["STAGES", "CycleAborted", "CycleState", "Deps", "build_report", "new_cycle_state", "dig"]
