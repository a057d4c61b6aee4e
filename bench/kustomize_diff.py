"""The daemon's rendered view against `kubectl kustomize`, on test repositories and on generated trees.

    python bench/kustomize_diff.py --repos tests/gitops_repos        # every overlay of every test repository
    python bench/kustomize_diff.py --trees 500 [--seed 1]            # generated overlay trees
    [--json] [--keep DIR]

For each deployed folder (an overlay) the objects `kubectl kustomize` renders are compared with the
daemon's view of the same folder:
  * identity: every workload-like object (Deployment, StatefulSet, HPA, Argo Rollout,
    MultimodalInferenceService) is named the same (kind, namespace, name), both ways;
  * values: for each field the playbooks read or edit (replica bounds, replicas, model version,
    container images and resources), the value the daemon says is deployed equals the rendered
    value ("located"), or the daemon says it cannot tell and why ("notify-only"); anything else
    is "wrong";
  * edits: for each located field, the edit is made where the daemon says the value is set, the
    folder is rendered again, and the object must carry the new value (else "edit wrong": the
    daemon named a place that kustomize does not use).
Trees kustomize itself refuses are counted and skipped. Exit 1 on any wrong identity, value or edit.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.nodes.observe import effective_fields  # noqa: E402
from agents.workloads import dig  # noqa: E402
from memory.records import FieldEdit  # noqa: E402
from tools import kustomize  # noqa: E402
from tools.kustomize.patches import join_image, split_image  # noqa: E402
from tools.kustomize.resolve import top_level  # noqa: E402
from tools.results import ManifestDoc  # noqa: E402

KINDS = ("Deployment", "StatefulSet", "HorizontalPodAutoscaler", "Rollout", "MultimodalInferenceService")


@dataclass
class Tally:
    folders: int = 0
    refused_by_kustomize: int = 0
    objects: int = 0
    identity_wrong: list[str] = field(default_factory=list)
    located: int = 0
    notify_only: int = 0
    wrong: list[str] = field(default_factory=list)
    edits: int = 0
    edits_refused: int = 0
    edit_wrong: list[str] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)

    def figures(self) -> dict[str, Any]:
        return {"folders": self.folders, "refused_by_kustomize": self.refused_by_kustomize, "objects": self.objects,
                "identity_wrong": len(self.identity_wrong), "values_located": self.located,
                "values_notify_only": self.notify_only, "values_wrong": len(self.wrong), "edits_checked": self.edits,
                "edits_refused": self.edits_refused, "edits_wrong": len(self.edit_wrong),
                "notify_only_reasons": dict(self.reasons.most_common(8)),
                "examples_wrong": (self.identity_wrong + self.wrong + self.edit_wrong)[:10]}

    @property
    def ok(self) -> bool:
        return not (self.identity_wrong or self.wrong or self.edit_wrong)


def kubectl_render(root: Path, folder: str) -> list[dict[str, Any]] | None:
    proc = subprocess.run(["kubectl", "kustomize", str(root / folder)], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        return None
    return [d for d in yaml.safe_load_all(proc.stdout) if isinstance(d, dict)]


def write_tree(root: Path, files: dict[str, str]) -> None:
    if root.exists():
        shutil.rmtree(root)
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)


def _dig_by_name(rendered: Any, base: Any, path: tuple[str | int, ...]) -> Any:
    """``path`` (written against the base object) in the rendered object, list items merged by name
    (``containers``) found by their name: a strategic-merge patch may reorder them."""
    node, ref = rendered, base
    for k in path:
        if isinstance(k, int) and isinstance(ref, list) and isinstance(node, list) and 0 <= k < len(ref) \
                and isinstance(ref[k], dict) and "name" in ref[k]:
            node = next((x for x in node if isinstance(x, dict) and x.get("name") == ref[k]["name"]), None)
            ref = ref[k]
            continue
        node, ref = dig(node, k), dig(ref, k)
    return node


def _same(a: Any, b: Any) -> bool:
    return str(a) == str(b)


def new_value(old: Any, path: tuple[str | int, ...]) -> Any:
    """A different value of the same kind, as a remediation would write."""
    if path[-1] == "image":
        name, tag, digest = split_image(str(old))
        if digest:
            return join_image(name, "", "sha256:" + "".join(reversed(digest.split(":")[-1])))
        return join_image(name, f"{tag or '0'}-r1", "")
    if isinstance(old, bool):
        return not old
    if isinstance(old, int):
        return old + 1
    if path[-1] == "version":
        return f"{old}-r1"
    text = str(old)
    digits = "".join(c for c in text if c.isdigit())
    unit = text[len(digits):] if text.startswith(digits) else ""
    return f"{int(digits or 0) + 1}{unit}" if digits else f"{text}-r1"


def base_objects(files: dict[str, str]) -> list[ManifestDoc]:
    out = []
    tree = kustomize.Tree(files)
    for f in sorted(files):
        if not f.endswith((".yaml", ".yml")):
            continue
        try:
            docs = tree.docs(f)
        except kustomize.tree.Unsupported:
            continue
        for i, d in enumerate(docs):
            if isinstance(d, dict) and d.get("kind") in KINDS and isinstance((d.get("metadata") or {}).get("name"), str):
                meta = d["metadata"]
                out.append(ManifestDoc(file=f, index=i, kind=d["kind"], api_version=str(d.get("apiVersion", "")),
                                       name=meta["name"], namespace=str(meta.get("namespace") or "default"),
                                       labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()}, body=d))
    return out


def check_folder(files: dict[str, str], folder: str, work: Path, tally: Tally, *, edit_limit: int | None,
                 rng: random.Random, label: str) -> None:
    write_tree(work, files)
    rendered = kubectl_render(work, folder)
    tally.folders += 1
    if rendered is None:
        tally.refused_by_kustomize += 1
        return
    tree = kustomize.Tree(files)
    objs = base_objects(files)
    refs = [kustomize.ObjectRef(file=m.file, kind=m.kind, name=m.name, api_version=m.api_version,
                                namespace=(m.body.get("metadata") or {}).get("namespace"), labels=m.labels) for m in objs]
    view = kustomize.render(tree, refs, deployed_paths=[folder])
    ours = {(m.kind, i.namespace, i.name): m for m in objs for i in view.identities.get((m.file, m.kind, m.name), ())}
    theirs = {(d["kind"], (d.get("metadata") or {}).get("namespace") or "default", d["metadata"]["name"]): d
              for d in rendered if d.get("kind") in KINDS}
    for key in sorted(set(ours) ^ set(theirs)):
        side = "the daemon only" if key in ours else "kustomize only"
        tally.identity_wrong.append(f"{label} {folder}: {key[0]} {key[1]}/{key[2]} named by {side}")
    candidates: list[tuple[ManifestDoc, tuple[str | int, ...], kustomize.Location, tuple[str, str, str]]] = []
    for key in sorted(set(ours) & set(theirs)):
        m, doc = ours[key], theirs[key]
        tally.objects += 1
        for path in effective_fields(m):
            if dig(m.body, *path) is None:
                continue
            want = _dig_by_name(doc, m.body, path)
            loc = kustomize.effective_value(tree, file=m.file, doc_kind=m.kind, doc_name=m.name, path=path,
                                            deployed_paths=[folder])
            if not loc.ok:
                tally.notify_only += 1
                tally.reasons[loc.reason.split(": ", 1)[-1][:90]] += 1
            elif _same(loc.effective, want):
                tally.located += 1
                candidates.append((m, path, loc, key))
            else:
                tally.wrong.append(f"{label} {folder}: {key[0]} {key[2]} {'.'.join(map(str, path))}: the daemon says "
                                   f"{loc.effective!r}, kustomize renders {want!r}")
    if edit_limit is not None and len(candidates) > edit_limit:
        candidates = rng.sample(candidates, edit_limit)
    for m, path, _, key in candidates:
        old = dig(m.body, *path)
        now = _dig_by_name(theirs[key], m.body, path)
        target = new_value(now, path)
        rel = kustomize.relocate(tree, [FieldEdit(file=m.file, doc_kind=m.kind, doc_name=m.name, path=path,
                                                  old=now if old is not None else None,
                                                  new=target)], deployed_paths=[folder])
        tally.edits += 1
        where = f"{label} {folder}: {key[0]} {key[2]} {'.'.join(map(str, path))} -> {target!r}"
        if not rel.ok:   # refused (notify-only), with its reason: not a wrong place
            tally.edits_refused += 1
            tally.reasons["edit: " + rel.problems[0].split(": ", 1)[-1][:84]] += 1
            continue
        changed = dict(files)
        for e in rel.edits:
            changed[e.file] = kustomize.apply_edits(changed[e.file], [e])
        write_tree(work, changed)
        again = kubectl_render(work, folder)
        got = None if again is None else next((_dig_by_name(d, m.body, path) for d in again if d.get("kind") == key[0]
                                               and (d.get("metadata") or {}).get("name") == key[2]), None)
        if not _same(got, target):
            tally.edit_wrong.append(f"{where}: edited {', '.join(sorted({e.file for e in rel.edits}))}, "
                                    f"kustomize now renders {got!r}")


def deployed_folders(files: dict[str, str]) -> list[str]:
    tree = kustomize.Tree(files)
    deps = [d.path for d in kustomize.deployers(tree) if tree.kustomization(d.path) is not None]
    return sorted(set(deps) or set(top_level(tree)))


def run_repos(root: Path, work: Path, tally: Tally) -> None:
    for repo in sorted(p for p in root.iterdir() if p.is_dir()):
        files = {p.relative_to(repo).as_posix(): p.read_text() for p in repo.rglob("*")
                 if p.is_file() and p.suffix in (".yaml", ".yml") or p.name == "Kustomization"}
        for folder in deployed_folders(files):
            check_folder(files, folder, work, tally, edit_limit=None, rng=random.Random(0), label=repo.name)


# --------------------------------------------------------------------------- generated trees

class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None))


def _dump(doc: Any) -> str:
    """YAML as people write it: multi-line strings (inline patches) as `|` blocks."""
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False)


def generate(rng: random.Random) -> tuple[dict[str, str], str]:
    """A random base + one or two overlay levels (+ maybe a component) in the ways real repositories
    set values: namespace / prefix / suffix / labels, patches of every kind and key spelling,
    container lists by name, images entries, replicas entries. Returns (files, deployed folder)."""
    kind = rng.choice(["Deployment", "Deployment", "StatefulSet", "MultimodalInferenceService"])
    name = rng.choice(["web", "reranker", "captioner"])
    meta: dict[str, Any] = {"name": name, "labels": {"app": name}}
    if rng.random() < 0.5:
        meta["namespace"] = rng.choice(["default", "team-a"])
    files: dict[str, str] = {}
    containers = [{"name": name, "image": f"registry.example.com/ml/{name}:1.{rng.randint(0, 9)}.0",
                   "resources": {"requests": {"cpu": str(rng.randint(1, 8)), "memory": f"{rng.randint(1, 32)}Gi"}}}]
    if rng.random() < 0.4:
        containers.append({"name": "sidecar", "image": "registry.example.com/infra/proxy:2.0",
                           "resources": {"requests": {"cpu": "1"}}})
    if kind == "MultimodalInferenceService":
        body = {"apiVersion": "ai.apexlogic.com/v1alpha1", "kind": kind, "metadata": meta,
                "spec": {"modelRef": {"name": name, "version": "1.0.0"},
                         "resourceRequests": {"cpu": "4", "memory": "16Gi", "gpu": "1"},
                         "autoscaling": {"minReplicas": 2, "maxReplicas": 6}}}
        docs = [body]
    else:
        api = "apps/v1"
        body = {"apiVersion": api, "kind": kind, "metadata": meta,
                "spec": {"replicas": rng.randint(1, 4), "selector": {"matchLabels": {"app": name}},
                         "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": containers}}}}
        docs = [body]
        if rng.random() < 0.6:
            docs.append({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                         "metadata": {k: v for k, v in meta.items() if k != "labels"},
                         "spec": {"scaleTargetRef": {"apiVersion": api, "kind": kind, "name": name},
                                  "minReplicas": 2, "maxReplicas": 8}})
    files["base/app.yaml"] = "---\n".join(_dump(d) for d in docs)
    files["base/kustomization.yaml"] = _dump({"resources": ["app.yaml"]})
    levels = ["mid", "prod"] if rng.random() < 0.35 else ["prod"]
    below = "../base"
    component = rng.random() < 0.25
    for lv in levels:
        k: dict[str, Any] = {"resources": [below]}
        if rng.random() < 0.6:
            k["namespace"] = rng.choice(["prod", "staging", "ml-serving"])
        if rng.random() < 0.5:
            k["namePrefix"] = rng.choice(["prod-", "eu-", "x-"])
        if rng.random() < 0.3:
            k["nameSuffix"] = rng.choice(["-v2", "-eu"])
        if rng.random() < 0.4:
            if rng.random() < 0.5:
                k["commonLabels"] = {"env": lv}
            else:
                k["labels"] = [{"pairs": {"env": lv}}]
        patches = _patches(rng, files, lv, docs, kind, name)
        k.update(patches)
        if kind != "MultimodalInferenceService" and rng.random() < 0.3:
            k["replicas"] = [{"name": name, "count": rng.randint(1, 9)}]
        if kind != "MultimodalInferenceService" and rng.random() < 0.4:
            img = split_image(containers[0]["image"])[0]
            entry: dict[str, Any] = {"name": img}
            choice = rng.random()
            if choice < 0.6:
                entry["newTag"] = f"2.{rng.randint(0, 9)}.{rng.randint(0, 9)}"
            elif choice < 0.8:
                entry["newName"], entry["newTag"] = img.replace("/ml/", "/mirror/"), "3.0.0"
            else:
                entry["digest"] = "sha256:" + "".join(rng.choice("0123456789abcdef") for _ in range(64))
            k["images"] = [entry]
        if component and lv == levels[-1]:
            k["components"] = ["../components/tuning"]
            files["components/tuning/kustomization.yaml"] = _dump(
                {"apiVersion": "kustomize.config.k8s.io/v1alpha1", "kind": "Component",
                 **_patches(rng, files, "components/tuning", docs, kind, name, at_least=1)})
        files[f"{lv}/kustomization.yaml"] = _dump(k)
        below = f"../{lv}"
    return files, levels[-1]


def _patches(rng: random.Random, files: dict[str, str], folder: str, docs: list[dict[str, Any]], kind: str,
             name: str, at_least: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    n = rng.randint(at_least, 2)
    for i in range(n):
        doc = rng.choice(docs)
        dk = doc["kind"]
        if dk == "HorizontalPodAutoscaler":
            field, value = rng.choice([(("spec", "maxReplicas"), rng.randint(3, 12)), (("spec", "minReplicas"), 1)])
        elif dk == "MultimodalInferenceService":
            field, value = rng.choice([(("spec", "autoscaling", "maxReplicas"), rng.randint(3, 12)),
                                       (("spec", "modelRef", "version"), "1.1.0"),
                                       (("spec", "resourceRequests", "gpu"), "2")])
        else:
            field, value = rng.choice([(("spec", "replicas"), rng.randint(1, 9)), ("container-cpu", str(rng.randint(1, 9))),
                                       ("container-image", "registry.example.com/ml/other:9.9")])
        style = rng.choice(["smp-file", "smp-inline", "json-file", "json-inline", "legacy-smp", "legacy-json"])
        target = {"kind": dk, "name": name}
        if field in ("container-cpu", "container-image"):
            c = doc["spec"]["template"]["spec"]["containers"]
            j = rng.randrange(len(c))
            if style.startswith("smp") or style == "legacy-smp":
                key = ("resources", "requests", "cpu") if field == "container-cpu" else ("image",)
                item: dict[str, Any] = {"name": c[j]["name"]}
                node = item
                for kk in key[:-1]:
                    node = node.setdefault(kk, {})
                node[key[-1]] = value
                patch: Any = {"apiVersion": doc["apiVersion"], "kind": dk, "metadata": _patch_meta(doc),
                              "spec": {"template": {"spec": {"containers": [item]}}}}
            else:
                ptr = f"/spec/template/spec/containers/{j}/" + ("resources/requests/cpu" if field == "container-cpu"
                                                                else "image")
                patch = [{"op": "replace", "path": ptr, "value": value}]
        elif style.startswith("smp") or style == "legacy-smp":
            patch = {"apiVersion": doc["apiVersion"], "kind": dk, "metadata": _patch_meta(doc)}
            node = patch
            for kk in field[:-1]:
                node = node.setdefault(kk, {})
            node[field[-1]] = value
        else:
            patch = [{"op": rng.choice(["replace", "add"]), "path": "/" + "/".join(map(str, field)), "value": value}]
        fname = f"patch-{i}.yaml"
        is_json = isinstance(patch, list)
        if style == "legacy-smp" and not is_json:
            files[f"{folder}/{fname}"] = _dump(patch)
            out.setdefault(rng.choice(["patchesStrategicMerge", "PatchesStrategicMerge"]), []).append(fname)
        elif style == "legacy-json" or (is_json and style == "legacy-smp"):
            files[f"{folder}/{fname}"] = _dump(patch)
            spelling = rng.choice(["patchesJson6902", "patchesJSON6902"])
            out.setdefault(spelling, []).append({"target": {"group": "autoscaling" if dk.startswith("Horiz") else (
                "apps" if dk in ("Deployment", "StatefulSet") else "ai.apexlogic.com"),
                "version": "v2" if dk.startswith("Horiz") else ("v1" if dk in ("Deployment", "StatefulSet") else
                                                               "v1alpha1"), **target}, "path": fname})
        elif style.endswith("file"):
            files[f"{folder}/{fname}"] = _dump(patch)
            out.setdefault("patches", []).append({"path": fname, **({"target": target} if is_json else {})})
        else:
            out.setdefault("patches", []).append({"patch": _dump(patch), **({"target": target} if is_json else {})})
    return out


def _patch_meta(doc: dict[str, Any]) -> dict[str, Any]:
    meta = doc["metadata"]
    return {"name": meta["name"], **({"namespace": meta["namespace"]} if meta.get("namespace") else {})}


def run_generated(n: int, seed: int, work: Path, tally: Tally) -> None:
    rng = random.Random(seed)
    for t in range(n):
        files, folder = generate(rng)
        check_folder(files, folder, work, tally, edit_limit=2, rng=rng, label=f"tree {t} (seed {seed})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repos", type=Path, help="a folder of test repositories (one sub-folder each)")
    ap.add_argument("--trees", type=int, default=0, help="generated trees to compare")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if shutil.which("kubectl") is None:
        print("kubectl is not installed: nothing to compare against", file=sys.stderr)
        return 2
    if a.repos is None and a.trees <= 0:
        ap.error("give --repos DIR and/or --trees N")
    work = Path(tempfile.mkdtemp(prefix="kustomize-diff-"))
    tally = Tally()
    try:
        if a.repos is not None:
            run_repos(a.repos, work / "tree", tally)
        if a.trees:
            run_generated(a.trees, a.seed, work / "tree", tally)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(tally.figures(), indent=None if a.json else 1))
    return 0 if tally.ok else 1


if __name__ == "__main__":
    sys.exit(main())
