"""The cycle's state and the typed views built from it once per cycle.

``CycleState`` travels through the LangGraph graph and is checkpointed after every node, so it
holds only JSON-able values (a killed cycle resumes from it). What the nodes read from it (the
workloads as deployed, the guardrails, the manifests with overlay values applied) is built
once per cycle by ``ViewCache.get`` instead of being re-parsed by every node.
"""

from __future__ import annotations

import copy
import json
import operator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Annotated, Any, TypedDict

from agents.compliance import PolicySet, policy_set
from agents.workloads import Budget, Guardrails, Workload, build_workloads, load_budgets, load_guardrails, put
from memory.records import new_id
from tools.results import AuditEvent, FileProblem, ManifestDoc

CURSOR_KEY = "auditlog.cursor"   # store key of the audit-log cursor (observe reads it, record moves it)
CARRY_KEY = "auditlog.carry"     # audit events read but newer than their cycle's time: the next cycle's
ANCHOR_KEY = "audit.anchor"      # store key of the last audit anchor written: {seq, hash, at, commit}


class CycleState(TypedDict, total=False):
    cycle_id: str
    started_at: str
    snapshot: dict[str, Any]            # commit, manifests, budgets, guardrails, effective (overlay values)
    audit_events: list[dict[str, Any]]
    audit_cursor: str | None
    audit_carry: list[dict[str, Any]]   # events read after the evaluation time: stored for the next cycle
    findings: list[dict[str, Any]]
    evaluated: list[str]                # kind|service that had data this cycle (only those may resolve)
    touched: list[str]                  # incident ids opened, seen again or resolved this cycle
    plans: list[dict[str, Any]]
    pr_ids: list[str]
    notifications: list[dict[str, Any]]
    # Slack work for the notify node: PRs whose approval message is due, outcomes to show
    slack_posts: Annotated[list[dict[str, Any]], operator.add]
    slack_outcomes: Annotated[list[dict[str, str]], operator.add]
    errors: Annotated[list[dict[str, Any]], operator.add]
    compliance: list[dict[str, Any]]    # the posture: one entry per (object, policy) evaluated


def new_cycle_state(started_at: datetime | None = None) -> CycleState:
    started = (started_at or datetime.now(UTC)).astimezone(UTC)
    return {"cycle_id": new_id("cyc"), "started_at": started.isoformat(), "errors": []}


def event_dict(e: AuditEvent) -> dict[str, Any]:
    """An audit event as JSON-able state."""
    d = asdict(e)
    d["at"] = e.at.isoformat()
    return d


def event_from_dict(d: dict[str, Any]) -> AuditEvent:
    return AuditEvent(**{**d, "at": datetime.fromisoformat(d["at"]), "groups": tuple(d["groups"]),
                         "source_ips": tuple(d["source_ips"])})


def err(stage: str, source: str, message: str) -> dict[str, Any]:
    """One entry of the report's ``errors``."""
    return {"stage": stage, "source": source, "message": message}


def effective_docs(snapshot: dict[str, Any]) -> list[ManifestDoc]:
    """The manifests as deployed: one document per rendered identity (a base that a staging and a
    prod overlay deploy is two), named by its rendered namespace/name with the overlay's labels, with
    the values the overlays set in place of the base's. Patch files are not manifests."""
    legacy = snapshot.get("effective") or {}   # file|kind|name|path -> value (snapshots without identities)
    rendered = snapshot.get("rendered") or {}
    patches = set(snapshot.get("patch_files") or ())
    docs: list[ManifestDoc] = []
    for m in snapshot["manifests"]:
        if m["file"] in patches:
            continue
        base = ManifestDoc(**m)
        idents = rendered.get(f"{base.file}|{base.kind}|{base.name}") or []
        if not idents:
            for key, value in legacy.items():
                file, kind, name, path = key.split("|", 3)
                if (file, kind, name) == (base.file, base.kind, base.name):
                    put(base.body, json.loads(path) if path.startswith("[") else path.split("."), value)
            docs.append(base)
            continue
        for ident in idents:
            d = replace(base, body=copy.deepcopy(base.body) if len(idents) > 1 else base.body,
                        namespace=ident["namespace"], name=ident["name"], labels=dict(ident["labels"]),
                        source_name=base.name if ident["name"] != base.name else "",
                        deployed_paths=tuple(ident.get("paths") or ()), set_in=dict(ident.get("set_in") or {}))
            for path, value in (ident.get("effective") or {}).items():
                put(d.body, json.loads(path), value)
            docs.append(d)
    # objects of Helm releases of charts in the repository: edits go to their values files
    docs += [ManifestDoc(**{**m, "deployed_paths": tuple(m.get("deployed_paths") or ())})
             for m in snapshot.get("helm") or []]
    return docs


@dataclass(frozen=True)
class Views:
    """Typed views of one cycle's snapshot."""

    docs: list[ManifestDoc]
    workloads: dict[str, Workload]
    guardrails: Guardrails
    guardrail_problems: list[FileProblem]
    budgets: list[Budget]
    budget_problems: list[FileProblem]
    policies: PolicySet


def build_views(snapshot: dict[str, Any], policies_dir: str) -> Views:
    docs = effective_docs(snapshot)
    guardrails, problems = load_guardrails(snapshot["guardrails"], policies_dir)
    budgets, bproblems = load_budgets(snapshot["budgets"], policies_dir)
    return Views(docs=docs, workloads=build_workloads(docs), guardrails=guardrails, guardrail_problems=problems,
                 budgets=budgets, budget_problems=bproblems,
                 policies=policy_set(snapshot.get("compliance_files") or {}, policies_dir))


class ViewCache:
    """``Views`` of the current cycle, built on first use (after observe) and kept for the cycle."""

    def __init__(self) -> None:
        self._key: tuple[str, str] | None = None
        self._views: Views | None = None

    @property
    def current(self) -> Views | None:
        """The views of the cycle in progress (None before observe built them)."""
        return self._views

    def put(self, state: CycleState, views: Views) -> None:
        """Keep views built by observe for the rest of this cycle."""
        self._views, self._key = views, (state["cycle_id"], str(state["snapshot"].get("commit")))

    def get(self, state: CycleState, policies_dir: str) -> Views:
        key = (state["cycle_id"], str(state["snapshot"].get("commit")))
        if self._views is None or self._key != key:
            self._views, self._key = build_views(state["snapshot"], policies_dir), key
        return self._views
