"""``audit verify``: the hash chain in the store, then every anchor in the GitOps remote.

The chain alone detects an edit, a deletion or a reordering of entries. An anchor (a copy of the
head kept as a Git commit, and the trailer of every remediation commit) also detects a chain
rewritten with recomputed hashes, or cut short, at or before the anchored entry; signed anchors
(``audit.signing_key_file``) also detect anchors forged by someone with push rights but not the key.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from agents.compose import build_anchors
from agents.config import Settings
from memory.audit import Anchor
from memory.store import Store
from tools.errors import ToolError


def verify_audit(settings: Settings, store: Store, *, anchors: bool = True) -> tuple[bool, dict[str, Any], list[str]]:
    """``(ok, JSON document, lines to print)``; not ok names the first bad entry."""
    res = store.audit.verify()
    doc: dict[str, Any] = {"ok": res.ok, "count": res.count, "first_bad_seq": res.first_bad_seq, "reason": res.reason}
    lines = [f"audit chain OK: {res.count} entries" if res.ok else f"audit chain BROKEN: {res.reason}"]
    if not anchors or not settings.audit.anchors:
        return res.ok, doc, lines
    with tempfile.TemporaryDirectory(prefix="remediator-anchors-") as tmp:   # a reader keeps no clone
        source = build_anchors(settings, workdir=Path(tmp))
        assert source is not None
        try:
            found = source.read()
        except ToolError as e:
            doc["anchors"] = {"checked": 0, "location": source.location, "ok": None, "reason": str(e)}
            return res.ok, doc, [*lines, f"anchors NOT checked: {e}"]
    forged = [a for a in found if a.signature_ok is False]
    unsigned = [a for a in found if settings.audit.signing_key_file is not None
                and a.source.startswith("anchor commit") and not a.signed]
    checked = store.audit.check_anchors([Anchor(seq=a.seq, hash=a.hash, source=a.source)
                                         for a in found if a.seq > 0 and a.signature_ok is not False])
    first: int | None
    if forged or unsigned:
        bad = (forged or unsigned)[0]
        reason = (f"{bad.source}: its signature does not verify with audit.signing_key_file (forged?)" if forged
                  else f"{bad.source}: not signed, but audit.signing_key_file is set")
        a_ok, first = False, bad.seq
    else:
        a_ok, first, reason = checked.ok, checked.first_bad_seq, checked.reason
    latest = max((a.seq for a in found), default=0)
    doc["anchors"] = {"checked": checked.count, "location": source.location, "ok": a_ok, "first_bad_seq": first,
                      "latest_seq": latest, "reason": reason}
    if a_ok:
        lines.append(f"anchors OK: {checked.count} checked in {source.location} (latest: entry {latest})"
                     if found else f"anchors: none yet in {source.location}")
    else:
        lines.append(f"anchors DISAGREE: {reason}")
        if doc["first_bad_seq"] is None:
            doc["first_bad_seq"] = first
    ok = res.ok and a_ok
    doc["ok"] = ok
    return ok, doc, lines
