"""FinOps for the LLM planner: month totals of tokens, cost and fallbacks, and their metrics."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from tools.llm import LLMUsage

log = logging.getLogger("remediator.planner.llm")  # the planner's logger, as before the split


class UsageLedger(Protocol):
    def month(self, month: str) -> dict[str, Any]: ...
    def add(self, month: str, *, usage: LLMUsage, cost_usd: float, fallback: str | None) -> None: ...


class KVUsageLedger:
    """Month totals of LLM use kept in a key-value store (``store.get_kv`` / ``store.set_kv``),
    one JSON value per month under ``llm.usage.<YYYY-MM>``."""

    KEY = "llm.usage.{}"

    def __init__(self, get: Callable[[str], str | None], set: Callable[[str, str], None]) -> None:
        self._get, self._set = get, set

    def month(self, month: str) -> dict[str, Any]:
        raw = self._get(self.KEY.format(month))
        base: dict[str, Any] = {"prompt_tokens": 0, "completion_tokens": 0, "calls": 0, "cost_usd": 0.0,
                                "incidents": 0, "llm_plans": 0, "fallbacks": {}}
        if raw:
            try:
                base.update(json.loads(raw))
            except ValueError:
                log.warning("LLM usage ledger for %s is not JSON; starting it again", month)
        return base

    def add(self, month: str, *, usage: LLMUsage, cost_usd: float, fallback: str | None) -> None:
        m = self.month(month)
        m["prompt_tokens"] += usage.prompt_tokens
        m["completion_tokens"] += usage.completion_tokens
        m["calls"] += usage.calls
        m["cost_usd"] = round(float(m["cost_usd"]) + cost_usd, 6)
        m["incidents"] += 1
        if fallback is None:
            m["llm_plans"] += 1
        else:
            m["fallbacks"][fallback] = int(m["fallbacks"].get(fallback, 0)) + 1
        self._set(self.KEY.format(month), json.dumps(m, sort_keys=True))


class MemoryUsageLedger(KVUsageLedger):
    def __init__(self) -> None:
        self.kv: dict[str, str] = {}
        super().__init__(self.kv.get, self.kv.__setitem__)


def llm_metric_families(ledger: UsageLedger, *, month: str, monthly_budget_usd: float | None) -> Iterable[Any]:
    """Prometheus metric families for the agent's own LLM spend (for a custom collector)."""
    from prometheus_client.core import GaugeMetricFamily

    m = ledger.month(month)
    tok = GaugeMetricFamily("remediator_llm_tokens", "LLM tokens used this month", labels=["month", "type"])
    tok.add_metric([month, "prompt"], m["prompt_tokens"])
    tok.add_metric([month, "completion"], m["completion_tokens"])
    yield tok
    cost = GaugeMetricFamily("remediator_llm_cost_usd", "LLM cost this month (USD)", labels=["month"])
    cost.add_metric([month], m["cost_usd"])
    yield cost
    if monthly_budget_usd is not None:
        yield GaugeMetricFamily("remediator_llm_budget_usd", "Monthly LLM budget (USD)", value=monthly_budget_usd)
    inc = GaugeMetricFamily("remediator_llm_incidents", "Incidents planned this month, by planner",
                            labels=["month", "planner"])
    inc.add_metric([month, "llm"], m["llm_plans"])
    inc.add_metric([month, "deterministic"], m["incidents"] - m["llm_plans"])
    yield inc
    fb = GaugeMetricFamily("remediator_llm_fallbacks", "LLM planner fallbacks this month, by reason",
                           labels=["month", "reason"])
    for reason, n in sorted(m["fallbacks"].items()):
        fb.add_metric([month, reason], n)
    yield fb
