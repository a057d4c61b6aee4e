"""Budget forecasts: 24 h run-rate x 730 (OpenCost's month) against ``alert_at_percent`` of
``monthly_usd``. Evidence: month-to-date spend where the data covers it, and the top contributors."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from memory.records import Finding, Severity
from tools.detectors.common import InputStats, clean_series

HOURS_PER_MONTH = 730.0


@dataclass(frozen=True)
class BudgetInput:
    name: str
    service: str                  # ns/*, ns/name or the budget's name (label selector)
    monthly_usd: float
    alert_at_percent: float
    action: str
    costs: dict[str, tuple[object, object]]  # workload key -> (ts, $/h)
    resources: tuple[str, ...] = ("cpu", "gpu", "memory")


def budget_service(budget: dict[str, Any]) -> str:
    sel = budget.get("selector") or {}
    if "namespace" in sel:
        return f"{sel['namespace']}/*"
    if "service" in sel:
        return str(sel["service"])
    return str(budget.get("name", "budget"))


def detect_budget_breach(b: BudgetInput, *, now: float, stats: InputStats | None = None) -> Finding | None:
    stats = stats if stats is not None else InputStats()
    if not (b.monthly_usd > 0) or not (0 < b.alert_at_percent <= 1000):
        stats.reject(f"budget {b.name}", "monthly_usd must be > 0 and alert_at_percent in (0, 1000]")
        return None
    per: dict[str, float] = {}
    mtd = 0.0
    mtd_covered = True
    month_start = datetime.fromtimestamp(now, UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()
    for key, (ts_raw, v_raw) in b.costs.items():
        cs = clean_series(ts_raw, v_raw)
        if cs is None:
            stats.reject(f"budget {b.name} / {key}", "cost series unusable")
            continue
        ts, v = cs
        last24 = (ts > now - 86400) & (ts <= now)
        if np.isfinite(v[last24]).any():
            # a missing sample in the last 24 h counts as zero spend (the pod did not exist)
            per[key] = float(np.nan_to_num(v[last24], nan=0.0).mean())
        step = float(np.median(np.diff(ts)))
        if ts[0] > month_start + step:
            mtd_covered = False
        m = (ts > month_start) & (ts <= now)
        mtd += float(np.nansum(v[m]) * step / 3600.0)
    if not per:
        return None
    run_rate = sum(per.values())
    projected = run_rate * HOURS_PER_MONTH
    percent = 100.0 * projected / b.monthly_usd
    if percent < b.alert_at_percent:
        return None
    dt = datetime.fromtimestamp(now, UTC)
    days_in_month = calendar.monthrange(dt.year, dt.month)[1]
    hours_left = (month_start + days_in_month * 86400 - now) / 3600.0
    top = sorted(per.items(), key=lambda kv: -kv[1])[:5]
    evidence: dict[str, Any] = {
        "budget": b.name,
        "monthly_usd": b.monthly_usd,
        "alert_at_percent": b.alert_at_percent,
        "run_rate_usd_per_hour": round(run_rate, 4),
        "projected_monthly_usd": round(projected, 2),
        "projected_percent": round(percent, 1),
        "window": "last 24h",
        "action": b.action,
        "resources": list(b.resources),
        "top_contributors": [{"workload": k, "usd_per_hour": round(x, 4),
                              "share": round(x / run_rate, 3) if run_rate else 0.0} for k, x in top],
    }
    if mtd_covered:
        evidence["month_to_date_usd"] = round(mtd, 2)
        evidence["month_end_forecast_usd"] = round(mtd + run_rate * hours_left, 2)
    severity: Severity = "critical" if percent >= 100 else "warning"
    return Finding(
        kind="budget_breach", service=b.service, severity=severity, detector="budget.run_rate",
        confidence=1.0,
        summary=(f"budget {b.name}: projected ${projected:,.0f}/month is {percent:.0f}% of ${b.monthly_usd:,.0f} "
                 f"(alert at {b.alert_at_percent:.0f}%)"),
        evidence=evidence,
    )
