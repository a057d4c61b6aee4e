"""Discovery: which folders Argo CD and Flux deploy (``Deployer``), read from the ``Application``
(``spec.source(s).path`` and its ``kustomize`` options) and Flux ``Kustomization`` (``spec.path``,
its own patches / namespace options) objects among the repository's files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tools.kustomize.tree import Path, Tree, Unsupported, as_map, doc_selector, name_of, norm_dir

__all__ = ["Deployer", "deployers"]


@dataclass(frozen=True)
class Deployer:
    """A folder that Argo CD or Flux deploys, and where its own kustomize options live."""

    path: str                     # repo-relative folder ("" = repo root)
    label: str                    # e.g. "Application argocd/ml-serving-prod (clusters/prod/apps.yaml)"
    file: str = ""                # the document holding the Application / Flux Kustomization
    doc_kind: str = ""
    doc_name: str = ""
    prefix: Path = ()             # path of its kustomize options in that document
    options: Mapping[str, Any] = field(default_factory=dict)
    recurse: bool = True          # plain folder (no kustomization): also sub-folders
    namespace: str = ""           # Argo CD destination.namespace: for objects that name none


def deployers(files: Mapping[str, str]) -> list[Deployer]:
    """Folders deployed by the Argo CD Applications and Flux Kustomizations found among ``files``
    (documents that do not parse are skipped; ApplicationSets are templates and are not followed)."""
    tree = Tree.of(files)
    out: list[Deployer] = []
    for f in sorted(tree.files):
        if not f.endswith((".yaml", ".yml")):
            continue
        try:
            docs = tree.docs(f)
        except Unsupported:
            continue
        for i, d in enumerate(docs):
            if not isinstance(d, dict) or not isinstance(d.get("spec"), dict):
                continue
            api, kind, spec = str(d.get("apiVersion", "")), d.get("kind"), d["spec"]
            meta = as_map(d.get("metadata"))
            who = f"{meta.get('namespace')}/{name_of(d)}" if meta.get("namespace") else name_of(d)
            try:
                sel = doc_selector(docs, i, f)
            except Unsupported:
                sel = (str(kind), name_of(d))
            if kind == "Application" and api.startswith("argoproj.io/"):
                srcs: list[tuple[Path, Any]] = [(("spec", "source"), spec.get("source"))]
                if isinstance(spec.get("sources"), list):
                    srcs += [(("spec", "sources", j), s) for j, s in enumerate(spec["sources"])]
                for pre, src in srcs:
                    if not isinstance(src, dict) or not isinstance(src.get("path"), str) or src.get("chart"):
                        continue
                    opts = as_map(src.get("kustomize"))
                    rec = bool((src.get("directory") or {}).get("recurse")) if isinstance(src.get("directory"), dict) else False
                    dest = as_map(spec.get("destination")).get("namespace")
                    out.append(Deployer(path=norm_dir(src["path"]), label=f"Application {who} ({f})", file=f,
                                        doc_kind=sel[0], doc_name=sel[1], prefix=(*pre, "kustomize"),
                                        options=opts, recurse=rec, namespace=dest if isinstance(dest, str) else ""))
            elif kind == "Kustomization" and api.startswith("kustomize.toolkit.fluxcd.io/"):
                source = as_map(spec.get("sourceRef")).get("kind", "GitRepository")
                if source not in ("GitRepository", "", None):
                    continue   # an ExternalArtifact, OCIRepository, Bucket: its path is not in this repository
                path = spec.get("path") if isinstance(spec.get("path"), str) else ""
                opts = dict(spec)
                if "targetNamespace" in opts:
                    opts["namespace"] = opts["targetNamespace"]
                out.append(Deployer(path=norm_dir(path), label=f"Flux Kustomization {who} ({f})", file=f,
                                    doc_kind=sel[0], doc_name=sel[1], prefix=("spec",), options=opts, recurse=True))
    return out
