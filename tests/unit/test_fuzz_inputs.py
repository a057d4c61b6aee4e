"""Every parser of outside input, fuzzed: whatever arrives (audit-log lines, manifests, budgets,
guardrails, config, Prometheus answers), the only exception is the documented one, and a bad item
never takes the others with it."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.config import ConfigError, validate_settings
from agents.workloads import build_workloads, load_budgets, load_guardrails, workload_problems
from tools.auditlog import JsonLinesAuditLog
from tools.results import ManifestDoc
from tools.yamledit import YamlParseError, parse_documents

# JSON-like values of every shape, including huge and non-finite numbers
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30))
json_like = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(st.text(max_size=12), inner, max_size=5)),
                         max_leaves=20)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(lines=st.lists(st.one_of(st.binary(max_size=80), json_like.map(lambda v: json.dumps(v).encode())), max_size=6))
def test_audit_log_lines(tmp_path: Path, lines: list[bytes]) -> None:
    log = tmp_path / "audit.log"
    log.write_bytes(b"".join(line.replace(b"\n", b" ") + b"\n" for line in lines))
    src = JsonLinesAuditLog(paths=[log])
    events, cursor = src.read(cursor=None, since=datetime(2020, 1, 1))
    assert isinstance(events, list) and json.loads(cursor)


@FUZZ
@given(event=st.dictionaries(st.sampled_from(["kind", "apiVersion", "auditID", "stage", "verb", "user", "objectRef",
                                              "requestReceivedTimestamp", "requestObject", "responseStatus",
                                              "sourceIPs", "userAgent", "requestURI"]), json_like, max_size=13))
def test_audit_events_with_any_fields(tmp_path: Path, event: dict[str, Any]) -> None:
    log = tmp_path / "audit.log"
    log.write_text(json.dumps({"kind": "Event", "apiVersion": "audit.k8s.io/v1", **event}) + "\n")
    src = JsonLinesAuditLog(paths=[log])
    events, _ = src.read(cursor=None, since=datetime(2020, 1, 1))
    assert len(events) + len(src.last_problems) >= 1 or event.get("stage") in ("RequestReceived", "ResponseStarted")


@FUZZ
@given(text=st.text(max_size=300))
def test_manifests_raise_only_yaml_parse_error(text: str) -> None:
    try:
        docs = parse_documents(text, "apps/x.yaml")
    except YamlParseError as e:
        assert "apps/x.yaml" in str(e)
        return
    assert all(isinstance(d, dict) for d in docs)


@FUZZ
@given(raw=st.lists(json_like, max_size=4))
def test_budgets_never_raise(raw: list[Any]) -> None:
    budgets, problems = load_budgets(raw)
    assert len(budgets) + len(problems) == len(raw)


@FUZZ
@given(raw=json_like)
def test_guardrails_never_raise(raw: Any) -> None:
    g, problems = load_guardrails(raw if isinstance(raw, dict) else {})
    assert g is not None and isinstance(problems, list)


@FUZZ
@given(bounds=st.dictionaries(st.sampled_from(["minReplicas", "maxReplicas"]), json_like, max_size=2))
def test_workload_bounds_never_raise(bounds: dict[str, Any]) -> None:
    body = {"apiVersion": "ai.apexlogic.com/v1alpha1", "kind": "MultimodalInferenceService",
            "metadata": {"name": "a", "namespace": "ml"}, "spec": {"autoscaling": bounds}}
    doc = ManifestDoc(file="apps/a.yaml", index=0, kind="MultimodalInferenceService", api_version=body["apiVersion"],
                      name="a", namespace="ml", labels={}, body=body)
    wl = build_workloads([doc])
    workload_problems(wl)
    w = wl["ml/a"]
    assert w.min_replicas is None or isinstance(w.min_replicas, int)
    assert w.max_replicas is None or isinstance(w.max_replicas, int)


@FUZZ
@given(section=st.sampled_from(["prometheus", "gitops", "memory", "scheduler", "detection", "verify", "audit",
                                "auditlog", "llm", "slack"]), value=json_like)
def test_config_raises_only_config_error(section: str, value: Any) -> None:
    data: dict[str, Any] = {"gitops": {"remote": "/tmp/x.git"}, section: value}
    try:
        validate_settings(data)
    except ConfigError as e:
        assert str(e).startswith("config config:")


@FUZZ
@given(answer=st.one_of(json_like, st.lists(st.fixed_dictionaries(
    {"metric": st.dictionaries(st.text(max_size=8), json_like, max_size=3),
     "values": st.lists(st.lists(json_like, max_size=3), max_size=4)}), max_size=3)))
def test_prometheus_answers_raise_only_value_error(answer: Any) -> None:
    import numpy as np

    from tools.prometheus import align_matrix

    grid = np.arange(1_700_000_000_000, 1_700_000_600_000, 60_000, dtype=np.int64)
    rows: dict[tuple[tuple[str, str], ...], Any] = {}
    try:
        align_matrix(answer, grid, rows)
    except ValueError:
        return
    assert all(len(v) == len(grid) for v in rows.values())


def test_a_non_numeric_sample_is_a_value_error_naming_it() -> None:
    import numpy as np

    from tools.prometheus import align_matrix

    grid = np.array([1_700_000_000_000], dtype=np.int64)
    with pytest.raises(ValueError, match="not \\[time, number\\]"):
        align_matrix([{"metric": {"pod": "a"}, "values": [[1_700_000_000, "lots"]]}], grid, {})
    rows: dict[tuple[tuple[str, str], ...], Any] = {}
    align_matrix([{"metric": {"pod": "a"}, "values": [[1_700_000_000, "NaN"], [1_700_000_000, "2.5"]]}], grid, rows)
    assert list(rows.values())[0][0] == 2.5
