"""PullRequests provider for a plain git remote (e.g. a bare repository): a PR is a branch.

The PR records themselves (title, body, status) live in remediator's memory, never on the
branch. A PR branch is always exactly one bot commit on top of the base branch; it is re-made
(force-pushed with lease) when the base moves or the content changes, left alone when it
already holds the change, and never touched once someone else has pushed to it.
"""

from __future__ import annotations

from collections.abc import Iterable
from io import BytesIO
from pathlib import Path, PurePosixPath
from typing import Any

from gitdb import IStream

from memory.records import PullRequest, utcnow
from tools.errors import PermanentError, ToolError
from tools.gitops import GitClone, serialized
from tools.results import PublishResult


class LocalProvider:
    """PullRequests adapter for a plain git remote: a PR is a branch."""

    def __init__(self, *, remote: str, base: str, workdir: Path, author_name: str = "remediator",
                 author_email: str = "remediator@localhost", timeout_s: float = 60) -> None:
        self.git = GitClone(remote=remote, workdir=workdir, author_name=author_name,
                            author_email=author_email, timeout_s=timeout_s)
        self.base = base

    @property
    def name(self) -> str:
        return "local"

    def _url(self, branch: str) -> str:
        return f"local://{self.git.url}#{branch}"

    def _base_sha(self) -> str:
        sha = self.git.sha(f"refs/remotes/origin/{self.base}")
        if sha is None:
            raise PermanentError(f"git remote {self.git.url} has no base branch {self.base}; check gitops.branch",
                                 source=self.git.url)
        return sha

    def _tree(self, base_sha: str, files: dict[str, str]) -> str:
        """Tree of ``base_sha`` with ``files`` replaced, built in a private index (no checkout)."""
        index = self.git.workdir / ".git" / "remediator-publish.index"
        index.unlink(missing_ok=True)
        env = {"GIT_INDEX_FILE": str(index)}
        self.git.run("read-tree", base_sha, env=env)
        infos: list[str] = []
        for path, text in sorted(files.items()):
            p = PurePosixPath(path)
            if p.is_absolute() or ".." in p.parts or ".git" in p.parts or not p.parts:
                raise PermanentError(f"refusing to write {path!r}: not a plain repository path", source=self.git.url)
            data = text.encode("utf-8")
            blob = self.git.repo.odb.store(IStream(b"blob", len(data), BytesIO(data))).hexsha.decode()
            ls = self.git.run("ls-tree", base_sha, "--", str(p))
            mode = ls.split()[0] if ls else "100644"
            infos += ["--cacheinfo", f"{mode},{blob},{p}"]
        self.git.run("update-index", "--add", *infos, env=env)
        tree = self.git.run("write-tree", env=env)
        index.unlink(missing_ok=True)
        return tree

    def _foreign_authors(self, base_sha: str, head: str) -> list[str]:
        """Emails of commits on the branch (not on base) authored or committed by anyone but the bot."""
        log = self.git.run("log", "--format=%ae %ce", f"{base_sha}..{head}")
        return sorted({e for line in log.splitlines() for e in line.split() if e != self.git.author_email})

    def _push(self, refspec: str, branch: str, lease: str) -> None:
        self.git.run("push", "--porcelain", "--quiet", f"--force-with-lease=refs/heads/{branch}:{lease}", "origin",
                     refspec, action=f"pushing branch {branch}")

    @serialized
    def publish(self, *, branch: str, title: str, body: str, files: dict[str, str], message: str,
                incident_ids: Iterable[str], labels: Iterable[str] = (),
                existing: PullRequest | None = None) -> PublishResult:
        if not files:
            raise PermanentError(f"nothing to publish on {branch}: no files", source=self.git.url)
        self.git.fetch()
        base_sha = self._base_sha()
        tree = self._tree(base_sha, files)
        if tree == self.git.run("rev-parse", f"{base_sha}^{{tree}}"):
            raise PermanentError(f"nothing to publish on {branch}: {', '.join(sorted(files))} already "
                                 f"match {self.base}", source=self.git.url)
        head = self.git.sha(f"refs/remotes/origin/{branch}")
        pushed, note, head_sha = False, "", head
        if head is not None and (others := self._foreign_authors(base_sha, head)):
            note = (f"branch {branch} has commits by {', '.join(others)}; remediator no longer updates it "
                    "(a human took over the PR)")
        elif head is None or not (self.git.run("rev-list", "--parents", "-n1", head).split()[1:] == [base_sha]
                                  and self.git.run("rev-parse", f"{head}^{{tree}}") == tree):
            head_sha = self.git.run("commit-tree", tree, "-p", base_sha, "-m", message)
            self._push(f"{head_sha}:refs/heads/{branch}", branch, head or "")
            pushed = True
        fields: dict[str, Any] = {
            "branch": branch, "base": self.base, "title": title, "body": body, "url": self._url(branch),
            "files": tuple(sorted(files)), "incident_ids": tuple(dict.fromkeys(incident_ids)),
            "labels": tuple(dict.fromkeys(labels)), "status": "open", "head_sha": head_sha,
            "base_sha": base_sha, "provider": self.name,
        }
        if existing is None:
            pr = PullRequest(**fields)
        elif (pr := existing.model_copy(update=fields)) != existing:
            pr = pr.model_copy(update={"updated_at": utcnow()})
        return PublishResult(pr=pr, pushed=pushed, note=note)

    def _merged(self, pr: PullRequest, head: str | None) -> bool:
        base = f"refs/remotes/origin/{self.base}"
        for sha in {pr.head_sha, head} - {None}:
            if self.git.sha(str(sha)) and self.git.ok("merge-base", "--is-ancestor", str(sha), base):
                return True
        if head is None and pr.head_sha and self.git.sha(pr.head_sha) and pr.files:  # squash / rebase merge
            return all(self.git.show(pr.head_sha, f) == self.git.show(base, f) for f in pr.files)
        return False

    @serialized
    def refresh(self, *, pr: PullRequest) -> PullRequest:
        if pr.status == "merged":  # final
            return pr
        self.git.fetch()
        head = self.git.sha(f"refs/remotes/origin/{pr.branch}")
        status = "merged" if self._merged(pr, head) else ("open" if head else "closed")
        if status == pr.status and (head is None or head == pr.head_sha):
            return pr
        return pr.model_copy(update={"status": status, "head_sha": head or pr.head_sha, "updated_at": utcnow()})

    @serialized
    def merge(self, *, pr: PullRequest) -> PullRequest:
        self.git.fetch()
        head = self.git.sha(f"refs/remotes/origin/{pr.branch}")
        if self._merged(pr, head):
            return pr.model_copy(update={"status": "merged", "updated_at": utcnow()})
        if head is None:
            raise PermanentError(f"cannot merge: branch {pr.branch} is gone from {self.git.url}", source=self.git.url)
        if pr.head_sha and head != pr.head_sha:
            raise PermanentError(f"cannot merge {pr.branch}: it moved to {head[:12]} since {pr.head_sha[:12]} "
                                 "was proposed; review it again", source=self.git.url)
        self.git.run("checkout", "--force", "--quiet", "--detach", self._base_sha(), action="checking out")
        try:
            self.git.run("merge", "--no-ff", "--no-edit", "-m", f"Merge {pr.branch}: {pr.title}", head,
                         action=f"merging {pr.branch}")
        except ToolError:
            self.git.ok("merge", "--abort")
            raise
        merged = self.git.run("rev-parse", "HEAD")
        self.git.run("push", "--porcelain", "--quiet", "origin", f"{merged}:refs/heads/{self.base}",
                     action=f"pushing branch {self.base}")
        self._push(f":refs/heads/{pr.branch}", pr.branch, head)
        return pr.model_copy(update={"status": "merged", "updated_at": utcnow()})

    def reviews(self, *, pr: PullRequest) -> list[tuple[str, str]]:
        """A plain git remote has no reviews."""
        return []

    @serialized
    def diff(self, *, pr: PullRequest) -> str | None:
        """The PR's change as a unified diff (its base commit to its head commit), from the clone;
        None when those commits are not known (never published from here, or gone from the remote)."""
        base, head = pr.base_sha, pr.head_sha
        if not base or not head:
            return None

        def known() -> bool:
            return bool(self.git.sha(base) and self.git.sha(head))

        if not known():
            try:
                self.git.fetch()
            except ToolError:
                return None
            if not known():
                return None
        return self.git.run("diff", "--no-color", "--no-ext-diff", base, head, strip=False, action="diffing")

    @serialized
    def close(self, *, pr: PullRequest, comment: str) -> PullRequest:
        self.git.fetch()
        head = self.git.sha(f"refs/remotes/origin/{pr.branch}")
        if head is not None:
            self._push(f":refs/heads/{pr.branch}", pr.branch, head)
        return pr.model_copy(update={"status": "closed", "updated_at": utcnow()})

