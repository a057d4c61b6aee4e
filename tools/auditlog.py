"""AuditLog over Kubernetes audit log files (the log backend: one JSON event per line).

The cursor is JSON: ``{path: {"inode", "offset", "line", "head"}}`` where ``offset`` is the byte
after the last complete line read and ``head`` a hash of the file's first bytes. A path the cursor
does not know, or no cursor at all, reads events with ``time >= since``. A last line without its
newline is left for the next read. Problems (missing/unreadable file, malformed line, bad cursor) do
not stop the read: they are listed in ``last_problems`` as ``"path:line: reason"``.

Rotation loses nothing and reads nothing twice. A file whose inode changed, that shrank below the
offset, or whose first bytes changed was rotated (renamed, or copied and truncated). The file the
cursor was in is then found among the rotated siblings in the same folder (``audit.log.1``,
``audit.log-20261207``, ``audit.log.1.gz``, ...): by inode, else by the same first bytes (a
copytruncate copy, or a gzip of it). It is drained from the cursor's offset, then every sibling
rotated after it is read whole (several rotations between two reads), then the live file from its
start. When the old file cannot be found any more, that is said in ``last_problems``.

Only ``audit.k8s.io/v1`` ``Event`` objects count; other lines (another API version or kind) are
skipped and counted in ``last_problems``. Events at stage ``RequestReceived``/``ResponseStarted`` are skipped (the same auditID comes again at
``ResponseComplete``/``Panic``); ``EventList`` lines (webhook batch format) are unpacked.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from tools.results import AuditEvent

_HEAD = 256
_SKIP_STAGES = {"RequestReceived", "ResponseStarted"}
AUDIT_API_VERSION = "audit.k8s.io/v1"


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _head(f: BinaryIO, size: int) -> str:
    """Hash of the first min(size, 256) bytes: tells a file truncated and rewritten past the offset."""
    f.seek(0)
    return hashlib.sha256(f.read(min(size, _HEAD))).hexdigest()[:16]


def _gzipped(p: Path) -> bool:
    return p.suffix == ".gz"


def _open(p: Path) -> IO[bytes]:
    """A rotated file, plain or gzip-compressed, for reading bytes."""
    return cast(IO[bytes], gzip.open(p, "rb")) if _gzipped(p) else p.open("rb")


def _same_head(p: Path, head: Any, offset: int) -> bool:
    """Whether ``p`` starts with the bytes the cursor's file started with and is at least ``offset`` long."""
    try:
        with _open(p) as f:
            first = f.read(min(offset, _HEAD))
            if hashlib.sha256(first).hexdigest()[:16] != head:
                return False
            if offset == 0:
                return True
            f.seek(offset - 1)
            return len(f.read(1)) == 1
    except (OSError, EOFError, gzip.BadGzipFile):
        return False


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _strs(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


MAX_REQUEST_OBJECT_BYTES = 16 * 1024   # larger request bodies are truncated before they reach the cycle's state


def _bounded(body: Any) -> Any:
    """A request body small enough to keep in the cycle's checkpointed state; a larger one keeps
    only its kind and ``spec.replicas`` and says it was truncated (and from how many bytes)."""
    if not isinstance(body, dict):
        return body
    size = len(json.dumps(body, default=str))
    if size <= MAX_REQUEST_OBJECT_BYTES:
        return body
    spec = body.get("spec")
    kept: dict[str, Any] = {"truncated": True, "bytes": size, "kind": str(body.get("kind", ""))[:100]}
    if isinstance(spec, dict) and isinstance(spec.get("replicas"), int):
        kept["spec"] = {"replicas": spec["replicas"]}
    return kept


def parse_event(obj: dict[str, Any]) -> AuditEvent:
    """One audit.k8s.io/v1 Event -> AuditEvent; KeyError/ValueError/TypeError when unusable."""
    if not isinstance(obj.get("requestReceivedTimestamp"), str):
        raise ValueError("no requestReceivedTimestamp")
    ref, user, status = (_obj(obj.get(k)) for k in ("objectRef", "user", "responseStatus"))
    code = status.get("code")
    body = _bounded(obj.get("requestObject"))
    return AuditEvent(
        audit_id=str(obj.get("auditID", "")), at=_aware(datetime.fromisoformat(obj["requestReceivedTimestamp"])),
        verb=str(obj.get("verb", "")), user=str(user.get("username", "")), groups=_strs(user.get("groups")),
        user_agent=str(obj.get("userAgent", "")), source_ips=_strs(obj.get("sourceIPs")),
        resource=str(ref.get("resource", "")), subresource=str(ref.get("subresource", "")),
        namespace=str(ref.get("namespace", "")), name=str(ref.get("name", "")), api_group=str(ref.get("apiGroup", "")),
        request_uri=str(obj.get("requestURI", "")), code=code if isinstance(code, int) else None,
        request_object=body if isinstance(body, dict) else None)


class JsonLinesAuditLog:
    """AuditLog adapter over audit log files."""

    last_problems: list[str]  # AuditLog.last_problems: what the last read could not use

    def __init__(self, *, paths: list[Path]) -> None:
        self._paths = [Path(p) for p in paths]
        self.last_problems: list[str] = []

    def _decode(self, cursor: str | None) -> dict[str, dict[str, Any]] | None:
        if cursor is None:
            return None
        try:
            state = json.loads(cursor)
            if isinstance(state, dict) and all(isinstance(v, dict) and isinstance(v.get("offset"), int)
                                               and isinstance(v.get("line", 0), int) for v in state.values()):
                return state
        except ValueError:
            pass
        self.last_problems.append(f"cursor: not a cursor of this audit log, reading from 'since': {cursor[:100]!r}")
        return None

    def read(self, *, cursor: str | None, since: datetime) -> tuple[list[AuditEvent], str]:
        self.last_problems = []
        self._foreign: list[str] = []
        state, since = self._decode(cursor), _aware(since)
        events: list[AuditEvent] = []
        new_state: dict[str, dict[str, Any]] = {}
        for path in self._paths:
            prev = (state or {}).get(str(path))
            try:
                with path.open("rb") as f:
                    st = os.fstat(f.fileno())
                    prev_off = int(prev.get("offset", 0)) if prev else 0
                    same = (prev is not None and prev.get("inode") == st.st_ino and prev_off <= st.st_size
                            and prev.get("head", _head(f, prev_off)) == _head(f, prev_off))
                    if prev is not None and not same:
                        events += self._rotated(path, prev, live_inode=st.st_ino)
                    offset, line_no = (prev_off, int(prev.get("line", 0))) if same and prev else (0, 0)
                    found, offset, line_no = self._lines(f, offset, line_no, str(path), since if prev is None else None)
                    events += found
                    new_state[str(path)] = {"inode": st.st_ino, "offset": offset, "line": line_no,
                                            "head": _head(f, offset)}
            except OSError as e:
                self.last_problems.append(f"{path}: cannot read audit log: {e.strerror or e}")
                if prev is not None:
                    new_state[str(path)] = prev  # keep the position for when it is back
        if self._foreign:
            self.last_problems.append(f"{len(self._foreign)} line(s) were not {AUDIT_API_VERSION} Events and were "
                                      f"skipped (first: {self._foreign[0]})")
        events.sort(key=lambda e: e.at)
        return events, json.dumps(new_state, sort_keys=True)

    def _lines(self, f: IO[bytes], offset: int, line_no: int, label: str,
               since: datetime | None) -> tuple[list[AuditEvent], int, int]:
        """The complete lines of ``f`` from ``offset`` (already there) to its end: events, new offset and line."""
        events: list[AuditEvent] = []
        f.seek(offset)
        for raw in f:
            if not raw.endswith(b"\n"):
                break  # being written: read it next time
            offset += len(raw)
            line_no += 1
            if raw.strip():
                events.extend(self._parse(raw, f"{label}:{line_no}", since))
        return events, offset, line_no

    def _rotated(self, path: Path, prev: dict[str, Any], *, live_inode: int) -> list[AuditEvent]:
        """The events written to the cursor's file after the last read, before it was rotated, and
        those of every file rotated after it (oldest first)."""
        siblings = sorted((p for p in path.parent.glob(glob.escape(path.name) + "?*") if p.is_file()),
                          key=lambda p: (p.stat().st_mtime, p.name))
        offset, line_no = int(prev.get("offset", 0)), int(prev.get("line", 0))
        start = next((i for i, p in enumerate(siblings) if p.stat().st_ino == prev.get("inode")
                      and p.stat().st_ino != live_inode and not _gzipped(p)), None)
        if start is None:
            start = next((i for i, p in enumerate(siblings) if _same_head(p, prev.get("head"), offset)), None)
        if start is None:
            self.last_problems.append(f"{path}: rotated, and the file read up to byte {offset} is gone: events "
                                      "written to it after the last read may be missing")
            return []
        events: list[AuditEvent] = []
        for i, p in enumerate(siblings[start:]):
            try:
                with _open(p) as f:
                    found, _, _ = self._lines(f, offset if i == 0 else 0, line_no if i == 0 else 0, str(p), None)
                    events += found
            except OSError as e:
                self.last_problems.append(f"{p}: cannot read rotated audit log: {e.strerror or e}")
        return events

    def _parse(self, raw: bytes, where: str, since: datetime | None) -> list[AuditEvent]:
        try:
            obj = json.loads(raw)
            is_list = isinstance(obj, dict) and obj.get("kind") == "EventList"
            items = obj.get("items") if is_list else [obj]
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise ValueError("not a JSON object")
            list_version = obj.get("apiVersion") if is_list else None
            events = []
            for i in items:
                version, kind = i.get("apiVersion", list_version), i.get("kind", "Event" if is_list else None)
                if version != AUDIT_API_VERSION or kind != "Event":
                    self._foreign.append(f"{where}: apiVersion {str(version)[:40]!r}, kind {str(kind)[:40]!r}")
                    continue
                events.append(i)
            out = [parse_event(i) for i in events if i.get("stage") not in _SKIP_STAGES]
        except (ValueError, TypeError, KeyError) as e:
            self.last_problems.append(f"{where}: malformed audit event: {e}"[:300])
            return []
        return [e for e in out if since is None or e.at >= since]
