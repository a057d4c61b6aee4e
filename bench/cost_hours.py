"""Is a sustained cost problem found whatever the hour the cycle runs? An hour sweep of the cost
detector on step-wise series (whole replicas at the scenario generator's prices; an HPA following
seasonal traffic with a weekly dip; ``tests/unit/cost_series.py``).

    python bench/cost_hours.py [--times 504]

Each case is evaluated at ``--times`` evaluation times spread evenly over a simulated week (the
cluster clock shifted by 168 h x k / times, a new noise seed each time), with the change at a fixed
age relative to the evaluation. Printed per case: found / times, and for the request raise how
often the window starts within the hour after the change (so the commit that raised the request,
up to 1 h before the window, explains it).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.unit.cost_series import DAY, simulate  # noqa: E402
from tools.detectors.common import InputStats  # noqa: E402
from tools.detectors.cost import (  # noqa: E402
    CostSettings,
    WorkloadSeries,
    detect_cost_anomalies,
    streaming_alarms,
)

NOW = 1_795_775_700.0
CASES = {
    "creep x2.6 over 1 day, started 2 days ago (E02's size)": {"creep": (NOW - 2 * DAY, NOW - DAY, 2.6)},
    "creep x2 over 4 days, still rising": {"creep": (NOW - 4 * DAY, NOW, 2.0)},
    "request raise: price x2 6 h ago, replicas flat at 2 (pods missing now and then)":
        {"price_step": (NOW - 6 * 3600, 2.0), "lo": 2, "hi": 2, "dips_per_day": 6.0},
    "request raise 4 days ago (after the same-hour median absorbed it)":
        {"price_step": (NOW - 4 * DAY, 2.0), "lo": 2, "hi": 2, "dips_per_day": 6.0},
    "+3 replicas 5 h ago": {"replica_step": (NOW - 5 * 3600, 3)},
    "no change (HPA 2-10)": {},
    "no change (flat 2 replicas, pods missing now and then)": {"lo": 2, "hi": 2, "dips_per_day": 6.0},
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--times", type=int, default=504)
    ap.add_argument("--no-streaming", action="store_true",
                    help="without the torch streaming detector's alarm (test 1b): the tests before issue 18's last step")
    a = ap.parse_args(argv)
    settings = CostSettings()
    for name, kw in CASES.items():
        t0 = time.perf_counter()
        found = linked = 0
        methods: dict[str, int] = {}
        cs = [simulate(NOW, tz_h=168.0 * k / a.times, seed=k, **kw) for k in range(a.times)]   # type: ignore[arg-type]
        ws = [WorkloadSeries(service="ml/x", file=None, ts=c.ts, cost=c.cost, replicas=c.replicas, request_rate=c.rps)
              for c in cs]
        if not a.no_streaming:   # the deciding path: all evaluation times' series scored as one batch
            ws = streaming_alarms(ws)
        for w in ws:
            out = detect_cost_anomalies([w], settings, InputStats())
            if not out:
                continue
            found += 1
            ev = out[0].evidence
            methods[str(ev.get("method"))] = methods.get(str(ev.get("method")), 0) + 1
            if "price_step" in kw:
                at = kw["price_step"][0]  # type: ignore[index]
                start = datetime.fromisoformat(str(ev["window"]["start"])).timestamp()
                linked += at <= start <= at + 3600
        extra = f", window starts within 1 h of the change {linked}/{a.times}" if "price_step" in kw else ""
        print(f"{name}: found {found}/{a.times}{extra}; by {methods} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
