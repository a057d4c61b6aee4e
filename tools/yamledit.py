"""Minimal-diff edits of YAML manifests (pure: text in, text out).

``apply_edits`` locates a field with ruamel.yaml's round-trip parser (line/column of the
node), then rewrites only that scalar's characters in the original text, so comments,
quoting, flow mappings, indentation and the other documents stay byte-identical. Every
edit is re-read with PyYAML (what GitOps tooling and reviewers' diffs see) and must read
back as the value that was asked for.

The round-trip loading and the scalar writer are public (``round_trip_documents``, ``has_key``,
``value_position``, ``token_end``, ``render_scalar``, ``replace_scalar``, ``reads_back_as``,
``metadata_name``, ``format_path``) because ``tools.kustomize.write`` edits inside inline
patches with the same rules.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError as RuamelMarkedError

from memory.records import FieldEdit
from tools.errors import PermanentError

__all__ = ["YamlParseError", "apply_edits", "format_path", "get_value", "has_key", "metadata_name",
           "parse_documents", "reads_back_as", "render_scalar", "replace_scalar", "round_trip_documents",
           "token_end", "value_position"]


class YamlParseError(PermanentError):
    """A file that does not parse; ``line`` is 1-based (None when unknown)."""

    def __init__(self, message: str, *, source: str = "", line: int | None = None) -> None:
        super().__init__(message, source=source)
        self.line = line


def _mark_error(exc: Exception, path: str) -> YamlParseError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    context, problem, cmark = (getattr(exc, a, None) for a in ("context", "problem", "context_mark"))
    if context and cmark is not None and line and cmark.line + 1 != line:
        context = f"{context} (line {cmark.line + 1})"
    what = ": ".join(str(p) for p in (context, problem) if p) or str(exc).splitlines()[0]
    where = f"{path}:{line}" if line else path
    return YamlParseError(f"{where}: YAML does not parse: {what}", source=path, line=line)


MAX_YAML_BYTES = 2 * 1024 * 1024   # a manifest or policy file larger than this is not read
MAX_YAML_ALIASES = 100             # more aliases than this in one file: an alias bomb, not a manifest


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader that refuses more than MAX_YAML_ALIASES aliases in a stream (an alias
    "bomb" is small to read and huge once walked or serialised)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_YAML_ALIASES} YAML aliases (&anchor / *alias): refused as an "
                                     "alias bomb; expand them in the file")
        return super().compose_node(parent, index)


def safe_load_all(text: str, path: str = "") -> list[Any]:
    """Every document of a YAML stream, with the bounds every file from the repository gets: at most
    MAX_YAML_BYTES, at most MAX_YAML_ALIASES aliases (yaml.YAMLError naming the limit otherwise)."""
    if len(text) > MAX_YAML_BYTES:
        raise yaml.YAMLError(f"{path or 'file'} is {len(text):,} bytes, over the {MAX_YAML_BYTES:,}-byte limit for "
                             "a YAML file remediator reads; split it")
    return list(yaml.load_all(text, Loader=_BoundedLoader))


def parse_documents(text: str, path: str) -> list[dict[str, Any]]:
    """Every document of a YAML stream as a plain dict (an empty or non-mapping document is ``{}``,
    so list positions are document indexes). Raises ``YamlParseError`` naming file:line."""
    try:
        docs = safe_load_all(text, path)
    except yaml.YAMLError as exc:
        raise _mark_error(exc, path) from None
    return [d if isinstance(d, dict) else {} for d in docs]


def _walk(node: Any, path: Sequence[str | int]) -> Any:
    for key in path:
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and isinstance(key, int) and -len(node) <= key < len(node):
            node = node[key]
        else:
            return None
    return node


def metadata_name(doc: Any) -> Any:
    """``metadata.name`` of a parsed document as written (any type); None when it has none."""
    meta = doc.get("metadata") if isinstance(doc, dict) else None
    return meta.get("name") if isinstance(meta, dict) else None


def get_value(text: str, *, doc_kind: str, doc_name: str, path: tuple[str | int, ...]) -> Any:
    """Value at ``path`` in the document ``doc_kind``/``doc_name``; None when anything is missing."""
    for doc in parse_documents(text, "<text>"):
        if doc.get("kind") == doc_kind and metadata_name(doc) == doc_name:
            return _walk(doc, path)
    return None


# --------------------------------------------------------------------------- rendering scalars

def _loads_as(snippet: str) -> Any:
    try:
        return yaml.safe_load(snippet)
    except yaml.YAMLError:
        return _Invalid


class _Invalid:  # sentinel: snippet does not parse
    pass


_rt = YAML(typ="rt")
_rt.allow_duplicate_keys = True


def round_trip_documents(text: str) -> list[Any]:
    """Every document of ``text`` through ruamel's round-trip loader (nodes know their line/column).
    Raises what ruamel raises for bad input."""
    return list(_rt.load_all(text))


def _plain_ok(s: str, flow: bool) -> bool:
    """True when ``s`` written plain reads back as the same string in YAML 1.1 and 1.2."""
    if not s or s != s.strip() or "\n" in s or (flow and any(c in s for c in ",[]{}")):
        return False
    snippet = f"{{k: {s}}}" if flow else f"k: {s}"
    if _loads_as(snippet) != {"k": s}:
        return False
    try:  # YAML 1.2 (ruamel) too, e.g. 0o17 is a string in 1.1 but an int in 1.2
        value = _rt.load(snippet)["k"]
    except Exception:
        return False
    return isinstance(value, str) and value == s


_UNSAFE = re.compile("[^\t\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]")


def _dq(s: str) -> str:
    """A double-quoted YAML scalar (JSON escapes, plus ``\\u`` for characters YAML may not hold raw)."""
    body = json.dumps(s, ensure_ascii=False)
    return _UNSAFE.sub(lambda m: f"\\u{ord(m[0]):04x}" if ord(m[0]) < 0x10000 else f"\\U{ord(m[0]):08x}", body)


def render_scalar(value: Any, style: str, flow: bool) -> tuple[str, Any]:
    """Text for ``value`` in the old token's quote style, and the value it must read back as."""
    if style in ('"', "'") and isinstance(value, int | float | str) and not isinstance(value, bool):
        s = str(value)
        if style == "'" and not _UNSAFE.search(s):
            return "'" + s.replace("'", "''") + "'", s
        return _dq(s), s
    if isinstance(value, bool):
        return ("true" if value else "false"), value
    if value is None:
        return "null", None
    if isinstance(value, int):
        return str(value), value
    if isinstance(value, float):
        if value in (float("inf"), float("-inf")):
            return ("-.inf" if value < 0 else ".inf"), value
        text = repr(value)
        if "e" in text and "." not in text.split("e")[0]:
            m, e = text.split("e")
            text = f"{m}.0e{e}"
        return text, value
    if isinstance(value, str):
        return (value if _plain_ok(value, flow) else _dq(value)), value
    raise PermanentError(f"cannot write a {type(value).__name__} as a YAML scalar: {value!r}")


# --------------------------------------------------------------------------- locating tokens

def token_end(line: str, col: int, flow: bool) -> int:
    """End column (exclusive) of the scalar starting at ``col`` on ``line`` (single line only)."""
    c = line[col] if col < len(line) else ""
    if c == '"':
        i = col + 1
        while i < len(line):
            if line[i] == "\\":
                i += 2
                continue
            if line[i] == '"':
                return i + 1
            i += 1
        return -1
    if c == "'":
        i = col + 1
        while i < len(line):
            if line[i] == "'":
                if line[i + 1:i + 2] == "'":
                    i += 2
                    continue
                return i + 1
            i += 1
        return -1
    stop = re.compile(r"\s#|[,\]}]" if flow else r"\s#").search(line, col)
    end = stop.start() if stop else len(line.rstrip("\r\n"))
    return len(line[:end].rstrip())


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _select(docs: list[Any], edit: FieldEdit) -> Any:
    hits = [d for d in docs if isinstance(d, CommentedMap) and d.get("kind") == edit.doc_kind
            and metadata_name(d) == edit.doc_name]
    if len(hits) != 1:
        what = "no document" if not hits else f"{len(hits)} documents"
        raise PermanentError(f"{edit.file}: {what} of kind {edit.doc_kind} named {edit.doc_name}", source=edit.file)
    return hits[0]


def format_path(path: Sequence[str | int]) -> str:
    """``spec.template.0.image``: a field path as errors and notes write it."""
    return ".".join(str(p) for p in path)


def has_key(parent: Any, key: str | int) -> bool:
    """True when the round-trip node ``parent`` holds ``key`` (a mapping key, or a list index >= 0)."""
    return (isinstance(parent, CommentedMap) and key in parent) or (
        isinstance(parent, CommentedSeq) and isinstance(key, int) and 0 <= key < len(parent))


def value_position(parent: CommentedMap | CommentedSeq, key: str | int) -> tuple[int, int]:
    """0-based (row, column) where the value ``parent[key]`` starts in the text."""
    row, col = parent.lc.value(key) if isinstance(parent, CommentedMap) else parent.lc.item(key)
    return int(row), int(col)


def replace_scalar(lines: list[str], parent: CommentedMap | CommentedSeq, key: str | int, new: Any, where: str, *,
                   source: str = "") -> None:
    """Rewrite, in ``lines`` (the text's lines with their ends), the single-line scalar ``parent[key]`` as
    ``new`` in the old token's quote style; every other character stays. Raises ``PermanentError``
    (``where: ...``) for anchors, aliases, tags, block scalars and multi-line quoted scalars."""
    row, col = value_position(parent, key)
    flow = parent.fa.flow_style()
    line = lines[row]
    if line[col:col + 1] in ("&", "*", "!", "|", ">"):
        raise PermanentError(f"{where}: anchors, aliases, tags and block scalars are not edited", source=source)
    end = token_end(line, col, flow)
    if end < 0:
        raise PermanentError(f"{where}: multi-line quoted scalar is not edited", source=source)
    style = line[col] if line[col:col + 1] in ("'", '"') else ""
    lines[row] = line[:col] + render_scalar(new, style, flow)[0] + line[end:]


def reads_back_as(got: Any, new: Any) -> bool:
    """True when ``got`` (the value re-read with PyYAML) is what writing ``new`` asked for: the same
    value and type, where a field that was quoted stays a string (``"4"`` for 4)."""
    want = new
    if isinstance(got, str) and not isinstance(want, str | bool) and want is not None:
        want = str(want)  # the field was quoted: it stays a string
    return bool(got == want) and type(got) is type(want)


def _apply_one(text: str, edit: FieldEdit) -> str:
    where = f"{edit.file} {edit.doc_kind}/{edit.doc_name} {format_path(edit.path)}"
    if not edit.path:
        raise PermanentError(f"{where}: empty field path", source=edit.file)
    try:
        docs = round_trip_documents(text)
    except RuamelMarkedError as exc:
        raise _mark_error(exc, edit.file) from None
    parent = _select(docs, edit)
    for i, key in enumerate(edit.path[:-1]):
        if not has_key(parent, key):
            raise PermanentError(f"{where}: parent {format_path(edit.path[:i + 1])} is missing", source=edit.file)
        parent = parent[key]
    key = edit.path[-1]
    lines = _lines(text)
    if has_key(parent, key):
        if isinstance(parent[key], CommentedMap | CommentedSeq):
            raise PermanentError(f"{where}: is a collection, not a scalar", source=edit.file)
        replace_scalar(lines, parent, key, edit.new, where, source=edit.file)
    elif isinstance(parent, CommentedMap) and isinstance(key, str):
        lines = _insert_key(lines, parent, key, edit.new, where, edit.file)
    else:
        raise PermanentError(f"{where}: parent is not a mapping with that key", source=edit.file)
    return "".join(lines)


def _insert_key(lines: list[str], parent: CommentedMap, key: str, value: Any, where: str, file: str) -> list[str]:
    if not parent:
        raise PermanentError(f"{where}: parent mapping is empty; cannot place a new key", source=file)
    flow = parent.fa.flow_style()
    key_text = key if _plain_ok(key, flow) else _dq(key)
    if flow:  # {a: 1} -> {key: v, a: 1}: one line changes
        row, col = parent.lc.key(next(iter(parent)))
        lines[row] = lines[row][:col] + f"{key_text}: {render_scalar(value, '', True)[0]}, " + lines[row][col:]
        return lines
    last_row, col = parent.lc.key(list(parent)[-1])
    end = last_row
    for i in range(last_row + 1, len(lines)):
        body = lines[i].strip()
        indent = len(lines[i]) - len(lines[i].lstrip())
        if not body or body.startswith("#"):
            continue
        if indent < col or (indent == col and not (body == "-" or body.startswith("- "))) or body in ("---", "..."):
            break
        end = i
    nl = "\r\n" if lines[end].endswith("\r\n") else "\n"
    if not lines[end].endswith("\n"):
        lines[end] += nl
    lines.insert(end + 1, " " * col + f"{key_text}: {render_scalar(value, '', False)[0]}{nl}")
    return lines


def apply_edits(text: str, edits: Sequence[FieldEdit]) -> str:
    """Apply edits of one file; only the changed scalars' text changes (a missing key adds one line).

    Raises ``PermanentError`` naming file/kind/name/path when the document or parent path is
    missing, or when the result would not read back as the requested value."""
    for edit in edits:
        text = _apply_one(text, edit)
        where = f"{edit.file} {edit.doc_kind}/{edit.doc_name} {format_path(edit.path)}"
        try:
            got = get_value(text, doc_kind=edit.doc_kind, doc_name=edit.doc_name, path=edit.path)
        except PermanentError as exc:
            raise PermanentError(f"{where}: edit would break the file: {exc}", source=edit.file) from None
        if not reads_back_as(got, edit.new):
            raise PermanentError(f"{where}: wrote {edit.new!r} but it reads back as {got!r}", source=edit.file)
    return text
