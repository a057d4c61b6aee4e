"""tools.gitops.GitRepo and tools.providers.local.LocalProvider against real bare remotes."""

from __future__ import annotations

import base64
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from memory.records import FieldEdit, branch_name
from tools.errors import PermanentError, TemporaryError
from tools.gitops import GitRepo
from tools.providers.local import LocalProvider
from tools.yamledit import apply_edits

pytestmark = pytest.mark.integration

MIS_PATH, MULTI_PATH = "apps/ml-serving/vision-language-model.yaml", "apps/web/api-gateway.yaml"
MIS = """\
# vision-language-model: answers shopper questions about product images.
# Owner: assistant-ml. Edit through PRs only; Argo CD syncs this folder.
apiVersion: ai.apexlogic.com/v1alpha1
kind: MultimodalInferenceService
metadata:
  name: vision-language-model
  namespace: ml-serving
  labels:
    project: customer-engagement
    criticality: critical
spec:
  modelRef:
    name: vl_model_v2
    version: "VERSION"
    path: models/vl_model_v2/vVERSION
  resourceRequests: {cpu: "8", memory: 32Gi, gpu: "1"}
  autoscaling:
    # HPA bounds rendered by the operator; keep maxReplicas within the GPU pool quota.
    minReplicas: 2
    maxReplicas: 6
    targetCPUUtilization: 70
"""
MULTI = """\
# api-gateway: edge API for the storefront (Envoy-based).
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api-gateway
  namespace: web
  labels: {team: edge, criticality: critical}
spec:
  # replicas is owned by the HPA below (Argo CD ignores /spec/replicas).
  selector:
    matchLabels:
      app.kubernetes.io/name: api-gateway
  template:
    spec:
      containers:
        - name: api-gateway
          image: registry.example.com/storefront/api-gateway:3.14.2
---
apiVersion: v1
kind: Service
metadata:
  name: api-gateway
  namespace: web
spec:
  ports:
    - name: http
      port: 80
---
# Scales on CPU; bounds agreed with capacity planning. Lower maxReplicas to cap spend.
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: api-gateway
  namespace: web
spec:
  minReplicas: 2
  maxReplicas: 12
"""
BUDGETS = """\
# FinOps budgets.
budgets:
  - name: ml-serving-gpu
    selector: {namespace: ml-serving}
    monthly_usd: 24000
    alert_at_percent: 80
    action: cap_max_replicas
"""
GUARDRAILS = """\
guardrails:
  replicas:
    floor: 1                      # never below this
    max_decrease_percent: 60
"""
DEEP = """\
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: ranker
spec:
  replicas: 3
"""
HUMAN = {"GIT_AUTHOR_NAME": "Priya Raman", "GIT_AUTHOR_EMAIL": "priya@example.com",
         "GIT_COMMITTER_NAME": "Priya Raman", "GIT_COMMITTER_EMAIL": "priya@example.com"}


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    res = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, **HUMAN, **(env or {})})
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


@pytest.fixture(autouse=True)
def no_global_git_config(tmp_path, monkeypatch):
    empty = tmp_path / "empty-gitconfig"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(var, raising=False)


class Remote:
    """A bare remote plus a human's clone of it to push commits with."""

    def __init__(self, root: Path) -> None:
        self.bare, self.work = root / "gitops.git", root / "human"
        git(root, "init", "-q", "--bare", "-b", "main", str(self.bare))
        git(root, "clone", "-q", str(self.bare), str(self.work))

    def commit(self, files: dict[str, str | None], message: str, *, date: str | None = None, branch: str = "main") -> str:
        for path, text in files.items():
            p = self.work / path
            if text is None:
                p.unlink()
                continue
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        git(self.work, "add", "-A")
        env = {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date} if date else {}
        git(self.work, "commit", "-q", "-m", message, env=env)
        git(self.work, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
        return git(self.work, "rev-parse", "HEAD")

    def rev(self, ref: str) -> str | None:
        res = subprocess.run(["git", "rev-parse", "--verify", "-q", ref], cwd=self.bare, capture_output=True, text=True)
        return res.stdout.strip() or None

    def __call__(self, *args: str) -> str:
        return git(self.bare, *args)


@pytest.fixture
def remote(tmp_path) -> Remote:
    r = Remote(tmp_path)
    r.commit({MIS_PATH: MIS.replace("VERSION", "2.0.3"), MULTI_PATH: MULTI, "policies/budgets.yaml": BUDGETS,
              "policies/guardrails.yaml": GUARDRAILS, "README.md": "# gitops\n"},
             "bootstrap", date="2026-09-28T10:00:00Z")
    r.commit({MIS_PATH: MIS.replace("VERSION", "2.1.0")}, "vlm: roll out 2.1.0", date="2026-11-20T10:00:00Z")
    r.commit({"teams/search/deep/ranker.yml": DEEP}, "search: ranker rollout", date="2026-11-25T10:00:00Z")
    return r


def repo_for(remote: Remote, tmp_path: Path, **kw) -> GitRepo:
    return GitRepo(remote=str(remote.bare), branch="main", workdir=tmp_path / "clone", **kw)


def provider_for(remote: Remote, tmp_path: Path) -> LocalProvider:
    return LocalProvider(remote=str(remote.bare), base="main", workdir=tmp_path / "pr-clone")


def test_sync_finds_manifests_by_kind_and_policies(remote, tmp_path):
    repo = repo_for(remote, tmp_path)
    snap = repo.sync()
    assert snap.commit == repo.head == remote.rev("main")
    assert snap.committed_at == datetime(2026, 11, 25, 10, tzinfo=UTC)
    found = {(m.file, m.index, m.kind, m.key) for m in snap.manifests}
    assert found == {
        (MIS_PATH, 0, "MultimodalInferenceService", "ml-serving/vision-language-model"),
        (MULTI_PATH, 0, "Deployment", "web/api-gateway"),
        (MULTI_PATH, 2, "HorizontalPodAutoscaler", "web/api-gateway"),
        ("teams/search/deep/ranker.yml", 0, "Rollout", "default/ranker"),
    }
    mis = next(m for m in snap.manifests if m.kind == "MultimodalInferenceService")
    assert mis.labels == {"project": "customer-engagement", "criticality": "critical"}
    assert mis.body["spec"]["modelRef"]["version"] == "2.1.0"
    assert next(m for m in snap.manifests if m.kind == "Rollout").labels == {}
    assert snap.budgets[0]["selector"] == {"namespace": "ml-serving"}
    assert snap.guardrails == {"replicas": {"floor": 1, "max_decrease_percent": 60}}
    assert snap.problems == []
    assert repo.remote == str(remote.bare)


def test_sync_reports_malformed_file_and_keeps_the_rest(remote, tmp_path):
    repo = repo_for(remote, tmp_path)
    repo.sync()
    broken = MIS.replace("VERSION", "2.1.0").replace("    maxReplicas: 6", "   maxReplicas: 6")
    remote.commit({MIS_PATH: broken, "policies/guardrails.yaml": None}, "oops")
    (tmp_path / "clone" / "stray.yaml").write_text("kind: Deployment\nmetadata: {name: stray}\n")  # cleaned away
    snap = repo.sync()
    assert snap.commit == remote.rev("main")
    assert [(p.path, p.line) for p in snap.problems] == [(MIS_PATH, 20)]
    assert "YAML does not parse" in snap.problems[0].message
    assert str(snap.problems[0]).startswith(f"{MIS_PATH}:20: ")
    assert {m.kind for m in snap.manifests} == {"Deployment", "HorizontalPodAutoscaler", "Rollout"}
    assert snap.guardrails == {} and len(snap.budgets) == 1


def test_a_helm_chart_is_no_yaml_error_and_a_statefulset_is_a_manifest(remote, tmp_path):
    """Templates of a chart in the repository are Go templates (not YAML): left to Helm. Its values
    files and every other file are still read."""
    remote.commit({"charts/ranker/Chart.yaml": "apiVersion: v2\nname: ranker\nversion: 0.1.0\n",
                   "charts/ranker/values.yaml": "replicaCount: 2\n",
                   "charts/ranker/templates/deployment.yaml":
                       "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}\n"
                       "spec:\n  replicas: {{ .Values.replicaCount }}\n{{- if .Values.x }}\n  x: 1\n{{- end }}\n",
                   "apps/vecdb/statefulset.yaml": "apiVersion: apps/v1\nkind: StatefulSet\n"
                                                  "metadata: {name: vecdb, namespace: search}\nspec: {replicas: 3}\n"},
                  "a chart and a StatefulSet")
    repo = repo_for(remote, tmp_path)
    snap = repo.sync()
    assert snap.problems == []
    assert ("apps/vecdb/statefulset.yaml", "StatefulSet", "search/vecdb") in {(m.file, m.kind, m.key) for m in snap.manifests}
    tree = repo.read_tree()   # the templates are there as text, for the Helm view
    assert "charts/ranker/values.yaml" in tree and "charts/ranker/templates/deployment.yaml" in tree


def test_field_history_finds_previous_model_version(remote, tmp_path):
    repo = repo_for(remote, tmp_path)
    repo.sync()
    hist = repo.field_history(path=MIS_PATH, doc_kind="MultimodalInferenceService", doc_name="vision-language-model",
                              field=("spec", "modelRef", "version"))
    assert [(v, t) for _, t, v in hist] == [("2.1.0", datetime(2026, 11, 20, 10, tzinfo=UTC)),
                                            ("2.0.3", datetime(2026, 9, 28, 10, tzinfo=UTC))]
    current = hist[0][2]
    assert next(v for _, _, v in hist if v != current) == "2.0.3"
    assert repo.read_file(path=MIS_PATH, ref=hist[1][0]) == MIS.replace("VERSION", "2.0.3")
    assert repo.read_file(path=MIS_PATH) == MIS.replace("VERSION", "2.1.0")
    assert repo.read_file(path="nope.yaml") is None


def test_file_log_lists_the_commits_of_one_file_newest_first(remote, tmp_path):
    repo = repo_for(remote, tmp_path)
    repo.sync()
    log = repo.file_log(path=MIS_PATH, limit=5)
    assert [(c.subject, c.at) for c in log] == [("vlm: roll out 2.1.0", datetime(2026, 11, 20, 10, tzinfo=UTC)),
                                                ("bootstrap", datetime(2026, 9, 28, 10, tzinfo=UTC))]
    assert all(len(c.sha) == 40 and "<" in c.author for c in log)
    assert [c.subject for c in repo.file_log(path=MIS_PATH, limit=1)] == ["vlm: roll out 2.1.0"]
    assert repo.file_log(path="nope.yaml") == []


def plan_files(repo: GitRepo, max_replicas: int = 3, hpa_max: int = 8) -> dict[str, str]:
    mis_edits = [
        FieldEdit(file=MIS_PATH, doc_kind="MultimodalInferenceService", doc_name="vision-language-model",
                  path=("spec", "autoscaling", "maxReplicas"), old=6, new=max_replicas),
        FieldEdit(file=MIS_PATH, doc_kind="MultimodalInferenceService", doc_name="vision-language-model",
                  path=("spec", "modelRef", "version"), old="2.1.0", new="2.0.3"),
    ]
    hpa = [FieldEdit(file=MULTI_PATH, doc_kind="HorizontalPodAutoscaler", doc_name="api-gateway",
                     path=("spec", "maxReplicas"), old=12, new=hpa_max)]
    return {MIS_PATH: apply_edits(repo.read_file(path=MIS_PATH), mis_edits),
            MULTI_PATH: apply_edits(repo.read_file(path=MULTI_PATH), hpa)}


def diff_lines(remote: Remote, branch: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for ln in remote("diff", "-U0", f"main...{branch}").splitlines():
        if ln.startswith("+++ b/"):
            cur = out.setdefault(ln[6:], [])
        elif ln.startswith(("+", "-")) and not ln.startswith(("---", "+++")):
            cur.append(ln)
    return out


BRANCH = branch_name("cost_anomaly", "ml-serving/vision-language-model", "3f9a1c2e")


def publish(provider: LocalProvider, files: dict[str, str], existing=None):
    return provider.publish(branch=BRANCH, title="Cap vision-language-model", body="why", files=files,
                            message="remediator: cap maxReplicas", incident_ids=["inc-1"], labels=["remediator"],
                            existing=existing)


def test_publish_makes_one_minimal_commit(remote, tmp_path):
    repo, provider = repo_for(remote, tmp_path), provider_for(remote, tmp_path)
    repo.sync()
    res = publish(provider, plan_files(repo))
    assert res.pushed
    assert remote("rev-list", "--count", f"main..{BRANCH}") == "1"
    assert remote("rev-parse", f"{BRANCH}^") == remote.rev("main")
    assert remote("log", "-1", "--format=%an <%ae> %cn <%ce>", BRANCH) == \
        "remediator <remediator@localhost> remediator <remediator@localhost>"
    assert diff_lines(remote, BRANCH) == {
        MIS_PATH: ['-    version: "2.1.0"', '+    version: "2.0.3"', "-    maxReplicas: 6", "+    maxReplicas: 3"],
        MULTI_PATH: ["-  maxReplicas: 12", "+  maxReplicas: 8"],
    }
    pr = res.pr
    assert (pr.status, pr.provider, pr.branch, pr.base) == ("open", "local", BRANCH, "main")
    assert pr.url == f"local://{remote.bare}#{BRANCH}"
    assert pr.files == (MIS_PATH, MULTI_PATH) and pr.incident_ids == ("inc-1",)
    assert pr.head_sha == remote.rev(BRANCH) and pr.base_sha == remote.rev("main")
    assert remote("ls-tree", "-r", "--name-only", BRANCH).splitlines() == \
        remote("ls-tree", "-r", "--name-only", "main").splitlines()  # no PR record files on the branch


def test_publish_is_idempotent_and_remakes_on_change(remote, tmp_path):
    repo, provider = repo_for(remote, tmp_path), provider_for(remote, tmp_path)
    repo.sync()
    first = publish(provider, plan_files(repo))
    sha = remote.rev(BRANCH)
    again = publish(provider, plan_files(repo), existing=first.pr)
    assert not again.pushed and remote.rev(BRANCH) == sha
    assert again.pr.id == first.pr.id and again.pr.created_at == first.pr.created_at
    assert again.pr == first.pr and again.note == "" and first.note == ""  # a no-op changes nothing, not even updated_at
    # a changed plan re-makes the single commit
    changed = publish(provider, plan_files(repo, max_replicas=4), existing=again.pr)
    assert changed.pushed and changed.pr.id == first.pr.id
    assert remote("rev-list", "--count", f"main..{BRANCH}") == "1"
    assert "+    maxReplicas: 4" in diff_lines(remote, BRANCH)[MIS_PATH]
    # the base moves: the commit is re-made on the new base
    new_main = remote.commit({"README.md": "# gitops\nmore\n"}, "docs")
    moved = publish(provider, plan_files(repo, max_replicas=4), existing=changed.pr)
    assert moved.pushed and remote("rev-parse", f"{BRANCH}^") == new_main == moved.pr.base_sha
    assert remote("rev-list", "--count", f"main..{BRANCH}") == "1"
    assert not publish(provider, plan_files(repo, max_replicas=4), existing=moved.pr).pushed


def test_human_commit_on_branch_stops_updates(remote, tmp_path):
    repo, provider = repo_for(remote, tmp_path), provider_for(remote, tmp_path)
    repo.sync()
    first = publish(provider, plan_files(repo))
    git(remote.work, "fetch", "-q", "origin")
    git(remote.work, "checkout", "-q", "-B", "pr", f"origin/{BRANCH}")
    human = remote.commit({"README.md": "# reviewed\n"}, "review tweak", branch=BRANCH)
    res = publish(provider, plan_files(repo, max_replicas=5), existing=first.pr)
    assert not res.pushed and "priya@example.com" in res.note
    assert remote.rev(BRANCH) == human == res.pr.head_sha


def test_merge_and_close(remote, tmp_path):
    repo, provider = repo_for(remote, tmp_path), provider_for(remote, tmp_path)
    repo.sync()
    pr = publish(provider, plan_files(repo)).pr
    assert provider.refresh(pr=pr).status == "open"
    merged = provider.merge(pr=pr)
    assert merged.status == "merged" and remote.rev(BRANCH) is None
    assert remote("log", "-1", "--format=%P|%an|%ce", "main") == f"{pr.base_sha} {pr.head_sha}|remediator|remediator@localhost"
    assert repo.sync().commit == remote.rev("main")
    assert "maxReplicas: 3" in repo.read_file(path=MIS_PATH)
    assert provider.refresh(pr=pr).status == "merged"
    other = provider.publish(branch="remediator/x/y-1", title="t", body="", message="m", incident_ids=["inc-2"],
                             files={MULTI_PATH: repo.read_file(path=MULTI_PATH).replace("maxReplicas: 8", "maxReplicas: 6")})
    closed = provider.close(pr=other.pr, comment="rejected in Slack")
    assert closed.status == "closed" and remote.rev("remediator/x/y-1") is None
    assert provider.refresh(pr=other.pr).status == "closed"


def test_unreachable_remote_and_missing_branch(remote, tmp_path):
    missing = tmp_path / "missing.git"
    with pytest.raises(TemporaryError) as info:
        GitRepo(remote=str(missing), branch="main", workdir=tmp_path / "c1").sync()
    assert str(missing) in str(info.value) and "check" in str(info.value)
    url = "https://bot:s3cr3t-token@127.0.0.1:1/platform/gitops.git"
    with pytest.raises(TemporaryError) as info:
        GitRepo(remote=url, branch="main", workdir=tmp_path / "c2", timeout_s=20).sync()
    assert "127.0.0.1:1/platform/gitops.git" in str(info.value) and "s3cr3t" not in str(info.value)
    with pytest.raises(PermanentError) as info:
        GitRepo(remote=str(remote.bare), branch="release", workdir=tmp_path / "c3").sync()
    assert "release" in str(info.value) and str(remote.bare) in str(info.value)
    with pytest.raises(TemporaryError):
        LocalProvider(remote=str(missing), base="main", workdir=tmp_path / "c4").publish(
            branch=BRANCH, title="t", body="", files={"a.yaml": "a: 1\n"}, message="m", incident_ids=[])


def test_rejected_push_with_a_long_hook_message_is_still_permanent(remote, tmp_path):
    """Git prints "[remote rejected]" after the hook's own text. The error used to be classified on
    the first 400 characters only, so a long policy message (or a long remote path) turned a refusal
    into "unreachable" and a retry loop."""
    hook = remote.bare / "hooks" / "pre-receive"
    policy = "branch protection: " + "commits to remediator/* need a signed-off review; " * 12
    hook.write_text(f"#!/bin/sh\necho '{policy}' >&2\nexit 1\n")
    hook.chmod(0o755)
    with pytest.raises(PermanentError) as info:
        provider_for(remote, tmp_path).publish(branch=BRANCH, title="t", body="", files={"a.yaml": "a: 1\n"},
                                               message="m", incident_ids=[])
    assert "rejected" in str(info.value) and len(str(info.value)) < 1000


def test_rejected_push_is_permanent(remote, tmp_path):
    hook = remote.bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'branch protection: pushes disabled' >&2\nexit 1\n")
    hook.chmod(0o755)
    with pytest.raises(PermanentError) as info:
        provider_for(remote, tmp_path).publish(branch=BRANCH, title="t", body="", files={"a.yaml": "a: 1\n"},
                                               message="m", incident_ids=[])
    assert str(remote.bare) in str(info.value) and BRANCH in str(info.value)


def test_credentials_in_the_remote_url_never_reach_git_config_or_a_folder_name(tmp_path):
    from agents.config import validate_settings
    from tools.gitops import GitClone

    url = "https://bot:s3cr%40t@git.example.invalid/acme/gitops.git"
    clone = GitClone(remote=url, workdir=tmp_path / "clone", author_name="r", author_email="r@x")
    clone.repo  # noqa: B018 -- creates the clone's config
    config = (tmp_path / "clone" / ".git" / "config").read_text()
    assert "s3cr" not in config and "bot" not in config and "https://git.example.invalid/acme/gitops.git" in config
    assert clone.env["GIT_CONFIG_KEY_0"] == "http.https://git.example.invalid/.extraHeader"
    assert clone.env["GIT_CONFIG_VALUE_0"] == "Authorization: Basic " + base64.b64encode(b"bot:s3cr@t").decode()
    assert "s3cr" not in clone.url
    settings = validate_settings({"gitops": {"remote": url}, "memory": {"url": f"sqlite:///{tmp_path}/s.db"}})
    assert "s3cr" not in str(settings.workdir) and "git-example-invalid-acme-gitops-git" in str(settings.workdir)


def test_one_operation_at_a_time_in_a_shared_clone(remote, tmp_path):
    """Two adapters on one work directory (a CLI decision beside the daemon's cycle) take turns."""
    import threading
    import time

    from tools.gitops import GitClone

    a = GitClone(remote=str(remote.bare), workdir=tmp_path / "shared", author_name="r", author_email="r@x")
    b = GitClone(remote=str(remote.bare), workdir=tmp_path / "shared", author_name="r", author_email="r@x")
    order: list[str] = []

    def second() -> None:
        with b.locked():
            order.append("b")

    with a.locked():
        with a.locked():            # reentrant for the holder
            order.append("a")
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)
        order.append("a-still")     # b is still waiting
    t.join(timeout=10)
    assert order == ["a", "a-still", "b"]
    repo = repo_for(remote, tmp_path)
    assert repo.sync().commit     # the adapters' operations take the same lock and still work
