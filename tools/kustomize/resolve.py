"""Resolution: where a field's deployed value is really set (``locate``, ``effective_value``,
``relocate`` and their results ``Location`` / ``Relocated``).

The routes from each deployed folder (``deployers``) down through ``resources`` / ``bases`` /
``components`` to the file are found here; every level on a route is replayed by
``patches.run_level``; the last setter wins, and routes that disagree make the result not ok.
A moved edit is tried with ``write.apply_edits`` before it is returned.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from memory.records import FieldEdit
from tools.errors import PermanentError
from tools.kustomize.deployers import Deployer, deployers
from tools.kustomize.patches import Level, Setter, State, run_level, split_image
from tools.kustomize.tree import (
    KUSTOMIZATION_FILES,
    Path,
    Tree,
    Unsupported,
    as_map,
    canonical,
    doc_selector,
    entries,
    is_remote,
    join_path,
    name_of,
    norm_dir,
    norm_file,
)
from tools.kustomize.write import apply_edits
from tools.yamledit import format_path

__all__ = ["Location", "Relocated", "effective_value", "level_of", "locate", "relocate", "routes_to", "top_level"]


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


# --------------------------------------------------------------------------- routes

def level_of(tree: Tree, kfile: str, label: str) -> Level:
    docs = [d for d in tree.docs(kfile)]
    real = [i for i, d in enumerate(docs) if d is not None]
    if len(real) != 1 or not isinstance(docs[real[0]], dict):
        raise Unsupported(f"{kfile}: a kustomization file must hold exactly one mapping")
    kind, name = doc_selector(docs, real[0], kfile)
    body, written, _ = canonical(docs[real[0]])
    return Level(file=kfile, doc_kind=kind, doc_name=name, prefix=(), body=body,
                 folder=posixpath.dirname(kfile), label=label, keys=written)


def _chains(tree: Tree, folder: str, target: str, stack: tuple[str, ...]) -> list[list[Level]]:
    """Every way the kustomization in ``folder`` includes ``target``: levels from inner to outer."""
    kfile = tree.kustomization(folder)
    if kfile is None or folder in stack or len(stack) > 20:
        return []
    level = level_of(tree, kfile, kfile)
    comps: list[Level] = []
    for c in entries(level.body, "components"):
        if isinstance(c, str) and not is_remote(c):
            cf = tree.kustomization(join_path(folder, c))
            if cf is not None:
                comps.append(level_of(tree, cf, f"component {cf}"))
    out: list[list[Level]] = []
    sources = [(level.folder, e) for e in entries(level.body, "resources") + entries(level.body, "bases")]
    sources += [(c.folder, e) for c in comps for e in entries(c.body, "resources")]
    for base, entry in sources:
        if not isinstance(entry, str) or is_remote(entry):
            continue
        p = join_path(base, entry)
        if p == target:
            out.append([*comps, level])
        elif p not in tree.files:
            out += [[*chain, *comps, level] for chain in _chains(tree, p, target, (*stack, folder))]
    return out


def top_level(tree: Tree) -> list[str]:
    """Folders of kustomizations that no other kustomization includes."""
    folders = {posixpath.dirname(f) for f in tree.files if posixpath.basename(f) in KUSTOMIZATION_FILES}
    included: set[str] = set()
    for d in folders:
        kfile = tree.kustomization(d)
        try:
            body = level_of(tree, kfile, kfile).body if kfile else {}
        except Unsupported:
            continue
        for key in ("resources", "bases", "components"):
            included |= {join_path(d, e) for e in entries(body, key) if isinstance(e, str) and not is_remote(e)}
    return sorted(folders - included)


Route = tuple[str, list[Level], Deployer]   # (label, levels from inner to outer, who deploys it)


def routes_to(tree: Tree, target: str, deps: list[Deployer]) -> list[Route]:
    """Every way one of ``deps`` deploys the file ``target``."""
    routes: list[Route] = []
    for dep in deps:
        extra = [Level(file=dep.file, doc_kind=dep.doc_kind, doc_name=dep.doc_name, prefix=dep.prefix,
                       body=dep.options, folder=dep.path, label=dep.label)] if dep.options else []
        if tree.kustomization(dep.path) is not None:
            for chain in _chains(tree, dep.path, target, ()):
                routes.append((f"{dep.label} -> {dep.path or '.'}", chain + extra, dep))
        else:
            parent = posixpath.dirname(target)
            inside = parent == dep.path or (dep.recurse and (dep.path == "" or parent.startswith(dep.path + "/")))
            if inside:
                routes.append((f"{dep.label} -> {dep.path or '.'} (plain folder)", extra, dep))
    return routes


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
    tree = Tree.of(files)
    target = norm_file(edit.file)
    path: Path = tuple(edit.path)

    def fail(reason: str, routes: Sequence[str] = ()) -> Location:
        return Location(ok=False, edit=None, reason=f"{edit.file} {format_path(path)}: {reason}", routes=tuple(routes))

    try:
        docs = tree.docs(target)
    except Unsupported as exc:
        return fail(str(exc))
    hits = [d for d in docs if isinstance(d, dict) and d.get("kind") == edit.doc_kind and name_of(d) == edit.doc_name]
    if len(hits) != 1:
        return fail(f"{len(hits)} documents of kind {edit.doc_kind} named {edit.doc_name}")
    doc = hits[0]
    _, base_value = _walk(doc, path)
    meta = as_map(doc.get("metadata"))
    if isinstance(base_value, str) and ("${" in base_value or "$(" in base_value):
        return fail(f"the value {base_value!r} is substituted at deploy time; not followed")
    try:
        if deployed_paths is not None:   # the repository's deployers of those folders (their options apply)
            wanted = list(dict.fromkeys(norm_dir(p) for p in deployed_paths))
            known = [d for d in deployers(files) if d.path in wanted]
            deps = known + [Deployer(path=p, label=f"deployed path {p or '.'}") for p in wanted
                            if p not in {d.path for d in known}]
            how = "the given deployed paths"
        else:
            deps = deployers(files)
            how = "Argo CD Applications / Flux Kustomizations"
        routes = routes_to(tree, target, deps)
        if not routes and deployed_paths is None:
            routes = routes_to(tree, target, [Deployer(path=r, label="top-level kustomization") for r in top_level(tree)])
            how = "top-level kustomizations (no Argo CD / Flux object deploys this file)"
        if not routes:
            return Location(ok=True, edit=edit, effective=base_value, routes=(),
                            reason=f"{edit.file} is not in any kustomization ({how}): the base file sets it")
        def final(levels: list[Level]) -> Setter:
            st = State(kind=edit.doc_kind, api_version=str(doc.get("apiVersion", "")), names={edit.doc_name},
                       name=edit.doc_name, namespaces={str(meta.get("namespace") or "")},
                       labels={str(k): str(v) for k, v in as_map(meta.get("labels")).items()},
                       annotations={str(k): str(v) for k, v in as_map(meta.get("annotations")).items()}, body=doc)
            last = Setter(target, edit.doc_kind, edit.doc_name, path, base_value, f"the base file {edit.file}")
            for lv in levels:
                for s in run_level(tree, lv, st, path, last.value):
                    last = s
            return last

        setters: dict[tuple[str, str, str, Path], tuple[Setter, list[str]]] = {}
        for label, levels, _ in routes:
            last = final(levels)
            setters.setdefault(last.key, (last, []))[1].append(label)
        shared: list[str] = []   # other deployments that take the value from the same place
        if deployed_paths is not None and len(setters) == 1:
            mine = {d.path for d in deps}
            others = [d for d in deployers(files) if d.path not in mine] or [
                Deployer(path=r, label="top-level kustomization") for r in top_level(tree) if r not in mine]
            for label, levels, _ in routes_to(tree, target, others):
                try:
                    if final(levels).key in setters:
                        shared.append(label)
                except Unsupported:
                    shared.append(label)
    except Unsupported as exc:
        return fail(str(exc))
    labels = [lab for _, ls in setters.values() for lab in ls]
    if len(setters) > 1:
        parts = "; ".join(f"{', '.join(ls)}: {s.how} sets {s.value!r}" for s, ls in setters.values())
        return fail(f"set differently for different deployments ({parts}); not editing one of them", labels)
    s, _ = next(iter(setters.values()))
    if shared and check_old:
        return fail(f"{s.how} sets it for {', '.join(labels)} and also for {', '.join(shared)}; editing it there would "
                    "change those too: not editing", labels)
    moved = s.key != (target, edit.doc_kind, edit.doc_name, path)
    if not moved:
        return Location(ok=True, edit=edit, effective=s.value, routes=tuple(labels),
                        reason=f"set by {s.how} for {', '.join(labels)}")
    if check_old and edit.old is not None and str(edit.old) != str(s.value):
        return fail(f"the plan changes {edit.old!r} but {s.how} sets {s.value!r} for {', '.join(labels)}; "
                    "re-plan from the deployed value", labels)
    new: Any = edit.new
    if s.part and new is not None:   # an `images:` entry holds only the tag (or digest) of the reference
        new_name, tag, digest = split_image(str(new))
        kept, changed = (digest, tag) if s.part == "tag" else (tag, digest)
        if new_name != split_image(str(s.value))[0] or kept or not changed:
            return fail(f"{s.how} sets only the {s.part} of {s.value!r}; the plan's {new!r} changes more than "
                        "that", labels)
        new = tag if s.part == "tag" else digest
    old = s.raw if s.part else s.value
    moved_edit = FieldEdit(file=s.file, doc_kind=s.doc_kind, doc_name=s.doc_name, path=s.path, old=old, new=new)
    try:  # the caller must be able to apply it: try now (a quoted inline patch, an anchor ... is refused here)
        probe = moved_edit if new is not None else moved_edit.model_copy(update={"new": old})
        apply_edits(tree.files[s.file], [probe])
    except PermanentError as exc:
        return fail(f"{s.how} sets it, but that text cannot be edited: {exc}", labels)
    return Location(ok=True, edit=moved_edit, effective=s.value, moved=True, routes=tuple(labels),
                    reason=f"{edit.doc_kind}/{edit.doc_name} {format_path(path)} is set by {s.how} "
                           f"for {', '.join(labels)}: editing {s.file} instead of {edit.file}")


def relocate(files: Mapping[str, str], edits: Iterable[FieldEdit],
             deployed_paths: Iterable[str] | None = None) -> Relocated:
    """``locate`` every edit; any problem makes the whole result not ok (edit nothing then)."""
    out: list[FieldEdit] = []
    notes: list[str] = []
    problems: list[str] = []
    dp = list(deployed_paths) if deployed_paths is not None else None
    for e in edits:
        loc = locate(files, e, list(e.deployed) if e.deployed else dp)
        if not loc.ok or loc.edit is None:
            problems.append(loc.reason)
            continue
        out.append(loc.edit)
        if loc.moved:
            notes.append(loc.reason)
    return Relocated(edits=tuple(out), notes=tuple(notes), problems=tuple(problems))
