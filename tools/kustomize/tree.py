"""The repository as kustomize sees it: file texts parsed on demand, and the path and naming
helpers that discovery (``deployers``), patch replay (``patches``), resolution (``resolve``)
share. Pure: no git, no I/O. ``Unsupported`` is raised on the way for anything not followed.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Mapping
from typing import Any

import yaml

from tools.yamledit import metadata_name, safe_load_all

__all__ = ["KUSTOMIZATION_FIELDS", "KUSTOMIZATION_FILES", "Path", "Tree", "Unsupported", "as_map", "canonical",
           "doc_selector", "entries", "is_remote", "join_path", "name_of", "norm_dir", "norm_file"]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
# The fields of a kustomization (kustomize.config.k8s.io Kustomization / Component). kustomize reads
# them with Go's JSON decoding, which matches a field name exactly or else case-insensitively:
# `patchesJSON6902` is `patchesJson6902`.
KUSTOMIZATION_FIELDS = (
    "apiVersion", "kind", "metadata", "openapi", "namePrefix", "nameSuffix", "namespace", "commonLabels", "labels",
    "commonAnnotations", "patchesStrategicMerge", "patchesJson6902", "patches", "images", "imageTags", "replacements",
    "replicas", "vars", "sortOptions", "resources", "components", "crds", "bases", "configMapGenerator",
    "secretGenerator", "helmGlobals", "helmCharts", "helmChartInflationGenerator", "generatorOptions",
    "configurations", "generators", "transformers", "validators", "buildMetadata", "inventory")
Path = tuple[str | int, ...]


class Unsupported(Exception):
    """A construct on the route that is not followed: the caller must not guess."""


class Tree(Mapping[str, str]):
    """The repository's files (repo-relative path -> text), each parsed once, on first use. A Tree
    is itself the mapping of files, so a caller that asks several questions of one repository
    (every (manifest, field) of a cycle) builds one and passes it: no file is parsed twice."""

    def __init__(self, files: Mapping[str, str]) -> None:
        self.files = {norm_file(k): v for k, v in files.items()}
        self._docs: dict[str, list[Any]] = {}

    def __getitem__(self, key: str) -> str:
        return self.files[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)

    @classmethod
    def of(cls, files: Mapping[str, str]) -> Tree:
        """``files`` itself when it is a Tree already (its parses are kept), else a new one."""
        return files if isinstance(files, Tree) else cls(files)

    def docs(self, path: str) -> list[Any]:
        if path not in self._docs:
            text = self.files.get(path)
            if text is None:
                raise Unsupported(f"{path} is referenced but not in the repository")
            try:
                docs = safe_load_all(text, path)
            except yaml.YAMLError as exc:
                raise Unsupported(f"{path} does not parse: {str(exc).splitlines()[0]}") from None
            self._docs[path] = docs
        return self._docs[path]

    def kustomization(self, folder: str) -> str | None:
        for name in KUSTOMIZATION_FILES:
            p = join_path(folder, name)
            if p in self.files:
                return p
        return None


def norm_file(p: str) -> str:
    return posixpath.normpath(p.lstrip("/"))


def join_path(folder: str, rel: str) -> str:
    p = posixpath.normpath(posixpath.join(folder, rel)) if folder else posixpath.normpath(rel)
    return "" if p == "." else p


def norm_dir(p: str) -> str:
    p = posixpath.normpath(p.strip().lstrip("/")) if p.strip() not in ("", ".", "./", "/") else ""
    return "" if p == "." else p


def as_map(x: Any) -> dict[str, Any]:
    return x if isinstance(x, dict) else {}


def name_of(doc: Any) -> str:
    """``metadata.name`` of a parsed document; "" when it has none or it is not a string."""
    name = metadata_name(doc)
    return name if isinstance(name, str) else ""


def doc_selector(docs: list[Any], index: int, path: str) -> tuple[str, str]:
    """(doc_kind, doc_name) that names document ``index`` of a file uniquely (``("", "")``: the only one)."""
    doc = docs[index]
    kind = str(doc.get("kind") or "") if isinstance(doc, dict) else ""
    sel = (kind, name_of(doc)) if kind else ("", "")
    same = [i for i, d in enumerate(docs) if d is not None and (
        (not sel[0]) or (isinstance(d, dict) and str(d.get("kind") or "") == sel[0] and name_of(d) == sel[1]))]
    if same != [index]:
        raise Unsupported(f"{path}: document {index} cannot be told apart from the other documents of the file")
    return sel


def canonical(body: Mapping[str, Any], fields: tuple[str, ...] = KUSTOMIZATION_FIELDS,
              ) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """``body`` with its keys spelled as in ``fields`` (an exact match first, else case-insensitive, as
    Go's JSON decoding does), the key as written for each field, and the keys that are no field."""
    by_lower = {f.lower(): f for f in fields}
    out: dict[str, Any] = {}
    written: dict[str, str] = {}
    unknown: list[str] = []
    for k in sorted(body, key=lambda k: str(k) not in fields):   # exact spellings win
        name = k if k in fields else by_lower.get(str(k).lower())
        if name is None:
            unknown.append(str(k))
        elif name not in out:
            out[name], written[name] = body[k], str(k)
    return out, written, unknown


def is_remote(entry: str) -> bool:
    return "://" in entry or entry.startswith(("git@", "github.com/", "gitlab.com/", "bitbucket.org/"))


def entries(body: Mapping[str, Any], key: str) -> list[Any]:
    v = body.get(key)
    return v if isinstance(v, list) else []
