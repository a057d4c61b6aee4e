from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from agents.config import ConfigError, load_settings, parse_duration

BASE = """
prometheus: {url: http://127.0.0.1:9090, timeout_s: 30}
gitops: {remote: /tmp/x.git, branch: main, provider: local}
auditlog: {paths: [/var/log/kubernetes/audit.log]}
memory: {url: "sqlite:////tmp/state/state.db"}
llm: {provider: none}
slack: {enabled: false}
scheduler: {interval: 5m}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_minimal_config_and_defaults(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, BASE))
    assert s.scheduler.interval == timedelta(minutes=5)
    assert s.prometheus.scrape_interval == timedelta(seconds=60)
    assert s.detection.min_duration == timedelta(minutes=15)
    assert s.state_dir == Path("/tmp/state") and s.workdir.parent == Path("/tmp/state/git")
    assert s.gitops.author_name == "remediator" and s.gitops.author_email == "remediator@localhost"


@pytest.mark.parametrize("text,needle", [
    (BASE.replace("timeout_s: 30", "timeout_s: 30, tiemout: 3"), "prometheus.tiemout: unknown key"),
    (BASE.replace("timeout_s: 30", "timeout_s: abc"), "prometheus.timeout_s"),
    (BASE.replace("interval: 5m", "interval: soon"), "scheduler.interval"),
    (BASE.replace("provider: local", "provider: svn"), "gitops.provider"),
    (BASE + "extra_section: {}\n", "extra_section: unknown key"),
    (BASE.replace("gitops: {remote: /tmp/x.git, branch: main, provider: local}", ""), "gitops: required key is missing"),
    (BASE.replace("slack: {enabled: false}", "slack: {enabled: false, bot_token: xoxb-123}"), "REMEDIATOR_SLACK__BOT_TOKEN"),
    ("prometheus: [1, 2", "not valid YAML"),
])
def test_bad_config_names_the_key(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_settings(write(tmp_path, text))
    msg = str(e.value)
    assert needle in msg and "\n" not in msg and "xoxb-123" not in msg


def test_env_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMEDIATOR_PROMETHEUS__URL", "http://prom:9090")
    monkeypatch.setenv("REMEDIATOR_SCHEDULER__INTERVAL", "1m")
    s = load_settings(write(tmp_path, BASE))
    assert s.prometheus.url == "http://prom:9090" and s.scheduler.interval == timedelta(minutes=1)


def test_secret_from_env_is_never_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMEDIATOR_SLACK__BOT_TOKEN", "xoxb-secret-value")
    s = load_settings(write(tmp_path, BASE))
    assert s.slack.bot_token is not None and s.slack.bot_token.get_secret_value() == "xoxb-secret-value"
    assert "xoxb-secret-value" not in repr(s) and "xoxb-secret-value" not in s.model_dump_json()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "nope.yaml")


@pytest.mark.parametrize("v,s", [("90s", 90), ("5m", 300), ("1h30m", 5400), ("7d", 604800), (12, 12)])
def test_durations(v: object, s: int) -> None:
    assert parse_duration(v).total_seconds() == s


def test_every_problem_is_named_at_once(tmp_path: Path) -> None:
    text = BASE.replace("gitops: {remote: /tmp/x.git, branch: main, provider: local}", "").replace(
        "interval: 5m", "interval: soon") + "detection: {min_duration: later}\n"
    with pytest.raises(ConfigError) as e:
        load_settings(write(tmp_path, text))
    msg = str(e.value)
    assert "gitops: required key is missing" in msg and "scheduler.interval" in msg
    assert "detection.min_duration" in msg and "\n" not in msg


def test_api_urls_need_a_scheme_and_credentials_are_not_echoed(tmp_path: Path) -> None:
    """``localhost:9090`` used to be accepted and fail at the first query with a transport error."""
    text = (BASE.replace("http://127.0.0.1:9090", "bob:s3cr3t@prom:9090")
            .replace("llm: {provider: none}", "llm: {provider: openai, base_url: 'api.example.test/v1', model: m}")
            .replace("slack: {enabled: false}", "slack: {api_url: 'ftp://slack.example.test'}"))
    with pytest.raises(ConfigError) as e:
        load_settings(write(tmp_path, text))
    msg = str(e.value)
    assert "prometheus.url: " in msg and "llm.base_url" in msg and "slack.api_url" in msg and "http://" in msg
    assert "s3cr3t" not in msg and "***@prom:9090" in msg
    ok = load_settings(write(tmp_path, BASE.replace("http://127.0.0.1:9090", "https://prom.example.test/prometheus")))
    assert ok.prometheus.url == "https://prom.example.test/prometheus"
