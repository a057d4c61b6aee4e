"""Patch replay: what one level of kustomize options (a kustomization file, a component, an Argo CD
/ Flux object's own options) does to one field of one object, in kustomize's transformer order.

``run_level`` returns every place in that level that sets the field (``Setter``: a strategic-merge
patch file or inline patch, a JSON6902 op, a ``replicas`` entry) and updates the object's
``State`` (namespace, name prefix/suffix, labels, annotations) that later patch targets match.
Anything that could change the field in a way not followed raises ``Unsupported``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from tools.kustomize.tree import (
    Path,
    Tree,
    Unsupported,
    as_map,
    canonical,
    doc_selector,
    entries,
    join_path,
    name_of,
)
from tools.yamledit import format_path, safe_load_all

__all__ = ["Level", "Setter", "State", "advance", "join_image", "run_level", "split_image", "transformer_options"]

_TARGET_FIELDS = ("group", "version", "kind", "name", "namespace", "labelSelector", "annotationSelector")
_REPLICA_KINDS = frozenset({"Deployment", "StatefulSet", "ReplicaSet", "ReplicationController"})


@dataclass(frozen=True)
class Level:
    """One set of kustomize options: a kustomization file, a component, or a deployer's options."""

    file: str
    doc_kind: str
    doc_name: str
    prefix: Path
    body: Mapping[str, Any]
    folder: str
    label: str
    keys: Mapping[str, str] = field(default_factory=dict)   # field -> key as written (patchesJSON6902 ...)

    def key(self, name: str) -> str:
        """The key as written in the file for the field ``name`` (edits inside it use that spelling)."""
        return self.keys.get(name, name)


@dataclass
class State:
    """What patch targets are matched against, as the levels rename / relabel the object."""

    kind: str
    api_version: str
    names: set[str]
    namespaces: set[str]
    name: str
    labels: dict[str, str]
    annotations: dict[str, str]
    namespace: str | None = None   # set by a `namespace:` on the way (the last, outermost, wins)
    body: Any = None                # the object as the base file has it (list items merged by name)
    # lists a strategic-merge patch merged into on the way (keys; None = any list item): kustomize may
    # reorder them, so a later JSON6902 op that addresses their items by index is not followed
    merged_lists: set[tuple[str | None, ...]] = field(default_factory=set)
    # the order of a merged list's items (by key) after the strategic-merge patches so far: kustomize
    # puts the patch's items first, in the patch's order, then the others in their order
    orders: dict[tuple[str, ...], list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Setter:
    """A place that sets the field (file, document, path in it), the value it sets, and how, for notes."""

    file: str
    doc_kind: str
    doc_name: str
    path: Path
    value: Any
    how: str
    part: str = ""      # "tag" / "digest": the place holds only that part of the image reference ``value``
    raw: Any = None     # what the place holds, when ``part``

    @property
    def key(self) -> tuple[str, str, str, Path]:
        return (self.file, self.doc_kind, self.doc_name, self.path)


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
        raise Unsupported(f"{what} {expr!r} is not a string")
    for part in (p.strip() for p in expr.split(",") if p.strip()):
        m = re.fullmatch(r"([A-Za-z0-9./_-]+)\s*==?\s*([A-Za-z0-9._-]*)", part)
        if m is None:
            raise Unsupported(f"{what} {expr!r}: only k=v selectors are followed")
        if have.get(m[1]) != m[2]:
            return False
    return True


def _target_ok(target: Any, st: State, where: str) -> bool:
    if not isinstance(target, dict):
        raise Unsupported(f"{where}: target is not a mapping")
    target = canonical(target, _TARGET_FIELDS)[0]
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


def _smp_doc_ok(doc: Mapping[str, Any], st: State) -> bool:
    """A strategic-merge patch applies to the object it names by kind, name and namespace (any name
    or namespace the object had on the way; no namespace is the namespace "default", as in kustomize)."""
    ns = as_map(doc.get("metadata")).get("namespace") or "default"
    have = {n or "default" for n in st.namespaces} or {"default"}
    return doc.get("kind") == st.kind and name_of(doc) in st.names and ns in have


# --------------------------------------------------------------------------- patch semantics

# lists a strategic-merge patch merges item by item, and the key that identifies an item
_MERGE_KEYS = {"containers": "name", "initContainers": "name", "ephemeralContainers": "name", "env": "name",
               "volumes": "name"}


def _smp_lookup(doc: Any, path: Path, where: str, base: Any = None) -> tuple[bool, Any, Path]:
    """(sets, value, path in the patch) of a strategic-merge patch for ``path``; raises when it
    deletes/replaces it. A list on the way that kustomize merges by key (``containers`` by name) is
    followed to the item whose key is the key of the base object's item at that index."""
    node, here = doc, base
    at: list[str | int] = []
    i = 0
    while i < len(path):
        key = path[i]
        if not isinstance(node, dict):
            raise Unsupported(f"{where}: {format_path(path[:i])} is not a mapping in the patch")
        for directive in ("$patch", "$retainKeys"):
            if directive in node:
                raise Unsupported(f"{where}: {directive} at {format_path(path[:i]) or 'the document'} is not followed")
        if key not in node:
            return False, None, ()
        v = node[key]
        if v is None:
            raise Unsupported(f"{where}: the patch deletes {format_path(path[:i + 1])}")
        here = here.get(key) if isinstance(here, dict) else None
        if i == len(path) - 1:
            if isinstance(v, dict | list):
                raise Unsupported(f"{where}: the patch sets {format_path(path)} to a collection")
            return True, v, (*at, key)
        if isinstance(v, list):
            merge_key, index = _MERGE_KEYS.get(str(key)), path[i + 1]
            item = here[index] if isinstance(here, list) and isinstance(index, int) and 0 <= index < len(here) else None
            if merge_key is None or not isinstance(item, dict) or not isinstance(item.get(merge_key), str):
                raise Unsupported(f"{where}: the patch merges the list {format_path(path[:i + 1])} on the field's path")
            hits = [j for j, x in enumerate(v) if isinstance(x, dict) and x.get(merge_key) == item[merge_key]]
            if not hits:
                return False, None, ()
            if len(hits) > 1:
                raise Unsupported(f"{where}: {format_path(path[:i + 1])} lists {merge_key} {item[merge_key]!r} twice")
            node, here, at = v[hits[0]], item, [*at, key, hits[0]]
            i += 2
            continue
        node, at = v, [*at, key]
        i += 1
    return False, None, ()


def _pointer(p: Any, where: str) -> list[str]:
    if not isinstance(p, str) or (p and not p.startswith("/")):
        raise Unsupported(f"{where}: JSON pointer {p!r} is not followed")
    return [s.replace("~1", "/").replace("~0", "~") for s in p.split("/")[1:]] if p else []


def _keys_of(items: Any, key: str) -> list[str] | None:
    if not isinstance(items, list) or not all(isinstance(x, dict) and isinstance(x.get(key), str) for x in items):
        return None
    return [x[key] for x in items]


def _base_order(body: Any, lst: tuple[str, ...]) -> list[str] | None:
    """The keys (names) of the items of the list at ``lst`` in the base object, in its order."""
    node: Any = body
    for k in lst:
        node = node.get(k) if isinstance(node, dict) else None
    return _keys_of(node, _MERGE_KEYS[lst[-1]])


def _current_order(st: State, lst: tuple[str, ...]) -> list[str] | None:
    return st.orders[lst] if lst in st.orders else _base_order(st.body, lst)


def _mark_merged_lists(node: Any, at: tuple[str | None, ...], st: State) -> None:
    """Note the lists a strategic-merge patch merges into: their new order where it is known (a list
    outside any other list), else that they may have been reordered."""
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(v, list) and str(k) in _MERGE_KEYS:
                lst = (*at, str(k))
                patch_keys = _keys_of(v, _MERGE_KEYS[str(k)])
                if None not in lst and patch_keys is not None:
                    plain = tuple(str(x) for x in lst)
                    current = _current_order(st, plain)
                    if current is not None:
                        st.orders[plain] = patch_keys + [n for n in current if n not in patch_keys]
                        _mark_merged_lists(v, (*at, str(k), None), st)
                        continue
                st.merged_lists.add(lst)
            _mark_merged_lists(v, (*at, str(k)), st)
    elif isinstance(node, list):
        for item in node:
            _mark_merged_lists(item, (*at, None), st)


def _by_name(p: list[str], q: list[str], st: State) -> list[str]:
    """``p`` with an index into a list whose order is known replaced by the field's own index when
    both name the same item (the op addresses the rendered order, the field the base order)."""
    for lst, order in st.orders.items():
        n = len(lst)
        if len(p) > n and len(q) > n and p[n].isdigit() and q[n].isdigit() and tuple(p[:n]) == lst == tuple(q[:n]):
            base = _base_order(st.body, lst)
            i, k = int(p[n]), int(q[n])
            same = base is not None and i < len(order) and k < len(base) and order[i] == base[k]
            return [*p[:n], q[n] if same else f"#{p[n]}", *p[n + 1:]]
    return p


def _by_index_in_merged_list(p: list[str], q: list[str], st: State) -> bool:
    """Whether the op path ``p`` addresses by index an item of a list on the field's path ``q`` that
    a strategic-merge patch merged into and whose order is not known (after a reorder, index 1 may
    be the field's)."""
    for lst in st.merged_lists:
        n = len(lst)
        if len(p) > n and len(q) > n and p[n].isdigit() and p[:n] == q[:n] and all(
                a is None or a == b for a, b in zip(lst, p, strict=False)):
            return True
    return False


def _json6902(ops: Any, path: Path, where: str, st: State) -> tuple[Path, Any] | None:
    """(path inside the ops list, value) of the last op that sets ``path``; None when none does."""
    if not isinstance(ops, list) or not all(isinstance(o, dict) for o in ops):
        raise Unsupported(f"{where}: a JSON6902 patch must be a list of operations")
    q = [str(k) for k in path]
    found: tuple[Path, Any] | None = None
    for j, op in enumerate(ops):
        name, p = op.get("op"), _pointer(op.get("path"), where)
        if name == "test":
            continue
        p = _by_name(p, q, st)
        if _by_index_in_merged_list(p, q, st):
            raise Unsupported(f"{where}: op {j} addresses {op.get('path')} by index after a strategic-merge "
                              "patch merged into that list (kustomize may have reordered it); not followed")
        if name in ("move",) and "from" in op:
            frm = _pointer(op.get("from"), where)
            if q[:len(frm)] == frm:
                raise Unsupported(f"{where}: op {j} moves {format_path(path)} away")
        if p == q or (len(p) < len(q) and q[:len(p)] == p):
            if name not in ("add", "replace"):
                raise Unsupported(f"{where}: op {j} ({name} {op.get('path')}) changes {format_path(path)} in a way not followed")
            if "value" not in op:
                raise Unsupported(f"{where}: op {j} has no value")
            node, rel = op["value"], []
            for seg in path[len(p):]:
                if isinstance(node, dict) and seg in node:
                    node = node[seg]
                elif isinstance(node, list) and isinstance(seg, int) and 0 <= seg < len(node):
                    node = node[seg]
                else:
                    raise Unsupported(f"{where}: op {j} replaces {op.get('path')} without {format_path(path)}")
                rel.append(seg)
            if isinstance(node, dict | list) or node is None:
                raise Unsupported(f"{where}: op {j} sets {format_path(path)} to {node!r}, not a scalar")
            found = ((j, "value", *rel), node)
        elif len(q) < len(p) and p[:len(q)] == q:
            raise Unsupported(f"{where}: op {j} writes below {format_path(path)}")
        elif name == "add" and p and (p[-1] == "-" or p[-1].isdigit()) and q[:len(p) - 1] == p[:-1]:
            raise Unsupported(f"{where}: op {j} inserts into a list on the field's path")
    return found


def _parse_inline(text: Any, where: str) -> Any:
    if not isinstance(text, str):
        raise Unsupported(f"{where}: the inline patch is not a string")
    try:
        docs = [d for d in safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise Unsupported(f"{where}: the inline patch does not parse: {str(exc).splitlines()[0]}") from None
    if len(docs) != 1:
        raise Unsupported(f"{where}: an inline patch with {len(docs)} documents is not followed")
    return docs[0]


def _apply_patch(tree: Tree, lv: Level, st: State, path: Path, *, content: Any, inline_at: Path | None,
                 patch_file: str | None, target: Any, where: str) -> list[Setter]:
    """Setters of one patch entry (inline at ``lv.prefix + inline_at``, or the file ``patch_file``)."""
    if target is not None and not _target_ok(target, st, where):
        return []
    units: list[tuple[Any, str, str, str, Path]] = []  # (content, file, kind, name, prefix)
    if patch_file is not None:
        docs = tree.docs(patch_file)
        for i, d in enumerate(docs):
            if d is None:
                continue
            kind, name = doc_selector(docs, i, patch_file)
            units.append((d, patch_file, kind, name, ()))
    else:
        assert inline_at is not None
        units.append((content, lv.file, lv.doc_kind, lv.doc_name, (*lv.prefix, *inline_at)))
    out: list[Setter] = []
    for body, file, kind, name, pre in units:
        if isinstance(body, list):
            if target is None:
                raise Unsupported(f"{where}: a JSON6902 patch without a target")
            hit = _json6902(body, path, where, st)
            if hit is not None:
                out.append(Setter(file, kind, name, (*pre, *hit[0]), hit[1], f"JSON6902 patch ({where})"))
        elif isinstance(body, dict):
            if target is None and not _smp_doc_ok(body, st):
                continue
            _mark_merged_lists(body, (), st)
            sets, value, at = _smp_lookup(body, path, where, st.body)
            if sets:
                out.append(Setter(file, kind, name, (*pre, *at), value, f"strategic-merge patch ({where})"))
        else:
            raise Unsupported(f"{where}: a patch that is neither a mapping nor a list of operations")
    return out


def _patch_file_or_inline(tree: Tree, lv: Level, entry: str) -> str | None:
    p = join_path(lv.folder, entry)
    if p in tree.files:
        return p
    if "\n" in entry or ":" in entry:
        return None  # inline YAML
    raise Unsupported(f"{lv.label}: patch file {p} is not in the repository")


def advance(b: Mapping[str, Any], st: State) -> None:
    """What one level's namespace, name prefix/suffix, labels and annotations do to the object."""
    ns = b.get("namespace")
    if isinstance(ns, str) and ns:
        st.namespaces.add(ns)
        st.namespace = ns
    pre, suf = b.get("namePrefix") or "", b.get("nameSuffix") or ""
    if isinstance(pre, str) and isinstance(suf, str) and (pre or suf):
        st.name = f"{pre}{st.name}{suf}"
        st.names.add(st.name)
    if isinstance(b.get("commonLabels"), dict):
        st.labels.update({str(k): str(v) for k, v in b["commonLabels"].items()})
    for lab in entries(b, "labels"):
        pairs = canonical(lab, ("pairs", "includeSelectors", "includeTemplates", "fields"))[0] if isinstance(lab, dict) else {}
        if isinstance(pairs.get("pairs"), dict):
            st.labels.update({str(k): str(v) for k, v in pairs["pairs"].items()})
    if isinstance(b.get("commonAnnotations"), dict):
        st.annotations.update({str(k): str(v) for k, v in b["commonAnnotations"].items()})


def split_image(ref: str) -> tuple[str, str, str]:
    """``(name, tag, digest)`` of an image reference (``host:5000/a/b:1.2@sha256:..``)."""
    name, _, digest = ref.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1:], digest
    return name, "", digest


def join_image(name: str, tag: str, digest: str) -> str:
    return name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


_IMAGE_FIELDS = ("name", "newName", "newTag", "digest")


def _images(lv: Level, path: Path, current: Any) -> list[Setter]:
    """The ``images:`` entry that rewrites the container image at ``path`` (value: the new reference)."""
    if not (path and path[-1] == "image" and any(p in ("containers", "initContainers") for p in path)):
        return []
    if not isinstance(current, str):
        return []
    name, tag, digest = split_image(current)
    out: list[Setter] = []
    for i, raw in enumerate(entries(lv.body, "images")):
        e, written, unknown = canonical(raw, _IMAGE_FIELDS) if isinstance(raw, dict) else ({}, {}, ["?"])
        if unknown or not isinstance(e.get("name"), str):
            raise Unsupported(f"{lv.label} images[{i}]: not a mapping of {', '.join(_IMAGE_FIELDS)}")
        if e["name"] != name:
            continue
        new_name = str(e.get("newName") or name)
        where = (*lv.prefix, lv.key("images"), i)
        how = f"images[{i}] of {lv.label}"
        if e.get("digest") not in (None, ""):
            d = str(e["digest"])
            out.append(Setter(lv.file, lv.doc_kind, lv.doc_name, (*where, written["digest"]),
                              join_image(new_name, "", d), how, part="digest", raw=e["digest"]))
        elif e.get("newTag") not in (None, ""):
            t = str(e["newTag"])
            out.append(Setter(lv.file, lv.doc_kind, lv.doc_name, (*where, written["newTag"]),
                              join_image(new_name, t, ""), how, part="tag", raw=e["newTag"]))
        elif new_name != name:
            raise Unsupported(f"{how} renames the image to {new_name} and keeps the base file's tag: not followed")
        name, tag, digest = split_image(out[-1].value) if out else (name, tag, digest)
    return out


def run_level(tree: Tree, lv: Level, st: State, path: Path, current: Any = None) -> list[Setter]:
    """Setters of ``path`` in one level, in kustomize's transformer order; updates ``st``.
    ``current``: the value before this level (for ``images:``, which rewrites part of it)."""
    b, out = lv.body, []
    custom = transformer_options(tree, lv, st)   # checked first: one that may write a value refuses
    for i, e in enumerate(entries(b, "patchesStrategicMerge")):
        where = f"{lv.label} patchesStrategicMerge[{i}]"
        if not isinstance(e, str):
            raise Unsupported(f"{where}: not a string")
        pf = _patch_file_or_inline(tree, lv, e)
        out += _apply_patch(tree, lv, st, path, content=None if pf else _parse_inline(e, where),
                            inline_at=None if pf else (lv.key("patchesStrategicMerge"), i), patch_file=pf, target=None,
                            where=where)
    for i, e in enumerate(entries(b, "patches")):
        where = f"{lv.label} patches[{i}]"
        out += _entry_patch(tree, lv, st, path, e, "patches", i, where)
    advance(b, st)
    for i, e in enumerate(entries(b, "patchesJson6902")):
        where = f"{lv.label} patchesJson6902[{i}]"
        out += _entry_patch(tree, lv, st, path, e, "patchesJson6902", i, where)
    for i, raw in enumerate(entries(b, "replicas")):
        e, written, _ = canonical(raw, ("name", "count")) if isinstance(raw, dict) else ({}, {}, [])
        if e.get("name") in st.names and path == ("spec", "replicas"):
            if st.kind not in _REPLICA_KINDS:
                raise Unsupported(f"{lv.label} replicas[{i}] names {e.get('name')}, a {st.kind}: not followed")
            if not isinstance(e.get("count"), int):
                raise Unsupported(f"{lv.label} replicas[{i}]: count is not an integer")
            out.append(Setter(lv.file, lv.doc_kind, lv.doc_name, (*lv.prefix, lv.key("replicas"), i,
                                                                   written.get("count", "count")),
                              e["count"], f"replicas[{i}] of {lv.label}"))
    out += _images(lv, path, out[-1].value if out else current)
    for i, r in enumerate(entries(b, "replacements")):
        if not isinstance(r, dict) or "path" in r:
            raise Unsupported(f"{lv.label} replacements[{i}]: replacements from a file are not followed")
        for t in r.get("targets") or []:
            sel = t.get("select") if isinstance(t, dict) else None
            if isinstance(sel, dict) and sel.get("kind") not in (None, st.kind):
                continue
            fps = t.get("fieldPaths") if isinstance(t, dict) else None
            if not isinstance(fps, list) or any(
                    not isinstance(fp, str) or "*" in fp or "[" in fp or fp == format_path(path)
                    or format_path(path).startswith(fp + ".") for fp in fps):
                raise Unsupported(f"{lv.label} replacements[{i}] may write {format_path(path)}; not followed")
    for opts in custom:   # `transformers:` run after the built-in options of the level
        advance(opts, st)
    return out


# built-in transformer configurations that only rename, relabel or move an object: what they do,
# as the kustomization options that do the same (any other kind may write a value: not followed)
_NAMING_TRANSFORMERS = ("LabelTransformer", "AnnotationsTransformer", "PrefixSuffixTransformer",
                        "PrefixTransformer", "SuffixTransformer", "NamespaceTransformer")


def _applies(config: Mapping[str, Any], st: State, field_path: str) -> bool:
    specs = config.get("fieldSpecs")
    if specs is None:
        return True
    return any(isinstance(f, dict) and str(f.get("path", "")).strip("/") == field_path
               and f.get("kind") in (None, "", st.kind) for f in specs) if isinstance(specs, list) else False


def transformer_options(tree: Tree, lv: Level, st: State) -> list[dict[str, Any]]:
    """The ``transformers:`` of a level as options ``advance`` understands (labels, annotations,
    name prefix / suffix, namespace), for built-in transformer configurations that do only that;
    any other transformer raises Unsupported (it may write a value the daemon reads or edits)."""
    out: list[dict[str, Any]] = []
    for i, e in enumerate(entries(lv.body, "transformers")):
        where = f"{lv.label} transformers[{i}]"
        if not isinstance(e, str):
            raise Unsupported(f"{where}: not a path or an inline configuration")
        if "\n" in e or ":" in e:
            configs = [d for d in safe_load_all(e) if d is not None]
        else:
            p = join_path(lv.folder, e)
            if p not in tree.files:
                raise Unsupported(f"{where}: {p} is a folder of transformers or not in the repository; not followed")
            configs = [d for d in tree.docs(p) if d is not None]
        for c in configs:
            kind = c.get("kind") if isinstance(c, dict) else None
            if kind not in _NAMING_TRANSFORMERS:
                raise Unsupported(f"{where}: a {kind or 'custom'} transformer may change values; not followed")
            opts: dict[str, Any] = {}
            if kind == "LabelTransformer" and isinstance(c.get("labels"), dict) and _applies(c, st, "metadata/labels"):
                opts["commonLabels"] = c["labels"]
            elif kind == "AnnotationsTransformer" and isinstance(c.get("annotations"), dict):
                opts["commonAnnotations"] = c["annotations"]
            elif kind in ("PrefixSuffixTransformer", "PrefixTransformer", "SuffixTransformer") and _applies(
                    c, st, "metadata/name"):
                opts["namePrefix"], opts["nameSuffix"] = c.get("prefix") or "", c.get("suffix") or ""
            elif kind == "NamespaceTransformer" and _applies(c, st, "metadata/namespace"):
                opts["namespace"] = as_map(c.get("metadata")).get("namespace")
            out.append(opts)
    return out


def _entry_patch(tree: Tree, lv: Level, st: State, path: Path, raw: Any, key: str, i: int,
                 where: str) -> list[Setter]:
    if not isinstance(raw, dict):
        raise Unsupported(f"{where}: not a mapping")
    e, written, _ = canonical(raw, ("path", "patch", "target", "options"))
    if e.get("options"):
        raise Unsupported(f"{where}: patch options are not followed")
    target = e.get("target")
    if key == "patchesJson6902" and target is None:
        raise Unsupported(f"{where}: no target")
    if isinstance(e.get("path"), str):
        pf = join_path(lv.folder, e["path"])
        if pf not in tree.files:
            raise Unsupported(f"{where}: patch file {pf} is not in the repository")
        return _apply_patch(tree, lv, st, path, content=None, inline_at=None, patch_file=pf, target=target,
                            where=f"{where} {pf}")
    if "patch" in e:
        return _apply_patch(tree, lv, st, path, content=_parse_inline(e["patch"], where),
                            inline_at=(lv.key(key), i, written["patch"]),
                            patch_file=None, target=target, where=where)
    raise Unsupported(f"{where}: neither `path` nor `patch`")
