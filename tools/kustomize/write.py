"""Writing: ``apply_edits``, the text-level writer for every edit ``locate`` can return.

Plain edits (a field of a named document, not inside a string) are handed to
``tools.yamledit.apply_edits`` unchanged. Extended edits (into an inline patch's block scalar,
or into a document without kind/name such as a JSON6902 patch file) are written here with
yamledit's scalar writer: one line changes, the file is re-read and only that value may differ.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import yaml
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from memory.records import FieldEdit
from tools import yamledit
from tools.errors import PermanentError
from tools.kustomize.tree import Path, name_of
from tools.yamledit import format_path, safe_load_all

__all__ = ["apply_edits"]

_BLOCK = re.compile(r"\|([+-])?[ \t]*(#.*)?$")


def _rt_select(docs: list[Any], kind: str, name: str, where: str) -> int:
    if not kind:
        idx = [i for i, d in enumerate(docs) if d is not None]
    else:
        idx = [i for i, d in enumerate(docs) if isinstance(d, CommentedMap) and d.get("kind") == kind
               and name_of(d) == name]
    if len(idx) != 1:
        raise PermanentError(f"{where}: {len(idx)} documents match (kind {kind or '-'}, name {name or '-'})")
    return idx[0]


def _edit_text(text: str, kind: str, name: str, path: Path, new: Any, where: str) -> str:
    try:
        docs = yamledit.round_trip_documents(text)
    except Exception as exc:  # ruamel raises several unrelated types for bad input
        raise PermanentError(f"{where}: YAML does not parse: {str(exc).splitlines()[0]}") from None
    node = docs[_rt_select(docs, kind, name, where)]
    lines = text.splitlines(keepends=True)
    if not path:
        raise PermanentError(f"{where}: empty field path")
    for i, key in enumerate(path):
        if not yamledit.has_key(node, key):
            raise PermanentError(f"{where}: {format_path(path[:i + 1])} is missing")
        child = node[key]
        row, col = yamledit.value_position(node, key)
        if i == len(path) - 1:
            if isinstance(child, CommentedMap | CommentedSeq):
                raise PermanentError(f"{where}: {format_path(path)} is a collection, not a scalar")
            yamledit.replace_scalar(lines, node, key, new, where)
            return "".join(lines)
        if isinstance(child, str):
            return _edit_block(lines, row, col, child, path[i + 1:], new, f"{where} (inside {format_path(path[:i + 1])})")
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
        docs = safe_load_all(text)
    except yaml.YAMLError:
        return True  # let yamledit name the parse error
    hits = [d for d in docs if isinstance(d, dict) and e.doc_kind and d.get("kind") == e.doc_kind
            and yamledit.metadata_name(d) == e.doc_name]
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
        where = f"{e.file} {e.doc_kind or '-'}/{e.doc_name or '-'} {format_path(e.path)}"
        new_text = _edit_text(text, e.doc_kind, e.doc_name, tuple(e.path), e.new, where)
        try:
            old_docs, new_docs = safe_load_all(text), safe_load_all(new_text)
        except yaml.YAMLError as exc:
            raise PermanentError(f"{where}: edit would break the file: {str(exc).splitlines()[0]}",
                                 source=e.file) from None
        idx = _rt_select(yamledit.round_trip_documents(text), e.doc_kind, e.doc_name, where)
        found, got, _ = _plain(new_docs[idx], tuple(e.path))
        if not found or not yamledit.reads_back_as(got, e.new):
            raise PermanentError(f"{where}: wrote {e.new!r} but it reads back as {got!r}", source=e.file)
        if len(old_docs) != len(new_docs) or any(a != b for i, (a, b) in enumerate(zip(old_docs, new_docs, strict=True))
                                                  if i != idx) \
                or not _same_except(old_docs[idx], new_docs[idx], tuple(e.path)):
            raise PermanentError(f"{where}: the edit would change more than that value", source=e.file)
        text = new_text
    return text
