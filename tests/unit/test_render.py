"""The rendered view (tools/kustomize/render.py): names as deployed, patch files, and what
kustomize would refuse, each named with its file."""

from __future__ import annotations

from pathlib import Path

from tools.kustomize import ObjectRef, render

REPOS = Path(__file__).resolve().parents[1] / "gitops_repos"
DEPLOY = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 2}\n"


def files_of(repo: str) -> dict[str, str]:
    root = REPOS / repo
    return {p.relative_to(root).as_posix(): p.read_text() for p in root.rglob("*.yaml")}


def test_overlay_namespace_prefix_suffix_and_labels_name_the_object() -> None:
    files = files_of("promotion")
    view = render(files, [ObjectRef("apps/model-server/base/deployment.yaml", "Deployment", "model-server",
                                    labels={"team": "ml-platform"})])
    [idents] = view.identities.values()
    # deployed twice (staging and prod) under different names: two workloads, each with its overlay
    got = {(i.namespace, i.name, i.labels.get("env"), i.paths) for i in idents}
    assert got == {("ml-prod", "prod-model-server", "prod", ("envs/prod",)),
                   ("ml-staging", "model-server-stg", None, ("envs/staging",))}
    assert view.problems == ()
    assert {"envs/prod/resources.yaml", "envs/prod/hpa-bounds.yaml"} <= view.patch_files


def test_each_overlay_gives_an_identity_with_its_labels() -> None:
    view = render(files_of("inference-platform"),
                  [ObjectRef("serving/base/captioner.yaml", "MultimodalInferenceService", "captioner",
                             labels={"team": "vision"}),
                   ObjectRef("serving/base/vector-db.yaml", "StatefulSet", "vector-db")])
    got = {(k[2], i.namespace, i.name, i.labels.get("region")) for k, ids in view.identities.items() for i in ids}
    assert got == {("captioner", "ml-serving", "prod-captioner", None), ("vector-db", "ml-serving", "prod-vector-db", None),
                   # the eu overlay names and labels them with built-in transformer configurations
                   ("captioner", "ml-serving-eu", "eu-captioner", "eu"), ("vector-db", "ml-serving-eu", "eu-vector-db", "eu")}
    assert view.problems == ()
    assert "Application argocd/serving-prod" in view.identities[
        ("serving/base/captioner.yaml", "MultimodalInferenceService", "captioner")][0].routes[0]


def test_legacy_key_spellings_a_component_and_an_external_artifact() -> None:
    files = files_of("flux-fleet")
    view = render(files, [ObjectRef("apps/base/podinfo/deployment.yaml", "Deployment", "podinfo")])
    [(ident,)] = view.identities.values()
    assert (ident.namespace, ident.name, ident.labels.get("env")) == ("podinfo", "podinfo-prod", "production")
    assert len(ident.routes) == 1 and "flux-system/apps" in ident.routes[0]   # not the ExternalArtifact one
    assert {"apps/production/podinfo-values.yaml", "apps/production/hpa-max.yaml"} <= view.patch_files
    assert view.problems == ()


def test_a_plain_folder_takes_the_application_destination_and_a_chart_is_no_problem() -> None:
    files = {k: v for k, v in files_of("helm-mixed").items() if "/templates/" not in k}
    view = render(files, [ObjectRef("apps/web/deployment.yaml", "Deployment", "storefront")])
    assert view.problems == ()
    [(ident,)] = view.identities.values()
    assert (ident.namespace, ident.name) == ("web", "storefront")


def test_what_kustomize_refuses_is_named_with_its_file() -> None:
    files = {
        "base/app.yaml": DEPLOY, "base/kustomization.yaml": "resources: [app.yaml]\nnameprefixx: a-\n",
        "a/kustomization.yaml": "resources: [../b]\n", "b/kustomization.yaml": "resources: [../a]\n",
        "prod/kustomization.yaml": "resources:\n- ../base\n- ../missing\n"
                                   "- https://github.com/acme/bases//web?ref=v1\npatches:\n- path: gone.yaml\n",
    }
    view = render(files, [ObjectRef("base/app.yaml", "Deployment", "web")])
    problems = dict(view.problems)
    text = "\n".join(f"{f}: {m}" for f, m in view.problems)
    assert "unknown field 'nameprefixx'" in problems["base/kustomization.yaml"]
    assert "prod/kustomization.yaml: resources: ../missing (missing) is neither a file nor a folder" in text
    assert "remote base https://github.com/acme/bases//web?ref=v1 is not followed" in text
    assert "patch file prod/gone.yaml is not in the repository" in text
    assert "kustomizations include each other (a -> b -> a)" in text
    # the rest is still handled
    assert view.identities[("base/app.yaml", "Deployment", "web")][0].name == "web"


def test_field_names_match_as_kustomize_matches_them() -> None:
    files = {"base/app.yaml": DEPLOY, "base/kustomization.yaml": "resources: [app.yaml]\n",
             "prod/kustomization.yaml": "Resources: [../base]\nNAMESPACE: shop\nnameprefix: p-\n"}
    view = render(files, [ObjectRef("base/app.yaml", "Deployment", "web")], deployed_paths=["prod"])
    [ident] = view.identities[("base/app.yaml", "Deployment", "web")]
    assert (ident.namespace, ident.name) == ("shop", "p-web") and view.problems == ()


def test_a_transformer_that_may_change_values_is_named_and_not_followed() -> None:
    from tools.kustomize import effective_value

    files = {"base/app.yaml": DEPLOY, "base/kustomization.yaml": "resources: [app.yaml]\n",
             "prod/kustomization.yaml": "resources: [../base]\ntransformers: [replicas.yaml]\n",
             "prod/replicas.yaml": "apiVersion: builtin\nkind: ReplicaCountTransformer\nmetadata: {name: r}\n"
                                   "replica: {name: web, count: 5}\nfieldSpecs: [{path: spec/replicas, kind: Deployment}]\n"}
    view = render(files, [ObjectRef("base/app.yaml", "Deployment", "web")])
    assert any("a ReplicaCountTransformer transformer may change values" in m for _, m in view.problems)
    loc = effective_value(files, file="base/app.yaml", doc_kind="Deployment", doc_name="web", path=("spec", "replicas"))
    assert not loc.ok and "ReplicaCountTransformer" in loc.reason
