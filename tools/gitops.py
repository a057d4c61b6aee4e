"""The GitOps repository (GitOpsRepo Protocol): a private clone of one remote branch.

Every git command runs with an explicit identity and no terminal prompt, so nothing depends on
a global git config. Errors name the remote (credentials scrubbed) and say what to check:
an unreachable remote is a ``TemporaryError``; a missing branch or refused access is a
``PermanentError``.
"""

from __future__ import annotations

import base64
import fcntl
import functools
import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import git
from git.exc import GitCommandError, GitCommandNotFound, InvalidGitRepositoryError, NoSuchPathError

from tools.errors import PermanentError, TemporaryError, ToolError, scrub, without_userinfo
from tools.results import CommitInfo, FileProblem, ManifestDoc, RepoSnapshot
from tools.yamledit import YamlParseError, get_value, parse_documents

MANIFEST_KINDS = frozenset({"MultimodalInferenceService", "Deployment", "StatefulSet", "HorizontalPodAutoscaler",
                            "Rollout"})

_PERMANENT = ("rejected", "non-fast-forward", "stale info", "declined", "protected branch")
_ACCESS = ("authentication failed", "permission denied", "could not read username", "403", "401")


C = TypeVar("C", bound=Callable[..., Any])


def serialized(method: C) -> C:
    """An adapter method that works in the clone ``self.git`` holds it for its whole duration."""
    @functools.wraps(method)
    def run(self: Any, *args: Any, **kw: Any) -> Any:
        with self.git.locked():
            return method(self, *args, **kw)
    return cast(C, run)


def _normalize_remote(remote: str) -> str:
    """A local path becomes absolute (git would resolve it against the clone otherwise)."""
    if "://" in remote or re.match(r"^[\w.-]+@[\w.-]+:", remote):
        return remote
    return str(Path(remote).expanduser().resolve())


class GitClone:
    """A private clone of ``remote`` in ``workdir`` and a ``run`` that maps git failures to errors."""

    def __init__(self, *, remote: str, workdir: Path, author_name: str, author_email: str,
                 timeout_s: float = 60) -> None:
        # credentials in an https URL never reach .git/config or a folder name: they travel in
        # each git command's environment as an Authorization header
        self.remote, user, password = without_userinfo(_normalize_remote(remote))
        self.url = scrub(self.remote)
        self.workdir = Path(workdir).expanduser().absolute()
        self.author_name, self.author_email = author_name, author_email
        self.timeout_s = timeout_s
        self.env = {
            "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "LANGUAGE": "C",
            "GIT_AUTHOR_NAME": author_name, "GIT_AUTHOR_EMAIL": author_email,
            "GIT_COMMITTER_NAME": author_name, "GIT_COMMITTER_EMAIL": author_email,
        }
        if user is not None:
            parts = urlsplit(self.remote)
            cred = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
            self.env.update({"GIT_CONFIG_COUNT": "1",
                             "GIT_CONFIG_KEY_0": f"http.{parts.scheme}://{parts.netloc}/.extraHeader",
                             "GIT_CONFIG_VALUE_0": f"Authorization: Basic {cred}"})
        self._repo: git.Repo | None = None
        self._thread_lock = threading.RLock()
        self._depth = 0

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold this clone for one operation, across threads and processes (a CLI decision beside
        the daemon's cycle, two Slack clicks): a file lock beside the work directory. Reentrant."""
        with self._thread_lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self.workdir.parent.mkdir(parents=True, exist_ok=True)
            with open(f"{self.workdir}.lock", "a") as fp:
                fcntl.flock(fp.fileno(), fcntl.LOCK_EX)
                self._depth = 1
                try:
                    yield
                finally:
                    self._depth = 0
                    fcntl.flock(fp.fileno(), fcntl.LOCK_UN)

    @property
    def repo(self) -> git.Repo:
        if self._repo is None:
            self._repo = self._open()
        return self._repo

    def _open(self) -> git.Repo:
        try:
            if (self.workdir / ".git").exists():
                repo = git.Repo(self.workdir)
            elif self.workdir.exists() and any(self.workdir.iterdir()):
                raise PermanentError(f"git workdir {self.workdir} exists and is not a git clone: "
                                     "point gitops.workdir at an empty or new folder", source=str(self.workdir))
            else:
                self.workdir.mkdir(parents=True, exist_ok=True)
                repo = git.Repo.init(self.workdir)
        except (InvalidGitRepositoryError, NoSuchPathError) as exc:
            raise PermanentError(f"git workdir {self.workdir} is not a usable clone ({exc}): delete it "
                                 "and it is re-made", source=str(self.workdir)) from None
        except GitCommandNotFound as exc:
            raise PermanentError(f"the git executable was not found: {exc}", source="git") from None
        with repo.config_writer() as cw:  # local config only: never the global identity
            cw.set_value("user", "name", self.author_name)
            cw.set_value("user", "email", self.author_email)
            cw.set_value("commit", "gpgsign", "false")
            cw.set_value("gc", "auto", "0")
        urls = [r.url for r in repo.remotes if r.name == "origin"]
        if not urls:
            repo.create_remote("origin", self.remote)
        elif urls[0] != self.remote:
            repo.remotes.origin.set_url(self.remote)
        return repo

    def run(self, *args: str, strip: bool = True, env: dict[str, str] | None = None, action: str = "") -> str:
        try:
            out = self.repo.git.execute(
                ["git", *args], kill_after_timeout=self.timeout_s, env={**self.env, **(env or {})},
                strip_newline_in_stdout=strip)
        except GitCommandError as exc:
            raise self.error(exc, action or f"git {args[0]}") from None
        except GitCommandNotFound as exc:
            raise PermanentError(f"the git executable was not found: {exc}", source="git") from None
        return str(out)

    def ok(self, *args: str) -> bool:
        """True when the command exits 0 (for yes/no questions such as ``merge-base --is-ancestor``)."""
        status, _, _ = self.repo.git.execute(
            ["git", *args], kill_after_timeout=self.timeout_s, env=self.env,
            with_extended_output=True, with_exceptions=False)
        return status == 0

    def error(self, exc: GitCommandError, action: str) -> ToolError:
        # with --porcelain, push reports each ref's fate ("[remote rejected] ... declined") on stdout
        raw = f"{exc.stderr or exc} {exc.stdout or ''}".replace("stdout: ", "")
        detail = scrub(raw.strip()).replace("stderr: ", "").strip("' \n")
        detail = " ".join(ln.strip() for ln in detail.splitlines() if ln.strip())
        low = detail.lower()  # classify on all of it: "[remote rejected]" comes after the hook's text
        detail = detail[:400]
        if "couldn't find remote ref" in low:
            return PermanentError(f"git remote {self.url}: branch not found while {action} ({detail}); "
                                  "check gitops.branch and that the remote has that branch", source=self.url)
        if any(s in low for s in _ACCESS):
            return PermanentError(f"git remote {self.url} refused access while {action} ({detail}); "
                                  "check the credentials and their permissions", source=self.url)
        if any(s in low for s in _PERMANENT):
            return PermanentError(f"git remote {self.url} rejected {action} ({detail})", source=self.url)
        if exc.status in (-9, -15) or "timeout" in low or "timed out" in low:
            return TemporaryError(f"git remote {self.url}: {action} timed out after {self.timeout_s}s; "
                                  "check the network", source=self.url, delay=5.0)
        if action.startswith(("fetching", "pushing")):
            return TemporaryError(f"git remote {self.url} unreachable while {action} ({detail}); "
                                  "check the URL or path, the network and the credentials", source=self.url, delay=5.0)
        return PermanentError(f"{action} failed in git clone {self.workdir} ({detail})", source=self.url)

    def fetch(self, *branches: str) -> None:
        """Fetch the given branches (all heads when none), pruning deleted ones."""
        specs = [f"+refs/heads/{b}:refs/remotes/origin/{b}" for b in branches] or ["+refs/heads/*:refs/remotes/origin/*"]
        self.run("fetch", "--prune", "--no-tags", "--quiet", "origin", *specs, action="fetching")

    def sha(self, ref: str) -> str | None:
        """The commit ``ref`` points at, or None when it does not exist."""
        try:
            return self.run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}") or None
        except ToolError:
            return None

    def show(self, ref: str, path: str) -> str | None:
        try:
            return self.run("cat-file", "blob", f"{ref}:{path}", strip=False)
        except ToolError:
            return None

    def committed_at(self, ref: str) -> datetime:
        return datetime.fromtimestamp(int(self.run("log", "-1", "--format=%ct", ref)), UTC)


def repo_files(root: Path, suffixes: tuple[str, ...], *, chart_templates: bool = False) -> list[str]:
    """Repo-relative paths of the files with ``suffixes`` (no symlinks, no .git). A Helm chart's
    ``templates/`` and ``charts/`` (beside its ``Chart.yaml``) are Go templates that Helm renders,
    not YAML: left out unless ``chart_templates``, so a chart in the repository is no YAML error."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        skip = {".git"} | ({"charts"} | (set() if chart_templates else {"templates"})
                           if "Chart.yaml" in filenames else set())
        dirnames[:] = sorted(d for d in dirnames if d not in skip)
        for fn in filenames:
            full = Path(dirpath) / fn
            if fn.endswith(suffixes) and not full.is_symlink():
                found.append(full.relative_to(root).as_posix())
    return sorted(found)


class GitRepo:
    """GitOpsRepo adapter: desired state, policies and history of ``origin/<branch>``."""

    def __init__(self, *, remote: str, branch: str, workdir: Path, policies_dir: str = "policies",
                 author_name: str = "remediator", author_email: str = "remediator@localhost",
                 timeout_s: float = 60) -> None:
        self.git = GitClone(remote=remote, workdir=workdir, author_name=author_name,
                            author_email=author_email, timeout_s=timeout_s)
        self.branch = branch
        self.policies_dir = policies_dir.strip("/")
        self._head: str | None = None

    @property
    def remote(self) -> str:
        return self.git.url

    @property
    def ref(self) -> str:
        return f"refs/remotes/origin/{self.branch}"

    def reachable(self, *, timeout_s: float = 10) -> str | None:
        """None when the remote answers and has the base branch, else what is wrong (scrubbed). Does
        not touch the clone (no lock: a readiness probe must not wait behind a cycle)."""
        try:
            status, _, err = git.Git().execute(
                ["git", "ls-remote", "--exit-code", "--heads", self.git.remote, self.branch],
                kill_after_timeout=timeout_s, env=self.git.env, with_extended_output=True, with_exceptions=False)
        except GitCommandNotFound as exc:
            return f"the git executable was not found: {exc}"
        if status == 2:
            return f"{self.git.url} has no branch {self.branch}"
        if status != 0:
            lines = scrub(str(err)).strip().splitlines()
            return f"{self.git.url} unreachable: {lines[-1] if lines else f'git exit {status}'}"
        return None

    @property
    def head(self) -> str | None:
        return self._head

    @serialized
    def sync(self) -> RepoSnapshot:
        self.git.fetch(self.branch)
        head = self.git.sha(self.ref)
        if head is None:
            raise PermanentError(f"git remote {self.remote} has no branch {self.branch}; check gitops.branch",
                                 source=self.remote)
        self.git.run("checkout", "--force", "--quiet", "--detach", head, action="checking out")
        self.git.run("clean", "-ffdxq", action="cleaning")
        self._head = head
        manifests: list[ManifestDoc] = []
        problems: list[FileProblem] = []
        budgets: list[dict[str, Any]] = []
        guardrails: dict[str, Any] = {}
        policies = {f"{self.policies_dir}/budgets.yaml", f"{self.policies_dir}/budgets.yml",
                    f"{self.policies_dir}/guardrails.yaml", f"{self.policies_dir}/guardrails.yml"}
        for rel in self._yaml_files():
            try:
                docs = parse_documents((self.git.workdir / rel).read_text(encoding="utf-8"), rel)
            except YamlParseError as exc:
                problems.append(FileProblem(rel, str(exc).split(": ", 1)[-1], exc.line))
                continue
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(FileProblem(rel, f"cannot read: {exc}"))
                continue
            for i, doc in enumerate(docs):
                if doc.get("kind") in MANIFEST_KINDS:
                    m = self._manifest(rel, i, doc, problems)
                    if m is not None:
                        manifests.append(m)
            if rel in policies:
                key = "budgets" if "/budgets." in f"/{rel}" else "guardrails"
                value = docs[0].get(key) if docs else None
                if key == "budgets" and value is not None:
                    if isinstance(value, list) and all(isinstance(b, dict) for b in value):
                        budgets = value
                    else:
                        problems.append(FileProblem(rel, "`budgets:` must be a list of mappings"))
                elif key == "guardrails" and value is not None:
                    if isinstance(value, dict):
                        guardrails = value
                    else:
                        problems.append(FileProblem(rel, "`guardrails:` must be a mapping"))
        return RepoSnapshot(commit=head, committed_at=self.git.committed_at(head), manifests=manifests,
                            budgets=budgets, guardrails=guardrails, problems=problems)

    @serialized
    def read_tree(self) -> dict[str, str]:
        """Repo path -> text of every YAML / JSON file at the synced head (for kustomize overlays and
        Helm charts: their templates included, as text)."""
        root = self.git.workdir
        out: dict[str, str] = {}
        for rel in repo_files(root, (".yaml", ".yml", ".json"), chart_templates=True):
            try:
                out[rel] = (root / rel).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
        return out

    def _yaml_files(self) -> list[str]:
        return repo_files(self.git.workdir, (".yaml", ".yml"))

    @staticmethod
    def _manifest(rel: str, index: int, doc: dict[str, Any], problems: list[FileProblem]) -> ManifestDoc | None:
        raw_meta = doc.get("metadata")
        meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
        name = meta.get("name")
        if not isinstance(name, str) or not name:
            problems.append(FileProblem(rel, f"document {index} ({doc['kind']}) has no metadata.name"))
            return None
        raw_labels = meta.get("labels")
        labels: dict[Any, Any] = raw_labels if isinstance(raw_labels, dict) else {}
        return ManifestDoc(file=rel, index=index, kind=str(doc["kind"]), api_version=str(doc.get("apiVersion", "")),
                           name=name, namespace=str(meta.get("namespace") or "default"),
                           labels={str(k): v if isinstance(v, str) else str(v) for k, v in labels.items()},
                           body=doc)

    def _ensure_fetched(self) -> None:
        if self.git.sha(self.ref) is None:
            self.git.fetch(self.branch)

    @serialized
    def read_file(self, *, path: str, ref: str | None = None) -> str | None:
        self._ensure_fetched()
        return self.git.show(ref or self.ref, path)

    @serialized
    def file_log(self, *, path: str, limit: int = 20) -> list[CommitInfo]:
        """The first-parent commits of the branch that changed ``path``, newest first."""
        self._ensure_fetched()
        log = self.git.run("log", "--first-parent", f"-n{max(1, int(limit))}", "--format=%H%x1f%ct%x1f%an <%ae>%x1f%s",
                           self.ref, "--", path)
        out = []
        for line in log.splitlines():
            sha, ts, author, subject = (line.split("\x1f") + ["", "", ""])[:4]
            out.append(CommitInfo(sha=sha, at=datetime.fromtimestamp(int(ts), UTC), author=author, subject=subject))
        return out

    @serialized
    def field_history(self, *, path: str, doc_kind: str, doc_name: str, field: tuple[str | int, ...],
                      limit: int = 50) -> list[tuple[str, datetime, object]]:
        """``(commit, committed_at, value)`` for each first-parent commit of the branch that changed
        ``path``, newest first (value None where the file or field was absent; commits where the
        file does not parse are skipped)."""
        self._ensure_fetched()
        log = self.git.run("log", "--first-parent", f"-n{int(limit)}", "--format=%H %ct", self.ref, "--", path)
        out: list[tuple[str, datetime, object]] = []
        for line in log.splitlines():
            sha, ts = line.split()
            text = self.git.show(sha, path)
            try:
                value = None if text is None else get_value(text, doc_kind=doc_kind, doc_name=doc_name, path=field)
            except PermanentError:
                continue
            out.append((sha, datetime.fromtimestamp(int(ts), UTC), value))
        return out
