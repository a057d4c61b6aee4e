"""config/deploy/: the PrometheusRule's groups pass `promtool check rules` and each alert fires on
synthetic series (`promtool test rules`) and stays quiet on healthy ones; the Grafana dashboard is
valid JSON whose every query compiles and names only metrics the daemon exports. The Dockerfile
probes /healthz, exposes its ports and runs as a numeric non-root user."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest

from agents.config import validate_settings
from agents.probes import daemon_registry
from memory.records import Decision
from memory.store import Store
from tests.integration import promserver

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "config" / "deploy"


def promtool() -> str:
    p = promserver.binary("promtool")
    if p is None:
        pytest.skip("promtool not installed (tests/run.sh installs Debian's prometheus package)")
    return p


def exported_names(tmp_path: Path) -> set[str]:
    settings = validate_settings({"gitops": {"remote": str(tmp_path)}})
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    store.save_decision(Decision(incident_id="inc-1", verdict="approve", actor="t"))   # every family has samples
    registry, cycles = daemon_registry(settings, lambda: store)
    cycles.record("ok", duration_s=1.0, report={"findings": [{"kind": "cost_anomaly"}], "errors": [{"stage": "x"}]})
    text = generate_latest(registry).decode()
    return {m.group(1) for m in re.finditer(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{| )", text, re.M)}


def rule_groups() -> list[dict[str, object]]:
    doc = yaml.safe_load((DEPLOY / "prometheusrule.yaml").read_text())
    assert doc["kind"] == "PrometheusRule" and doc["apiVersion"] == "monitoring.coreos.com/v1"
    return list(doc["spec"]["groups"])


def test_prometheus_rule_groups_check_and_fire(tmp_path: Path) -> None:
    tool = promtool()
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rule_groups()}))
    check = subprocess.run([tool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 5 rules found" in check.stdout

    inst = {"job": "remediator", "instance": "daemon:9464"}
    sel = '{job="remediator",instance="daemon:9464"}'

    by_name = {r["alert"]: r for g in rule_groups() for r in g["rules"]}  # type: ignore[index, union-attr]

    def alert(name: str, severity: str, value: str = "", **labels: str) -> dict[str, object]:
        """The alert as it should fire: its labels, and its annotations with the templates filled in."""
        notes = {k: (v.replace("{{ $labels.instance }}", labels.get("instance", ""))
                     .replace("{{ $value | humanizeDuration }}", value).replace("{{ $value }}", value))
                 for k, v in by_name[name]["annotations"].items()}
        return {"exp_labels": {**labels, "severity": severity}, "exp_annotations": notes}

    tests = {"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": [
        {"interval": "1m", "input_series": [
            {"series": f"up{sel}", "values": "0x20"},
            # the last cycle ended at t=60s and none since: stuck; the last ok one too
            {"series": f"remediator_last_cycle_timestamp_seconds{sel}", "values": "60x100"},
            {"series": f"remediator_last_successful_cycle_timestamp_seconds{sel}", "values": "60x100"},
            {"series": 'remediator_cycles_total{job="remediator",instance="daemon:9464",outcome="failed"}', "values": "0+1x100"},
            {"series": 'remediator_cycles_total{job="remediator",instance="daemon:9464",outcome="ok"}', "values": "3x100"}],
         "alert_rule_test": [
            {"eval_time": "10m", "alertname": "RemediatorDaemonDown", "exp_alerts": [alert("RemediatorDaemonDown", "critical", **inst)]},
            {"eval_time": "10m", "alertname": "RemediatorDaemonStuck", "exp_alerts": []},   # not yet 15 + 5 min
            {"eval_time": "25m", "alertname": "RemediatorDaemonStuck",
             "exp_alerts": [alert("RemediatorDaemonStuck", "critical", "24m 0s", **inst)]},
            {"eval_time": "50m", "alertname": "RemediatorCyclesFailing", "exp_alerts": [alert("RemediatorCyclesFailing", "warning", **inst)]},
            {"eval_time": "80m", "alertname": "RemediatorNoSuccessfulCycle",
             "exp_alerts": [alert("RemediatorNoSuccessfulCycle", "critical", "1h 19m 0s", **inst)]}]},
        {"interval": "1m", "input_series": [   # a healthy daemon: a cycle every 5 minutes, all ok
            {"series": f"up{sel}", "values": "1x100"},
            {"series": f"remediator_last_cycle_timestamp_seconds{sel}", "values": "0+60x100"},
            {"series": f"remediator_last_successful_cycle_timestamp_seconds{sel}", "values": "0+60x100"},
            {"series": 'remediator_cycles_total{job="remediator",instance="daemon:9464",outcome="ok"}', "values": "0+1x100"},
            {"series": 'remediator_cycles_total{job="remediator",instance="daemon:9464",outcome="failed"}', "values": "0x100"},
            {"series": 'remediator_pull_requests{job="remediator",instance="daemon:9464",status="open"}', "values": "2x100"}],
         "alert_rule_test": [{"eval_time": "90m", "alertname": a, "exp_alerts": []} for a in (
             "RemediatorDaemonDown", "RemediatorDaemonStuck", "RemediatorCyclesFailing", "RemediatorNoSuccessfulCycle",
             "RemediatorPullRequestBacklog")]},
        {"interval": "1m", "input_series": [
            {"series": 'remediator_pull_requests{job="remediator",instance="daemon:9464",status="open"}', "values": "6x1600"}],
         "alert_rule_test": [
            {"eval_time": "20h", "alertname": "RemediatorPullRequestBacklog", "exp_alerts": []},
            {"eval_time": "25h", "alertname": "RemediatorPullRequestBacklog",
             "exp_alerts": [alert("RemediatorPullRequestBacklog", "warning", "6", job="remediator")]}]},
    ]}
    spec = tmp_path / "rules_test.yaml"
    spec.write_text(yaml.safe_dump(tests))
    run = subprocess.run([tool, "test", "rules", str(spec)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def _exprs_of_rules() -> list[str]:
    return [str(r["expr"]) for g in rule_groups() for r in g["rules"]]  # type: ignore[index, union-attr]


def test_dashboard_queries_compile_and_name_exported_metrics(tmp_path: Path) -> None:
    tool = promtool()
    dash = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 10 and len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    concrete = [e.replace("$__rate_interval", "5m").replace("$job", "remediator") for e in exprs]
    rules = tmp_path / "dash.yaml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:panel_{i}", "expr": e} for i, e in enumerate(concrete)]}]}))
    check = subprocess.run([tool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    names = exported_names(tmp_path)
    used = {m for e in concrete + _exprs_of_rules() for m in re.findall(r"\b(remediator_[a-z_]+)", e)}
    assert used and used <= names, f"not exported by the daemon: {sorted(used - names)}"


def test_dockerfile_probes_healthz_as_a_numeric_user() -> None:
    text = (ROOT / "Dockerfile").read_text()
    hc = re.search(r"^HEALTHCHECK .*?\n(?:\s+.*\n)*", text, re.M)
    assert hc is not None and "/healthz" in hc.group(0) and "audit verify" not in hc.group(0)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[-1]), users
    exposed = {p for line in re.findall(r"^EXPOSE\s+(.+)$", text, re.M) for p in line.split()}
    assert {"9464", "8080"} <= exposed
    assert "REMEDIATOR_HTTP__HOST=0.0.0.0" in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "**/__pycache__", "tests"} <= set(ignored)
