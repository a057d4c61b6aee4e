"""tools.kustomize: an edit goes where the deployed value is really set (kustomize overlays)."""

from __future__ import annotations

import difflib
from typing import Any

import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from memory.records import FieldEdit
from tools import yamledit
from tools.errors import PermanentError
from tools.kustomize import Tree, apply_edits, deployers, effective_value, locate, relocate

BASE = "apps/ml-serving/base/image-captioner.yaml"
PROD = "apps/ml-serving/overlays/prod"
STAGING = "apps/ml-serving/overlays/staging"
PATH = ("spec", "autoscaling", "maxReplicas")

MIS = """\
# image-captioner: captions catalogue images. Owner: vision-ml.
apiVersion: ai.apexlogic.com/v1alpha1
kind: MultimodalInferenceService
metadata:
  name: image-captioner
  namespace: ml-serving
  labels: {project: catalogue, criticality: standard}
spec:
  modelRef: {name: captioner, version: "1.4.0"}
  autoscaling:
    minReplicas: 1
    maxReplicas: 6   # base default
    targetCPUUtilization: 70
---
apiVersion: v1
kind: Service
metadata:
  name: image-captioner
  namespace: ml-serving
spec:
  ports: [{port: 80, targetPort: 8080}]
"""

BASE_KUST = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - image-captioner.yaml
"""

SMP_FILE = """\
# prod runs on the shared GPU pool: keep the cap low.
apiVersion: ai.apexlogic.com/v1alpha1
kind: MultimodalInferenceService
metadata:
  name: image-captioner
  namespace: ml-serving
spec:
  autoscaling:
    maxReplicas: 4  # prod cap (FINOPS-112)
"""


def argo_app(name: str, path: str) -> str:
    return f"""\
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: {name}
  namespace: argocd
spec:
  project: default
  source:
    repoURL: https://git.example.com/platform/gitops.git
    targetRevision: main
    path: {path}
  destination: {{server: https://kubernetes.default.svc, namespace: ml-serving}}
"""


def overlay_kust(body: str, resources: str = "../../base") -> str:
    return f"""\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: ml-serving
resources:
  - {resources}
{body}"""


def repo(prod_kust: str, extra: dict[str, str] | None = None, *, deploy: tuple[str, ...] = (PROD,)) -> dict[str, str]:
    files = {BASE: MIS, "apps/ml-serving/base/kustomization.yaml": BASE_KUST,
             f"{PROD}/kustomization.yaml": prod_kust}
    for i, d in enumerate(deploy):
        files[f"clusters/prod/app-{i}.yaml"] = argo_app(f"ml-serving-{d.rsplit('/', 1)[-1]}", d)
    files.update(extra or {})
    return files


def cap(new: int = 3, old: int | None = 4) -> FieldEdit:
    return FieldEdit(file=BASE, doc_kind="MultimodalInferenceService", doc_name="image-captioner", path=PATH,
                     old=old, new=new)


def changed_lines(a: str, b: str) -> list[tuple[str, str]]:
    al, bl = a.splitlines(), b.splitlines()
    assert len(al) == len(bl)
    return [(x, y) for x, y in zip(al, bl, strict=True) if x != y]


def apply_located(files: dict[str, str], edit: FieldEdit) -> tuple[str, str]:
    loc = locate(files, edit)
    assert loc.ok, loc.reason
    assert loc.edit is not None
    return loc.edit.file, apply_edits(files[loc.edit.file], [loc.edit])


# --------------------------------------------------------------------------- base only

def test_base_only_edit_is_unchanged():
    files = {BASE: MIS, "apps/ml-serving/base/kustomization.yaml": BASE_KUST,
             "clusters/prod/app.yaml": argo_app("ml-serving", "apps/ml-serving/base")}
    loc = locate(files, cap(old=6))
    assert loc.ok and not loc.moved and loc.edit == cap(old=6) and loc.effective == 6
    assert "Application argocd/ml-serving" in loc.routes[0]


def test_file_in_no_kustomization_is_unchanged():
    loc = locate({BASE: MIS}, cap(old=6))
    assert loc.ok and not loc.moved and loc.effective == 6


def test_overlay_that_does_not_touch_the_field_keeps_the_base_edit():
    files = repo(overlay_kust("patches:\n  - path: labels.yaml\n"), {f"{PROD}/labels.yaml": SMP_FILE.replace(
        "spec:\n  autoscaling:\n    maxReplicas: 4  # prod cap (FINOPS-112)\n", "spec:\n  modelRef: {version: \"1.5.0\"}\n")})
    loc = locate(files, cap(old=6))
    assert loc.ok and not loc.moved and loc.effective == 6


# --------------------------------------------------------------------------- strategic-merge patch files

@pytest.mark.parametrize("kust", [
    overlay_kust("patches:\n  - path: autoscaling.yaml\n"),
    overlay_kust("patchesStrategicMerge:\n  - autoscaling.yaml\n"),
    overlay_kust("patches:\n  - path: autoscaling.yaml\n    target:\n      kind: MultimodalInferenceService\n"
                 "      name: image-.*\n"),
])
def test_strategic_merge_patch_file_gets_the_edit(kust):
    files = repo(kust, {f"{PROD}/autoscaling.yaml": SMP_FILE})
    loc = locate(files, cap())
    assert loc.ok and loc.moved and loc.effective == 4
    assert loc.edit == FieldEdit(file=f"{PROD}/autoscaling.yaml", doc_kind="MultimodalInferenceService",
                                 doc_name="image-captioner", path=PATH, old=4, new=3)
    # an ordinary FieldEdit: yamledit applies it too, with the same one-line diff
    new = yamledit.apply_edits(SMP_FILE, [loc.edit])
    assert new == apply_edits(SMP_FILE, [loc.edit])
    assert changed_lines(SMP_FILE, new) == [("    maxReplicas: 4  # prod cap (FINOPS-112)",
                                              "    maxReplicas: 3  # prod cap (FINOPS-112)")]
    assert effective_value({**files, loc.edit.file: new}, file=BASE, doc_kind="MultimodalInferenceService",
                           doc_name="image-captioner", path=PATH).effective == 3


def test_multi_document_patch_file_picks_the_right_document():
    patch = SMP_FILE + "---\napiVersion: v1\nkind: Service\nmetadata: {name: image-captioner}\nspec: {type: ClusterIP}\n"
    files = repo(overlay_kust("patches:\n  - path: p.yaml\n"), {f"{PROD}/p.yaml": patch})
    file, new = apply_located(files, cap())
    assert file == f"{PROD}/p.yaml" and len(changed_lines(patch, new)) == 1


def test_patch_for_another_workload_is_ignored():
    files = repo(overlay_kust("patches:\n  - path: p.yaml\n"),
                 {f"{PROD}/p.yaml": SMP_FILE.replace("name: image-captioner", "name: visual-search")})
    loc = locate(files, cap(old=6))
    assert loc.ok and not loc.moved


# --------------------------------------------------------------------------- inline patches

INLINE_SMP = overlay_kust("""\
patches:
  # prod cap, see FINOPS-112
  - target:
      kind: MultimodalInferenceService
      name: image-captioner
    patch: |-
      apiVersion: ai.apexlogic.com/v1alpha1
      kind: MultimodalInferenceService
      metadata:
        name: image-captioner

      spec:
        autoscaling:
          maxReplicas: 4 # prod
""")


def test_inline_strategic_patch_is_edited_inside_the_block():
    files = repo(INLINE_SMP)
    loc = locate(files, cap())
    assert loc.ok and loc.moved and loc.edit is not None
    assert loc.edit.file == f"{PROD}/kustomization.yaml" and loc.edit.doc_kind == "Kustomization"
    assert loc.edit.path == ("patches", 0, "patch", *PATH)
    new = apply_edits(INLINE_SMP, [loc.edit])
    assert changed_lines(INLINE_SMP, new) == [("          maxReplicas: 4 # prod", "          maxReplicas: 3 # prod")]
    assert yaml.safe_load(yaml.safe_load(new)["patches"][0]["patch"])["spec"]["autoscaling"]["maxReplicas"] == 3
    # yamledit alone refuses (block scalar): callers must use tools.kustomize.apply_edits
    with pytest.raises(PermanentError):
        yamledit.apply_edits(INLINE_SMP, [loc.edit])


def test_inline_patches_strategic_merge_string():
    kust = overlay_kust("patchesStrategicMerge:\n  - |\n    apiVersion: ai.apexlogic.com/v1alpha1\n"
                        "    kind: MultimodalInferenceService\n    metadata: {name: image-captioner, namespace: ml-serving}\n"
                        "    spec: {autoscaling: {maxReplicas: 4}}\n")
    file, new = apply_located(repo(kust), cap())
    assert changed_lines(kust, new) == [("    spec: {autoscaling: {maxReplicas: 4}}",
                                         "    spec: {autoscaling: {maxReplicas: 3}}")]


JSON_INLINE = overlay_kust("""\
patches:
  - target: {group: ai.apexlogic.com, version: v1alpha1, kind: MultimodalInferenceService, name: image-captioner}
    patch: |-
      - op: replace
        path: /spec/autoscaling/minReplicas
        value: 1
      - op: replace
        path: /spec/autoscaling/maxReplicas
        value: 4
""")


def test_json6902_inline_replace_edits_its_value():
    loc = locate(repo(JSON_INLINE), cap())
    assert loc.ok and loc.edit is not None and loc.edit.path == ("patches", 0, "patch", 1, "value")
    new = apply_edits(JSON_INLINE, [loc.edit])
    assert changed_lines(JSON_INLINE, new) == [("        value: 4", "        value: 3")]


def test_json6902_patch_file_and_patches_json6902():
    ops = "# prod cap\n- op: replace\n  path: /spec/autoscaling/maxReplicas\n  value: 4\n"
    kust = overlay_kust("patchesJson6902:\n  - target: {kind: MultimodalInferenceService, name: image-captioner}\n"
                        "    path: cap.yaml\n")
    files = repo(kust, {f"{PROD}/cap.yaml": ops})
    loc = locate(files, cap())
    assert loc.ok and loc.edit is not None
    assert (loc.edit.file, loc.edit.doc_kind, loc.edit.doc_name, loc.edit.path) == (f"{PROD}/cap.yaml", "", "", (0, "value"))
    new = apply_edits(ops, [loc.edit])
    assert changed_lines(ops, new) == [("  value: 4", "  value: 3")]


def test_json6902_json_file():
    ops = '[\n  {"op": "replace", "path": "/spec/autoscaling/maxReplicas", "value": 4}\n]\n'
    files = repo(overlay_kust("patches:\n  - path: cap.json\n    target: {kind: MultimodalInferenceService}\n"),
                 {f"{PROD}/cap.json": ops})
    file, new = apply_located(files, cap())
    assert file == f"{PROD}/cap.json" and yaml.safe_load(new)[0]["value"] == 3 and len(changed_lines(ops, new)) == 1


def test_json6902_replace_of_a_parent_mapping():
    kust = overlay_kust("patches:\n  - target: {kind: MultimodalInferenceService}\n    patch: |\n"
                        "      - op: replace\n        path: /spec/autoscaling\n"
                        "        value:\n          minReplicas: 1\n          maxReplicas: 4\n")
    loc = locate(repo(kust), cap())
    assert loc.ok and loc.edit is not None and loc.edit.path == ("patches", 0, "patch", 0, "value", "maxReplicas")
    assert changed_lines(kust, apply_edits(kust, [loc.edit])) == [("          maxReplicas: 4", "          maxReplicas: 3")]


def test_later_patch_wins_and_name_prefix_targets_match():
    ops = "- op: replace\n  path: /spec/autoscaling/maxReplicas\n  value: 5\n"
    kust = overlay_kust("namePrefix: prod-\npatches:\n  - path: autoscaling.yaml\n"
                        "patchesJson6902:\n  - target: {kind: MultimodalInferenceService, name: prod-image-captioner}\n"
                        "    path: cap.yaml\n")
    loc = locate(repo(kust, {f"{PROD}/autoscaling.yaml": SMP_FILE, f"{PROD}/cap.yaml": ops}), cap(new=3, old=5))
    assert loc.ok and loc.edit is not None and loc.edit.file == f"{PROD}/cap.yaml" and loc.effective == 5


def test_replicas_transformer_for_a_deployment():
    dep = ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: api, namespace: web}\n"
           "spec:\n  replicas: 3\n")
    kust = "resources:\n  - ../../base\nreplicas:\n  - name: api\n    count: 5\n"
    files = {"apps/web/base/api.yaml": dep, "apps/web/base/kustomization.yaml": "resources: [api.yaml]\n",
             "apps/web/overlays/prod/kustomization.yaml": kust,
             "clusters/app.yaml": argo_app("web", "apps/web/overlays/prod")}
    e = FieldEdit(file="apps/web/base/api.yaml", doc_kind="Deployment", doc_name="api", path=("spec", "replicas"),
                  old=5, new=4)
    file, new = apply_located(files, e)
    assert file == "apps/web/overlays/prod/kustomization.yaml"
    assert changed_lines(kust, new) == [("    count: 5", "    count: 4")]


# --------------------------------------------------------------------------- which overlay is deployed

def two_overlays(deploy: tuple[str, ...], staging_sets: bool = True) -> dict[str, str]:
    staging_patch = SMP_FILE.replace("maxReplicas: 4  # prod cap (FINOPS-112)", "maxReplicas: 2")
    extra = {f"{STAGING}/kustomization.yaml": overlay_kust("patches:\n  - path: autoscaling.yaml\n" if staging_sets else "")}
    if staging_sets:
        extra[f"{STAGING}/autoscaling.yaml"] = staging_patch
    extra[f"{PROD}/autoscaling.yaml"] = SMP_FILE
    return repo(overlay_kust("patches:\n  - path: autoscaling.yaml\n"), extra, deploy=deploy)


def test_only_the_deployed_overlay_is_edited():
    files = two_overlays(deploy=(PROD,))
    loc = locate(files, cap())
    assert loc.ok and loc.edit is not None and loc.edit.file == f"{PROD}/autoscaling.yaml"
    files = two_overlays(deploy=(STAGING,))
    loc = locate(files, cap(new=1, old=2))
    assert loc.ok and loc.edit is not None and loc.edit.file == f"{STAGING}/autoscaling.yaml"


def test_both_overlays_deployed_is_ambiguous():
    loc = locate(two_overlays(deploy=(PROD, STAGING)), cap())
    assert not loc.ok and loc.edit is None
    assert "set differently" in loc.reason and "overlays/prod" in loc.reason and "overlays/staging" in loc.reason
    assert len(loc.routes) == 2


def test_one_overlay_patches_and_another_deploys_the_base_value_is_ambiguous():
    loc = locate(two_overlays(deploy=(PROD, STAGING), staging_sets=False), cap())
    assert not loc.ok and "the base file" in loc.reason


def test_same_overlay_deployed_twice_is_fine():
    loc = locate(two_overlays(deploy=(PROD, PROD)), cap())
    assert loc.ok and loc.edit is not None and loc.edit.file == f"{PROD}/autoscaling.yaml"


def test_flux_kustomization_path_and_explicit_deployed_paths():
    files = two_overlays(deploy=())
    files["clusters/prod/flux.yaml"] = ("apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\n"
                                        "metadata: {name: ml-serving, namespace: flux-system}\n"
                                        f"spec:\n  path: ./{STAGING}\n  sourceRef: {{kind: GitRepository, name: gitops}}\n")
    assert [d.path for d in deployers(files)] == [STAGING]
    loc = locate(files, cap(new=1, old=2))
    assert loc.ok and loc.edit is not None and loc.edit.file == f"{STAGING}/autoscaling.yaml"
    assert "Flux Kustomization flux-system/ml-serving" in loc.routes[0]
    loc = locate(files, cap(), deployed_paths=[PROD])
    assert loc.ok and loc.edit is not None and loc.edit.file == f"{PROD}/autoscaling.yaml"


def test_without_argo_or_flux_the_top_level_kustomizations_decide():
    assert not locate(two_overlays(deploy=()), cap()).ok  # staging and prod are both top level
    files = repo(overlay_kust("patches:\n  - path: autoscaling.yaml\n"), {f"{PROD}/autoscaling.yaml": SMP_FILE},
                 deploy=())
    loc = locate(files, cap())
    assert loc.ok and loc.moved and "top-level" in loc.routes[0]


def test_flux_inline_patches_are_a_level_too():
    files = repo(overlay_kust(""), deploy=())
    flux = ("apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: ml-serving\n"
            f"spec:\n  path: ./{PROD}\n  patches:\n    - target: {{kind: MultimodalInferenceService}}\n"
            "      patch: |\n        - op: replace\n          path: /spec/autoscaling/maxReplicas\n          value: 4\n")
    files["clusters/prod/flux.yaml"] = flux
    loc = locate(files, cap())
    assert loc.ok and loc.edit is not None and loc.edit.file == "clusters/prod/flux.yaml"
    assert loc.edit.path == ("spec", "patches", 0, "patch", 0, "value")
    assert changed_lines(flux, apply_edits(flux, [loc.edit])) == [("          value: 4", "          value: 3")]


# --------------------------------------------------------------------------- conservative refusals

@pytest.mark.parametrize("kust, extra, why", [
    (overlay_kust("patches:\n  - path: missing.yaml\n"), {}, "not in the repository"),
    (overlay_kust("patches:\n  - target: {kind: MultimodalInferenceService}\n    patch: |\n"
                  "      - op: remove\n        path: /spec/autoscaling/maxReplicas\n"), {}, "not followed"),
    (overlay_kust("patches:\n  - target: {kind: MultimodalInferenceService}\n    patch: |\n"
                  "      - op: remove\n        path: /spec/autoscaling\n"), {}, "not followed"),
    (overlay_kust("patches:\n  - path: p.yaml\n"),
     {f"{PROD}/p.yaml": SMP_FILE.replace("  autoscaling:\n", "  autoscaling:\n    $patch: replace\n")}, "$patch"),
    (overlay_kust("patches:\n  - path: p.yaml\n"),
     {f"{PROD}/p.yaml": SMP_FILE.replace("maxReplicas: 4  # prod cap (FINOPS-112)", "maxReplicas: null")}, "deletes"),
    (overlay_kust("patches:\n  - path: p.yaml\n    target: {labelSelector: 'tier in (gpu)'}\n"),
     {f"{PROD}/p.yaml": SMP_FILE}, "k=v"),
    (overlay_kust("patches:\n  - target: {kind: MultimodalInferenceService}\n"
                  "    patch: '[{\"op\": \"replace\", \"path\": \"/spec/autoscaling/maxReplicas\", \"value\": 4}]'\n"),
     {}, "block scalars"),
    (overlay_kust("transformers:\n  - my-transformer.yaml\n"), {}, "transformers"),
    (overlay_kust("replacements:\n  - source: {kind: ConfigMap, name: caps, fieldPath: data.max}\n"
                  "    targets:\n      - select: {kind: MultimodalInferenceService}\n"
                  "        fieldPaths: [spec.autoscaling.maxReplicas]\n"), {}, "replacements"),
])
def test_constructs_not_followed_are_refused_with_a_reason(kust, extra, why):
    files = repo(kust, extra)
    loc = locate(files, cap(old=4))
    assert not loc.ok and loc.edit is None and why in loc.reason and BASE in loc.reason


def test_plan_from_the_base_value_is_refused_when_the_overlay_differs():
    files = repo(overlay_kust("patches:\n  - path: p.yaml\n"), {f"{PROD}/p.yaml": SMP_FILE})
    loc = locate(files, cap(new=5, old=6))   # 6 -> 5 would *raise* the deployed cap of 4
    assert not loc.ok and "re-plan" in loc.reason
    ev = effective_value(files, file=BASE, doc_kind="MultimodalInferenceService", doc_name="image-captioner", path=PATH)
    assert ev.ok and ev.effective == 4 and ev.moved and ev.edit is not None and ev.edit.file == f"{PROD}/p.yaml"


def test_relocate_moves_all_or_reports_problems():
    files = repo(overlay_kust("patches:\n  - path: p.yaml\n"), {f"{PROD}/p.yaml": SMP_FILE})
    minr = FieldEdit(file=BASE, doc_kind="MultimodalInferenceService", doc_name="image-captioner",
                     path=("spec", "autoscaling", "minReplicas"), old=1, new=1)
    r = relocate(files, [cap(), minr])
    assert r.ok and [e.file for e in r.edits] == [f"{PROD}/p.yaml", BASE] and len(r.notes) == 1
    r = relocate(files, [cap(new=5, old=6), minr])
    assert not r.ok and len(r.problems) == 1


def test_apply_edits_is_yamledit_for_plain_edits():
    e = cap(new=5, old=6)
    assert apply_edits(MIS, [e]) == yamledit.apply_edits(MIS, [e])
    new_key = e.model_copy(update={"path": ("spec", "autoscaling", "scaleDownDelay"), "new": "5m"})
    assert apply_edits(MIS, [new_key]) == yamledit.apply_edits(MIS, [new_key])


def test_crlf_block_scalar():
    kust = INLINE_SMP.replace("\n", "\r\n")
    loc = locate(repo(kust), cap())
    assert loc.ok and loc.edit is not None
    new = apply_edits(kust, [loc.edit])
    assert changed_lines(kust, new) == [("          maxReplicas: 4 # prod", "          maxReplicas: 3 # prod")]
    assert new.count("\r\n") == kust.count("\r\n")


# --------------------------------------------------------------------------- property

STYLES = ("smp_file", "psm_file", "inline_smp", "inline_json", "json_file")


def build(style: str, value: int, indent: int, comment: bool) -> tuple[dict[str, str], str]:
    pad = " " * indent
    note = "  # set by prod" if comment else ""
    if style in ("smp_file", "psm_file"):
        patch = SMP_FILE.replace("maxReplicas: 4  # prod cap (FINOPS-112)", f"maxReplicas: {value}{note}")
        key = "patches:\n  - path: p.yaml\n" if style == "smp_file" else "patchesStrategicMerge:\n  - p.yaml\n"
        return repo(overlay_kust(key), {f"{PROD}/p.yaml": patch}), f"{PROD}/p.yaml"
    if style == "json_file":
        ops = f"- op: test\n  path: /spec/autoscaling/minReplicas\n  value: 1\n- op: replace\n  path: {PATH_PTR}\n  value: {value}{note}\n"
        kust = overlay_kust("patches:\n  - path: ops.yaml\n    target: {kind: MultimodalInferenceService}\n")
        return repo(kust, {f"{PROD}/ops.yaml": ops}), f"{PROD}/ops.yaml"
    if style == "inline_smp":
        inner = ("apiVersion: ai.apexlogic.com/v1alpha1\nkind: MultimodalInferenceService\n"
                 f"metadata:\n  name: image-captioner\nspec:\n  autoscaling:\n    maxReplicas: {value}{note}\n")
    else:
        inner = f"- op: replace\n  path: {PATH_PTR}\n  value: {value}{note}\n"
    block = "".join(pad + ln if ln.strip() else ln for ln in inner.splitlines(keepends=True))
    kust = overlay_kust(f"patches:\n  - target: {{kind: MultimodalInferenceService}}\n    patch: |\n{block}")
    return repo(kust), f"{PROD}/kustomization.yaml"


PATH_PTR = "/spec/autoscaling/maxReplicas"


@settings(max_examples=100, deadline=None)
@given(style=st.sampled_from(STYLES), old=st.integers(1, 500), new=st.integers(0, 10**6),
       indent=st.integers(6, 12), comment=st.booleans())
def test_property_edited_overlay_parses_and_only_that_value_changes(style, old, new, indent, comment):
    assume(new != old)
    files, where = build(style, old, indent, comment)
    loc = locate(files, cap(new=new, old=old))
    assert loc.ok, loc.reason
    assert loc.moved and loc.effective == old and loc.edit is not None and loc.edit.file == where
    text = files[where]
    out = apply_edits(text, [loc.edit])
    # parses, exactly one line differs, and the diff is only the number
    list(yaml.safe_load_all(out))
    diff = changed_lines(text, out)
    assert len(diff) == 1 and diff[0][0].replace(str(old), str(new), 1) == diff[0][1]
    assert len(list(difflib.unified_diff(text.splitlines(), out.splitlines(), n=0))) == 5  # ---, +++, @@, -, +
    after = {**files, where: out}
    ev = effective_value(after, file=BASE, doc_kind="MultimodalInferenceService", doc_name="image-captioner", path=PATH)
    assert ev.ok and ev.effective == new and ev.edit is not None and ev.edit.file == where
    # every other field the overlay sets is unchanged
    for other in ("spec.autoscaling.minReplicas", "spec.modelRef.version"):
        p = tuple(other.split("."))
        kw = dict(file=BASE, doc_kind="MultimodalInferenceService", doc_name="image-captioner", path=p)
        assert effective_value(files, **kw).effective == effective_value(after, **kw).effective


def test_one_tree_parses_each_file_once_for_many_questions(monkeypatch: pytest.MonkeyPatch) -> None:
    from tools.kustomize import tree as tree_module

    calls: list[str] = []
    real = tree_module.safe_load_all

    def counting(text: str, path: str = "") -> list[Any]:
        calls.append(path)
        return real(text, path)

    monkeypatch.setattr(tree_module, "safe_load_all", counting)
    files = {"base/deploy.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n"
                                  "spec: {replicas: 2, template: {spec: {containers: [{name: web, image: web:1}]}}}\n",
             "base/kustomization.yaml": "resources: [deploy.yaml]\n",
             "prod/kustomization.yaml": "resources: [../base]\nreplicas: [{name: web, count: 5}]\n"}
    tree = Tree(files)
    for path in (("spec", "replicas"), ("metadata", "name"), ("spec", "replicas")):
        effective_value(tree, file="base/deploy.yaml", doc_kind="Deployment", doc_name="web", path=path)
    assert sorted(calls) == sorted(set(calls))   # no file parsed twice
