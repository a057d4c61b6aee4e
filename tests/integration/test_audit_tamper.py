"""The tamper suite: a hostile reader with write access to the database edits, deletes, reorders or
rewrites audit entries (recomputing every hash), with and without an anchor after the tampered
entry. `remediator audit verify` (a subprocess, as a user runs it) exits 1 and names the entry in
every case the README says is detected, and exits 0 in the one it says is not (a rewrite of
entries newer than the last anchor). Real git remote, real SQLite file."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from sqlalchemy import delete, update

from agents.demo import prepare_workspace
from memory.audit import audit_entries, audit_head, entry_hash
from memory.records import AuditEntry
from memory.store import Store
from tests.console import remediator
from tools.anchors import GitAnchors, Signer

pytestmark = pytest.mark.integration




def write_key(path: Path) -> Path:
    path.write_bytes(Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return path


@pytest.fixture(scope="module")
def anchored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A workspace after two cycles with signed anchors: config doc, its SQLite file, anchored seqs."""
    ws = tmp_path_factory.mktemp("ws")
    doc, cfg, remote = prepare_workspace(ws, datetime.now(UTC).replace(microsecond=0))
    doc["audit"] = {"anchor_interval": "0s", "signing_key_file": str(write_key(ws / "anchor-key.pem"))}
    cfg.write_text(yaml.safe_dump(doc))
    for _ in range(2):
        proc = remediator("run-once", "--config", str(cfg), "--json")
        assert proc.returncode == 0, proc.stderr[-2000:]
    db = Path(doc["memory"]["url"].removeprefix("sqlite:///"))
    store = Store.open(f"sqlite:///{db}")
    anchors = sorted(a.seq for a in GitAnchors(remote=str(remote), workdir=ws / "peek", author_name="t",
                                                author_email="t@x").read())
    last = store.audit.head()[0]
    store.close()
    assert anchors and anchors[-1] < last, "entries after the last anchor exist (the cycle_finished entries)"
    return {"doc": doc, "db": db, "anchors": anchors, "last": last, "ws": ws, "remote": remote}


def tampered(anchored: dict[str, Any], tmp_path: Path, change: Callable[[Store], None]) -> Path:
    """A config pointing at a tampered copy of the database (same remote, same key)."""
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    db = folder / "tampered.db"
    shutil.copy(anchored["db"], db)
    store = Store.open(f"sqlite:///{db}")
    change(store)
    store.close()
    doc = {**anchored["doc"], "memory": {"url": f"sqlite:///{db}"}}
    cfg = folder / "tampered.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    return cfg


def entries(store: Store) -> list[AuditEntry]:
    return list(store.audit.entries())


def edit(store: Store, seq: int, *, recompute: bool) -> None:
    """Turn entry ``seq``'s data into something else; with ``recompute``, rehash it and every later entry."""
    rows = entries(store)
    with store.engine.begin() as conn:
        prev = rows[seq - 2].hash if seq > 1 else "0" * 64
        for e in rows[seq - 1:]:
            data = {**e.data, "tampered": True} if e.seq == seq else e.data
            fields = e.model_dump(exclude={"seq", "prev_hash", "hash", "data"})
            digest = entry_hash(prev, seq=e.seq, data=data, **fields) if recompute else e.hash
            conn.execute(update(audit_entries).where(audit_entries.c.seq == e.seq).values(
                data=data, prev_hash=prev if recompute else e.prev_hash, hash=digest))
            prev = digest
            if not recompute:
                break
        if recompute:
            conn.execute(update(audit_head).where(audit_head.c.id == 1).values(hash=prev))


def cut(store: Store, keep: int) -> None:
    """Delete every entry after ``keep`` and move the head back, as an attacker hiding them would."""
    last = entries(store)[keep - 1]
    with store.engine.begin() as conn:
        conn.execute(delete(audit_entries).where(audit_entries.c.seq > keep))
        conn.execute(update(audit_head).where(audit_head.c.id == 1).values(seq=keep, hash=last.hash))


def verify(cfg: Path) -> tuple[int, dict[str, Any]]:
    proc = remediator("audit", "verify", "--config", str(cfg), "--json")
    return proc.returncode, json.loads(proc.stdout or "{}")


def test_untampered_chain_and_signed_anchors_verify(anchored: dict[str, Any], tmp_path: Path) -> None:
    rc, doc = verify(tampered(anchored, tmp_path, lambda s: None))
    assert rc == 0 and doc["ok"] and doc["anchors"]["ok"] and doc["anchors"]["checked"] == len(anchored["anchors"])


def test_an_edit_without_rehashing_names_the_entry(anchored: dict[str, Any], tmp_path: Path) -> None:
    rc, doc = verify(tampered(anchored, tmp_path, lambda s: edit(s, 5, recompute=False)))
    assert rc == 1 and doc["first_bad_seq"] == 5 and "edited" in doc["reason"]


def test_a_deleted_entry_is_named(anchored: dict[str, Any], tmp_path: Path) -> None:
    def drop(store: Store) -> None:
        with store.engine.begin() as conn:
            conn.execute(delete(audit_entries).where(audit_entries.c.seq == 4))
    rc, doc = verify(tampered(anchored, tmp_path, drop))
    assert rc == 1 and doc["first_bad_seq"] == 4


def test_reordered_entries_are_named(anchored: dict[str, Any], tmp_path: Path) -> None:
    def swap(store: Store) -> None:
        a, b = entries(store)[5:7]   # entries 6 and 7 trade places (contents and hashes)
        with store.engine.begin() as conn:
            for e, seq in ((a, b.seq), (b, a.seq)):
                conn.execute(update(audit_entries).where(audit_entries.c.seq == seq).values(
                    **e.model_dump(exclude={"seq"})))
    rc, doc = verify(tampered(anchored, tmp_path, swap))
    assert rc == 1 and doc["first_bad_seq"] == 6


def test_a_full_rewrite_before_an_anchor_is_caught_by_the_anchor(anchored: dict[str, Any], tmp_path: Path) -> None:
    seq = anchored["anchors"][0]            # rewrite from the first anchored entry on, every hash recomputed
    rc, doc = verify(tampered(anchored, tmp_path, lambda s: edit(s, seq, recompute=True)))
    assert doc["reason"].startswith("chain intact")          # the chain alone cannot tell
    assert rc == 1 and doc["anchors"]["ok"] is False and doc["first_bad_seq"] == seq
    assert f"entry {seq}:" in doc["anchors"]["reason"] and "disagrees with anchor" in doc["anchors"]["reason"]

    earlier = max(1, seq - 2)               # an edit before the anchor: the anchored entry's hash changes too
    rc, doc = verify(tampered(anchored, tmp_path, lambda s: edit(s, earlier, recompute=True)))
    assert rc == 1 and doc["first_bad_seq"] == seq


def test_entries_cut_below_an_anchor_are_missing(anchored: dict[str, Any], tmp_path: Path) -> None:
    keep = anchored["anchors"][-1] - 1
    rc, doc = verify(tampered(anchored, tmp_path, lambda s: cut(s, keep)))
    assert doc["reason"].startswith("chain intact")
    assert rc == 1 and doc["first_bad_seq"] == anchored["anchors"][-1] and "missing" in doc["anchors"]["reason"]


def test_a_rewrite_after_the_last_anchor_is_not_detected(anchored: dict[str, Any], tmp_path: Path) -> None:
    """The documented limit: entries newer than the last anchor can be rewritten unnoticed."""
    rc, doc = verify(tampered(anchored, tmp_path, lambda s: edit(s, anchored["last"], recompute=True)))
    assert rc == 0 and doc["ok"]


def test_a_forged_anchor_without_the_key_is_caught(anchored: dict[str, Any], tmp_path: Path) -> None:
    """Someone with push rights but not the signing key adds an anchor that agrees with a rewritten chain."""
    forger = GitAnchors(remote=str(anchored["remote"]), workdir=tmp_path / "forger", author_name="mallory",
                        author_email="m@x", signer=Signer(write_key(tmp_path / "wrong.pem")))
    store = Store.open(f"sqlite:///{anchored['db']}")
    seq, digest = store.audit.head()
    store.close()
    forger.write(seq=seq, digest=digest, at=datetime.now(UTC))
    try:
        rc, doc = verify(tampered(anchored, tmp_path, lambda s: None))
        assert rc == 1 and "signature does not verify" in doc["anchors"]["reason"] and doc["first_bad_seq"] == seq
    finally:   # put the anchor ref back for the other tests of this module
        subprocess.run(["git", "update-ref", "refs/remediator/audit-anchors",
                        "refs/remediator/audit-anchors~1"], cwd=anchored["remote"], check=True)
