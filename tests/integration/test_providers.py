"""GitHub and GitLab PR providers against a real bare git remote and local API servers that
speak the hosts' REST wire format (tests/fakes/githost.py)."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from memory.records import PullRequest, branch_name
from tests.fakes.githost import FakeGitHub, FakeGitLab
from tools.errors import PermanentError, TemporaryError
from tools.providers.github import GitHubProvider
from tools.providers.gitlab import GitLabProvider
from tools.providers.hosted import HostedProvider

pytestmark = pytest.mark.integration

PATH = "apps/ml-serving/image-captioner.yaml"
MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: image-captioner
  namespace: ml-serving
spec:
  replicas: 4
"""
BRANCH = branch_name("cost_anomaly", "ml-serving/image-captioner", "3f9a1c2e")
OTHER = branch_name("budget_breach", "ml-serving/other", "0badf00d")
HUMAN = {"GIT_AUTHOR_NAME": "Human", "GIT_AUTHOR_EMAIL": "human@example.com",
         "GIT_COMMITTER_NAME": "Human", "GIT_COMMITTER_EMAIL": "human@example.com"}
ODD_TOKEN = "not-a-known-shape-0123456789-secret"


def git(cwd: Path, *args: str) -> str:
    res = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, **HUMAN})
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def manifest(replicas: int) -> str:
    return MANIFEST.replace("replicas: 4", f"replicas: {replicas}")


@dataclass
class Env:
    kind: str
    fake: Any
    bare: Path
    work: Path
    tmp: Path
    create_path: str

    def provider(self, **kw: Any) -> HostedProvider:
        args: dict[str, Any] = {"remote": str(self.bare), "base": "main", "workdir": self.tmp / "clone",
                                "repository": "acme/gitops", "token": self.fake.token,
                                "api_url": self.fake.api_url, "retries": 3, "backoff_s": 0, **kw}
        if self.kind == "github":
            args.setdefault("write_interval_s", None)
            return GitHubProvider(**args)
        return GitLabProvider(**args)

    def open_for(self, branch: str) -> list[Any]:
        return self.fake.open_for(branch)

    def number(self, obj: Any) -> int:
        return obj.number if self.kind == "github" else obj.iid

    def host_pr(self, number: int) -> Any:
        return self.fake.pulls[number] if self.kind == "github" else self.fake.mrs[number]

    def body(self, obj: Any) -> str | None:
        return obj.body if self.kind == "github" else obj.description

    def closed(self, obj: Any) -> bool:
        return obj.state == "closed" and not getattr(obj, "merged_at", None)

    def comments(self, obj: Any) -> list[str]:
        return [c["body"] for c in (obj.comments if self.kind == "github" else obj.notes)]

    def seed(self, n: int) -> list[int]:
        return self.fake.seed_prs(n) if self.kind == "github" else self.fake.seed_mrs(n)

    def approve(self, number: int, user: str) -> None:
        if self.kind == "github":
            self.fake.add_review(number, user, "APPROVED")
        else:
            self.fake.approve(number, user)

    def rev(self, ref: str) -> str | None:
        res = subprocess.run(["git", "rev-parse", "--verify", "-q", ref], cwd=self.bare, capture_output=True, text=True)
        return res.stdout.strip() or None

    def show(self, ref: str, path: str) -> str:
        return subprocess.run(["git", "show", f"{ref}:{path}"], cwd=self.bare, capture_output=True, text=True,
                              check=True).stdout

    def human_push(self, branch: str, text: str) -> str:
        git(self.work, "fetch", "-q", "origin")
        git(self.work, "checkout", "-q", "-B", branch, f"origin/{branch}")
        (self.work / PATH).write_text(text)
        git(self.work, "commit", "-qam", "human fix")
        git(self.work, "push", "-q", "origin", branch)
        git(self.work, "checkout", "-q", "main")
        return self.rev(f"refs/heads/{branch}") or ""


@pytest.fixture(params=["github", "gitlab"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    bare, work = tmp_path / "gitops.git", tmp_path / "human"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    git(tmp_path, "clone", "-q", str(bare), str(work))
    (work / PATH).parent.mkdir(parents=True)
    (work / PATH).write_text(MANIFEST)
    git(work, "add", ".")
    git(work, "commit", "-qm", "seed")
    git(work, "push", "-q", "origin", "HEAD:main")
    if request.param == "github":
        fake: Any = FakeGitHub(repository="acme/gitops", git_dir=bare)
        create_path = "/pulls"
    else:
        fake = FakeGitLab(project="acme/gitops", git_dir=bare)
        create_path = "/merge_requests"
    with fake:
        yield Env(request.param, fake, bare, work, tmp_path, create_path)


def publish(p: HostedProvider, replicas: int = 2, *, branch: str = BRANCH, title: str = "Cap image-captioner",
            body: str = "Cost anomaly: lower replicas.", existing: PullRequest | None = None,
            labels: tuple[str, ...] = ("remediator", "cost_anomaly")) -> Any:
    return p.publish(branch=branch, title=title, body=body, files={PATH: manifest(replicas)},
                     message=f"{title}\n\nIncident inc-1", incident_ids=["inc-1"], labels=labels, existing=existing)


def creates(env: Env) -> int:
    return len(env.fake.calls_to("POST", env.create_path))


# ----------------------------------------------------------------------------- publish

def test_open_makes_exactly_one_pr_and_pushes_the_branch(env: Env) -> None:
    p = env.provider()
    res = publish(p)
    assert res.pushed and res.note == ""
    pr = res.pr
    assert pr.provider == env.kind and pr.number == 1 and pr.status == "open"
    assert pr.url.endswith("/pull/1" if env.kind == "github" else "/-/merge_requests/1")
    assert pr.files == (PATH,) and pr.incident_ids == ("inc-1",)
    (hosted,) = env.open_for(BRANCH)
    assert hosted.title == "Cap image-captioner" and env.body(hosted) == "Cost anomaly: lower replicas."
    assert set(hosted.labels) == {"remediator", "cost_anomaly"}
    assert env.rev(f"refs/heads/{BRANCH}") == pr.head_sha
    assert env.show(BRANCH, PATH) == manifest(2)
    assert git(env.bare, "rev-parse", f"{BRANCH}^") == env.rev("refs/heads/main")  # one commit on base
    assert creates(env) == 1


def test_update_in_place_keeps_the_number_and_remakes_the_branch(env: Env) -> None:
    p = env.provider()
    first = publish(p).pr
    res = publish(p, 3, title="Cap image-captioner (3)", body="Updated plan.", existing=first)
    assert res.pushed
    pr = res.pr
    assert pr.id == first.id and pr.number == first.number and pr.head_sha != first.head_sha
    (hosted,) = env.open_for(BRANCH)
    assert hosted.title == "Cap image-captioner (3)" and env.body(hosted) == "Updated plan."
    assert env.show(BRANCH, PATH) == manifest(3)
    assert git(env.bare, "rev-parse", f"{BRANCH}^") == env.rev("refs/heads/main")  # re-made, not stacked
    assert creates(env) == 1


def test_idempotent_republish_writes_nothing(env: Env) -> None:
    p = env.provider()
    first = publish(p).pr
    head = env.rev(f"refs/heads/{BRANCH}")
    writes = len(env.fake.writes)
    res = publish(p, existing=first)
    assert not res.pushed and res.pr == first  # same record: nothing to save
    assert len(env.fake.writes) == writes
    assert env.rev(f"refs/heads/{BRANCH}") == head


def test_lookup_walks_every_page(env: Env) -> None:
    """A fresh process (no stored record) finds the open PR even when the host returns many
    open PRs (here: a host that ignores the branch filter) and ours is on the last page."""
    p = env.provider()
    first = publish(p).pr
    env.fake.honour_head_filter = False
    env.seed(250)  # newer than ours: ours is on the last of three pages
    res = publish(env.provider())
    assert res.pr.number == first.number and not res.pushed
    assert creates(env) == 1
    lists = [c for c in env.fake.calls if c.method == "GET" and c.path.endswith(env.create_path)]
    assert "3" in {c.query.get("page") for c in lists}
    assert all(set(c.query) <= {"state", "head", "base", "source_branch", "target_branch", "order_by", "sort",
                                "per_page", "page"} for c in lists)


def test_gateway_errors_are_retried_without_duplicates(env: Env) -> None:
    env.fake.fail_next(2, status=502, method="POST", path=env.create_path)
    p = env.provider()
    res = publish(p)
    assert res.pr.number == 1
    assert len(env.open_for(BRANCH)) == 1


def test_lost_response_after_create_does_not_duplicate(env: Env) -> None:
    env.fake.fail_next(1, status=504, method="POST", path=env.create_path, after=True)
    res = publish(env.provider())
    assert len(env.open_for(BRANCH)) == 1 and res.pr.number == 1
    assert creates(env) == 1  # the lookup before the retry found it


def test_already_exists_is_resolved_by_lookup(env: Env) -> None:
    p = env.provider()
    first = publish(p).pr
    # a stale lookup (race with another replica): the create then says "already exists"
    env.fake.fail_next(1, status=200, body=[], method="GET", path=env.create_path)
    res = publish(env.provider())
    assert res.pr.number == first.number
    assert creates(env) == 2 and len(env.open_for(BRANCH)) == 1


def test_outage_is_a_temporary_error_and_nothing_is_lost(env: Env) -> None:
    env.fake.fail_next(4, status=503, method="POST", path=env.create_path)
    p = env.provider()
    with pytest.raises(TemporaryError) as info:
        publish(p)
    assert "503" in str(info.value) and "4 attempt" in str(info.value)
    assert env.open_for(BRANCH) == []
    res = publish(p)  # next cycle: branch already there, PR opened now
    assert not res.pushed and res.pr.number == 1 and len(env.open_for(BRANCH)) == 1


def test_rate_limit_honours_retry_after(env: Env) -> None:
    p = env.provider()
    slept: list[float] = []
    p._sleep = slept.append
    env.fake.fail_next(1, status=429, headers={"Retry-After": "2"}, method="POST", path=env.create_path)
    assert publish(p).pr.number == 1
    assert slept == [2.0]
    pr = publish(p).pr
    env.fake.fail_next(1, status=429, headers={"Retry-After": "3600"}, method="GET")
    with pytest.raises(TemporaryError) as info:  # too long to wait here: the caller retries later
        p.refresh(pr=pr)
    assert info.value.delay == 3600 and slept == [2.0]


def test_bad_token_is_permanent_and_never_shown(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    p = env.provider(token=ODD_TOKEN)
    with pytest.raises(PermanentError) as info:
        publish(p)
    msg = str(info.value)
    assert "401" in msg and ("Bad credentials" in msg or "Unauthorized" in msg) and "token" in msg
    assert ODD_TOKEN not in msg and ODD_TOKEN not in caplog.text and ODD_TOKEN not in repr(p)


def test_not_found_repository_is_permanent(env: Env) -> None:
    p = env.provider(repository="acme/missing")
    with pytest.raises(PermanentError, match="404"):
        publish(p)


def test_human_push_stops_edits(env: Env) -> None:
    p = env.provider()
    first = publish(p).pr
    env.human_push(BRANCH, manifest(5))
    writes = len(env.fake.writes)
    res = publish(p, 3, title="Another title", existing=first)
    assert not res.pushed and "human took over" in res.note
    assert len(env.fake.writes) == writes
    assert env.show(BRANCH, PATH) == manifest(5)


# ----------------------------------------------------------------------------- refresh / reviews

def test_refresh_picks_up_merges_and_closures_in_the_host(env: Env) -> None:
    p = env.provider()
    a = publish(p).pr
    b = publish(p, branch=OTHER, title="Other").pr
    assert p.refresh(pr=a) is a  # unchanged: the same record
    env.fake.merge(a.number)
    env.fake.close(b.number)
    assert p.refresh(pr=a).status == "merged"
    assert p.refresh(pr=b).status == "closed"
    # a record without a number (e.g. written before the provider was switched) is found by branch
    legacy = a.model_copy(update={"provider": "local", "number": None, "url": "local://x"})
    fresh = p.refresh(pr=legacy)
    assert fresh.status == "merged" and fresh.number == a.number and fresh.provider == env.kind


def test_reviews_report_standing_verdicts(env: Env) -> None:
    p = env.provider()
    pr = publish(p).pr
    assert p.reviews(pr=pr) == []
    env.approve(pr.number, "alice")
    if env.kind == "github":
        env.fake.add_review(pr.number, "bob", "CHANGES_REQUESTED")
        env.fake.add_review(pr.number, "bob", "COMMENTED")
        env.fake.add_review(pr.number, "carol", "APPROVED")
        env.fake.add_review(pr.number, "carol", "DISMISSED")
    else:
        env.fake.request_changes(pr.number, "bob")
    assert p.reviews(pr=pr) == [("alice", "APPROVED"), ("bob", "CHANGES_REQUESTED")]


# ----------------------------------------------------------------------------- merge / close

def test_merge_through_the_api(env: Env) -> None:
    p = env.provider(merge_method="squash")
    pr = publish(p).pr
    env.fake.fail_next(1, status=502, method="PUT", path="/merge", after=True)  # merged, answer lost
    merged = p.merge(pr=pr)
    assert merged.status == "merged"
    assert env.show("main", PATH) == manifest(2)
    assert env.rev(f"refs/heads/{BRANCH}") is None  # branch deleted
    (call,) = [c for c in env.fake.calls if c.path.endswith("/merge")]
    assert call.body["sha"] == pr.head_sha
    assert call.body.get("merge_method" if env.kind == "github" else "squash") in ("squash", True)
    assert p.refresh(pr=merged).status == "merged"
    assert p.merge(pr=pr).status == "merged"  # again: nothing to do


def test_merge_refuses_a_branch_moved_since_review(env: Env) -> None:
    p = env.provider()
    pr = publish(p).pr
    env.human_push(BRANCH, manifest(7))
    with pytest.raises(PermanentError, match="409"):
        p.merge(pr=pr)
    assert env.show("main", PATH) == MANIFEST


def test_merge_method_label_leaves_merging_to_humans(env: Env) -> None:
    p = env.provider(merge_method="label", approval_label="ship-it")
    pr = publish(p).pr
    out = p.merge(pr=pr)
    assert out.status == "open" and "ship-it" in out.labels
    assert "ship-it" in env.host_pr(pr.number).labels
    assert [c for c in env.fake.calls if c.path.endswith("/merge")] == []
    assert env.show("main", PATH) == MANIFEST
    writes = len(env.fake.writes)
    p.merge(pr=out)  # label already there: no write
    assert len(env.fake.writes) == writes


def test_close_comments_closes_and_deletes_the_branch(env: Env) -> None:
    p = env.provider()
    pr = publish(p).pr
    env.fake.fail_next(1, status=502, method="POST", path="comments" if env.kind == "github" else "notes",
                       after=True)  # comment made, answer lost: not posted twice
    out = p.close(pr=pr, comment="Rejected by alice: too aggressive")
    assert out.status == "closed"
    hosted = env.host_pr(pr.number)
    assert env.closed(hosted)
    assert env.comments(hosted) == ["Rejected by alice: too aggressive"]
    assert env.rev(f"refs/heads/{BRANCH}") is None
    assert p.refresh(pr=out).status == "closed"
    p.close(pr=out, comment="again")  # already closed: no second comment
    assert env.comments(hosted) == ["Rejected by alice: too aggressive"]


def test_close_of_a_merged_pr_reports_merged(env: Env) -> None:
    p = env.provider()
    pr = publish(p).pr
    env.fake.merge(pr.number)
    assert p.close(pr=pr, comment="resolved").status == "merged"


# ----------------------------------------------------------------------------- construction

@pytest.mark.parametrize("cls", [GitHubProvider, GitLabProvider])
def test_https_remote_gets_the_token_through_the_environment_only(cls: Callable[..., HostedProvider],
                                                                  tmp_path: Path) -> None:
    p = cls(remote="https://git.example.com/acme/gitops.git", base="main", workdir=tmp_path / "c",
            repository="acme/gitops", token=ODD_TOKEN, api_url="http://127.0.0.1:9")
    env = p.local.git.env
    assert env["GIT_CONFIG_KEY_0"] == "http.https://git.example.com/.extraHeader"
    assert env["GIT_CONFIG_VALUE_0"].startswith("Authorization: Basic ")
    assert ODD_TOKEN not in repr(p) and ODD_TOKEN not in p.local.git.remote


@pytest.mark.parametrize("kw,match", [({"token": ""}, "needs a token"), ({"repository": "nope"}, "owner/name"),
                                      ({"merge_method": "fast"}, "merge_method")])
def test_bad_settings_are_permanent(tmp_path: Path, kw: dict[str, str], match: str) -> None:
    args = {"remote": str(tmp_path / "r.git"), "base": "main", "workdir": tmp_path / "c",
            "repository": "acme/gitops", "token": "t", **kw}
    with pytest.raises(PermanentError, match=match):
        GitHubProvider(**args)  # type: ignore[arg-type]


def test_connection_refused_is_temporary(env: Env) -> None:
    p = env.provider(api_url="http://127.0.0.1:9" + ("/api/v3" if env.kind == "github" else ""), retries=1)
    with pytest.raises(TemporaryError, match="2 attempt"):
        publish(p)



@pytest.mark.parametrize("env", ["github"], indirect=True)
def test_github_primary_rate_limit_waits_for_the_reset(env: Env) -> None:
    p = env.provider()
    slept: list[float] = []
    p._sleep = slept.append
    reset = str(int(time.time()) + 5)
    env.fake.fail_next(1, status=403, method="POST", path="/pulls",
                       body={"message": "API rate limit exceeded for user ID 1.",
                             "documentation_url": "https://docs.github.com/rest/rate-limit"},
                       headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset})
    assert publish(p).pr.number == 1
    assert len(slept) == 1 and 0 < slept[0] <= 5
