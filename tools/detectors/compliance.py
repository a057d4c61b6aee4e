"""Compliance policies as code, in CEL (the expression language of Kubernetes
ValidatingAdmissionPolicy), evaluated on the desired state of the GitOps repository. Pure: parsed
policy documents and objects in, results out (cel-python evaluates; no I/O).

A policy is a document shaped like a ValidatingAdmissionPolicy::

    apiVersion: remediator.apexlogic.com/v1alpha1
    kind: CompliancePolicy
    metadata: {name: fairness-threshold}
    spec:
      severity: warning                       # info | warning | critical
      matchConstraints:
        kinds: [MultimodalInferenceService]   # or resourceRules: [{kinds: [...]}]
        namespaces: [ml-serving]              # optional
        objectSelector: {matchLabels: {...}}  # optional
      params: {maxThreshold: 0.1}             # what paramRef would point at
      matchConditions:                        # optional; all true = the policy applies
        - {name: declares-attributes, expression: "has(object.spec.responsibleAI.fairness.protectedAttributes)"}
      validations:
        - expression: "object.spec.responsibleAI.fairness.threshold <= params.maxThreshold"
          message: fairness threshold above the allowed maximum
          messageExpression: "'threshold ' + string(object.spec.responsibleAI.fairness.threshold)"
          reason: Invalid
          fix:                                # optional: how a failure is fixed in Git (add_required_label)
            label: {keyExpression: "params.label", valueExpression: "params.value"}
      validationActions: [Warn]               # Audit: posture only; Warn / Deny: a policy_violation finding
      disabled: false

A remediation that would make a passing policy fail is refused whatever the action. Expressions see ``object`` (the manifest as deployed), ``params`` and ``models`` (the approved model
versions of ``policies/models.yaml``: a list of {name, version, approvedBy, date}).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["CompiledPolicy", "ObjectRef", "PolicyResult", "compile_policies", "evaluate", "evaluate_one"]

Status = Literal["pass", "fail", "not_applicable", "error"]
SEVERITIES = ("info", "warning", "critical")


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class _Rule(_M):
    kinds: list[str] = Field(default_factory=list)
    apiGroups: list[str] = Field(default_factory=list)
    apiVersions: list[str] = Field(default_factory=list)
    operations: list[str] = Field(default_factory=list)
    resources: list[str] = Field(default_factory=list)


class _Selector(_M):
    matchLabels: dict[str, str] = Field(default_factory=dict)


class _Match(_M):
    kinds: list[str] = Field(default_factory=list)
    resourceRules: list[_Rule] = Field(default_factory=list)
    namespaces: list[str] = Field(default_factory=list)
    objectSelector: _Selector = Field(default_factory=_Selector)
    namespaceSelector: _Selector = Field(default_factory=_Selector)


class _Condition(_M):
    name: str = ""
    expression: str


class _LabelFix(_M):
    keyExpression: str = Field(min_length=1)
    valueExpression: str = Field(min_length=1)


class _Fix(_M):
    label: _LabelFix


class _Validation(_M):
    expression: str
    message: str = ""
    messageExpression: str = ""
    reason: str = "Invalid"
    fix: _Fix | None = None


class _Spec(_M):
    severity: Literal["info", "warning", "critical"] = "warning"
    matchConstraints: _Match = Field(default_factory=_Match)
    params: dict[str, Any] = Field(default_factory=dict)
    matchConditions: list[_Condition] = Field(default_factory=list)
    validations: list[_Validation] = Field(min_length=1)
    validationActions: list[Literal["Deny", "Warn", "Audit"]] = Field(default=["Warn"], min_length=1)
    disabled: bool = False
    description: str = ""


class _Meta(_M):
    name: str = Field(min_length=1)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class _Policy(_M):
    apiVersion: str = ""
    kind: Literal["CompliancePolicy", "ValidatingAdmissionPolicy"]
    metadata: _Meta
    spec: _Spec


@dataclass(frozen=True)
class _Compiled:
    text: str
    program: Any


@dataclass(frozen=True)
class _Check:
    expression: _Compiled
    message: str
    message_expression: _Compiled | None
    reason: str
    fix_label: tuple[_Compiled, _Compiled] | None = None   # (key, value) of the label that fixes a failure


@dataclass(frozen=True)
class CompiledPolicy:
    name: str
    file: str
    severity: str
    kinds: frozenset[str]
    namespaces: frozenset[str]
    labels: Mapping[str, str]
    params: Mapping[str, Any]
    conditions: tuple[_Compiled, ...]
    validations: tuple[_Check, ...]
    description: str = ""
    actions: frozenset[str] = frozenset({"Warn"})

    @property
    def audit_only(self) -> bool:
        """Only part of the posture: a failure is no finding (the shipped defaults, until a user opts in)."""
        return not (self.actions & {"Warn", "Deny"})


@dataclass(frozen=True)
class ObjectRef:
    """An object as deployed: ``key`` is namespace/name, ``body`` the manifest."""

    key: str
    kind: str
    namespace: str
    labels: Mapping[str, str]
    body: Mapping[str, Any]
    file: str = ""


@dataclass(frozen=True)
class PolicyResult:
    policy: str
    severity: str
    object: str          # "Kind namespace/name"
    key: str             # namespace/name
    file: str
    status: Status
    expression: str = ""
    message: str = ""
    reason: str = ""
    policy_file: str = ""
    # the labels that fix the failing validations, where their ``fix`` gives a key and a value:
    # ({"label": key, "value": value}, ...)
    fixes: tuple[Mapping[str, str], ...] = field(default_factory=tuple)


_ENV = celpy.Environment()


def _compile(text: str) -> Any:
    return _ENV.program(_ENV.compile(text))


def compile_policies(docs: Iterable[tuple[str, Any]]) -> tuple[list[CompiledPolicy], list[tuple[str, str]]]:
    """``(file, parsed document)`` pairs -> compiled policies, later documents replacing earlier ones
    of the same name (a repository's policy overrides a shipped default; ``disabled: true`` turns it
    off). A document that is not a valid policy, or an expression that does not compile, is a problem
    naming the file, the policy and the expression; the other policies are still compiled."""
    by_name: dict[str, CompiledPolicy | None] = {}
    problems: list[tuple[str, str]] = []
    for file, doc in docs:
        if not isinstance(doc, dict) or doc.get("kind") not in ("CompliancePolicy", "ValidatingAdmissionPolicy"):
            continue
        name = str((doc.get("metadata") or {}).get("name") or "?") if isinstance(doc.get("metadata"), dict) else "?"
        try:
            p = _Policy.model_validate(doc)
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(x) for x in err["loc"])
            problems.append((file, f"policy {name}: {loc}: {err['msg']}; the policy is not evaluated"))
            continue
        if p.spec.disabled:
            by_name[p.metadata.name] = None
            continue
        try:
            conditions = tuple(_Compiled(c.expression, _compile(c.expression)) for c in p.spec.matchConditions)
            validations = tuple(
                _Check(_Compiled(v.expression, _compile(v.expression)), v.message,
                       _Compiled(v.messageExpression, _compile(v.messageExpression)) if v.messageExpression else None,
                       v.reason,
                       (_Compiled(v.fix.label.keyExpression, _compile(v.fix.label.keyExpression)),
                        _Compiled(v.fix.label.valueExpression, _compile(v.fix.label.valueExpression)))
                       if v.fix is not None else None) for v in p.spec.validations)
        except CELParseError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            problems.append((file, f"policy {p.metadata.name}: an expression does not compile ({first}); "
                                   "the policy is not evaluated"))
            continue
        m = p.spec.matchConstraints
        kinds = set(m.kinds) | {k for r in m.resourceRules for k in r.kinds}
        by_name[p.metadata.name] = CompiledPolicy(
            name=p.metadata.name, file=file, severity=p.spec.severity, kinds=frozenset(kinds),
            namespaces=frozenset(m.namespaces), labels=dict(m.objectSelector.matchLabels), params=dict(p.spec.params),
            conditions=conditions, validations=validations, description=p.spec.description,
            actions=frozenset(p.spec.validationActions))
    return [p for p in by_name.values() if p is not None], problems


def _applies(p: CompiledPolicy, obj: ObjectRef) -> bool:
    if p.kinds and obj.kind not in p.kinds and "*" not in p.kinds:
        return False
    if p.namespaces and obj.namespace not in p.namespaces:
        return False
    return all(obj.labels.get(k) == v for k, v in p.labels.items())


def _run(prog: _Compiled, activation: Mapping[str, Any]) -> Any:
    out = prog.program.evaluate(activation)
    if isinstance(out, CELEvalError):
        raise out
    return out


def evaluate_one(p: CompiledPolicy, obj: ObjectRef, models: Sequence[Mapping[str, Any]] = ()) -> PolicyResult:
    who = f"{obj.kind} {obj.key}"
    base: dict[str, Any] = {"policy": p.name, "severity": p.severity, "object": who, "key": obj.key, "file": obj.file,
                            "policy_file": p.file}
    if not _applies(p, obj):
        return PolicyResult(status="not_applicable", **base)
    activation = {"object": json_to_cel(dict(obj.body)), "params": json_to_cel(dict(p.params)),
                  "models": json_to_cel([dict(m) for m in models])}
    for cond in p.conditions:
        try:
            ok = _run(cond, activation)
        except Exception as e:   # noqa: BLE001 - cel-python raises several types on bad data
            return PolicyResult(status="error", expression=cond.text, message=f"match condition: {_first(e)}", **base)
        if not isinstance(ok, bool | celtypes.BoolType):
            return PolicyResult(status="error", expression=cond.text,
                                message=f"match condition returns {type(ok).__name__}, not a bool", **base)
        if not ok:
            return PolicyResult(status="not_applicable", **base)
    failed: list[_Check] = []
    for check in p.validations:
        try:
            ok = _run(check.expression, activation)
        except Exception as e:   # noqa: BLE001
            if failed:   # the first failure is the result; a later validation's error does not hide it
                break
            return PolicyResult(status="error", expression=check.expression.text, message=_first(e), **base)
        if not isinstance(ok, bool | celtypes.BoolType):
            if failed:
                break
            return PolicyResult(status="error", expression=check.expression.text,
                                message=f"returns {type(ok).__name__}, not a bool", **base)
        if not ok:
            failed.append(check)
    if not failed:
        return PolicyResult(status="pass", **base)
    first = failed[0]
    text = first.message or f"failed: {first.expression.text}"
    if first.message_expression is not None:
        try:
            got = _run(first.message_expression, activation)
            text = str(got) if isinstance(got, str) else text
        except Exception:   # noqa: BLE001 - a broken messageExpression falls back to message
            pass
    fixes = tuple(f for f in (_label_fix(c, activation) for c in failed) if f is not None)
    return PolicyResult(status="fail", expression=first.expression.text, message=text, reason=first.reason,
                        fixes=fixes, **base)


def _label_fix(check: _Check, activation: Mapping[str, Any]) -> dict[str, str] | None:
    """The label (key, value) a failing validation's ``fix`` gives, or None when it gives none (no fix,
    an expression that fails, or an empty or non-string key or value: then a human fixes it)."""
    if check.fix_label is None:
        return None
    try:
        key, value = (_run(c, activation) for c in check.fix_label)
    except Exception:   # noqa: BLE001 - a fix that cannot be computed leaves the failure notify-only
        return None
    if not isinstance(key, str) or not isinstance(value, str) or not key or not value:
        return None
    return {"label": str(key), "value": str(value)}


def _first(e: BaseException) -> str:
    text = str(e.args[0] if isinstance(e, CELEvalError) and e.args else e).strip()
    return (text.splitlines() or [type(e).__name__])[0][:300]


def evaluate(policies: Sequence[CompiledPolicy], objects: Iterable[ObjectRef],
             models: Sequence[Mapping[str, Any]] = ()) -> list[PolicyResult]:
    """Every (policy, object) pair that applies, in a stable order."""
    out: list[PolicyResult] = []
    for obj in sorted(objects, key=lambda o: (o.key, o.kind)):
        for p in sorted(policies, key=lambda p: p.name):
            r = evaluate_one(p, obj, models)
            if r.status != "not_applicable":
                out.append(r)
    return out
