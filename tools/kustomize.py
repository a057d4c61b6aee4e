"""Where a manifest field is really set: kustomize overlays (pure: file texts in, no git, no I/O).

A planner edits the base manifest it sees (``apps/x/base/svc.yaml`` says ``maxReplicas: 6``), but
when the deployed overlay patches that field (``overlays/prod`` sets 4) the value in the cluster
is the overlay's, and a PR must change the overlay. :func:`locate` follows what Argo CD / Flux
deploy (an Argo CD ``Application``'s ``spec.source(s).path``, a Flux ``Kustomization``'s
``spec.path``, or the top-level kustomizations when neither is in the repo) through
``resources`` / ``bases`` / ``components`` down to the file, replays the patches of every level
in kustomize's order and returns the edit moved to the last place that sets the field:

* a strategic-merge patch file (``patchesStrategicMerge:`` or ``patches: - path:``): an ordinary
  :class:`FieldEdit` on that file's document, which ``tools.yamledit.apply_edits`` can apply;
* an inline patch (``patches: - patch: |-``, inline ``patchesStrategicMerge`` /
  ``patchesJson6902`` entries, Flux ``spec.patches``, Argo CD ``spec.source.kustomize.patches``)
  or a JSON6902 op (``op: replace``/``add`` whose ``path`` is the field or a parent of it): a
  FieldEdit whose ``path`` goes *into* the block-scalar string, e.g.
  ``("patches", 0, "patch", 0, "value")``; a JSON6902 patch file has no kind or name, so its
  edit has ``doc_kind == doc_name == ""`` ("the file's only document");
* a ``replicas:`` entry of a kustomization for ``spec.replicas`` of a Deployment/StatefulSet/
  ReplicaSet/ReplicationController: ``("replicas", i, "count")``.

:func:`apply_edits` here is a superset of ``tools.yamledit.apply_edits`` (plain edits are handed
to it unchanged) that also applies those extended edits with a one-line diff, re-reads the file
and checks that only that value changed. FieldEdit stays the one currency: plans, PR bodies and
inverse (revert) edits keep working.

Conservative by design: when routes to the cluster disagree (the field is set in several
deployed overlays, or one overlay patches it and another deploys the base value), or a construct
on the way is not followed (``$patch`` directives, a list merged on the path, a JSON6902 remove /
move / copy / list insert, label selectors other than ``k=v``, ``replacements``, custom
``transformers``, ``images`` on an image field, a missing patch file, a quoted or folded inline
patch ...), the result is ``ok=False`` with a reason, so the caller notifies instead of editing the
wrong file.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from memory.records import FieldEdit
from tools import yamledit
from tools.errors import PermanentError
from tools.yamledit import _render, _token_end  # the scalar writer shared with yamledit

__all__ = ["Deployer", "Location", "Relocated", "apply_edits", "deployers", "effective_value", "locate",
           "relocate"]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_REPLICA_KINDS = frozenset({"Deployment", "StatefulSet", "ReplicaSet", "ReplicationController"})
Path = tuple[str | int, ...]


# --------------------------------------------------------------------------- public results

@dataclass(frozen=True)
class Location:
    """Where the value of one field is set for what is deployed.

    ``ok``: ``edit`` is the edit to make (the input edit itself when the base file sets the value,
    ``moved`` False). Not ok: ``edit`` is None and ``reason`` says why (ambiguous or not followed):
    fall back to notify-only. ``effective`` is the deployed value (None when unknown)."""

    ok: bool
    edit: FieldEdit | None
    effective: Any = None
    reason: str = ""
    moved: bool = False
    routes: tuple[str, ...] = ()   # the deployments that were followed, e.g. "Application argocd/x -> apps/x/overlays/prod"


@dataclass(frozen=True)
class Relocated:
    """``relocate`` over a plan's edits: all moved edits, or ``problems`` (then edit nothing)."""

    edits: tuple[FieldEdit, ...]
    notes: tuple[str, ...] = ()      # one line per moved edit, for the PR body
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Deployer:
    """A folder that Argo CD or Flux deploys, and where its own kustomize options live."""

    path: str                     # repo-relative folder ("" = repo root)
    label: str                    # e.g. "Application argocd/ml-serving-prod (clusters/prod/apps.yaml)"
    file: str = ""                # the document holding the Application / Flux Kustomization
    doc_kind: str = ""
    doc_name: str = ""
    prefix: Path = ()             # path of its kustomize options in that document
    options: Mapping[str, Any] = field(default_factory=dict)
    recurse: bool = True          # plain folder (no kustomization): also sub-folders


class _Unsupported(Exception):
    """A construct on the route that is not followed: the caller must not guess."""


# --------------------------------------------------------------------------- parsing helpers

class _Tree:
    def __init__(self, files: Mapping[str, str]) -> None:
        self.files = {_norm_file(k): v for k, v in files.items()}
        self._docs: dict[str, list[Any]] = {}

    def docs(self, path: str) -> list[Any]:
        if path not in self._docs:
            text = self.files.get(path)
            if text is None:
                raise _Unsupported(f"{path} is referenced but not in the repository")
            try:
                docs = [d for d in yaml.safe_load_all(text)]
            except yaml.YAMLError as exc:
                raise _Unsupported(f"{path} does not parse: {str(exc).splitlines()[0]}") from None
            self._docs[path] = docs
        return self._docs[path]

    def kustomization(self, folder: str) -> str | None:
        for name in KUSTOMIZATION_FILES:
            p = _join(folder, name)
            if p in self.files:
                return p
        return None


def _norm_file(p: str) -> str:
    return posixpath.normpath(p.lstrip("/"))


def _join(folder: str, rel: str) -> str:
    p = posixpath.normpath(posixpath.join(folder, rel)) if folder else posixpath.normpath(rel)
    return "" if p == "." else p


def _norm_dir(p: str) -> str:
    p = posixpath.normpath(p.strip().lstrip("/")) if p.strip() not in ("", ".", "./", "/") else ""
    return "" if p == "." else p


def _map(x: Any) -> dict[str, Any]:
    return x if isinstance(x, dict) else {}


def _name(doc: Any) -> str:
    meta = doc.get("metadata") if isinstance(doc, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    return name if isinstance(name, str) else ""


def _selector(docs: list[Any], index: int, path: str) -> tuple[str, str]:
    """(doc_kind, doc_name) that names document ``index`` of a file uniquely (``("", "")``: the only one)."""
    doc = docs[index]
    kind = str(doc.get("kind") or "") if isinstance(doc, dict) else ""
    sel = (kind, _name(doc)) if kind else ("", "")
    same = [i for i, d in enumerate(docs) if d is not None and (
        (not sel[0]) or (isinstance(d, dict) and str(d.get("kind") or "") == sel[0] and _name(d) == sel[1]))]
    if same != [index]:
        raise _Unsupported(f"{path}: document {index} cannot be told apart from the other documents of the file")
    return sel


def _remote(entry: str) -> bool:
    return "://" in entry or entry.startswith(("git@", "github.com/", "gitlab.com/", "bitbucket.org/"))


def _fmt(path: Sequence[str | int]) -> str:
    return ".".join(str(p) for p in path)


# --------------------------------------------------------------------------- deployers

def deployers(files: Mapping[str, str]) -> list[Deployer]:
    """Folders deployed by the Argo CD Applications and Flux Kustomizations found among ``files``
    (documents that do not parse are skipped; ApplicationSets are templates and are not followed)."""
    tree = _Tree(files)
    out: list[Deployer] = []
    for f in sorted(tree.files):
        if not f.endswith((".yaml", ".yml")):
            continue
        try:
            docs = tree.docs(f)
        except _Unsupported:
            continue
        for i, d in enumerate(docs):
            if not isinstance(d, dict) or not isinstance(d.get("spec"), dict):
                continue
            api, kind, spec = str(d.get("apiVersion", "")), d.get("kind"), d["spec"]
            meta = _map(d.get("metadata"))
            who = f"{meta.get('namespace')}/{_name(d)}" if meta.get("namespace") else _name(d)
            try:
                sel = _selector(docs, i, f)
            except _Unsupported:
                sel = (str(kind), _name(d))
            if kind == "Application" and api.startswith("argoproj.io/"):
                srcs: list[tuple[Path, Any]] = [(("spec", "source"), spec.get("source"))]
                if isinstance(spec.get("sources"), list):
                    srcs += [(("spec", "sources", j), s) for j, s in enumerate(spec["sources"])]
                for pre, src in srcs:
                    if not isinstance(src, dict) or not isinstance(src.get("path"), str) or src.get("chart"):
                        continue
                    opts = _map(src.get("kustomize"))
                    rec = bool((src.get("directory") or {}).get("recurse")) if isinstance(src.get("directory"), dict) else False
                    out.append(Deployer(path=_norm_dir(src["path"]), label=f"Application {who} ({f})", file=f,
                                        doc_kind=sel[0], doc_name=sel[1], prefix=(*pre, "kustomize"),
                                        options=opts, recurse=rec))
            elif kind == "Kustomization" and api.startswith("kustomize.toolkit.fluxcd.io/"):
                path = spec.get("path") if isinstance(spec.get("path"), str) else ""
                opts = dict(spec)
                if "targetNamespace" in opts:
                    opts["namespace"] = opts["targetNamespace"]
                out.append(Deployer(path=_norm_dir(path), label=f"Flux Kustomization {who} ({f})", file=f,
                                    doc_kind=sel[0], doc_name=sel[1], prefix=("spec",), options=opts, recurse=True))
    return out


# --------------------------------------------------------------------------- levels and routes

@dataclass(frozen=True)
class _Level:
    """One set of kustomize options: a kustomization file, a component, or a deployer's options."""

    file: str
    doc_kind: str
    doc_name: str
    prefix: Path
    body: Mapping[str, Any]
    folder: str
    label: str


@dataclass
class _State:
    kind: str
    api_version: str
    names: set[str]
    namespaces: set[str]
    name: str
    labels: dict[str, str]
    annotations: dict[str, str]


@dataclass(frozen=True)
class _Setter:
    file: str
    doc_kind: str
    doc_name: str
    path: Path
    value: Any
    how: str

    @property
    def key(self) -> tuple[str, str, str, Path]:
        return (self.file, self.doc_kind, self.doc_name, self.path)


def _level_of(tree: _Tree, kfile: str, label: str) -> _Level:
    docs = [d for d in tree.docs(kfile)]
    real = [i for i, d in enumerate(docs) if d is not None]
    if len(real) != 1 or not isinstance(docs[real[0]], dict):
        raise _Unsupported(f"{kfile}: a kustomization file must hold exactly one mapping")
    kind, name = _selector(docs, real[0], kfile)
    return _Level(file=kfile, doc_kind=kind, doc_name=name, prefix=(), body=docs[real[0]],
                  folder=posixpath.dirname(kfile), label=label)


def _entries(body: Mapping[str, Any], key: str) -> list[Any]:
    v = body.get(key)
    return v if isinstance(v, list) else []


def _chains(tree: _Tree, folder: str, target: str, stack: tuple[str, ...]) -> list[list[_Level]]:
    """Every way the kustomization in ``folder`` includes ``target``: levels from inner to outer."""
    kfile = tree.kustomization(folder)
    if kfile is None or folder in stack or len(stack) > 20:
        return []
    level = _level_of(tree, kfile, kfile)
    comps: list[_Level] = []
    for c in _entries(level.body, "components"):
        if isinstance(c, str) and not _remote(c):
            cf = tree.kustomization(_join(folder, c))
            if cf is not None:
                comps.append(_level_of(tree, cf, f"component {cf}"))
    out: list[list[_Level]] = []
    sources = [(level.folder, e) for e in _entries(level.body, "resources") + _entries(level.body, "bases")]
    sources += [(c.folder, e) for c in comps for e in _entries(c.body, "resources")]
    for base, entry in sources:
        if not isinstance(entry, str) or _remote(entry):
            continue
        p = _join(base, entry)
        if p == target:
            out.append([*comps, level])
        elif p not in tree.files:
            out += [[*chain, *comps, level] for chain in _chains(tree, p, target, (*stack, folder))]
    return out


def _roots(tree: _Tree) -> list[str]:
    """Folders of kustomizations that no other kustomization includes."""
    folders = {posixpath.dirname(f) for f in tree.files if posixpath.basename(f) in KUSTOMIZATION_FILES}
    included: set[str] = set()
    for d in folders:
        kfile = tree.kustomization(d)
        try:
            body = _level_of(tree, kfile, kfile).body if kfile else {}
        except _Unsupported:
            continue
        for key in ("resources", "bases", "components"):
            included |= {_join(d, e) for e in _entries(body, key) if isinstance(e, str) and not _remote(e)}
    return sorted(folders - included)


def _routes(tree: _Tree, target: str, deps: list[Deployer]) -> list[tuple[str, list[_Level]]]:
    routes: list[tuple[str, list[_Level]]] = []
    for dep in deps:
        extra = [_Level(file=dep.file, doc_kind=dep.doc_kind, doc_name=dep.doc_name, prefix=dep.prefix,
                        body=dep.options, folder=dep.path, label=dep.label)] if dep.options else []
        if tree.kustomization(dep.path) is not None:
            for chain in _chains(tree, dep.path, target, ()):
                routes.append((f"{dep.label} -> {dep.path or '.'}", chain + extra))
        else:
            parent = posixpath.dirname(target)
            inside = parent == dep.path or (dep.recurse and (dep.path == "" or parent.startswith(dep.path + "/")))
            if inside:
                routes.append((f"{dep.label} -> {dep.path or '.'} (plain folder)", extra))
    return routes


# --------------------------------------------------------------------------- matching

def _regex_match(pattern: Any, values: Iterable[str]) -> bool:
    pat = str(pattern)
    try:
        rx = re.compile(pat)
    except re.error:
        return pat in set(values)
    return any(rx.fullmatch(v) for v in values)


def _selector_ok(expr: Any, have: Mapping[str, str], what: str) -> bool:
    if not isinstance(expr, str):
        raise _Unsupported(f"{what} {expr!r} is not a string")
    for part in (p.strip() for p in expr.split(",") if p.strip()):
        m = re.fullmatch(r"([A-Za-z0-9./_-]+)\s*==?\s*([A-Za-z0-9._-]*)", part)
        if m is None:
            raise _Unsupported(f"{what} {expr!r}: only k=v selectors are followed")
        if have.get(m[1]) != m[2]:
            return False
    return True


def _target_ok(target: Any, st: _State, where: str) -> bool:
    if not isinstance(target, dict):
        raise _Unsupported(f"{where}: target is not a mapping")
    group, _, version = st.api_version.rpartition("/")
    checks = [("kind", [st.kind]), ("group", [group]), ("version", [version]), ("name", sorted(st.names)),
              ("namespace", sorted(st.namespaces))]
    for key, values in checks:
        if target.get(key) not in (None, "") and not _regex_match(target[key], values):
            return False
    if target.get("labelSelector") and not _selector_ok(target["labelSelector"], st.labels, f"{where}: labelSelector"):
        return False
    if target.get("annotationSelector") and not _selector_ok(
            target["annotationSelector"], st.annotations, f"{where}: annotationSelector"):
        return False
    return True


def _smp_doc_ok(doc: Mapping[str, Any], st: _State) -> bool:
    meta = _map(doc.get("metadata"))
    ns = meta.get("namespace")
    return doc.get("kind") == st.kind and _name(doc) in st.names and (ns in (None, "") or ns in st.namespaces)


# --------------------------------------------------------------------------- patch semantics

def _smp_lookup(doc: Any, path: Path, where: str) -> tuple[bool, Any]:
    """(sets, value) of a strategic-merge patch for ``path``; raises when it deletes/replaces it."""
    node = doc
    for i, key in enumerate(path):
        if not isinstance(node, dict):
            raise _Unsupported(f"{where}: {_fmt(path[:i])} is not a mapping in the patch")
        for directive in ("$patch", "$retainKeys"):
            if directive in node:
                raise _Unsupported(f"{where}: {directive} at {_fmt(path[:i]) or 'the document'} is not followed")
        if key not in node:
            return False, None
        v = node[key]
        if v is None:
            raise _Unsupported(f"{where}: the patch deletes {_fmt(path[:i + 1])}")
        if i == len(path) - 1:
            if isinstance(v, dict | list):
                raise _Unsupported(f"{where}: the patch sets {_fmt(path)} to a collection")
            return True, v
        if isinstance(v, list):
            raise _Unsupported(f"{where}: the patch merges the list {_fmt(path[:i + 1])} on the field's path")
        node = v
    return False, None


def _pointer(p: Any, where: str) -> list[str]:
    if not isinstance(p, str) or (p and not p.startswith("/")):
        raise _Unsupported(f"{where}: JSON pointer {p!r} is not followed")
    return [s.replace("~1", "/").replace("~0", "~") for s in p.split("/")[1:]] if p else []


def _json6902(ops: Any, path: Path, where: str) -> tuple[Path, Any] | None:
    """(path inside the ops list, value) of the last op that sets ``path``; None when none does."""
    if not isinstance(ops, list) or not all(isinstance(o, dict) for o in ops):
        raise _Unsupported(f"{where}: a JSON6902 patch must be a list of operations")
    q = [str(k) for k in path]
    found: tuple[Path, Any] | None = None
    for j, op in enumerate(ops):
        name, p = op.get("op"), _pointer(op.get("path"), where)
        if name == "test":
            continue
        if name in ("move",) and "from" in op:
            frm = _pointer(op.get("from"), where)
            if q[:len(frm)] == frm:
                raise _Unsupported(f"{where}: op {j} moves {_fmt(path)} away")
        if p == q or (len(p) < len(q) and q[:len(p)] == p):
            if name not in ("add", "replace"):
                raise _Unsupported(f"{where}: op {j} ({name} {op.get('path')}) changes {_fmt(path)} in a way not followed")
            if "value" not in op:
                raise _Unsupported(f"{where}: op {j} has no value")
            node, rel = op["value"], []
            for seg in path[len(p):]:
                if isinstance(node, dict) and seg in node:
                    node = node[seg]
                elif isinstance(node, list) and isinstance(seg, int) and 0 <= seg < len(node):
                    node = node[seg]
                else:
                    raise _Unsupported(f"{where}: op {j} replaces {op.get('path')} without {_fmt(path)}")
                rel.append(seg)
            if isinstance(node, dict | list) or node is None:
                raise _Unsupported(f"{where}: op {j} sets {_fmt(path)} to {node!r}, not a scalar")
            found = ((j, "value", *rel), node)
        elif len(q) < len(p) and p[:len(q)] == q:
            raise _Unsupported(f"{where}: op {j} writes below {_fmt(path)}")
        elif name == "add" and p and (p[-1] == "-" or p[-1].isdigit()) and q[:len(p) - 1] == p[:-1]:
            raise _Unsupported(f"{where}: op {j} inserts into a list on the field's path")
    return found


def _parse_inline(text: Any, where: str) -> Any:
    if not isinstance(text, str):
        raise _Unsupported(f"{where}: the inline patch is not a string")
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise _Unsupported(f"{where}: the inline patch does not parse: {str(exc).splitlines()[0]}") from None
    if len(docs) != 1:
        raise _Unsupported(f"{where}: an inline patch with {len(docs)} documents is not followed")
    return docs[0]


def _apply_patch(tree: _Tree, lv: _Level, st: _State, path: Path, *, content: Any, inline_at: Path | None,
                 patch_file: str | None, target: Any, where: str) -> list[_Setter]:
    """Setters of one patch entry (inline at ``lv.prefix + inline_at``, or the file ``patch_file``)."""
    if target is not None and not _target_ok(target, st, where):
        return []
    units: list[tuple[Any, str, str, str, Path]] = []  # (content, file, kind, name, prefix)
    if patch_file is not None:
        docs = tree.docs(patch_file)
        for i, d in enumerate(docs):
            if d is None:
                continue
            kind, name = _selector(docs, i, patch_file)
            units.append((d, patch_file, kind, name, ()))
    else:
        assert inline_at is not None
        units.append((content, lv.file, lv.doc_kind, lv.doc_name, (*lv.prefix, *inline_at)))
    out: list[_Setter] = []
    for body, file, kind, name, pre in units:
        if isinstance(body, list):
            if target is None:
                raise _Unsupported(f"{where}: a JSON6902 patch without a target")
            hit = _json6902(body, path, where)
            if hit is not None:
                out.append(_Setter(file, kind, name, (*pre, *hit[0]), hit[1], f"JSON6902 patch ({where})"))
        elif isinstance(body, dict):
            if target is None and not _smp_doc_ok(body, st):
                continue
            sets, value = _smp_lookup(body, path, where)
            if sets:
                out.append(_Setter(file, kind, name, (*pre, *path), value, f"strategic-merge patch ({where})"))
        else:
            raise _Unsupported(f"{where}: a patch that is neither a mapping nor a list of operations")
    return out


def _patch_file_or_inline(tree: _Tree, lv: _Level, entry: str) -> str | None:
    p = _join(lv.folder, entry)
    if p in tree.files:
        return p
    if "\n" in entry or ":" in entry:
        return None  # inline YAML
    raise _Unsupported(f"{lv.label}: patch file {p} is not in the repository")


def _run_level(tree: _Tree, lv: _Level, st: _State, path: Path) -> list[_Setter]:
    """Setters of ``path`` in one level, in kustomize's transformer order; updates ``st``."""
    b, out = lv.body, []
    if b.get("transformers"):
        raise _Unsupported(f"{lv.label}: custom `transformers` are not followed")
    for i, e in enumerate(_entries(b, "patchesStrategicMerge")):
        where = f"{lv.label} patchesStrategicMerge[{i}]"
        if not isinstance(e, str):
            raise _Unsupported(f"{where}: not a string")
        pf = _patch_file_or_inline(tree, lv, e)
        out += _apply_patch(tree, lv, st, path, content=None if pf else _parse_inline(e, where),
                            inline_at=None if pf else ("patchesStrategicMerge", i), patch_file=pf, target=None,
                            where=where)
    for i, e in enumerate(_entries(b, "patches")):
        where = f"{lv.label} patches[{i}]"
        out += _entry_patch(tree, lv, st, path, e, "patches", i, where)
    ns = b.get("namespace")
    if isinstance(ns, str) and ns:
        st.namespaces.add(ns)
    pre, suf = b.get("namePrefix") or "", b.get("nameSuffix") or ""
    if pre or suf:
        st.name = f"{pre}{st.name}{suf}"
        st.names.add(st.name)
    for key in ("commonLabels",):
        if isinstance(b.get(key), dict):
            st.labels.update({str(k): str(v) for k, v in b[key].items()})
    for lab in _entries(b, "labels"):
        if isinstance(lab, dict) and isinstance(lab.get("pairs"), dict):
            st.labels.update({str(k): str(v) for k, v in lab["pairs"].items()})
    if isinstance(b.get("commonAnnotations"), dict):
        st.annotations.update({str(k): str(v) for k, v in b["commonAnnotations"].items()})
    for i, e in enumerate(_entries(b, "patchesJson6902")):
        where = f"{lv.label} patchesJson6902[{i}]"
        out += _entry_patch(tree, lv, st, path, e, "patchesJson6902", i, where)
    for i, e in enumerate(_entries(b, "replicas")):
        if isinstance(e, dict) and e.get("name") in st.names and path == ("spec", "replicas"):
            if st.kind not in _REPLICA_KINDS:
                raise _Unsupported(f"{lv.label} replicas[{i}] names {e.get('name')}, a {st.kind}: not followed")
            if not isinstance(e.get("count"), int):
                raise _Unsupported(f"{lv.label} replicas[{i}]: count is not an integer")
            out.append(_Setter(lv.file, lv.doc_kind, lv.doc_name, (*lv.prefix, "replicas", i, "count"), e["count"],
                               f"replicas[{i}] of {lv.label}"))
    if _entries(b, "images") and path and path[-1] == "image":
        raise _Unsupported(f"{lv.label}: `images` may rewrite {_fmt(path)}; not followed")
    for i, r in enumerate(_entries(b, "replacements")):
        if not isinstance(r, dict) or "path" in r:
            raise _Unsupported(f"{lv.label} replacements[{i}]: replacements from a file are not followed")
        for t in r.get("targets") or []:
            sel = t.get("select") if isinstance(t, dict) else None
            if isinstance(sel, dict) and sel.get("kind") not in (None, st.kind):
                continue
            fps = t.get("fieldPaths") if isinstance(t, dict) else None
            if not isinstance(fps, list) or any(
                    not isinstance(fp, str) or "*" in fp or "[" in fp or fp == _fmt(path)
                    or _fmt(path).startswith(fp + ".") for fp in fps):
                raise _Unsupported(f"{lv.label} replacements[{i}] may write {_fmt(path)}; not followed")
    return out


def _entry_patch(tree: _Tree, lv: _Level, st: _State, path: Path, e: Any, key: str, i: int,
                 where: str) -> list[_Setter]:
    if not isinstance(e, dict):
        raise _Unsupported(f"{where}: not a mapping")
    if e.get("options"):
        raise _Unsupported(f"{where}: patch options are not followed")
    target = e.get("target")
    if key == "patchesJson6902" and target is None:
        raise _Unsupported(f"{where}: no target")
    if isinstance(e.get("path"), str):
        pf = _join(lv.folder, e["path"])
        if pf not in tree.files:
            raise _Unsupported(f"{where}: patch file {pf} is not in the repository")
        return _apply_patch(tree, lv, st, path, content=None, inline_at=None, patch_file=pf, target=target,
                            where=f"{where} {pf}")
    if "patch" in e:
        return _apply_patch(tree, lv, st, path, content=_parse_inline(e["patch"], where), inline_at=(key, i, "patch"),
                            patch_file=None, target=target, where=where)
    raise _Unsupported(f"{where}: neither `path` nor `patch`")


# --------------------------------------------------------------------------- locating

def _walk(node: Any, path: Path) -> tuple[bool, Any]:
    for key in path:
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
            node = node[key]
        else:
            return False, None
    return True, node


def effective_value(files: Mapping[str, str], *, file: str, doc_kind: str, doc_name: str,
                    path: Sequence[str | int], deployed_paths: Iterable[str] | None = None) -> Location:
    """The deployed value of ``path`` in the document ``doc_kind``/``doc_name`` of ``file`` and where it
    is set (``edit`` is a FieldEdit at that place with ``new`` = the current value). ``deployed_paths``:
    folders deployed (default: the Argo CD Applications / Flux Kustomizations among ``files``)."""
    probe = FieldEdit(file=file, doc_kind=doc_kind, doc_name=doc_name, path=tuple(path), old=None, new=None)
    loc = locate(files, probe, deployed_paths, check_old=False)
    if loc.edit is None:
        return loc
    return Location(ok=loc.ok, edit=loc.edit.model_copy(update={"new": loc.effective}), effective=loc.effective,
                    reason=loc.reason, moved=loc.moved, routes=loc.routes)


def locate(files: Mapping[str, str], edit: FieldEdit, deployed_paths: Iterable[str] | None = None, *,
           check_old: bool = True) -> Location:
    """Move ``edit`` (written against a base manifest) to where its field is really set for what is deployed.

    ``files``: repo-relative path -> text for every YAML/JSON file of the repo (kustomizations, patches,
    Argo CD / Flux objects, manifests). ``deployed_paths``: folders deployed; None finds them among
    ``files`` (and, when none of them includes the file, uses the top-level kustomizations).
    ``check_old``: refuse when the deployed value differs from ``edit.old`` (the plan was computed from
    a value that is not the one running: re-plan from :func:`effective_value`)."""
    tree = _Tree(files)
    target = _norm_file(edit.file)
    path: Path = tuple(edit.path)

    def fail(reason: str, routes: Sequence[str] = ()) -> Location:
        return Location(ok=False, edit=None, reason=f"{edit.file} {_fmt(path)}: {reason}", routes=tuple(routes))

    try:
        docs = tree.docs(target)
    except _Unsupported as exc:
        return fail(str(exc))
    hits = [d for d in docs if isinstance(d, dict) and d.get("kind") == edit.doc_kind and _name(d) == edit.doc_name]
    if len(hits) != 1:
        return fail(f"{len(hits)} documents of kind {edit.doc_kind} named {edit.doc_name}")
    doc = hits[0]
    _, base_value = _walk(doc, path)
    meta = _map(doc.get("metadata"))
    if isinstance(base_value, str) and ("${" in base_value or "$(" in base_value):
        return fail(f"the value {base_value!r} is substituted at deploy time; not followed")
    try:
        if deployed_paths is not None:
            deps = [Deployer(path=_norm_dir(p), label=f"deployed path {_norm_dir(p) or '.'}") for p in deployed_paths]
            how = "the given deployed paths"
        else:
            deps = deployers(files)
            how = "Argo CD Applications / Flux Kustomizations"
        routes = _routes(tree, target, deps)
        if not routes and deployed_paths is None:
            routes = _routes(tree, target, [Deployer(path=r, label="top-level kustomization") for r in _roots(tree)])
            how = "top-level kustomizations (no Argo CD / Flux object deploys this file)"
        if not routes:
            return Location(ok=True, edit=edit, effective=base_value, routes=(),
                            reason=f"{edit.file} is not in any kustomization ({how}): the base file sets it")
        setters: dict[tuple[str, str, str, Path], tuple[_Setter, list[str]]] = {}
        for label, levels in routes:
            st = _State(kind=edit.doc_kind, api_version=str(doc.get("apiVersion", "")), names={edit.doc_name},
                        name=edit.doc_name, namespaces={str(meta["namespace"])} if meta.get("namespace") else set(),
                        labels={str(k): str(v) for k, v in _map(meta.get("labels")).items()},
                        annotations={str(k): str(v) for k, v in _map(meta.get("annotations")).items()})
            last = _Setter(target, edit.doc_kind, edit.doc_name, path, base_value, f"the base file {edit.file}")
            for lv in levels:
                for s in _run_level(tree, lv, st, path):
                    last = s
            setters.setdefault(last.key, (last, []))[1].append(label)
    except _Unsupported as exc:
        return fail(str(exc))
    labels = [lab for _, ls in setters.values() for lab in ls]
    if len(setters) > 1:
        parts = "; ".join(f"{', '.join(ls)}: {s.how} sets {s.value!r}" for s, ls in setters.values())
        return fail(f"set differently for different deployments ({parts}); not editing one of them", labels)
    s, _ = next(iter(setters.values()))
    moved = s.key != (target, edit.doc_kind, edit.doc_name, path)
    if not moved:
        return Location(ok=True, edit=edit, effective=s.value, routes=tuple(labels),
                        reason=f"set by {s.how} for {', '.join(labels)}")
    if check_old and edit.old is not None and str(edit.old) != str(s.value):
        return fail(f"the plan changes {edit.old!r} but {s.how} sets {s.value!r} for {', '.join(labels)}; "
                    "re-plan from the deployed value", labels)
    moved_edit = FieldEdit(file=s.file, doc_kind=s.doc_kind, doc_name=s.doc_name, path=s.path, old=s.value, new=edit.new)
    try:  # the caller must be able to apply it: try now (a quoted inline patch, an anchor ... is refused here)
        probe = moved_edit if edit.new is not None else moved_edit.model_copy(update={"new": s.value})
        apply_edits(tree.files[s.file], [probe])
    except PermanentError as exc:
        return fail(f"{s.how} sets it, but that text cannot be edited: {exc}", labels)
    return Location(ok=True, edit=moved_edit, effective=s.value, moved=True, routes=tuple(labels),
                    reason=f"{edit.doc_kind}/{edit.doc_name} {_fmt(path)} is set by {s.how} "
                           f"for {', '.join(labels)}: editing {s.file} instead of {edit.file}")


def relocate(files: Mapping[str, str], edits: Iterable[FieldEdit],
             deployed_paths: Iterable[str] | None = None) -> Relocated:
    """``locate`` every edit; any problem makes the whole result not ok (edit nothing then)."""
    out: list[FieldEdit] = []
    notes: list[str] = []
    problems: list[str] = []
    dp = list(deployed_paths) if deployed_paths is not None else None
    for e in edits:
        loc = locate(files, e, dp)
        if not loc.ok or loc.edit is None:
            problems.append(loc.reason)
            continue
        out.append(loc.edit)
        if loc.moved:
            notes.append(loc.reason)
    return Relocated(edits=tuple(out), notes=tuple(notes), problems=tuple(problems))


# --------------------------------------------------------------------------- applying (text level)

_rt = YAML(typ="rt")
_rt.allow_duplicate_keys = True
_BLOCK = re.compile(r"\|([+-])?[ \t]*(#.*)?$")


def _rt_select(docs: list[Any], kind: str, name: str, where: str) -> int:
    if not kind:
        idx = [i for i, d in enumerate(docs) if d is not None]
    else:
        idx = [i for i, d in enumerate(docs) if isinstance(d, CommentedMap) and d.get("kind") == kind
               and _name(d) == name]
    if len(idx) != 1:
        raise PermanentError(f"{where}: {len(idx)} documents match (kind {kind or '-'}, name {name or '-'})")
    return idx[0]


def _pos(parent: Any, key: str | int) -> tuple[int, int]:
    row, col = parent.lc.value(key) if isinstance(parent, CommentedMap) else parent.lc.item(key)
    return int(row), int(col)


def _has(parent: Any, key: str | int) -> bool:
    return (isinstance(parent, CommentedMap) and key in parent) or (
        isinstance(parent, CommentedSeq) and isinstance(key, int) and 0 <= key < len(parent))


def _edit_text(text: str, kind: str, name: str, path: Path, new: Any, where: str) -> str:
    try:
        docs = list(_rt.load_all(text))
    except Exception as exc:  # ruamel raises several unrelated types for bad input
        raise PermanentError(f"{where}: YAML does not parse: {str(exc).splitlines()[0]}") from None
    node = docs[_rt_select(docs, kind, name, where)]
    lines = text.splitlines(keepends=True)
    if not path:
        raise PermanentError(f"{where}: empty field path")
    for i, key in enumerate(path):
        if not _has(node, key):
            raise PermanentError(f"{where}: {_fmt(path[:i + 1])} is missing")
        child = node[key]
        row, col = _pos(node, key)
        if i == len(path) - 1:
            if isinstance(child, CommentedMap | CommentedSeq):
                raise PermanentError(f"{where}: {_fmt(path)} is a collection, not a scalar")
            line = lines[row]
            if line[col:col + 1] in ("&", "*", "!", "|", ">"):
                raise PermanentError(f"{where}: anchors, aliases, tags and block scalars are not edited")
            flow = node.fa.flow_style()
            end = _token_end(line, col, flow)
            if end < 0:
                raise PermanentError(f"{where}: multi-line quoted scalar is not edited")
            style = line[col] if line[col:col + 1] in ("'", '"') else ""
            lines[row] = line[:col] + _render(new, style, flow)[0] + line[end:]
            return "".join(lines)
        if isinstance(child, str):
            return _edit_block(lines, row, col, child, path[i + 1:], new, f"{where} (inside {_fmt(path[:i + 1])})")
        node = child
    raise AssertionError("unreachable")


def _edit_block(lines: list[str], row: int, col: int, value: str, inner: Path, new: Any, where: str) -> str:
    """Edit ``inner`` in the YAML held by the literal block scalar whose indicator is at ``row``/``col``."""
    if not _BLOCK.match(lines[row][col:].rstrip("\r\n")):
        raise PermanentError(f"{where}: only literal block scalars (|, |-, |+) without an indentation "
                             "indicator are edited inside")
    first = next((r for r in range(row + 1, len(lines)) if lines[r].strip()), None)
    if first is None:
        raise PermanentError(f"{where}: empty block scalar")
    ind = len(lines[first]) - len(lines[first].lstrip(" "))
    end = first
    while end < len(lines) and (not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip(" ")) >= ind):
        end += 1
    body = lines[row + 1:end]
    inner_lines = [ln[ind:] if len(ln) - len(ln.lstrip(" ")) >= ind else ln[len(ln.rstrip("\r\n")):] for ln in body]
    inner_text = "".join(inner_lines)
    if inner_text.replace("\r\n", "\n").rstrip("\n") != value.rstrip("\n"):
        raise PermanentError(f"{where}: cannot map the block scalar's text to its lines")
    new_inner = _edit_text(inner_text, "", "", inner, new, where).splitlines(keepends=True)
    if len(new_inner) != len(inner_lines):
        raise PermanentError(f"{where}: the edit would change the block's line count")
    out = list(lines)
    for k, (a, b) in enumerate(zip(inner_lines, new_inner, strict=True)):
        if a != b:
            out[row + 1 + k] = " " * ind + b
    return "".join(out)


def _plain(obj: Any, path: Path) -> tuple[bool, Any, list[Any]]:
    """Walk ``path`` through parsed YAML, parsing strings met on the way: (found, value, the chain)."""
    chain = [obj]
    for key in path:
        if isinstance(obj, str):
            try:
                obj = yaml.safe_load(obj)
            except yaml.YAMLError:
                return False, None, chain
        if isinstance(obj, dict) and key in obj:
            obj = obj[key]
        elif isinstance(obj, list) and isinstance(key, int) and 0 <= key < len(obj):
            obj = obj[key]
        else:
            return False, None, chain
        chain.append(obj)
    return True, obj, chain


def _same_except(a: Any, b: Any, path: Path) -> bool:
    """True when ``a`` and ``b`` are equal except (possibly) the value at ``path`` (strings on the way are YAML)."""
    if not path:
        return True
    if isinstance(a, str) and isinstance(b, str):
        try:
            a, b = yaml.safe_load(a), yaml.safe_load(b)
        except yaml.YAMLError:
            return False
    key = path[0]
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b) or key not in a:
            return False
        return all(a[k] == b[k] for k in a if k != key) and _same_except(a[key], b[key], path[1:])
    if isinstance(a, list) and isinstance(b, list) and isinstance(key, int) and len(a) == len(b) and 0 <= key < len(a):
        return all(x == y for i, (x, y) in enumerate(zip(a, b, strict=True)) if i != key) and \
            _same_except(a[key], b[key], path[1:])
    return False


def _is_plain_edit(text: str, e: FieldEdit) -> bool:
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError:
        return True  # let yamledit name the parse error
    hits = [d for d in docs if isinstance(d, dict) and e.doc_kind and d.get("kind") == e.doc_kind
            and yamledit._name(d) == e.doc_name]
    if len(hits) != 1:
        return False
    node = hits[0]
    for key in e.path[:-1]:
        if isinstance(node, str):
            return False
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
            node = node[key]
        else:
            return True  # yamledit reports the missing parent
    return not isinstance(node, str)


def apply_edits(text: str, edits: Sequence[FieldEdit]) -> str:
    """``tools.yamledit.apply_edits`` plus edits made by :func:`locate` (inside inline patches, in
    documents without kind/name). Each extended edit changes one line and is re-read: the value must
    read back as ``new`` and nothing else in the file may change. Raises ``PermanentError``."""
    for e in edits:
        if _is_plain_edit(text, e):
            text = yamledit.apply_edits(text, [e])
            continue
        where = f"{e.file} {e.doc_kind or '-'}/{e.doc_name or '-'} {_fmt(e.path)}"
        new_text = _edit_text(text, e.doc_kind, e.doc_name, tuple(e.path), e.new, where)
        try:
            old_docs, new_docs = list(yaml.safe_load_all(text)), list(yaml.safe_load_all(new_text))
        except yaml.YAMLError as exc:
            raise PermanentError(f"{where}: edit would break the file: {str(exc).splitlines()[0]}",
                                 source=e.file) from None
        idx = _rt_select(list(_rt.load_all(text)), e.doc_kind, e.doc_name, where)
        found, got, _ = _plain(new_docs[idx], tuple(e.path))
        want = e.new
        if isinstance(got, str) and not isinstance(want, str | bool) and want is not None:
            want = str(want)
        if not found or got != want or type(got) is not type(want):
            raise PermanentError(f"{where}: wrote {e.new!r} but it reads back as {got!r}", source=e.file)
        if len(old_docs) != len(new_docs) or any(a != b for i, (a, b) in enumerate(zip(old_docs, new_docs, strict=True))
                                                  if i != idx) \
                or not _same_except(old_docs[idx], new_docs[idx], tuple(e.path)):
            raise PermanentError(f"{where}: the edit would change more than that value", source=e.file)
        text = new_text
    return text
