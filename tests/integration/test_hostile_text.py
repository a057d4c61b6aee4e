"""The same hostile strings (from an audit log, a manifest, a model's rationale) through every
output: Slack text and blocks, the PR body (Markdown/HTML), the terminal (`incidents show`, a
subprocess), and the log lines. Each shows them literally: no mention, link, image, raw HTML, fence
break-out, terminal control or forged log line."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from agents.cli import SafeLogFilter
from agents.prbody import pr_body
from memory.records import FieldEdit, Incident, PullRequest, RemediationPlan, fingerprint
from memory.store import Store
from tests.console import remediator
from tools.slack import plain, pr_message_blocks, pr_message_text

pytestmark = pytest.mark.integration

HOSTILE = [
    "<!channel> <https://evil.example|Click to approve>",
    "<img src=x onerror=alert(1)>",
    "[click here](https://evil.example/login)",
    "![tracker](https://evil.example/pixel.png)",
    "@acme/platform-admins please merge",
    "alice\n2026-12-07 01:00:00,000 INFO remediator: approved by the CTO",
    "\x1b[2J\x1b[31mall clear\x07",
    "```\n</details>\n# Injected heading\n```",
]
TEXT = " | ".join(HOSTILE)
SERVICE = "ml-serving/image-captioner"


def incident() -> Incident:
    return Incident(kind="cost_anomaly", service=SERVICE, severity="warning", fingerprint=fingerprint("cost_anomaly", SERVICE),
                    summary=TEXT, evidence={"note": TEXT, "ratio": 2.0})


def plan(inc: Incident) -> RemediationPlan:
    return RemediationPlan(incident_id=inc.id, playbook="cap_max_replicas", rationale=TEXT, planner="llm",
                           edits=(FieldEdit(file="apps/a.yaml", doc_kind="MultimodalInferenceService",
                                            doc_name="image-captioner", path=("spec", "autoscaling", "maxReplicas"),
                                            old=6, new=3),))


def _mrkdwn(node: object) -> list[str]:
    """Every mrkdwn text object in Block Kit blocks (plain_text is shown literally by Slack)."""
    if isinstance(node, dict):
        found = [str(node["text"])] if node.get("type") == "mrkdwn" and "text" in node else []
        return found + [t for v in node.values() for t in _mrkdwn(v)]
    if isinstance(node, list):
        return [t for v in node for t in _mrkdwn(v)]
    return []


def test_slack_text_and_blocks_show_it_literally() -> None:
    inc = incident()
    pr = PullRequest(branch="remediator/cost-anomaly/x-1", title=TEXT, incident_ids=(inc.id,))
    texts = [plain(TEXT), pr_message_text(pr=pr, incidents=[inc])]
    texts += _mrkdwn(pr_message_blocks(pr=pr, incidents=[inc], plan=plan(inc)))
    assert len(texts) > 3
    for t in texts:
        assert "<!channel>" not in t and "<https://evil" not in t and "<img" not in t
    assert any("&lt;!channel&gt;" in t for t in texts)


def _outside_fences(body: str) -> str:
    """The body without the contents of its fenced code blocks (rendered as code, never as HTML)."""
    out, fence = [], None
    for line in body.splitlines():
        stripped = line.strip()
        if fence is None and stripped.startswith("```"):
            fence = stripped[: len(stripped) - len(stripped.lstrip("`"))]
            continue
        if fence is not None and stripped == fence:
            fence = None
            continue
        if fence is None:
            out.append(line)
    assert fence is None, "a fence was left open"
    return "\n".join(out)


def test_the_pr_body_shows_it_literally() -> None:
    inc = incident()
    body = pr_body(plan(inc), [inc], None)
    rendered = _outside_fences(body)
    assert "<img" not in rendered and "<!channel>" not in rendered
    assert "](https://" not in rendered and "![" not in rendered          # no link, no image
    assert "@acme/" not in rendered                                        # no team mention (zero-width space)
    assert "\x1b" not in body and "\x07" not in body
    assert not any(line.lstrip().startswith("# Injected") for line in rendered.splitlines())   # no heading
    assert rendered.count("</details>") == 1
    assert not any(line.startswith("2026-12-07 01:00:00,000 INFO") for line in body.splitlines())


def test_the_terminal_shows_it_literally(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    store = Store.open(f"sqlite:///{db}")
    inc = incident()
    store.save_incident(inc)
    store.save_plan(plan(inc))
    store.close()
    cfg = tmp_path / "remediator.yaml"
    cfg.write_text(yaml.safe_dump({"gitops": {"remote": str(tmp_path / "none.git")},
                                   "memory": {"url": f"sqlite:///{db}"}}))
    for args in (["incidents", "show", inc.id], ["incidents", "list"]):
        proc = remediator(*args, "--config", str(cfg), timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout
        assert not any(line.startswith("2026-12-07 01:00:00,000 INFO") for line in proc.stdout.splitlines())
        if args[1] == "show":
            assert "\\x1b[2J" in proc.stdout   # shown, as an escape


@contextmanager
def _filtered_logger(name: str) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger whose one handler has the CLI's SafeLogFilter, writing to a string."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(SafeLogFilter())
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield logger, out
    finally:
        logger.removeHandler(handler)


def test_log_lines_show_it_literally_and_never_a_secret() -> None:
    with _filtered_logger("remediator.test.hostile") as (logger, out):
        logger.warning("notify %s: %s", "log", TEXT)
        logger.warning("retrying https://bot:xoxb-1234567890-abcdef@slack.example/api (%s)", "x")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("WARNING remediator.test.hostile: notify log: ")
    assert "\x1b" not in out.getvalue() and "xoxb-1234567890" not in out.getvalue()


def test_a_logged_traceback_never_carries_a_secret() -> None:
    """The traceback of a logged exception (exc_info, at DEBUG) is formatted after the filter runs:
    the filter formats and scrubs it itself."""
    with _filtered_logger("remediator.test.traceback") as (logger, out):
        try:
            raise RuntimeError("GET https://soak:hunter2-canary@prometheus.example/api failed")
        except RuntimeError:
            logger.error("cycle failed", exc_info=True)
    assert "Traceback" in out.getvalue() and "RuntimeError: GET https://***@prometheus.example" in out.getvalue()
    assert "hunter2-canary" not in out.getvalue()
