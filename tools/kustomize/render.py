"""The rendered view of the repository: under which namespace, name and labels each object runs once
kustomize (and the Argo CD Application / Flux Kustomization that deploys it) has rendered it, which
files are patches rather than resources, and what in the kustomizations kustomize would refuse
(a missing or remote base, a cycle of bases, an unknown field, a missing patch file).

Workloads are named by their rendered ``namespace/name`` everywhere (Prometheus, the audit log,
incidents, PR text); edits still go to the file and document that set a value (``resolve``).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tools.kustomize.deployers import Deployer, deployers
from tools.kustomize.patches import State, advance, transformer_options
from tools.kustomize.resolve import level_of, routes_to, top_level
from tools.kustomize.tree import (
    KUSTOMIZATION_FILES,
    Tree,
    Unsupported,
    canonical,
    entries,
    is_remote,
    join_path,
    norm_dir,
    norm_file,
)

__all__ = ["Identity", "ObjectRef", "View", "render"]


@dataclass(frozen=True)
class ObjectRef:
    """An object as its file has it."""

    file: str
    kind: str
    name: str
    namespace: str | None = None     # None: the file names none
    labels: Mapping[str, str] = field(default_factory=dict)
    api_version: str = ""


@dataclass(frozen=True)
class Identity:
    """How an object runs: rendered namespace, name and labels, and the deployments it comes by."""

    namespace: str
    name: str
    labels: Mapping[str, str]
    routes: tuple[str, ...]
    paths: tuple[str, ...] = ()    # the deployed folders of those routes (for values and edits of this one)


@dataclass(frozen=True)
class View:
    # (file, kind, name in the file) -> how it runs: one identity per distinct (namespace, name, labels),
    # e.g. a base deployed by a staging and a prod overlay is two workloads
    identities: dict[tuple[str, str, str], tuple[Identity, ...]]
    patch_files: frozenset[str]                         # files kustomizations use as patches, not resources
    problems: tuple[tuple[str, str], ...]               # (file, what is wrong and what to do)


def render(files: Mapping[str, str], objects: Iterable[ObjectRef], deployed_paths: Iterable[str] | None = None) -> View:
    """The rendered identities of each object that a kustomization includes (objects deployed as a
    plain folder keep their own names; their namespace is the Application's destination when they
    name none). ``deployed_paths``: the folders deployed (default: the Argo CD Applications / Flux
    Kustomizations among ``files``, else the top-level kustomizations). An object deployed by several
    routes under different names has one identity per name, each with its own deployed folders."""
    tree = Tree.of(files)
    problems = _check(tree)
    if deployed_paths is not None:
        deps = [Deployer(path=norm_dir(p), label=f"deployed path {norm_dir(p) or '.'}") for p in deployed_paths]
        fallback: list[Deployer] = []
    else:
        deps = deployers(tree)
        fallback = [Deployer(path=r, label="top-level kustomization") for r in top_level(tree)]
    out: dict[tuple[str, str, str], tuple[Identity, ...]] = {}
    for obj in objects:
        try:
            routes = routes_to(tree, norm_file(obj.file), deps) or (
                routes_to(tree, norm_file(obj.file), fallback) if fallback else [])
        except Unsupported as exc:
            problems.append((obj.file, f"{obj.kind}/{obj.name}: {exc}"))
            continue
        seen: dict[tuple[str, str, tuple[tuple[str, str], ...]], list[tuple[str, str]]] = {}
        for label, levels, dep in routes:
            st = State(kind=obj.kind, api_version=obj.api_version, names={obj.name}, name=obj.name,
                       namespaces={obj.namespace} if obj.namespace else set(), labels=dict(obj.labels),
                       annotations={})
            try:
                for lv in levels:
                    advance(lv.body, st)
                    for opts in transformer_options(tree, lv, st):
                        advance(opts, st)
            except Unsupported as exc:   # a transformer that may rename it: named, and the name as read is kept
                problems.append((obj.file, f"{obj.kind}/{obj.name} via {label}: {exc}"))
            ns = st.namespace or obj.namespace or dep.namespace or "default"
            seen.setdefault((ns, st.name, tuple(sorted(st.labels.items()))), []).append((label, dep.path))
        if seen:
            out[(obj.file, obj.kind, obj.name)] = tuple(
                Identity(namespace=ns, name=name, labels=dict(labels), routes=tuple(lab for lab, _ in how),
                         paths=tuple(dict.fromkeys(p for _, p in how)))
                for (ns, name, labels), how in seen.items())
    return View(identities=out, patch_files=frozenset(_patch_files(tree)), problems=tuple(problems))


def _kustomization_folders(tree: Tree) -> list[str]:
    return sorted({posixpath.dirname(f) for f in tree.files if posixpath.basename(f) in KUSTOMIZATION_FILES})


def _patch_refs(body: Mapping[str, Any], folder: str) -> list[tuple[str, str]]:
    """``(key, repo path)`` of every patch file a kustomization names (inline patches are not files)."""
    out = []
    for key in ("patchesStrategicMerge", "patches", "patchesJson6902"):
        for e in entries(body, key):
            ref = canonical(e, ("path",))[0].get("path") if isinstance(e, dict) else (
                e if isinstance(e, str) and "\n" not in e and ":" not in e else None)
            if isinstance(ref, str):
                out.append((key, join_path(folder, ref)))
    return out


def _patch_files(tree: Tree) -> set[str]:
    out: set[str] = set()
    for folder in _kustomization_folders(tree):
        kfile = tree.kustomization(folder)
        try:
            body = level_of(tree, kfile, kfile).body if kfile else {}
        except Unsupported:
            continue
        out |= {path for _, path in _patch_refs(body, folder)}
    return out


def _check(tree: Tree) -> list[tuple[str, str]]:
    """What kustomize would refuse in each kustomization, each naming the file and what to do."""
    problems: list[tuple[str, str]] = []
    includes: dict[str, list[str]] = {}
    for folder in _kustomization_folders(tree):
        kfile = tree.kustomization(folder)
        if kfile is None:
            continue
        try:
            docs = [d for d in tree.docs(kfile) if d is not None]
        except Unsupported:
            continue   # the YAML error is reported with the other files
        if len(docs) != 1 or not isinstance(docs[0], dict):
            problems.append((kfile, "a kustomization file must hold exactly one mapping"))
            continue
        body, _, unknown = canonical(docs[0])
        for k in unknown:
            problems.append((kfile, f"unknown field {k!r}: kustomize refuses this kustomization; fix or remove it"))
        includes[folder] = []
        for key in ("resources", "bases", "components"):
            for e in entries(body, key):
                if not isinstance(e, str):
                    problems.append((kfile, f"{key}: {e!r} is not a path"))
                    continue
                if is_remote(e):
                    problems.append((kfile, f"{key}: remote base {e} is not followed: objects it holds are not "
                                            "watched and values it sets are not located"))
                    continue
                p = join_path(folder, e)
                if p in tree.files:
                    continue
                if tree.kustomization(p) is None:
                    problems.append((kfile, f"{key}: {e} ({p}) is neither a file nor a folder with a kustomization "
                                            "in the repository; kustomize fails on it"))
                    continue
                includes[folder].append(p)
        problems += [(kfile, f"{key}: patch file {path} is not in the repository")
                     for key, path in _patch_refs(body, folder) if path not in tree.files]
    problems += _cycles(includes)
    return problems


def _cycles(includes: Mapping[str, list[str]]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    reported: set[frozenset[str]] = set()
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in includes.get(node, []):
            if state.get(nxt) == 1:
                loop = stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt]
                if frozenset(loop) not in reported:
                    reported.add(frozenset(loop))
                    out.append((nxt or ".", f"kustomizations include each other ({' -> '.join(x or '.' for x in loop)}); "
                                            "kustomize fails on a cycle: remove one of the references"))
            elif state.get(nxt) is None:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for start in sorted(includes):
        if start not in state:
            visit(start, [start])
    return out
