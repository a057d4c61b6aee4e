"""detect: query the signals of every workload and budget, run the pure detectors
(tools/detectors) and return the findings. A failed query is an error of the report, never a
finding; which kind|service had data is kept (only those may resolve in correlate)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import numpy as np
from langgraph.runtime import Runtime

from agents.compliance import acting_keys, findings_of, objects_of, posture
from agents.deps import Deps, audit, now_of, retrying
from agents.history import REQUESTS_PATH, history_place, previous_model, request_history
from agents.scoring import score_batch
from agents.state import CycleState, Views, err, event_from_dict
from agents.workloads import Workload, managed_objects, select_workloads
from memory.records import Finding
from tools.detectors.budget import BudgetInput, detect_budget_breach
from tools.detectors.common import InputStats
from tools.detectors.compliance import evaluate as evaluate_policies
from tools.detectors.cost import CostSettings, WorkloadSeries, detect_cost_anomalies, streaming_alarms
from tools.detectors.drift import CounterSeries, DriftInput, detect_drift
from tools.detectors.embedding_drift import DriftTest, EmbeddingDrift, drift_tests, run_many, sample_problem
from tools.detectors.explainability import CoverageInput, detect_coverage
from tools.detectors.fairness import FairnessInput, detect_fairness
from tools.detectors.oob import detect_oob_writes
from tools.errors import PermanentError, ToolError
from tools.kube import quantity
from tools.results import SignalResult

REQUEST_CHANGE_SLACK_S = 3600.0                # a commit up to this long before the rise may explain it
ALL_RESOURCES = ("cpu", "gpu", "memory")


class _Fetch:
    """One cycle's queries: a failed one is recorded under ``errors`` and answers None."""

    def __init__(self, deps: Deps, errors: list[dict[str, Any]]) -> None:
        self.deps, self.errors = deps, errors

    def __call__(self, label: str, fn: Callable[[], SignalResult]) -> SignalResult | None:
        try:
            res = retrying(self.deps, label, fn, retries=0)  # the adapter retries itself
        except ToolError as e:
            self.errors.append(err("detect", label, str(e)))
            return None
        if res.status == "error":
            self.errors.append(err("detect", label, res.error or "query failed"))
            return None
        return res


def detect(state: CycleState, runtime: Runtime[Deps]) -> CycleState:
    deps = runtime.context
    s = deps.settings
    now = now_of(state)
    errors: list[dict[str, Any]] = []
    stats = InputStats()
    views = deps.views.get(state, s.gitops.policies_dir)
    workloads = views.workloads
    fetch = _Fetch(deps, errors)
    step = int(max(60, s.prometheus.scrape_interval.total_seconds()))
    start = now - s.detection.history
    findings: list[Finding] = []
    costs: dict[str, SignalResult] = {}
    evaluated: set[str] = set()

    deps.on_progress(f"detect: {len(workloads)} workloads, {len(views.budgets)} budgets")
    series: list[WorkloadSeries] = []
    m = deps.metrics
    for key, w in sorted(workloads.items()):
        ns, name = w.namespace, w.name
        c = fetch(f"cost {key}", partial(m.workload_cost, namespace=ns, name=name, start=start, end=now, step_s=step,
                                         kind=w.kind))
        if c is None or c.first is None:
            continue
        costs[key] = c
        evaluated.add(f"cost_anomaly|{key}")
        r = fetch(f"replicas {key}", partial(m.workload_replicas, namespace=ns, name=name, start=start, end=now,
                                             step_s=step, kind=w.kind))
        rr = None
        if w.kind == "MultimodalInferenceService":
            rr = fetch(f"requests {key}", partial(m.request_rate, namespace=ns, service=name, start=start, end=now,
                                                  step_s=step))
        u = fetch(f"gpu_util {key}", partial(m.gpu_utilisation, namespace=ns, name=name, start=start, end=now,
                                             step_s=step, kind=w.kind))
        series.append(WorkloadSeries(
            service=key, file=w.file, ts=c.first.timestamps, cost=c.first.values,
            replicas=_values(r), request_rate=_values(rr), gpu_util=_values(u)))
    series = _with_anomaly_scores(deps, series, errors)
    cost_settings = CostSettings(min_duration_s=s.detection.min_duration.total_seconds(),
                                 min_ratio=s.detection.cost_min_ratio, z=s.detection.cost_z,
                                 event_end_s=s.detection.quiet_before_resolve.total_seconds())
    for f in detect_cost_anomalies(series, cost_settings, stats):
        change = request_change(deps, workloads.get(f.service), f.evidence)
        findings.append(f.model_copy(update={"evidence": {**f.evidence, "request_change": change}}) if change else f)

    findings += _budgets(deps, views, costs, fetch, evaluated, stats, start=start, now=now, step=step, errors=errors)
    findings += _models(deps, views, fetch, evaluated, stats, now=now, step=step, errors=errors)

    pset = views.policies
    results = evaluate_policies(pset.policies, objects_of(views.docs), pset.models)
    for pr in results:
        if pr.status == "error":
            errors.append(err("detect", pr.policy_file, f"policy {pr.policy} on {pr.object}: {pr.expression}: "
                                                        f"{pr.message}; fix the policy (the others still apply)"))
    findings += findings_of(results, pset.policies)
    findings = _explainability(deps, views, fetch, evaluated, findings, now=now, step=step, errors=errors)
    evaluated |= {f"policy_violation|{k}" for k in acting_keys(results, pset.policies)}

    events = [event_from_dict(e) for e in state.get("audit_events", [])]
    findings += detect_oob_writes(events, managed=managed_objects(workloads, views.docs),
                                  allowed_actors=views.guardrails.allowed_actors)
    for rejected in stats.rejected:
        errors.append(err("detect", rejected.split(":", 1)[0], rejected.split(":", 1)[-1].strip()))
    audit(deps, state, "detect", "findings", "", count=len(findings),
          findings=[{"kind": f.kind, "service": f.service, "severity": f.severity} for f in findings])
    return {"findings": [f.model_dump(mode="json") for f in findings], "evaluated": sorted(evaluated),
            "errors": errors, "compliance": posture(results)}


def _values(res: SignalResult | None) -> Any:
    return res.first.values if res is not None and res.first is not None else None


def _budgets(deps: Deps, views: Views, costs: dict[str, SignalResult], fetch: _Fetch, evaluated: set[str],
             stats: InputStats, *, start: datetime, now: datetime, step: int,
             errors: list[dict[str, Any]]) -> list[Finding]:
    out: list[Finding] = []
    for b in views.budgets:
        bcosts: dict[str, tuple[object, object]] = {}
        for w in select_workloads(b, views.workloads):
            res = costs.get(w.key) if set(b.resources) == set(ALL_RESOURCES) else fetch(
                f"cost {w.key} {b.resources}", partial(deps.metrics.workload_cost, namespace=w.namespace, name=w.name,
                                                       start=start, end=now, step_s=step, resources=b.resources,
                                                       kind=w.kind))
            if res is not None and res.first is not None:
                bcosts[w.key] = (res.first.timestamps, res.first.values)
        if bcosts:
            evaluated.add(f"budget_breach|{b.service}")
        f = detect_budget_breach(BudgetInput(name=b.name, service=b.service, monthly_usd=b.monthly_usd,
                                             alert_at_percent=b.alert_at_percent, action=b.action,
                                             costs=bcosts, resources=b.resources), now=now.timestamp(), stats=stats)
        if f is not None:
            out.append(f)
    return out


def _models(deps: Deps, views: Views, fetch: _Fetch, evaluated: set[str], stats: InputStats, *,
            now: datetime, step: int, errors: list[dict[str, Any]]) -> list[Finding]:
    """Drift and fairness of every MultimodalInferenceService that declares them."""
    s = deps.settings
    out: list[Finding] = []
    embedded: list[tuple[Workload, str, dict[str, Any]]] = []   # tested together after the loop
    for key, w in sorted(views.workloads.items()):
        if w.kind != "MultimodalInferenceService":
            continue
        rai = w.responsible_ai
        drift_cfg = rai.get("driftDetection") or {}
        fair_cfg = rai.get("fairness") or {}
        version = str(w.model.get("version", ""))
        if not version or not (drift_cfg.get("enabled") or fair_cfg.get("enabled")):
            continue
        hstart = now - s.detection.history - timedelta(days=1)
        prev = previous_model(deps, w)  # one walk of the file's Git history for drift and fairness
        if drift_cfg.get("enabled"):
            counters = _counters(fetch, f"predictions {key}", partial(
                deps.metrics.prediction_counters, namespace=w.namespace, service=w.name, start=hstart, end=now,
                step_s=step))
            if counters:
                evaluated.add(f"model_drift|{key}")
                threshold = _cfg_number(drift_cfg, "threshold", "responsibleAI.driftDetection", w.file, errors)
                f = detect_drift(DriftInput(
                    service=key, file=w.file, current_version=version, counters=counters,
                    threshold=threshold, metric=drift_cfg.get("metric"),
                    baseline_ref=str(drift_cfg.get("baselineModelRef") or "") or None,
                    previous_version=prev["version"] if prev else None,
                    version_set_at=prev["set_at"] if prev else None,
                    min_samples=s.detection.drift_min_samples), now=now.timestamp(), stats=stats)
                if f is not None:
                    out.append(f)
        if drift_cfg.get("enabled") and isinstance(drift_cfg.get("embeddings"), dict):
            embedded.append((w, version, drift_cfg["embeddings"]))
        if fair_cfg.get("enabled"):
            counters = _counters(fetch, f"outcomes {key}", partial(
                deps.metrics.outcome_counters, namespace=w.namespace, service=w.name, start=hstart, end=now,
                step_s=step))
            if counters:
                evaluated.add(f"fairness_violation|{key}")
                fair_threshold = _cfg_number(fair_cfg, "threshold", "responsibleAI.fairness", w.file, errors)
                f = detect_fairness(FairnessInput(
                    service=key, file=w.file, current_version=version, counters=counters,
                    attributes=tuple(str(a) for a in fair_cfg.get("protectedAttributes") or ()),
                    threshold=fair_threshold if fair_threshold is not None else 0.05,
                    min_group=s.detection.fairness_min_group, version_set_at=(prev or {}).get("set_at")),
                    now=now.timestamp(), stats=stats)
                if f is not None:
                    out.append(f)
    return _embedding_drift(deps, embedded, out, evaluated, errors)


def _explainability(deps: Deps, views: Views, fetch: _Fetch, evaluated: set[str], found: list[Finding], *,
                    now: datetime, step: int, errors: list[dict[str, Any]]) -> list[Finding]:
    """Explained against served predictions of each inference service that declares explainability
    (``inference_explanations_total`` against ``inference_predictions_total`` over the last hour):
    a shortfall is a ``policy_violation`` (merged into the service's compliance finding)."""
    s = deps.settings
    for key, w in sorted(views.workloads.items()):
        cfg = w.responsible_ai.get("explainability") or {}
        version = str(w.model.get("version", ""))
        if w.kind != "MultimodalInferenceService" or not version or not cfg.get("enabled"):
            continue
        size = _cfg_number(cfg, "samplingSize", "responsibleAI.explainability", w.file, errors)
        if size is None or size < 1:
            continue
        start = now - min(s.detection.history, timedelta(hours=6))
        explained = _counters(fetch, f"explanations {key}", partial(
            deps.metrics.explanation_counters, namespace=w.namespace, service=w.name, start=start, end=now, step_s=step))
        if not explained:
            continue
        served = _counters(fetch, f"predictions {key}", partial(
            deps.metrics.prediction_counters, namespace=w.namespace, service=w.name, start=start, end=now, step_s=step))
        evaluated.add(f"policy_violation|{key}")
        f = detect_coverage(CoverageInput(service=key, file=w.file, version=version, sampling_size=int(size),
                                          predictions=served, explanations=explained), now=now.timestamp())
        if f is None:
            continue
        same = next((x for x in found if x.kind == "policy_violation" and x.service == key), None)
        if same is None:
            found = [*found, f]
        else:
            merged = {**same.evidence, "violations": [*same.evidence.get("violations", []), *f.evidence["violations"]],
                      "explainability": f.evidence["explainability"]}
            found = [x.model_copy(update={"evidence": merged, "summary": x.summary + "; " + f.summary}) if x is same
                     else x for x in found]
    return found


def _embedding_drift(deps: Deps, services: list[tuple[Workload, str, dict[str, Any]]], found: list[Finding],
                     evaluated: set[str], errors: list[dict[str, Any]]) -> list[Finding]:
    """Kernel and classifier two-sample tests of the services' input embeddings (reference against
    current sample, per modality and fused), all of the cycle's tests run as batches: a drifted
    modality is a model_drift finding (or evidence on the class-distribution one). Bad samples are
    an errors entry naming the file; the other services are still tested."""
    src = deps.embeddings
    if src is None or not services:
        return found
    tests: list[DriftTest] = []
    tested: list[tuple[Workload, str, float]] = []
    for w, version, cfg in services:
        uri, modalities = cfg.get("uri"), cfg.get("modalities")
        if not isinstance(uri, str) or not uri or not isinstance(modalities, list) or not modalities:
            errors.append(err("detect", w.file, "responsibleAI.driftDetection.embeddings needs uri (a folder or URL) "
                                                "and modalities (a list); embedding drift is not tested"))
            continue
        alpha = _cfg_number(cfg, "pValue", "responsibleAI.driftDetection.embeddings", w.file, errors) or 0.05
        size = _cfg_number(cfg, "sampleSize", "responsibleAI.driftDetection.embeddings", w.file, errors) or 500
        ref, cur = {}, {}
        try:
            for m in (str(x) for x in modalities):
                ref[m] = src.load(uri=uri, which="reference", modality=m)
                cur[m] = src.load(uri=uri, which="current", modality=m)
                if ref[m].shape[1] != cur[m].shape[1]:
                    raise PermanentError(f"{uri}: {m} reference width {ref[m].shape[1]} and current width "
                                         f"{cur[m].shape[1]} differ")
        except ToolError as e:
            errors.append(err("detect", w.file, f"embedding drift of {w.key}: {e}"))
            continue
        mine = drift_tests(w.key, ref, cur, alpha=alpha, sample_size=int(size))
        bad = next((p for p in map(sample_problem, mine) if p), None)
        if bad:   # a sample too small or malformed: named, the service skipped, the others tested
            errors.append(err("detect", w.file, f"embedding drift of {w.key}: {bad}"))
            continue
        tests += mine
        tested.append((w, version, alpha))
    results = run_many(tests) if tests else []
    by_key: dict[str, list[tuple[str, EmbeddingDrift]]] = {}
    for t, r in zip(tests, results, strict=True):
        by_key.setdefault(t.key, []).append((t.modality, r))
    for w, version, alpha in tested:
        key, rs = w.key, [r for _, r in by_key.get(w.key, [])]
        evaluated.add(f"model_drift|{key}")
        evidence = {"embedding_drift": [{"modality": r.modality, "mmd2": round(r.mmd.statistic, 6),
                                         "mmd_p_value": round(r.mmd.p_value, 4),
                                         "c2st_accuracy": round(r.c2st.statistic, 3) if r.c2st else None,
                                         "c2st_p_value": round(r.c2st.p_value, 4) if r.c2st else None,
                                         "drifted": r.drifted} for r in rs], "p_value_threshold": alpha}
        drifted = [r.modality for r in rs if r.drifted and r.modality != "fused"] or (
            ["fused"] if any(r.drifted for r in rs) else [])
        if not drifted:
            continue
        same = next((f for f in found if f.kind == "model_drift" and f.service == key), None)
        if same is not None:
            found = [f.model_copy(update={"evidence": {**f.evidence, **evidence}}) if f is same else f for f in found]
            continue
        found = [*found, Finding(
            kind="model_drift", service=key, severity="warning", detector="embedding_mmd", model_version=version,
            file=w.file, summary=f"{key} model {version}: input embeddings drifted ({', '.join(drifted)}; MMD p < {alpha})",
            evidence={**evidence, "drifted_modalities": drifted, "version": version})]
    return found


def _counters(fetch: _Fetch, label: str, fn: Callable[[], SignalResult]) -> list[CounterSeries]:
    """The raw counter series of one query (empty when it failed or has no data)."""
    res = fetch(label, fn)
    return [CounterSeries(x.labels, x.timestamps, x.values) for x in res.series] if res is not None else []


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
    if not series:
        return series
    grids = {len(np.asarray(w.ts)) for w in series}
    if len(grids) > 1:
        # series of different lengths (a workload younger than detection.history): one padded batch,
        # scored from cold (the kept state is for one shared grid), so its alarm still decides
        try:
            return streaming_alarms(series)
        except (RuntimeError, ValueError) as e:
            errors.append(err("detect", "anomaly", f"streaming detector skipped: {e}"))
            return series
    util_key = "{} gpu_util".format
    n = grids.pop()
    rows = [(w.service, w.cost) for w in series] + [(util_key(w.service), w.gpu_util) for w in series
                                                     if w.gpu_util is not None and np.size(np.asarray(w.gpu_util)) == n]
    try:
        ts = np.asarray(series[0].ts, dtype=np.float64)
        values = np.vstack([np.asarray(v, dtype=np.float64) for _, v in rows])
        scored = score_batch(deps.store, [k for k, _ in rows], ts, values)
    except (RuntimeError, ValueError) as e:
        errors.append(err("detect", "anomaly", f"streaming detector skipped: {e}"))
        return series
    return [replace(w, anomaly_scores=scored[w.service]["scores"], anomaly_alarm_ts=scored[w.service]["alarm_ts"],
                    gpu_util_alarm_ts=scored.get(util_key(w.service), {}).get("alarm_ts")) for w in series]


def request_change(deps: Deps, w: Workload | None, evidence: dict[str, Any]) -> dict[str, Any] | None:
    """The Git commit that raised a resource request of ``w`` shortly before (or during) the cost
    excursion in ``evidence``, with the values before and after; None when there is none."""
    if w is None:
        return None
    try:
        lo = datetime.fromisoformat(str(evidence["window"]["start"])).timestamp() - REQUEST_CHANGE_SLACK_S
        hi = datetime.fromisoformat(str(evidence["window"]["end"])).timestamp()
    except (KeyError, TypeError, ValueError):
        return None
    hist = request_history(deps, w)
    for (sha, at, new), (_, _, old) in zip(hist, hist[1:], strict=False):
        if new == old:
            continue
        if not lo <= at.timestamp() <= hi:   # the latest change to the requests is not this excursion's
            return None
        raised = {str(k): {"old": old.get(k), "new": v} for k, v in new.items()
                  if (qn := quantity(v)) is not None and (qo := quantity(old.get(k))) is not None and qn > qo}
        if not raised:
            return None
        file, _, _, path = history_place(w, REQUESTS_PATH)
        return {"commit": sha[:12], "at": at.isoformat().replace("+00:00", "Z"), "file": file,
                "path": ".".join(str(p) for p in path), "raised": raised}
    return None
