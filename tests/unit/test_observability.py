"""Structured logs (JSON lines with cycle and incident ids; plain text on a terminal), the daemon's
cycle metrics and readiness checks, and the http config section."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from agents.config import ConfigError, validate_settings
from agents.logs import ContextFilter, JsonFormatter, cycle_scope, each_incident, formatter
from agents.metrics import CycleMetrics
from agents.probes import Readiness, listen
from memory.store import Store


def _logger(fmt: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    buf = io.StringIO()
    h = logging.StreamHandler(buf)
    h.addFilter(ContextFilter())
    h.setFormatter(fmt)
    lg = logging.getLogger(f"test.obs.{id(buf)}")
    lg.handlers[:] = [h]
    lg.propagate = False
    lg.setLevel(logging.INFO)
    return lg, buf


def test_json_lines_carry_cycle_and_incident_ids() -> None:
    lg, buf = _logger(JsonFormatter())
    lg.info("before")
    with cycle_scope("cyc-1"):
        for iid in each_incident(["inc-a", "inc-b"], str):
            lg.info("planning %s\nsecond line", iid)
        lg.warning("after the loop")
    try:
        raise ValueError("boom")
    except ValueError:
        lg.exception("failed")
    docs = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert len(docs) == 5   # a newline in a message stays inside its JSON string
    assert "cycle_id" not in docs[0] and "incident_id" not in docs[0]
    assert docs[1]["cycle_id"] == "cyc-1" and docs[1]["incident_id"] == "inc-a"
    assert docs[2]["incident_id"] == "inc-b" and docs[2]["message"] == "planning inc-b\nsecond line"
    assert docs[3]["cycle_id"] == "cyc-1" and "incident_id" not in docs[3] and docs[3]["level"] == "warning"
    assert "cycle_id" not in docs[4] and "ValueError: boom" in docs[4]["exc"]
    assert {"ts", "level", "logger", "message"} <= set(docs[0])


def test_plain_text_on_a_terminal_json_elsewhere() -> None:
    assert isinstance(formatter("auto", tty=False), JsonFormatter)
    assert not isinstance(formatter("auto", tty=True), JsonFormatter)
    assert isinstance(formatter("json", tty=True), JsonFormatter)
    lg, buf = _logger(formatter("text", tty=False))
    with cycle_scope("cyc-2"):
        lg.info("hello")
    assert buf.getvalue().rstrip().endswith("[cycle=cyc-2]: hello")


def test_cycle_metrics_count_outcomes_findings_errors() -> None:
    reg = CollectorRegistry()
    m = CycleMetrics(reg)
    m.record("ok", duration_s=3.0, report={"findings": [{"kind": "cost_anomaly"}, {"kind": "cost_anomaly"}],
                                           "errors": [{"stage": "observe"}]}, now=1000.0)
    m.record("failed", duration_s=1.0, failed_stage="plan", now=1010.0)
    text = generate_latest(reg).decode()
    assert 'remediator_cycles_total{outcome="ok"} 1.0' in text
    assert 'remediator_cycles_total{outcome="failed"} 1.0' in text
    assert 'remediator_cycles_total{outcome="busy"} 0.0' in text
    assert 'remediator_findings_total{kind="cost_anomaly"} 2.0' in text
    assert 'remediator_errors_total{stage="observe"} 1.0' in text and 'remediator_errors_total{stage="plan"} 1.0' in text
    assert "remediator_cycle_duration_seconds_count 2.0" in text
    assert "remediator_last_successful_cycle_timestamp_seconds 1000.0" in text
    assert "remediator_last_cycle_timestamp_seconds 1010.0" in text


def _settings(tmp_path: Path, **http: object) -> object:
    return validate_settings({"gitops": {"remote": str(tmp_path / "r.git")}, "scheduler": {"interval": "10s"},
                              "memory": {"url": f"sqlite:///{tmp_path / 'state.db'}"}, "http": http})


def test_readiness_checks(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    now = [1000.0]
    m = CycleMetrics(CollectorRegistry())
    m.started = 1000.0
    git_answer: list[str | None] = [None]
    r = Readiness(settings=settings, store=lambda: store, git=lambda: git_answer[0], cycles=m,  # type: ignore[arg-type]
                  clock=lambda: now[0])
    assert r.check() == (True, {"store": "ok", "git": "ok", "cycle": "ok"})
    now[0] = 1021.0     # no cycle ended within 2 x 10 s of the start
    ok, checks = r.check()
    assert not ok and "no cycle has ended" in checks["cycle"]
    m.record("ok", now=1020.0)
    assert r.check()[0]
    git_answer[0] = "remote unreachable"
    assert r.check()[0], "the git answer is cached a few seconds"
    now[0] = 1041.0
    ok, checks = r.check()
    assert not ok and checks["git"] == "remote unreachable" and "last cycle ended 21s ago" in checks["cycle"]
    store.close()
    (tmp_path / "state.db").unlink()
    ok, checks = r.check()
    assert not ok and "gone" in checks["store"]


def test_http_config_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="http.daemon_port"):
        _settings(tmp_path, daemon_port=70000)
    with pytest.raises(ConfigError, match="http.trusted_user_header"):
        _settings(tmp_path, trusted_user_header="X Forwarded: User")
    with pytest.raises(ConfigError, match="http.trusted_proxies"):
        _settings(tmp_path, trusted_proxies=["proxy.example"])
    with pytest.raises(ConfigError, match="http: .*ui_require_sign_in needs a way to sign in"):
        _settings(tmp_path, ui_require_sign_in=True)
    with pytest.raises(ConfigError, match="http.bogus"):
        _settings(tmp_path, bogus=1)


def test_a_taken_port_is_a_config_error_naming_the_key() -> None:
    sock = listen("127.0.0.1", 0)
    try:
        with pytest.raises(ConfigError, match=r"http.host / http.daemon_port: cannot listen on 127.0.0.1:\d+"):
            listen("127.0.0.1", sock.getsockname()[1])
    finally:
        sock.close()


def test_cycle_reports_are_read_once_when_finished(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from agents.ui.views import CycleReports

    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    t = datetime(2026, 1, 1, tzinfo=UTC)
    store.save_cycle(cycle_id="c1", started_at=t, finished_at=t + timedelta(seconds=5), report={"n": 1})
    store.save_cycle(cycle_id="c2", started_at=t + timedelta(minutes=5), finished_at=None, report={"n": 2})
    cache = CycleReports()
    assert [c["report"]["n"] for c in cache(store, limit=10)] == [2, 1]
    store.save_cycle(cycle_id="c2", started_at=t + timedelta(minutes=5), finished_at=t + timedelta(minutes=6),
                     report={"n": 22})   # the running cycle finished: read again
    store.save_cycle(cycle_id="c1", started_at=t, finished_at=t + timedelta(seconds=5), report={"n": 11})
    assert [c["report"]["n"] for c in cache(store, limit=10)] == [22, 1]   # c1 was finished: kept
    assert [c["cycle_id"] for c in cache(store, limit=1)] == ["c2"]
