"""The LLM planner: an OpenAI-compatible model chooses a playbook, its parameters and a rationale.

The model never writes files, YAML paths or commands. It answers with a :class:`PlanProposal`
(a pydantic model, sent as a strict JSON schema); remediator renders the field edits from the
chosen playbook with ``render_edits``, exactly as the deterministic planner does, and the
deterministic guard (``agents.guard.check``) alone decides what may be proposed.

* Evidence compaction: the prompt carries summaries (statistics, change points, a few points),
  never raw series; the evidence block is bounded in characters and the whole chat in tokens
  (``budget_tokens_per_incident``).
* Prompt-injection defence: every string that comes from outside (audit-log fields, manifest
  strings, label values, commit messages, tool results) is fenced as
  ``<untrusted source="...">...</untrusted>`` with ``<`` and ``>`` escaped inside, so the fence
  cannot be closed from within; the system message says fenced text is data, never instructions.
* Fallback: no LLM configured, an endpoint error or timeout (after the adapter's retries),
  invalid output, a proposal outside the incident's scope, the per-incident token budget or the
  monthly budget spent -> the deterministic plan, with ``planner="deterministic"`` and
  ``planner_reason="llm fallback: <why>"``. On success ``planner="llm"``.
* FinOps: tokens and cost of each incident go into ``plan.params["llm_usage"]`` and
  ``planner_reason``; month totals into a :class:`UsageLedger` (exported as metrics).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any, Protocol

from agents.planners.deterministic import PlanContext, lowest_allowed, render_edits
from agents.planners.deterministic import plan as deterministic_plan
from agents.planners.ledger import UsageLedger
from agents.planners.prompting import audit_source, cite_evidence, compact_evidence, fence, neutralise
from agents.planners.schema import PARAM_FIELDS, PlanProposal
from agents.planners.tools import PlannerTools
from agents.workloads import Workload, incident_scope
from memory.records import FieldEdit, Incident, RemediationPlan
from tools.errors import ToolError
from tools.llm import (
    ChatResult,
    LLMBudgetExceeded,
    LLMInvalidOutput,
    LLMRejected,
    LLMUnavailable,
    LLMUsage,
    ToolSpec,
)

__all__ = ["SYSTEM_PROMPT", "ChatModel", "LLMPlanner"]

log = logging.getLogger("remediator.planner.llm")

SYSTEM_PROMPT = files("agents.planners").joinpath("prompts/system.txt").read_text(encoding="utf-8").removesuffix("\n")


class ChatModel(Protocol):
    model: str

    def chat(self, *, messages: Sequence[dict[str, Any]], response_model: type[PlanProposal],
             tools: Sequence[ToolSpec] = (), max_turns: int = 6, max_tool_calls: int = 8,
             token_budget: int | None = None) -> ChatResult[PlanProposal]: ...


class _Fallback(Exception):
    def __init__(self, kind: str, why: str, usage: LLMUsage | None = None) -> None:
        super().__init__(why)
        self.kind, self.why, self.usage = kind, why, usage or LLMUsage()


# Rules of the playbooks whose parameters the planner checks against the evidence; each is stated
# only to a model that is offered that playbook (the prompt stays within the token budget).
PLAYBOOK_RULES = {
    "rollback_model_version": "goes back to the previous version in Git history (given above), nothing else",
    "add_required_label": "adds only the labels and values the policy gives (evidence.violations[].fixes)",
    "rightsize_requests": "only sets a request raised in Git back to its value before the raise "
                          "(evidence.request_change), nothing else",
}


class LLMPlanner:
    """Plan with an LLM; on any failure the deterministic planner decides and the plan says why."""

    def __init__(self, llm: ChatModel | None, *, budget_tokens_per_incident: int = 8000,
                 price_per_1k_tokens: float = 0.0, price_per_1k_completion_tokens: float | None = None,
                 monthly_budget_usd: float | None = None, ledger: UsageLedger | None = None,
                 max_turns: int = 6, max_tool_calls: int = 6, max_evidence_chars: int = 2400,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 fallback: Callable[[Incident, PlanContext], RemediationPlan] = deterministic_plan) -> None:
        self.llm = llm
        self.budget_tokens_per_incident = int(budget_tokens_per_incident)
        self.price_prompt = float(price_per_1k_tokens)
        self.price_completion = float(price_per_1k_tokens if price_per_1k_completion_tokens is None
                                      else price_per_1k_completion_tokens)
        self.monthly_budget_usd = monthly_budget_usd
        self.ledger = ledger
        self.max_turns = max_turns
        self.max_tool_calls = max_tool_calls
        self.max_evidence_chars = max_evidence_chars
        self.clock = clock
        self.fallback = fallback

    def cost_usd(self, usage: LLMUsage) -> float:
        return round(usage.prompt_tokens / 1000 * self.price_prompt
                     + usage.completion_tokens / 1000 * self.price_completion, 6)

    def month(self) -> str:
        return self.clock().astimezone(UTC).strftime("%Y-%m")

    # ------------------------------------------------------------------ entry point

    def plan(self, incident: Incident, ctx: PlanContext, tools: PlannerTools | None = None) -> RemediationPlan:
        try:
            if self.llm is None:
                raise _Fallback("no_llm", "no LLM configured (llm.provider: none)")
            self._check_month()
            messages = self.messages(incident, ctx)
            specs = tools.specs() if tools is not None else []
            try:
                res = self.llm.chat(messages=messages, response_model=PlanProposal, tools=specs,
                                    max_turns=self.max_turns, max_tool_calls=self.max_tool_calls,
                                    token_budget=self.budget_tokens_per_incident)
            except LLMUnavailable as e:
                raise _Fallback("timeout" if "timeout" in e.short else "unavailable", e.short, e.usage) from None
            except LLMRejected as e:
                raise _Fallback("rejected", e.short, e.usage) from None
            except LLMInvalidOutput as e:
                raise _Fallback("invalid_output", e.short, e.usage) from None
            except LLMBudgetExceeded as e:
                raise _Fallback("budget_incident", e.short, e.usage) from None
            except ToolError as e:
                raise _Fallback("error", str(e)[:200]) from None
            try:
                plan = self._to_plan(incident, ctx, res.parsed)
            except _Fallback as f:
                raise _Fallback(f.kind, f.why, res.usage) from None
        except _Fallback as f:
            return self._fall_back(incident, ctx, f)
        usage = res.usage
        cost = self.cost_usd(usage)
        self._record(usage, cost, None)
        tools_used = f", tools [{', '.join(res.tool_calls)}]" if res.tool_calls else ""
        reason = (f"llm: {res.model or getattr(self.llm, 'model', '?')}, {res.turns} turn(s){tools_used}, "
                  f"{usage.total_tokens} tokens ({usage.prompt_tokens} prompt + {usage.completion_tokens} completion), "
                  f"${cost:.4f}")
        params = dict(plan.params)
        params["llm_usage"] = self._usage_dict(usage, cost, res.turns, res.tool_calls)
        return plan.model_copy(update={"planner": "llm", "planner_reason": reason, "params": params})

    def _check_month(self) -> None:
        if self.ledger is None or self.monthly_budget_usd is None:
            return
        month = self.month()
        spent = float(self.ledger.month(month).get("cost_usd", 0.0))
        if spent >= self.monthly_budget_usd:
            raise _Fallback("budget_month", f"monthly LLM budget spent (${spent:.2f} of ${self.monthly_budget_usd:.2f} "
                                            f"in {month})")

    def _fall_back(self, incident: Incident, ctx: PlanContext, f: _Fallback) -> RemediationPlan:
        p = self.fallback(incident, ctx)
        cost = self.cost_usd(f.usage)
        if self.llm is not None and f.kind not in ("budget_month",):
            self._record(f.usage, cost, f.kind)
        spent = f" ({f.usage.total_tokens} tokens spent, ${cost:.4f})" if f.usage.total_tokens else ""
        prefix = "no llm" if f.kind == "no_llm" else "llm fallback"
        reason = f"{prefix}: {f.why}; deterministic planner decided{spent}"
        if f.kind != "no_llm":
            log.warning("incident %s: %s", incident.id, reason)
        params = dict(p.params)
        if f.usage.total_tokens:
            params["llm_usage"] = self._usage_dict(f.usage, cost, f.usage.calls, [])
        return p.model_copy(update={"planner": "deterministic", "planner_reason": reason, "params": params})

    def _record(self, usage: LLMUsage, cost: float, fallback: str | None) -> None:
        if self.ledger is not None:
            self.ledger.add(self.month(), usage=usage, cost_usd=cost, fallback=fallback)

    @staticmethod
    def _usage_dict(usage: LLMUsage, cost: float, turns: int, tools: list[str]) -> dict[str, Any]:
        return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens, "calls": usage.calls, "cost_usd": cost, "turns": turns,
                "tool_calls": list(tools)}

    # ------------------------------------------------------------------ prompt

    def messages(self, incident: Incident, ctx: PlanContext) -> list[dict[str, Any]]:
        # keep the first prompt within ~60% of the per-incident budget: evidence is what shrinks
        budget_chars = int(self.budget_tokens_per_incident * 4 * 0.6)
        ev_chars = self.max_evidence_chars
        while True:
            user = self.user_prompt(incident, ctx, max_evidence_chars=ev_chars)
            if len(SYSTEM_PROMPT) + len(user) <= budget_chars or ev_chars <= 300:
                break
            ev_chars = max(300, ev_chars // 2)
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]

    def user_prompt(self, incident: Incident, ctx: PlanContext, *, max_evidence_chars: int | None = None) -> str:
        g = ctx.guardrails
        src = audit_source(incident)
        ev = compact_evidence(incident.evidence, max_chars=max_evidence_chars or self.max_evidence_chars, source=src)
        lines = [
            "## Incident",
            f"kind: {incident.kind}",
            f"service: {fence(incident.service, 'incident.service', 120)}",
            f"severity: {incident.severity}",
            f"opened_at: {incident.opened_at.astimezone(UTC).strftime('%Y-%m-%dT%H:%MZ')}",
            f"summary: {fence(incident.summary, 'incident.summary', 300)}",
            "",
            "## Evidence (computed by remediator's detectors; fenced strings came from outside)",
            ev,
            "",
            "## Workloads in scope (numbers and flags computed by remediator from Git)",
        ]
        scope = self.scope(incident, ctx)
        if not scope:
            lines.append("(none: no workload in Git matches this incident; choose a notify playbook)")
        for w in scope[:8]:
            lines += self._workload_lines(w, ctx, with_history=incident.kind in ("model_drift", "fairness_violation"))
        if len(scope) > 8:
            lines.append(f"... +{len(scope) - 8} more workloads in scope")
        lines += ["", "## Playbooks you may choose"]
        offered = [name for name, pb in sorted(ctx.playbooks.items())
                   if incident.kind in pb.answers and name in g.allowed_playbooks]
        for name in offered:
            pb = ctx.playbooks[name]
            ps = ", ".join(f"{k} ({p.type}{_bounds(p.min, p.max)}{'' if p.required else ', optional'})"
                           for k, p in pb.parameters.items()) or "no parameters"
            lines.append(f"- {name} [{pb.action}]: {pb.description} Parameters: {ps}.")
        lines += [
            "",
            "## Guardrails (enforced by the guard; a plan breaking one is rejected)",
            f"- replica bounds never below {g.replicas.floor}; one PR lowers a bound by at most "
            f"{g.replicas.max_decrease_percent:g}%; cap_max_replicas and scale_down_noncritical only lower bounds; "
            "maxReplicas never below minReplicas",
            "- protected workloads are never changed (notify only); budget actions never touch critical workloads",
            f"- at most {g.limits.max_files_per_pr} files per PR; targets must be workloads in scope",
            *(f"- {name} {PLAYBOOK_RULES[name]}" for name in offered if name in PLAYBOOK_RULES),
            "",
            "Decide now. Answer with the JSON object only.",
        ]
        return "\n".join(lines)

    def _workload_lines(self, w: Workload, ctx: PlanContext, *, with_history: bool) -> list[str]:
        g = ctx.guardrails
        labels = ", ".join(f"{neutralise(k, 60)}={fence(v, f'manifest.labels.{k}', 80)}" for k, v in sorted(w.labels.items()))
        out = [f"- workload: {w.key} (kind {w.kind})",
               f"  labels: {labels or '(none)'}",
               f"  critical: {'yes' if w.is_critical(g) else 'no'}; protected: {'yes' if w.is_protected(g) else 'no'}"]
        if w.max_replicas is not None:
            lo = lowest_allowed(w.max_replicas, g)
            lo_min = lowest_allowed(w.min_replicas or 1, g)
            out.append(f"  replicas: minReplicas {w.min_replicas}, maxReplicas {w.max_replicas}; lowest values one PR "
                       f"may set: maxReplicas {lo}, minReplicas {lo_min}")
        else:
            out.append("  replicas: no autoscaler bounds in Git")
        if w.kind == "MultimodalInferenceService" and w.model:
            out.append(f"  model: version {fence(w.model.get('version', '?'), 'manifest.spec.modelRef.version', 60)}, "
                       f"path {fence(w.model.get('path', '?'), 'manifest.spec.modelRef.path', 120)}")
            prev = self._previous(w, ctx) if with_history else None
            if not with_history:
                pass
            elif prev is not None:
                out.append(f"  previous model in Git history: version {fence(prev['version'], 'git.modelRef.version', 60)}, "
                           f"path {fence(prev.get('path') or '?', 'git.modelRef.path', 120)}, commit "
                           f"{neutralise(str(prev.get('commit', ''))[:8], 8)}")
            else:
                out.append("  previous model in Git history: none")
        return out

    @staticmethod
    def _previous(w: Workload, ctx: PlanContext) -> dict[str, Any] | None:
        try:
            return ctx.previous_model(w)
        except ToolError as e:
            log.warning("previous model of %s unavailable: %s", w.key, e)
            return None

    # ------------------------------------------------------------------ scope + answer -> plan

    @staticmethod
    def scope(incident: Incident, ctx: PlanContext) -> list[Workload]:
        """The workloads this incident may change: its own service, or those its budget selects."""
        return incident_scope(incident, ctx.budgets, ctx.workloads)

    def _to_plan(self, incident: Incident, ctx: PlanContext, p: PlanProposal) -> RemediationPlan:
        name = p.playbook.strip()
        rationale = cite_evidence(incident, p.rationale)
        targets: dict[str, dict[str, Any]] = {}
        for t in p.targets:
            if t.workload in targets:
                raise _Fallback("invalid_output", f"proposal names workload {neutralise(t.workload, 80)} twice")
            targets[t.workload] = {k: getattr(t, k) for k in PARAM_FIELDS if getattr(t, k) is not None}
        pb = ctx.playbooks.get(name)
        if pb is None:
            # the guard rejects it (unknown playbook); keep what the model said for the record
            return RemediationPlan(incident_id=incident.id, playbook=name[:80], params={"targets": targets},
                                   rationale=rationale, planner="llm")
        if pb.action == "notify":
            return RemediationPlan(incident_id=incident.id, playbook=name, params={}, rationale=rationale, planner="llm")
        in_scope = {w.key for w in self.scope(incident, ctx)}
        for key in targets:
            if key not in ctx.workloads:
                raise _Fallback("scope", f"proposal targets {neutralise(key, 80)}, which is not a workload in Git")
            if key not in in_scope:
                raise _Fallback("scope", f"proposal targets {key}, outside the incident's scope "
                                         f"({', '.join(sorted(in_scope)) or 'none'})")
        if name == "rollback_model_version":
            targets = self._check_rollback(targets, ctx)
        if name == "rightsize_requests":
            targets = self._check_rightsize(incident, targets)
        if name == "add_required_label":
            targets = self._check_labels(incident, targets)
        edits: list[FieldEdit] = []
        for key, params in targets.items():
            edits += render_edits(pb, ctx.workloads[key], params)
        if targets and not edits:
            return RemediationPlan(incident_id=incident.id, playbook="notify_only", params={}, planner="llm",
                                   rationale=rationale + " Nothing to change in Git (values already there).")
        return RemediationPlan(incident_id=incident.id, playbook=name, params={"targets": targets}, edits=tuple(edits),
                               rationale=rationale, planner="llm")

    def _check_rollback(self, targets: dict[str, dict[str, Any]], ctx: PlanContext) -> dict[str, dict[str, Any]]:
        out = {}
        for key, params in targets.items():
            prev = self._previous(ctx.workloads[key], ctx)
            if prev is None:
                raise _Fallback("scope", f"rollback of {key} proposed, but Git history has no previous version")
            want = str(prev["version"])
            if str(params.get("version")) != want:
                raise _Fallback("scope", f"rollback of {key} to version {neutralise(str(params.get('version')), 40)}, "
                                         f"not the previous version in Git history ({want})")
            if params.get("path") not in (None, prev.get("path")):
                raise _Fallback("scope", f"rollback of {key}: artifact path is not the one of version {want} in Git")
            out[key] = {**params, **({"path": str(prev["path"])} if prev.get("path") else {})}
        return out

    @staticmethod
    def _check_labels(incident: Incident, targets: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Only the incident's workload, only the labels and values the policy gives (its evidence)."""
        fixes = {str(f["label"]): str(f["value"]) for v in incident.evidence.get("violations", [])
                 for f in (v.get("fixes") or []) if isinstance(f, dict) and f.get("label") and f.get("value")}
        if not fixes:
            raise _Fallback("scope", "add_required_label proposed, but no policy gives a label's value")
        if set(targets) != {incident.service}:
            raise _Fallback("scope", f"add_required_label may only label {incident.service}")
        return {incident.service: {"labels": fixes}}

    @staticmethod
    def _check_rightsize(incident: Incident, targets: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Only the incident's workload, only back to the values before the raise that the evidence
        names (typed as they were in Git: an unquoted ``1`` stays an int)."""
        rc = incident.evidence.get("request_change")
        raised = rc.get("raised") if isinstance(rc, dict) else None
        if not isinstance(raised, dict) or not raised:
            raise _Fallback("scope", "rightsize_requests proposed, but no request was raised in Git before the rise")
        out: dict[str, dict[str, Any]] = {}
        for key, params in targets.items():
            if key != incident.service:
                raise _Fallback("scope", f"rightsize of {key}: only {incident.service}'s requests were raised")
            kept: dict[str, Any] = {}
            for res, value in params.items():
                was = (raised.get(res) or {}).get("old") if isinstance(raised.get(res), dict) else None
                if was is None or str(value) != str(was):
                    raise _Fallback("scope", f"rightsize of {key}: {res} {neutralise(str(value), 40)} is not its value "
                                             f"before the raise in Git ({was if was is not None else 'not raised'})")
                kept[res] = was
            out[key] = kept
        return out


def _bounds(lo: float | None, hi: float | None) -> str:
    if lo is None and hi is None:
        return ""
    return f", {'' if lo is None else f'{lo:g}'}..{'' if hi is None else f'{hi:g}'}"
