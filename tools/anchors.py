"""Audit anchors in the GitOps remote: copies of the audit chain head that someone with only
database access cannot rewrite.

Two kinds are read back:
- anchor commits on ``refs/remediator/audit-anchors`` (outside ``refs/heads``: Argo CD / Flux and
  branch listings never see it), one commit per anchor, each holding ``anchor.json``
  (``{"seq", "hash", "at"}``) and, when a signing key is configured, an Ed25519 signature of
  ``"<seq> <hash>"`` in ``signature`` (hex);
- the ``Remediator-Audit-Head: <seq> <sha256>`` trailer of every remediation commit on any branch.

Git's history witnesses them: rewriting an anchor needs push rights to the remote (and, with
signing, the private key).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from io import BytesIO
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from gitdb import IStream

from tools.errors import PermanentError, ToolError
from tools.gitops import GitClone, serialized
from tools.results import ReadAnchor

ANCHOR_REF = "refs/remediator/audit-anchors"
TRAILER = "Remediator-Audit-Head"
_TRAILER_RE = re.compile(rf"^{TRAILER}:\s*(\d+)\s+([0-9a-f]{{64}})\s*$", re.M)


def head_trailer(seq: int, digest: str) -> str:
    """The trailer a remediation commit carries: the audit chain head when it was made."""
    return f"{TRAILER}: {seq} {digest}"


class Signer:
    """Ed25519 signatures of anchors (``cryptography``), from a PEM private key file."""

    def __init__(self, key_file: Path) -> None:
        try:
            key = load_pem_private_key(Path(key_file).read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as e:
            raise PermanentError(f"audit.signing_key_file {key_file}: not a readable PEM private key ({e})",
                                 source=str(key_file)) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise PermanentError(f"audit.signing_key_file {key_file}: an Ed25519 key is expected "
                                 "(openssl genpkey -algorithm ed25519)", source=str(key_file))
        self._key = key
        self.public: Ed25519PublicKey = key.public_key()

    def sign(self, seq: int, digest: str) -> str:
        return self._key.sign(f"{seq} {digest}".encode()).hex()

    def verify(self, seq: int, digest: str, signature: str) -> bool:
        try:
            self.public.verify(bytes.fromhex(signature), f"{seq} {digest}".encode())
        except (InvalidSignature, ValueError):
            return False
        return True


class GitAnchors:
    """AuditAnchors adapter over the GitOps remote."""

    def __init__(self, *, remote: str, workdir: Path, author_name: str, author_email: str,
                 signer: Signer | None = None, ref: str = ANCHOR_REF, timeout_s: float = 60) -> None:
        self.git = GitClone(remote=remote, workdir=workdir, author_name=author_name, author_email=author_email,
                            timeout_s=timeout_s)
        self.signer, self.ref = signer, ref

    @property
    def location(self) -> str:
        return f"{self.git.url} {self.ref}"

    def _fetch(self) -> str | None:
        """Fetch the anchor ref and every branch; the anchor ref's tip (None when there is none yet)."""
        self.git.run("fetch", "--no-tags", "--quiet", "--prune", "origin", "+refs/heads/*:refs/remotes/origin/*",
                     action="fetching")
        try:
            self.git.run("fetch", "--no-tags", "--quiet", "origin", f"+{self.ref}:{self.ref}", action="fetching")
        except ToolError as e:
            if "couldn't find remote ref" not in str(e) and "branch not found" not in str(e):
                raise
            return None
        return self.git.sha(self.ref)

    @serialized
    def write(self, *, seq: int, digest: str, at: datetime) -> str:
        """Push one anchor commit on top of the anchor ref; returns the commit id."""
        tip = self._fetch()
        doc = {"seq": seq, "hash": digest, "at": at.isoformat()}
        if self.signer is not None:
            doc["signature"] = self.signer.sign(seq, digest)
        data = (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()
        blob = self.git.repo.odb.store(IStream(b"blob", len(data), BytesIO(data))).hexsha.decode()
        index = self.git.workdir / ".git" / "remediator-anchor.index"
        index.unlink(missing_ok=True)
        env = {"GIT_INDEX_FILE": str(index)}
        self.git.run("update-index", "--add", "--cacheinfo", f"100644,{blob},anchor.json", env=env)
        tree = self.git.run("write-tree", env=env)
        index.unlink(missing_ok=True)
        parents = ["-p", tip] if tip else []
        commit = self.git.run("commit-tree", tree, *parents, "-m",
                              f"remediator audit anchor: entry {seq}\n\n{head_trailer(seq, digest)}")
        self.git.run("push", "--porcelain", "--quiet", f"--force-with-lease={self.ref}:{tip or ''}", "origin",
                     f"{commit}:{self.ref}", action=f"pushing audit anchor {self.ref}")
        return commit

    @serialized
    def read(self) -> list[ReadAnchor]:
        """Every anchor the remote holds: anchor commits (newest first) and remediation-commit trailers."""
        tip = self._fetch()
        out: list[ReadAnchor] = []
        if tip is not None:
            for sha in self.git.run("rev-list", "--first-parent", tip).split():
                text = self.git.show(sha, "anchor.json")
                out.append(self._from_file(sha, text))
        log = self.git.run("log", "--remotes=origin", f"--grep=^{TRAILER}:", "--format=%H%x1f%B%x1e")
        for record in log.split("\x1e"):
            sha, _, body = record.strip().partition("\x1f")
            for m in _TRAILER_RE.finditer(body):
                out.append(ReadAnchor(seq=int(m.group(1)), hash=m.group(2), source=f"trailer of commit {sha[:12]}"))
        return out

    def _from_file(self, sha: str, text: str | None) -> ReadAnchor:
        source = f"anchor commit {sha[:12]}"
        try:
            doc = json.loads(text or "")
            seq, digest = int(doc["seq"]), str(doc["hash"])
        except (ValueError, KeyError, TypeError):
            return ReadAnchor(seq=0, hash="", source=source + " (unreadable anchor.json)", signature_ok=False)
        sig = doc.get("signature")
        ok = None if self.signer is None else (isinstance(sig, str) and self.signer.verify(seq, digest, sig))
        return ReadAnchor(seq=seq, hash=digest, source=source, signed=isinstance(sig, str), signature_ok=ok)
