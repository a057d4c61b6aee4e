"""Explainability coverage: the share of a model version's served predictions that were explained
(``inference_explanations_total`` against ``inference_predictions_total``, both by namespace /
service / model_version) over a window, against what the manifest declares: explainability
``enabled`` with ``samplingSize`` N means one prediction in N is explained. Pure: counters in,
a finding or None out.

A finding when explanations are enabled, enough predictions were served to expect at least
``min_expected`` explanations, and the explained share is below ``1 / (N * tolerance)`` (with no
explanation at all: "stopped producing explanations"). The finding is a ``policy_violation`` of
the built-in policy ``explainability-coverage``."""

from __future__ import annotations

import math
from dataclasses import dataclass

from memory.records import Finding
from tools.detectors.drift import CounterSeries, counters_data_start, version_counts

__all__ = ["CoverageInput", "detect_coverage"]


@dataclass(frozen=True)
class CoverageInput:
    service: str
    file: str
    version: str
    sampling_size: int
    predictions: list[CounterSeries]
    explanations: list[CounterSeries]
    window_s: float = 3600.0
    min_expected: float = 20.0      # explanations expected at the declared rate before judging
    tolerance: float = 3.0          # explained share may fall to 1/(N * tolerance) before a finding


def detect_coverage(c: CoverageInput, *, now: float) -> Finding | None:
    if c.sampling_size < 1 or not c.explanations:
        return None   # a service that never exported explanations is not judged (no metric, no data)
    start = now - c.window_s
    served = sum(version_counts(c.predictions, c.version, start, now, first_seen=counters_data_start(c.predictions)).values())
    explained = sum(version_counts(c.explanations, c.version, start, now, class_label="__none__",
                                   first_seen=counters_data_start(c.explanations)).values())
    expected = served / c.sampling_size
    if not math.isfinite(served) or expected < c.min_expected:
        return None
    share = explained / served if served else 0.0
    floor = 1.0 / (c.sampling_size * c.tolerance)
    if share >= floor:
        return None
    stopped = explained == 0
    minutes = int(c.window_s // 60)
    summary = (f"{c.service} model {c.version}: "
               + (f"stopped producing explanations ({served:.0f} predictions, none explained in {minutes} min)" if stopped
                  else f"explains {share:.2%} of predictions, below 1 in {c.sampling_size} declared "
                       f"({explained:.0f} of {served:.0f} in {minutes} min)"))
    message = summary.split(": ", 1)[1]
    return Finding(kind="policy_violation", service=c.service, severity="warning", summary=summary,
                   detector="explainability", model_version=None, file=c.file,
                   evidence={"violations": [{"policy": "explainability-coverage", "object": c.service, "file": c.file,
                                             "expression": "explained / served >= 1 / (samplingSize * tolerance)",
                                             "message": message, "reason": "Stopped" if stopped else "LowCoverage",
                                             "severity": "warning", "policy_file": ""}],
                             "explainability": {"predictions": round(served), "explanations": round(explained),
                                                "explained_share": round(share, 5),
                                                "declared_sampling_size": c.sampling_size,
                                                "expected_share": round(1.0 / c.sampling_size, 5),
                                                "window_minutes": minutes, "stopped": stopped, "version": c.version}})
