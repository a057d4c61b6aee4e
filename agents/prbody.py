"""PR title and body an approver can decide from: what was seen, a chart, the plan, risk, rollback."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from memory.records import FieldEdit, Incident, PullRequest, RemediationPlan
from playbooks.schema import Playbook
from tools.errors import printable

FENCE = "```"


def pr_title(plan: RemediationPlan, incidents: list[Incident]) -> str:
    head = incidents[0]
    changes = ", ".join(
        f"{'.'.join(map(str, e.path[-1:]))} {e.old} -> {e.new}" if e.old is not None
        else f"{'.'.join(map(str, e.path[-1:]))}={e.new} added" for e in plan.edits[:3]
    )
    return f"remediator: {plan.playbook.replace('_', ' ')} for {head.service} ({changes})"[:200]


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~>-])")


def md_text(text: str) -> str:
    """Untrusted text (summaries, rationales, anything from the data or a model) as Markdown that
    shows it literally: HTML escaped (no raw tags), Markdown punctuation escaped (no links, images,
    emphasis or headings), ``://`` broken so no bare URL is auto-linked, ``@`` followed by a
    zero-width space so no user or team is mentioned, newlines and control characters as escapes."""
    text = printable(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return text.replace("://", ":\\/\\/").replace("@", "@\u200b")


def code_span(text: str) -> str:
    """``text`` as an inline code span that cannot be closed early by backticks in it."""
    text = printable(text)
    ticks = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def fenced(text: str, info: str = "") -> list[str]:
    """``text`` as a fenced code block whose fence is longer than any backtick run inside it."""
    fence = "`" * max(3, max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    return [f"{fence}{info}", text, fence]


def _chart(ev: dict[str, Any]) -> str:
    pts = ev.get("points") or []
    if len(pts) < 3:
        return ""
    vals = [p[1] for p in pts]
    top = max(vals) * 1.1 or 1.0
    return (f"\n{FENCE}mermaid\nxychart-beta\n  title \"$/h over the last {len(pts)} buckets\"\n"
            f"  y-axis \"$/h\" 0 --> {top:.2f}\n  line [{', '.join(f'{v:.3f}' for v in vals)}]\n{FENCE}\n")


def pr_body(plan: RemediationPlan, incidents: list[Incident], playbook: Playbook | None,
            plans: list[RemediationPlan] | None = None, audit_seqs: list[int] | None = None) -> str:
    lines = ["## What remediator saw", ""]
    for inc in incidents:
        lines.append(f"- **{inc.kind}** on {code_span(inc.service)} ({inc.severity}): {md_text(inc.summary)}")
    ev = incidents[0].evidence
    lines += ["", "<details><summary>Evidence</summary>", "",
              *fenced(json.dumps({k: v for k, v in ev.items() if k != "points"}, indent=1, default=str)[:4000], "json"),
              "</details>", _chart(ev), "## What this PR changes", ""]
    for e in plan.edits:
        lines.append(f"- {code_span(e.file)} {md_text(f'{e.doc_kind}/{e.doc_name}')} "
                     f"{code_span('.'.join(map(str, e.path)))}: "
                     + (f"{code_span(str(e.old))} -> {code_span(str(e.new))}" if e.old is not None
                        else f"added, {code_span(str(e.new))}"))
    for x in plans or [plan]:
        lines += ["", f"**Playbook:** `{x.playbook}` (planner: {x.planner})", "", f"**Why:** {md_text(x.rationale)}"]
    lines.append("")
    if "extra_usd_per_month" in ev:
        lines.append(f"**Expected effect:** about ${ev['extra_usd_per_month']:,.0f}/month of excess spend removed.")
    if "gpu_util_percent" in ev:
        lines.append("")
        lines.append(f"**GPU utilisation** during the excursion: {ev['gpu_util_percent']} %"
                     + (f" (usually {ev['gpu_util_expected_percent']} % at these hours)"
                        if "gpu_util_expected_percent" in ev else "") + ".")
    if playbook is not None:
        lines += [f"**Risk:** {playbook.risk}", "", f"**Roll back:** {playbook.rollback}", ""]
    lines += ["---", f"Incidents: {', '.join(i.id for i in incidents)} · plans "
              f"{', '.join(x.id for x in plans or [plan])}"
              + (f" · audit entries {', '.join(f'#{n}' for n in audit_seqs)}" if audit_seqs else "")
              + " · `remediator incidents show <incident>` for the whole trail",
              "Approve in Slack, by PR review, or `remediator decisions approve <incident>`. "
              "This PR was opened by remediator; it never writes to the cluster."]
    return "\n".join(lines)


def revert_title(pr: PullRequest) -> str:
    """Title of the PR that reverts the remediation merged in ``pr``."""
    return f"remediator: revert {pr.title.removeprefix('remediator: ')}"[:200]


def revert_body(pr: PullRequest, inc: Incident, edits: Sequence[FieldEdit], reason: str) -> str:
    """Body of the revert PR: which remediation did not work, why, and what goes back."""
    return (f"## Revert of {pr.url or pr.branch}\n\nThe remediation merged in `{pr.branch}` did not bring "
            f"{inc.kind} on `{inc.service}` back in bounds: {reason}.\n\n"
            + "\n".join(f"- `{e.file}` `{'.'.join(map(str, e.path))}`: `{e.old}` -> `{e.new}`" for e in edits)
            + f"\n\nIncident {inc.id}; original PR {pr.id}.")
