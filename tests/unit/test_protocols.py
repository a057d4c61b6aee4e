"""Every adapter in tools/ has every member of its Protocol (tools/protocols.py), with the
Protocol's parameters: the cycle calls what the Protocol promises, without probing."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest

from memory.records import PullRequest
from tools import protocols
from tools.anchors import GitAnchors
from tools.auditlog import JsonLinesAuditLog
from tools.embeddings import EmbeddingFiles
from tools.gitops import GitRepo
from tools.prometheus import PrometheusSource
from tools.providers.github import GitHubProvider
from tools.providers.gitlab import GitLabProvider
from tools.providers.local import LocalProvider
from tools.replay import ReplaySource
from tools.slack import SlackNotifier

ADAPTERS: list[tuple[type[Any], type[Any]]] = [
    (protocols.MetricsSource, PrometheusSource),
    (protocols.MetricsSource, ReplaySource),
    (protocols.GitOpsRepo, GitRepo),
    (protocols.PullRequests, LocalProvider),
    (protocols.PullRequests, GitHubProvider),
    (protocols.PullRequests, GitLabProvider),
    (protocols.AuditLog, JsonLinesAuditLog),
    (protocols.Notifier, SlackNotifier),
    (protocols.AuditAnchors, GitAnchors),
    (protocols.EmbeddingSource, EmbeddingFiles),
]


def _members(cls: type[Any]) -> dict[str, Any]:
    """Public names a class defines or annotates (its own and inherited), with their class attribute."""
    out: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or klass.__module__ == "typing":
            continue
        out.update({n: None for n in vars(klass).get("__annotations__", {}) if not n.startswith("_")})
        out.update({n: v for n, v in vars(klass).items() if not n.startswith("_")})
    return out


def test_every_protocol_is_checked() -> None:
    declared = {obj for obj in vars(protocols).values()
                if inspect.isclass(obj) and obj.__module__ == protocols.__name__}
    assert declared == {proto for proto, _ in ADAPTERS}


@pytest.mark.parametrize(("proto", "adapter"), ADAPTERS, ids=lambda c: c.__name__)
def test_adapter_has_every_protocol_member(proto: type[Any], adapter: type[Any]) -> None:
    have = _members(adapter)
    for name, want in _members(proto).items():
        assert name in have, f"{adapter.__name__} lacks {proto.__name__}.{name}"
        got = have[name]
        if isinstance(want, property):
            assert not callable(got) or isinstance(got, property), \
                f"{adapter.__name__}.{name} must be a property or an attribute, like {proto.__name__}.{name}"
        elif inspect.isfunction(want):
            assert inspect.isfunction(got), f"{adapter.__name__}.{name} must be a method"
            _same_parameters(proto, adapter, name, inspect.signature(want), inspect.signature(got))


def _same_parameters(proto: type[Any], adapter: type[Any], name: str, want: inspect.Signature,
                     got: inspect.Signature) -> None:
    where = f"{adapter.__name__}.{name}{got} vs {proto.__name__}.{name}{want}"
    for p in want.parameters.values():
        q = got.parameters.get(p.name)
        assert q is not None and q.kind == p.kind, f"{where}: parameter {p.name}"
        if p.default is not inspect.Parameter.empty:
            assert q.default == p.default, f"{where}: default of {p.name}"
    extra = [q for q in got.parameters.values() if q.name not in want.parameters
             and q.kind not in (q.VAR_POSITIONAL, q.VAR_KEYWORD)]
    assert all(q.default is not inspect.Parameter.empty for q in extra), f"{where}: extra required parameters"


def test_a_plain_git_remote_has_no_reviews(tmp_path: Path) -> None:
    provider = LocalProvider(remote=str(tmp_path / "remote.git"), base="main", workdir=tmp_path / "clone")
    assert provider.reviews(pr=PullRequest(branch="remediator/x", title="x")) == []
