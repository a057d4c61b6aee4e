"""tools/helm.py: releases of charts kept in the repository, their values layers, the objects their
templates name plainly, and where an edit of one of their fields goes."""

from __future__ import annotations

from pathlib import Path

import pytest

from memory.records import FieldEdit
from tools import helm
from tools.kustomize import apply_edits

REPO = Path(__file__).resolve().parents[1] / "gitops_repos" / "helm-mixed"


@pytest.fixture
def files() -> dict[str, str]:
    return {p.relative_to(REPO).as_posix(): p.read_text() for p in REPO.rglob("*") if p.is_file()}


def cap(obj: helm.HelmObject, field: tuple[str | int, ...], new: object, old: object = None) -> FieldEdit:
    return FieldEdit(file=obj.template, doc_kind=obj.kind, doc_name=obj.name, path=field, old=old, new=new,
                     deployed=(obj.release.key,))


def objects(files: dict[str, str]) -> dict[str, helm.HelmObject]:
    [rel], problems = helm.releases(files)
    assert problems == []
    return {o.kind: o for o in helm.helm_objects(files, rel)}


def test_an_argo_cd_helm_application_is_a_release_with_its_values_layered(files: dict[str, str]) -> None:
    [rel], _ = helm.releases(files)
    assert (rel.name, rel.namespace, rel.chart, rel.chart_name) == ("ranker", "search", "charts/ranker", "ranker")
    assert [layer.file for layer in rel.layers] == ["charts/ranker/values.yaml", "charts/ranker/values-prod.yaml"]
    obs = objects(files)
    assert set(obs) == {"Deployment", "HorizontalPodAutoscaler"} and obs["Deployment"].name == "ranker"
    hpa = helm.body(obs["HorizontalPodAutoscaler"])
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)   # values-prod.yaml wins
    # replicas sits under `if not .Values.autoscaling.enabled`: not rendered
    assert "replicas" not in helm.body(obs["Deployment"]).get("spec", {})


def test_an_edit_goes_to_the_values_file_that_sets_the_value_and_only_that_line_changes(files: dict[str, str]) -> None:
    hpa = objects(files)["HorizontalPodAutoscaler"]
    moved, why = helm.locate(files, cap(hpa, ("spec", "maxReplicas"), 4, old=10))
    assert moved is not None and (moved.file, moved.path, moved.old) == ("charts/ranker/values-prod.yaml",
                                                                         ("autoscaling", "maxReplicas"), 10)
    assert "valueFiles values-prod.yaml" in why
    before = files[moved.file]
    after = apply_edits(before, [moved])
    assert [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b] == [
        ("  maxReplicas: 10", "  maxReplicas: 4")]
    deploy = objects(files)["Deployment"]
    req, _ = helm.locate(files, cap(deploy, ("spec", "template", "spec", "containers", 0, "resources", "requests",
                                           "cpu"), "1"))
    assert req is not None and (req.file, req.path) == ("charts/ranker/values.yaml", ("resources", "requests", "cpu"))


def test_values_only_the_chart_knows_and_a_shared_chart_default_stay_notify_only(files: dict[str, str]) -> None:
    deploy = objects(files)["Deployment"]
    moved, why = helm.locate(files, cap(deploy, ("spec", "template", "spec", "containers", 0, "image"), "x:2"))
    assert moved is None and "only the chart knows" in why
    files = {**files, "argocd/ranker-eu.yaml": files["argocd/ranker.yaml"].replace("name: ranker\n", "name: ranker-eu\n", 1)
             .replace("valueFiles: [values-prod.yaml]", "valueFiles: []")}
    hpa = next(o for r in helm.releases(files)[0] if r.name == "ranker" for o in helm.helm_objects(files, r)
               if o.kind == "HorizontalPodAutoscaler")
    moved, why = helm.locate(files, cap(hpa, ("spec", "minReplicas"), 1))
    assert moved is None and "chart's values.yaml, which Application ranker-eu" in why


def test_inline_values_parameters_and_a_flux_helmrelease(files: dict[str, str]) -> None:
    app = files["argocd/ranker.yaml"].replace(
        "      valueFiles: [values-prod.yaml]\n",
        "      valueFiles: [values-prod.yaml]\n      values: |\n        autoscaling:\n          maxReplicas: 12\n"
        "      parameters:\n        - name: autoscaling.minReplicas\n          value: \"3\"\n")
    files = {**files, "argocd/ranker.yaml": app}
    hpa = objects(files)["HorizontalPodAutoscaler"]
    assert helm.body(hpa)["spec"]["maxReplicas"] == 12 and helm.body(hpa)["spec"]["minReplicas"] == "3"
    moved, _ = helm.locate(files, cap(hpa, ("spec", "maxReplicas"), 5))
    assert moved is not None and moved.path == ("spec", "source", "helm", "values", "autoscaling", "maxReplicas")
    assert "          maxReplicas: 5\n" in apply_edits(app, [moved])
    moved, _ = helm.locate(files, cap(hpa, ("spec", "minReplicas"), "2"))
    assert moved is not None and moved.path == ("spec", "source", "helm", "parameters", 0, "value")

    flux = {k: v for k, v in files.items() if not k.startswith("argocd/")}
    flux["clusters/prod/ranker.yaml"] = (
        "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata: {name: ranker, namespace: flux-system}\n"
        "spec:\n  targetNamespace: search\n  chart:\n    spec:\n      chart: ./charts/ranker\n"
        "      sourceRef: {kind: GitRepository, name: fleet}\n  values:\n    autoscaling:\n      maxReplicas: 7\n")
    [rel], _ = helm.releases(flux)
    assert (rel.name, rel.namespace) == ("search-ranker", "search")
    hpa = next(o for o in helm.helm_objects(flux, rel) if o.kind == "HorizontalPodAutoscaler")
    assert hpa.name == "search-ranker" and helm.body(hpa)["spec"]["maxReplicas"] == 7
    moved, _ = helm.locate(flux, cap(hpa, ("spec", "maxReplicas"), 5))
    assert moved is not None and (moved.file, moved.path) == ("clusters/prod/ranker.yaml",
                                                              ("spec", "values", "autoscaling", "maxReplicas"))
    with_from = {**flux, "clusters/prod/ranker.yaml": flux["clusters/prod/ranker.yaml"]
                 + "  valuesFrom:\n    - {kind: ConfigMap, name: ranker-values}\n"}
    rel = helm.releases(with_from)[0][0]
    hpa = next(o for o in helm.helm_objects(with_from, rel) if o.kind == "HorizontalPodAutoscaler")
    moved, why = helm.locate(with_from, cap(hpa, ("spec", "maxReplicas"), 5))
    assert moved is None and "valuesFrom" in why


def test_a_chart_from_a_chart_repository_is_named_as_not_watched() -> None:
    files = {"argocd/x.yaml": "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: x}\nspec:\n"
                              "  source: {repoURL: https://charts.example.com, chart: redis, targetRevision: 1.0.0}\n"
                              "  destination: {namespace: cache}\n"}
    rels, problems = helm.releases(files)
    assert rels == [] and "deploys chart redis from a chart repository" in problems[0][1]
