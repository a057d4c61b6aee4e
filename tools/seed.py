"""Build a bare Git remote from tree snapshots (the demo's embedded GitOps repository)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import git


@dataclass(frozen=True)
class Snapshot:
    tree: Path           # folder whose files make up the commit
    message: str
    author: str          # "Name <email>"
    date: datetime


def _actor(s: str) -> git.Actor:
    name, _, email = s.partition("<")
    return git.Actor(name.strip(), email.strip().rstrip(">").strip())


def seed_bare_remote(bare: Path, snapshots: list[Snapshot], *, branch: str = "main") -> list[str]:
    """Create ``bare`` (replacing it) with one commit per snapshot on ``branch``."""
    work = bare.with_name(bare.name + ".seed")
    for p in (bare, work):
        if p.exists():
            shutil.rmtree(p)
    git.Repo.init(bare, bare=True, initial_branch=branch)
    repo = git.Repo.init(work, initial_branch=branch)
    shas = []
    for snap in snapshots:
        for p in work.iterdir():
            if p.name != ".git":
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        shutil.copytree(snap.tree, work, dirs_exist_ok=True, copy_function=shutil.copy)
        repo.git.add("-A")
        a = _actor(snap.author)
        when = snap.date.isoformat()
        env = {"GIT_AUTHOR_NAME": a.name or "", "GIT_AUTHOR_EMAIL": a.email or "", "GIT_AUTHOR_DATE": when,
               "GIT_COMMITTER_NAME": a.name or "", "GIT_COMMITTER_EMAIL": a.email or "", "GIT_COMMITTER_DATE": when}
        with repo.git.custom_environment(**env):
            repo.git.commit("-q", "--allow-empty", "-m", snap.message)
        shas.append(repo.head.commit.hexsha)
    repo.git.push(str(bare), f"{branch}:{branch}")
    shutil.rmtree(work)
    return shas


def branch_diff(remote: Path, base: str, branch: str) -> str:
    """``git diff base...branch`` of a (bare) repository, for showing a PR."""
    return str(git.Repo(remote).git.diff(f"{base}...{branch}"))


def list_branches(remote: Path, prefix: str = "") -> list[str]:
    heads = git.Repo(remote).heads
    return sorted(h.name for h in heads if h.name.startswith(prefix))
