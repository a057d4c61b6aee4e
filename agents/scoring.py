"""The torch streaming anomaly detector in the cycle: every workload's $/h series scored as one
batch, with the detector's state kept in memory between cycles (and across restarts), so a
cycle scores only the samples that arrived since the last one instead of retraining.

The state is kept for the exact list of series it was built on; when the set of workloads
changes, the batch starts cold (scoring a week of history takes milliseconds per series).
"""

from __future__ import annotations

import base64
import io
import logging
from typing import Any

import numpy as np
import torch

from memory.store import Store
from tools.detectors.anomaly import StreamingAnomalyDetector, latest_alarm, steps_per_day

log = logging.getLogger("remediator.scoring")
KEY = "anomaly.cost.state"


def _dump(obj: dict[str, Any]) -> str:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return base64.b64encode(buf.getvalue()).decode()


def _load(raw: str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        obj = torch.load(io.BytesIO(base64.b64decode(raw)), weights_only=True, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - a state we cannot read is discarded, never fatal
        log.warning("discarding unreadable anomaly state: %s", e)
        return None
    return obj if isinstance(obj, dict) else None


def score_batch(store: Store, keys: list[str], ts: np.ndarray, values: np.ndarray,
                detector: StreamingAnomalyDetector | None = None) -> dict[str, dict[str, Any]]:
    """Scores for ``values`` [S, T] on grid ``ts``; returns per key ``{"scores": [T] (0 where not
    scored this cycle), "alarm_ts": last time the score crossed ALARM or None, "resumed": bool}``."""
    det = detector or StreamingAnomalyDetector()
    out: dict[str, dict[str, Any]] = {}
    if not keys or values.size == 0:
        return out
    saved = _load(store.get_kv(KEY))
    scores = np.zeros_like(values, dtype=np.float64)
    resumed = bool(saved and saved.get("keys") == keys and float(saved.get("last_ts", np.inf)) < float(ts[-1]))
    alarms: dict[str, float | None] = dict(saved.get("alarms", {})) if resumed and saved else {}
    if resumed and saved is not None:
        new = ts > float(saved["last_ts"])
        s_new, state = det.score(values[:, new], state=saved["state"])
        scores[:, new] = s_new
    else:
        scores, state = det.score(values, steps_per_day=steps_per_day(ts))
    for i, k in enumerate(keys):
        at = latest_alarm(scores[i], ts)
        if at is not None:
            alarms[k] = at
        out[k] = {"scores": scores[i], "alarm_ts": alarms.get(k), "resumed": resumed}
    cpu_state = {k: (v.detach().cpu() if isinstance(v, torch.Tensor) else v) for k, v in state.items()}
    store.set_kv(KEY, _dump({"keys": keys, "last_ts": float(ts[-1]), "state": cpu_state, "alarms": alarms}))
    return out
