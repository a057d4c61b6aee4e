"""`kubectl kustomize` as the oracle: for overlays the resolver follows, the value it says is
deployed equals the value kustomize renders. Skipped where kubectl is not installed."""

from __future__ import annotations

import random
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.bench_scripts import load_bench
from tools.kustomize import Tree, effective_value

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")]

DEPLOY = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "web:1"}]}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web, namespace: shop}
spec: {minReplicas: 2, maxReplicas: 8, scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}}
"""
BASE = {"base/app.yaml": DEPLOY, "base/kustomization.yaml": "resources: [app.yaml]\n"}
OVERLAYS: dict[str, dict[str, str]] = {
    "strategic merge patch file": {
        "prod/kustomization.yaml": "resources: [../base]\npatchesStrategicMerge: [hpa.yaml]\n",
        "prod/hpa.yaml": "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\n"
                         "metadata: {name: web, namespace: shop}\nspec: {maxReplicas: 3}\n"},
    "inline JSON6902 patch": {
        "prod/kustomization.yaml": "resources: [../base]\npatches:\n- target: {kind: HorizontalPodAutoscaler, name: web}\n"
                                   "  patch: |-\n    - op: replace\n      path: /spec/minReplicas\n      value: 4\n"},
    "replicas transformer": {
        "prod/kustomization.yaml": "resources: [../base]\nreplicas: [{name: web, count: 5}]\n"},
    "two levels, the later patch wins": {
        "mid/kustomization.yaml": "resources: [../base]\npatches:\n- target: {kind: HorizontalPodAutoscaler}\n"
                                  "  patch: |-\n    - {op: replace, path: /spec/maxReplicas, value: 6}\n",
        "prod/kustomization.yaml": "resources: [../mid]\npatches:\n- target: {kind: HorizontalPodAutoscaler}\n"
                                   "  patch: |-\n    - {op: replace, path: /spec/maxReplicas, value: 4}\n"},
}
FIELDS = [("Deployment", ("spec", "replicas")), ("HorizontalPodAutoscaler", ("spec", "minReplicas")),
          ("HorizontalPodAutoscaler", ("spec", "maxReplicas"))]


def rendered(folder: Path) -> list[dict[str, Any]]:
    out = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=60, check=True)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.mark.parametrize("name", sorted(OVERLAYS))
def test_the_deployed_value_is_what_kustomize_renders(name: str, tmp_path: Path) -> None:
    files = {**BASE, **OVERLAYS[name]}
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    docs = rendered(tmp_path / "prod")
    tree = Tree(files)
    for kind, field in FIELDS:
        [doc] = [d for d in docs if d["kind"] == kind]
        want: Any = doc
        for key in field:
            want = want[key]
        loc = effective_value(tree, file="base/app.yaml", doc_kind=kind, doc_name="web", path=field)
        assert loc.ok, (name, kind, field, loc.reason)
        assert loc.effective == want, (name, kind, field, loc.effective, want)


REPOS = Path(__file__).resolve().parents[1] / "gitops_repos"


def test_every_overlay_of_the_test_repositories_renders_as_kustomize_renders_it() -> None:
    """Names, deployed values, and the value after each edit the daemon would make: all as kustomize."""
    diff = load_bench("kustomize_diff")
    tally = diff.Tally()
    with tempfile.TemporaryDirectory() as work:
        diff.run_repos(REPOS, Path(work) / "tree", tally)
    figures = tally.figures()
    assert tally.ok, figures["examples_wrong"]
    assert figures["folders"] == 5 and figures["refused_by_kustomize"] == 0
    assert figures["values_located"] >= 50 and figures["edits_checked"] == figures["values_located"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_generated_overlay_trees_render_as_kustomize_renders_them(seed: int) -> None:
    """Random overlay trees (prefixes, namespaces, every patch kind and key spelling, container lists,
    images, replicas entries, components): no name, value or edit place differs from kustomize's."""
    diff = load_bench("kustomize_diff")
    rng = random.Random(seed)
    files, folder = diff.generate(rng)
    tally = diff.Tally()
    with tempfile.TemporaryDirectory() as work:
        diff.check_folder(files, folder, Path(work) / "tree", tally, edit_limit=2, rng=rng, label=f"seed {seed}")
    assert tally.ok, tally.figures()["examples_wrong"]


def test_a_container_list_reordered_by_a_strategic_merge_patch_is_followed_by_name(tmp_path: Path) -> None:
    """kustomize puts a strategic-merge patch's containers first: a later JSON6902 op's index 0 is then
    the sidecar. Found by the generated trees; each answer is checked against kubectl."""
    two = DEPLOY.replace('spec: {containers: [{name: web, image: "web:1"}]}',
                         'spec: {containers: [{name: web, image: "web:1"}, {name: proxy, image: "proxy:1"}]}')
    files = {"base/app.yaml": two, "base/kustomization.yaml": "resources: [app.yaml]\n",
             "prod/kustomization.yaml": "resources: [../base]\npatches:\n"
             "- patch: |-\n    apiVersion: apps/v1\n    kind: Deployment\n    metadata: {name: web, namespace: shop}\n"
             "    spec: {template: {spec: {containers: [{name: proxy, image: \"proxy:2\"}]}}}\n"
             "- target: {kind: Deployment, name: web}\n  patch: |-\n"
             "    - {op: replace, path: /spec/template/spec/containers/0/image, value: \"proxy:3\"}\n"
             "    - {op: replace, path: /spec/template/spec/containers/1/image, value: \"web:9\"}\n"}
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    [doc] = [d for d in rendered(tmp_path / "prod") if d["kind"] == "Deployment"]
    images = {c["name"]: c["image"] for c in doc["spec"]["template"]["spec"]["containers"]}
    assert images == {"proxy": "proxy:3", "web": "web:9"}
    for i, name in enumerate(("web", "proxy")):   # base order: web is 0, proxy is 1
        loc = effective_value(Tree(files), file="base/app.yaml", doc_kind="Deployment", doc_name="web",
                              path=("spec", "template", "spec", "containers", i, "image"))
        assert loc.ok and loc.effective == images[name], (name, loc)
        assert loc.edit is not None and loc.edit.path == ("patches", 1, "patch", 1 - i, "value")
