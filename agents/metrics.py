"""Prometheus metrics of remediator itself (prometheus_client).

``StoreCollector``: what the store knows, read at scrape time (decisions, incidents and PRs by
state, the LLM ledger), served by both ``serve`` and ``daemon``. ``CycleMetrics``: what only the
process running the cycles knows (cycles by outcome, their duration, findings, errors by stage,
the last successful cycle), served by the daemon.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, get_args

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from agents.planners.ledger import KVUsageLedger, llm_metric_families
from memory.records import ACTIVE_STATUSES, IncidentKind, IncidentStatus, PRStatus
from memory.store import Store

KINDS: tuple[str, ...] = get_args(IncidentKind)
STATUSES: tuple[str, ...] = get_args(IncidentStatus)
PR_STATUSES: tuple[str, ...] = get_args(PRStatus)
CYCLE_OUTCOMES = ("ok", "failed", "aborted", "busy")
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600)


class StoreCollector:
    """Families computed from the store at each scrape. ``outcomes`` are the Slack interactions
    this process handled (``serve`` only)."""

    def __init__(self, store: Callable[[], Store], *, outcomes: Callable[[], Mapping[str, int]] | None = None,
                 monthly_budget_usd: float | None = None) -> None:
        self.store = store
        self.outcomes = outcomes
        self.monthly_budget_usd = monthly_budget_usd

    def collect(self) -> Iterator[Any]:
        store = self.store()
        dec = CounterMetricFamily("remediator_decisions", "Decisions recorded, by verdict and source",
                                  labels=["verdict", "source"])
        for (verdict, source), n in sorted(Counter((d.verdict, d.source) for d in store.list_decisions()).items()):
            dec.add_metric([verdict, source], n)
        yield dec
        incidents = store.list_incidents()
        active = Counter(str(i.kind) for i in incidents if i.status in ACTIVE_STATUSES)
        inc = GaugeMetricFamily("remediator_open_incidents", "Incidents open, proposed or approved, by kind",
                                labels=["kind"])
        for kind in KINDS:
            inc.add_metric([kind], active.get(kind, 0))
        yield inc
        by_state = Counter((str(i.kind), str(i.status)) for i in incidents)
        st = GaugeMetricFamily("remediator_incidents", "Incidents in the store, by kind and status",
                               labels=["kind", "status"])
        for kind in KINDS:
            for status in STATUSES:
                st.add_metric([kind, status], by_state.get((kind, status), 0))
        yield st
        prs = Counter(str(p.status) for p in store.list_prs())
        yield GaugeMetricFamily("remediator_open_pull_requests", "Pull requests open", value=prs.get("open", 0))
        pr = GaugeMetricFamily("remediator_pull_requests", "Pull requests in the store, by status",
                               labels=["status"])
        for status in PR_STATUSES:
            pr.add_metric([status], prs.get(status, 0))
        yield pr
        if self.outcomes is not None:
            sl = CounterMetricFamily("remediator_slack_interactions", "Slack interactions handled by this process",
                                     labels=["outcome"])
            for outcome, n in sorted(self.outcomes().items()):
                sl.add_metric([outcome], n)
            yield sl
        # the agent's own FinOps: LLM tokens, cost, budget, fallbacks this month
        month = datetime.now(UTC).strftime("%Y-%m")
        yield from llm_metric_families(KVUsageLedger(store.get_kv, store.set_kv), month=month,
                                       monthly_budget_usd=self.monthly_budget_usd)


class CycleMetrics:
    """The daemon's cycles, counted as they end."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.cycles = PromCounter("remediator_cycles", "Cycles by outcome (ok, failed: a stage raised, "
                                  "aborted: an outside system unreachable, busy: another process held the store)",
                                  ["outcome"], registry=registry)
        for outcome in CYCLE_OUTCOMES:
            self.cycles.labels(outcome)
        self.duration = Histogram("remediator_cycle_duration_seconds", "Wall time of cycles that ran (ok or failed)",
                                  buckets=DURATION_BUCKETS, registry=registry)
        self.findings = PromCounter("remediator_findings", "Findings reported by cycles, by kind", ["kind"],
                                    registry=registry)
        for kind in KINDS:
            self.findings.labels(kind)
        self.errors = PromCounter("remediator_errors", "Errors reported by cycles (per-item errors entries and "
                                  "failed stages), by stage", ["stage"], registry=registry)
        self.last_success = Gauge("remediator_last_successful_cycle_timestamp_seconds",
                                  "Unix time the last successful cycle ended (0: none yet)", registry=registry)
        self.last_end = Gauge("remediator_last_cycle_timestamp_seconds",
                              "Unix time the last cycle attempt ended, whatever its outcome (0: none yet)",
                              registry=registry)
        self.started = time.time()
        self.last_end_at: float | None = None

    def record(self, outcome: str, *, duration_s: float | None = None, report: Mapping[str, Any] | None = None,
               failed_stage: str | None = None, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self.cycles.labels(outcome).inc()
        if duration_s is not None:
            self.duration.observe(duration_s)
        if report is not None:
            for kind, n in Counter(str(f.get("kind")) for f in report.get("findings", [])).items():
                self.findings.labels(kind).inc(n)
            for stage, n in Counter(str(e.get("stage")) for e in report.get("errors", [])).items():
                self.errors.labels(stage).inc(n)
        if failed_stage is not None:
            self.errors.labels(failed_stage).inc()
        if outcome == "ok":
            self.last_success.set(now)
        self.last_end.set(now)
        self.last_end_at = now


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    return generate_latest(registry), CONTENT_TYPE_LATEST


def store_registry(store: Callable[[], Store], **kw: Any) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, **kw))
    return registry


__all__ = ["CycleMetrics", "StoreCollector", "render", "store_registry"]
