"""The human-readable cycle report: each error line names its source once."""

from __future__ import annotations

from agents.report import report_lines


def test_an_error_line_names_its_source_once() -> None:
    r = {"findings": [], "incidents": [], "pull_requests": [], "notifications": [],
         "errors": [{"stage": "observe", "source": "policies/compliance/team.yaml",
                     "message": "policies/compliance/team.yaml: policy x: an expression does not compile"},
                    {"stage": "detect", "source": "apps/a.yaml", "message": "no embedding sample"}]}
    lines = report_lines(r)
    assert "  [observe] policies/compliance/team.yaml: policy x: an expression does not compile" in lines
    assert "  [detect] apps/a.yaml: no embedding sample" in lines
