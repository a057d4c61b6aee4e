"""propose: publish accepted plans as pull requests.

At most one open PR per workload file: an incident whose files are in another incident's open
PR joins it, and a PR's content is always the union of the accepted plans of all its incidents
(oldest incident first), so re-running on unchanged inputs rebuilds exactly the same commit and
pushes nothing. Each incident of a PR gets its approval thread (agents/approvals.py); its Slack
message is left to the notify node."""

from __future__ import annotations

import difflib
import hashlib
import json
from functools import partial
from typing import Any

from langgraph.runtime import Runtime

from agents.approvals import await_approval
from agents.deps import Deps, audit, now_of, retrying
from agents.edits import edited_files, relocate
from agents.incidents import first_audit_seqs, open_pr_of
from agents.logs import each_incident
from agents.prbody import pr_body, pr_title
from agents.state import CycleState, err
from memory.records import FieldEdit, Incident, PullRequest, RemediationPlan, branch_name
from tools.anchors import head_trailer
from tools.errors import ToolError

EditKey = tuple[str, str, str, tuple[str | int, ...]]


def _edit_key(e: FieldEdit) -> EditKey:
    return (e.file, e.doc_kind, e.doc_name, tuple(e.path))


def propose(state: CycleState, runtime: Runtime[Deps]) -> CycleState:
    deps = runtime.context
    now = now_of(state)
    errors: list[dict[str, Any]] = []
    pr_ids: list[str] = []
    posts: list[dict[str, Any]] = []
    for pd in each_incident(state.get("plans", []), lambda d: str(d.get("incident_id"))):
        p = RemediationPlan.model_validate(pd)
        if p.guard_verdict == "deferred":
            errors.append(err("guard", p.incident_id, "; ".join(p.guard_reasons)))
            continue
        if p.guard_verdict != "accepted":
            continue
        inc = deps.store.get_incident(p.incident_id)
        if inc is None:
            continue
        target = open_pr_of(deps, inc) or next(
            (o for o in deps.store.list_prs(statuses=["open"]) if set(o.files) & set(p.files)), None)
        branch = target.branch if target is not None else branch_name(inc.kind, inc.service, inc.fingerprint)
        incidents = _members(deps, inc, target)
        plans = [x for x in (p if i.id == inc.id else deps.store.latest_plan(i.id) for i in incidents)
                 if x is not None and x.guard_verdict == "accepted"]
        edits: dict[EditKey, FieldEdit] = {}
        for x in plans:
            for e in x.edits:
                edits.setdefault(_edit_key(e), e)
        lead = plans[0] if plans else p
        moved, notes, problem = relocate(deps, state, list(edits.values()))
        if problem:
            errors.append(err("propose", inc.service, f"not edited (notify only): {problem}"))
            continue
        try:
            files = edited_files(deps, moved, must_exist=True)
        except ToolError as e:
            errors.append(err("propose", inc.service, f"cannot edit: {e}"))
            continue
        combined = lead.model_copy(update={"edits": tuple(moved), "rationale": lead.rationale + "".join(
            f" {n}." for n in notes)})
        # the body describes the change: while the change and its incidents stay the same, keep the
        # PR's title and body as they were (no edit in the Git host every cycle for moving numbers)
        change_key = hashlib.sha256(json.dumps(
            [sorted(files.items()), [i.id for i in incidents]], default=str).encode()).hexdigest()
        if target is not None and deps.store.get_kv(f"pr.change:{target.id}") == change_key:
            title, body = target.title, target.body
        else:
            opened = first_audit_seqs(deps, [i.id for i in incidents])
            title = pr_title(combined, incidents)
            body = pr_body(combined, incidents, deps.playbooks.get(lead.playbook), plans, audit_seqs=opened)
        if deps.dry_run:
            deps.on_progress(f"dry-run: would publish {branch} ({', '.join(sorted(files))})")
            _dry_run_show(deps, branch, files, title, body)
            continue
        try:
            res = retrying(deps, f"publish {branch}", partial(
                deps.prs.publish, branch=branch, title=title, body=body, files=files,
                message=f"{title}\n\n" + "\n".join(f"Incident {i.id} ({i.kind}, fingerprint {i.fingerprint})" for i in incidents)
                + f"\nPlan {lead.id}: {lead.rationale}\n\n{head_trailer(*deps.store.audit.head())}",
                incident_ids=[i.id for i in incidents], labels=("remediator", *sorted({i.kind for i in incidents})),
                existing=target))
        except ToolError as e:
            errors.append(err("propose", branch, str(e)))
            continue
        pr = res.pr.model_copy(update={"title": title, "body": body, "files": tuple(sorted(files)),
                                       "incident_ids": tuple(i.id for i in incidents)})
        deps.store.set_kv(f"pr.change:{pr.id}", change_key)
        if res.pushed:
            pr = pr.model_copy(update={"updated_at": now})
        if target is None or pr != target:
            deps.store.save_pr(pr)
        if res.note:
            errors.append(err("propose", branch, res.note))
        if res.pushed:
            audit(deps, state, "propose", "pr_opened" if target is None else "pr_updated", pr.id, branch=branch,
                  head=pr.head_sha, incident_ids=list(pr.incident_ids), files=sorted(files))
        posts.append({"pr_id": pr.id, "plan_id": lead.id})
        if deps.checkpointer is not None:
            for i in incidents:
                await_approval(deps, i.id)  # pauses at interrupt() until a decision
        for i in incidents:
            if i.status == "open":
                deps.store.save_incident(i.model_copy(update={"status": "proposed", "updated_at": now}))
        pr_ids.append(pr.id)
    return {"pr_ids": sorted(set(pr_ids) | set(state.get("pr_ids", []))), "errors": errors, "slack_posts": posts}


def _members(deps: Deps, inc: Incident, target: PullRequest | None) -> list[Incident]:
    """The active incidents the PR carries once ``inc`` is in it, oldest first."""
    members = {inc.id: inc}
    for iid in (target.incident_ids if target is not None else ()):
        other = deps.store.get_incident(iid)
        if other is not None and other.active:
            members[other.id] = other
    return sorted(members.values(), key=lambda i: (i.opened_at, i.id))


def _dry_run_show(deps: Deps, branch: str, files: dict[str, str], title: str, body: str) -> None:
    """The PR a dry run would open: its branch and title, one unified diff per file, then its body."""
    diffs = []
    for fname, new in sorted(files.items()):
        old = deps.repo.read_file(path=fname) or ""
        diffs.append("".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"a/{fname}", f"b/{fname}")))
    show = deps.on_preview or deps.on_progress
    show(f"=== would open PR {branch}: {title}\n" + "".join(d if d.endswith("\n") else d + "\n" for d in diffs)
         + f"--- PR body ---\n{body}\n=== end of {branch}\n")
