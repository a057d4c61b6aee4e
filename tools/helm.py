"""Helm charts kept in the GitOps repository, the releases that deploy them, and where a release's
values are set (pure: file texts in, no helm binary, no I/O).

A release is an Argo CD ``Application`` whose source ``path`` is a chart folder (``Chart.yaml``),
or a Flux ``HelmRelease`` whose ``spec.chart.spec.chart`` is a folder of this repository. Its values
are layered as Helm layers them, lowest first: the chart's ``values.yaml`` (or a HelmRelease's
``valuesFiles``), the Application's ``helm.valueFiles``, ``helm.values`` (a YAML string),
``helm.valuesObject``, ``helm.parameters``; a HelmRelease's ``spec.values``.

Objects are read from the chart's templates only as far as a template says plainly where a field
comes from: ``maxReplicas: {{ .Values.autoscaling.maxReplicas }}`` (a field set to one value), a
``toYaml .Values.resources`` block (a mapping), a document or block under
``{{- if .Values.x }}`` / ``{{- if not .Values.x }}`` (evaluated on the release's values), the name
``{{ include "<chart>.fullname" . }}`` (Helm's scaffold: ``fullnameOverride``, else the release name
when it contains the chart name, else ``<release>-<chart>``), ``{{ .Release.Name }}`` or a literal.
A field set by anything else is "only the chart knows": it is read as absent and never edited.

``locate`` moves an edit of a field of a release's object to the values layer that sets it last;
the chart's own ``values.yaml`` only when no other release of this repository uses the chart.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from memory.records import FieldEdit
from tools.yamledit import format_path, safe_load_all

__all__ = ["HelmObject", "Release", "body", "helm_objects", "is_release_key", "locate", "release_key", "releases"]

Path = tuple[str | int, ...]
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "HorizontalPodAutoscaler")


@dataclass(frozen=True)
class Layer:
    """One layer of a release's values: a mapping at ``prefix`` in a document of ``file``
    (``doc_kind`` "" = the file's only document), or the string at ``prefix`` holding YAML."""

    file: str
    doc_kind: str
    doc_name: str
    prefix: Path
    values: Mapping[str, Any]
    label: str
    parameters: bool = False      # Argo CD helm.parameters: [{name: a.b, value: v}]


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    chart: str                    # repo folder of the chart
    chart_name: str
    label: str                    # e.g. "Application argocd/ranker (argocd/ranker.yaml)"
    layers: tuple[Layer, ...]
    unknown_values: str = ""      # e.g. values from a ConfigMap: any value may be overridden there

    @property
    def key(self) -> str:
        return release_key(self.name, self.namespace)


@dataclass(frozen=True)
class HelmObject:
    release: Release
    kind: str
    name: str
    template: str                                   # repo path of the template file
    fields: dict[Path, Path] = field(default_factory=dict)   # object field -> values path


def release_key(name: str, namespace: str) -> str:
    """What ``FieldEdit.deployed`` / ``ManifestDoc.deployed_paths`` hold for a Helm release."""
    return f"helm:{namespace}/{name}"


def is_release_key(deployed: str) -> bool:
    return deployed.startswith("helm:")


def _docs(files: Mapping[str, str], path: str) -> list[Any]:
    try:
        return [d for d in safe_load_all(files[path], path) if d is not None]
    except (yaml.YAMLError, KeyError, ValueError):
        return []


def _chart(files: Mapping[str, str], folder: str) -> dict[str, Any] | None:
    docs = _docs(files, posixpath.join(folder, "Chart.yaml") if folder else "Chart.yaml")
    return docs[0] if docs and isinstance(docs[0], dict) else None


def _values_file(files: Mapping[str, str], path: str, label: str) -> Layer | None:
    docs = _docs(files, path)
    if len(docs) == 1 and isinstance(docs[0], dict):
        return Layer(file=path, doc_kind="", doc_name="", prefix=(), values=docs[0], label=label)
    return None


def releases(files: Mapping[str, str]) -> tuple[list[Release], list[tuple[str, str]]]:
    """The Helm releases of charts in this repository, and what about them is not followed."""
    out: list[Release] = []
    problems: list[tuple[str, str]] = []
    for f in sorted(files):
        if not f.endswith((".yaml", ".yml")) or "/templates/" in f"/{f}":
            continue
        for d in _docs(files, f):
            if not isinstance(d, dict) or not isinstance(d.get("spec"), dict):
                continue
            api, kind, spec = str(d.get("apiVersion", "")), d.get("kind"), d["spec"]
            meta: dict[str, Any] = d["metadata"] if isinstance(d.get("metadata"), dict) else {}
            name = str(meta.get("name") or "")
            if kind == "Application" and api.startswith("argoproj.io/"):
                srcs: list[tuple[Path, Any]] = [(("spec", "source"), spec.get("source"))]
                if isinstance(spec.get("sources"), list):
                    srcs += [(("spec", "sources", j), s) for j, s in enumerate(spec["sources"])]
                dest: dict[str, Any] = spec["destination"] if isinstance(spec.get("destination"), dict) else {}
                for pre, src in srcs:
                    r = _argo_release(files, f, name, str(dest.get("namespace") or "default"), pre, src, problems)
                    if r is not None:
                        out.append(r)
            elif kind == "HelmRelease" and api.startswith("helm.toolkit.fluxcd.io/"):
                r = _flux_release(files, f, name, str(meta.get("namespace") or "default"), spec, problems)
                if r is not None:
                    out.append(r)
    return out, problems


def _argo_release(files: Mapping[str, str], f: str, app: str, namespace: str, pre: Path, src: Any,
                  problems: list[tuple[str, str]]) -> Release | None:
    if not isinstance(src, dict):
        return None
    label = f"Application {app} ({f})"
    if src.get("chart"):
        problems.append((f, f"{label} deploys chart {src['chart']} from a chart repository: its objects are not watched"))
        return None
    folder = str(src.get("path") or "").strip("/").removeprefix("./")
    chart = _chart(files, folder) if isinstance(src.get("path"), str) else None
    if chart is None:
        return None
    helm: dict[str, Any] = src["helm"] if isinstance(src.get("helm"), dict) else {}
    hp = (*pre, "helm")
    layers = [layer for layer in [_values_file(files, posixpath.join(folder, "values.yaml"), "the chart's values.yaml")]
              if layer is not None]
    for vf in helm.get("valueFiles") or []:
        p = posixpath.normpath(posixpath.join(folder, str(vf)))
        layer = _values_file(files, p, f"valueFiles {vf} of {label}") if "://" not in str(vf) and "$" not in str(vf) else None
        if layer is None:
            problems.append((f, f"{label}: values file {vf} is not a values file of this repository; values it sets are not located"))
            return _release(app, helm, namespace, folder, chart, label, layers, f"values file {vf} is not read")
        layers.append(layer)
    if isinstance(helm.get("values"), str):
        try:
            inline = yaml.safe_load(helm["values"]) or {}
        except yaml.YAMLError:
            inline = None
        if isinstance(inline, dict):
            layers.append(Layer(f, "Application", app, (*hp, "values"), inline, f"helm.values of {label}"))
    if isinstance(helm.get("valuesObject"), dict):
        layers.append(Layer(f, "Application", app, (*hp, "valuesObject"), helm["valuesObject"],
                            f"helm.valuesObject of {label}"))
    if isinstance(helm.get("parameters"), list):
        params = {str(p.get("name")): (i, p.get("value")) for i, p in enumerate(helm["parameters"]) if isinstance(p, dict)}
        layers.append(Layer(f, "Application", app, (*hp, "parameters"), params, f"helm.parameters of {label}",
                            parameters=True))
    return _release(app, helm, namespace, folder, chart, label, layers)


def _release(app: str, helm: Mapping[str, Any], namespace: str, folder: str, chart: Mapping[str, Any], label: str,
             layers: list[Layer], unknown: str = "") -> Release:
    return Release(name=str(helm.get("releaseName") or app), namespace=namespace, chart=folder,
                   chart_name=str(chart.get("name") or posixpath.basename(folder)), label=label, layers=tuple(layers),
                   unknown_values=unknown)


def _flux_release(files: Mapping[str, str], f: str, name: str, namespace: str, spec: Mapping[str, Any],
                  problems: list[tuple[str, str]]) -> Release | None:
    cspec = spec.get("chart", {}).get("spec") if isinstance(spec.get("chart"), dict) else None
    label = f"HelmRelease {namespace}/{name} ({f})"
    if not isinstance(cspec, dict) or not isinstance(cspec.get("chart"), str):
        return None
    source = (cspec.get("sourceRef") or {}).get("kind") if isinstance(cspec.get("sourceRef"), dict) else None
    folder = posixpath.normpath(cspec["chart"].strip("/").removeprefix("./"))
    chart = _chart(files, folder) if source == "GitRepository" else None
    if chart is None:
        problems.append((f, f"{label} deploys chart {cspec['chart']} from a chart repository: its objects are not watched"))
        return None
    layers: list[Layer] = []
    for vf in cspec.get("valuesFiles") or ["values.yaml"]:
        p = posixpath.normpath(str(vf).strip("/").removeprefix("./")) if "/" in str(vf) else posixpath.join(folder, str(vf))
        layer = _values_file(files, p, f"values file {p}")
        if layer is not None:
            layers.append(layer)
    if isinstance(spec.get("values"), dict):
        layers.append(Layer(f, "HelmRelease", name, ("spec", "values"), spec["values"], f"spec.values of {label}"))
    target = spec.get("targetNamespace")
    unknown = "values come from a ConfigMap or Secret (valuesFrom) too" if spec.get("valuesFrom") else ""
    return Release(name=str(spec.get("releaseName") or (f"{target}-{name}" if target else name)),
                   namespace=str(target or namespace), chart=folder, chart_name=str(chart.get("name") or ""),
                   label=label, layers=tuple(layers), unknown_values=unknown)


# --------------------------------------------------------------------------- values

def _get(values: Mapping[str, Any], vpath: Path) -> tuple[bool, Any]:
    node: Any = values
    for k in vpath:
        if not isinstance(node, dict) or k not in node:
            return False, None
        node = node[k]
    return True, node


def value(release: Release, vpath: Path) -> tuple[Any, Layer | None, Path]:
    """The release's value at ``vpath``, the top layer that sets it, and the path in that document."""
    for layer in reversed(release.layers):
        if layer.parameters:
            hit = layer.values.get(".".join(map(str, vpath)))
            if hit is not None:
                return hit[1], layer, (*layer.prefix, hit[0], "value")
            continue
        found, v = _get(layer.values, vpath)
        if found:
            if isinstance(v, dict):   # a mapping: merged from every layer
                merged: dict[str, Any] = {}
                for lower in release.layers:
                    ok, part = _get(lower.values, vpath) if not lower.parameters else (False, None)
                    if ok and isinstance(part, dict):
                        merged.update(part)
                return merged, layer, (*layer.prefix, *vpath)
            return v, layer, (*layer.prefix, *vpath)
    return None, None, ()


# --------------------------------------------------------------------------- templates

_FIELD = re.compile(r"^(\s*)(- )?([A-Za-z0-9_./-]+):\s*(.*?)\s*$")
_VALUE = re.compile(r"^\"?\{\{-?\s*\.Values\.([A-Za-z0-9_.]+)\s*(\|\s*quote\s*)?-?\}\}\"?$")
_TOYAML = re.compile(r"^\{\{-?\s*(?:toYaml|toYaml\s*\()\s*\.Values\.([A-Za-z0-9_.]+)\s*\)?\s*\|\s*nindent\s+\d+\s*-?\}\}$")
_IF = re.compile(r"^\s*\{\{-?\s*(if|with|range|else|else if|end)\b\s*(.*?)\s*-?\}\}\s*$")
_COND = re.compile(r"^(not\s+)?\.Values\.([A-Za-z0-9_.]+)$")


def fullname(release: Release, values_of: Any) -> str:
    override = values_of(("fullnameOverride",))
    if override:
        return str(override)[:63].rstrip("-")
    chart = str(values_of(("nameOverride",)) or release.chart_name)
    name = release.name if chart in release.name else f"{release.name}-{chart}"
    return name[:63].rstrip("-")


def _truthy(v: Any) -> bool:
    return v not in (None, False, 0, "", [], {})


def _split_documents(text: str) -> list[list[str]]:
    docs: list[list[str]] = [[]]
    for line in text.splitlines():
        if line.strip() == "---":
            docs.append([])
        else:
            docs[-1].append(line)
    return [d for d in docs if any(x.strip() for x in d)]


def helm_objects(files: Mapping[str, str], release: Release) -> list[HelmObject]:
    """The workload objects of a release's templates whose name the templates say plainly."""
    def values_of(vpath: Path) -> Any:
        return value(release, vpath)[0]

    out: list[HelmObject] = []
    tdir = posixpath.join(release.chart, "templates") if release.chart else "templates"
    for tfile in sorted(p for p in files if p.startswith(tdir + "/") and p.endswith((".yaml", ".yml"))):
        for lines in _split_documents(files[tfile]):
            obj = _read_template(lines, release, values_of, tfile)
            if obj is not None:
                out.append(obj)
    return out


def _read_template(lines: list[str], release: Release, values_of: Any, tfile: str) -> HelmObject | None:
    kind = name = None
    fields: dict[Path, Path] = {}
    stack: list[tuple[int, str | int]] = []          # (indent, key) of the mappings / list items we are in
    items: dict[tuple[int, Path], int] = {}          # next index of a list, by (indent, parent path)
    active: list[bool | None] = []                   # per open block: rendered (True/False) or unknown (None)
    for raw in lines:
        ctl = _IF.match(raw)
        if ctl:
            word, cond = ctl.group(1), ctl.group(2)
            if word == "if":
                m = _COND.match(cond)
                active.append(None if m is None else (_truthy(values_of(tuple(m.group(2).split(".")))) != bool(m.group(1))))
            elif word in ("with", "range"):
                active.append(None)
            elif word == "end" and active:
                active.pop()
            elif word.startswith("else") and active:
                active[-1] = None if active[-1] is None or word != "else" else not active[-1]
            continue
        if "{{" in raw and raw.strip().startswith("{{"):
            m = _TOYAML.match(raw.strip())
            if m and stack and all(a is True for a in active):
                fields[tuple(k for _, k in stack)] = tuple(m.group(1).split("."))
            continue
        if any(a is False for a in active):
            continue
        fm = _FIELD.match(raw)
        if not fm or raw.lstrip().startswith("#"):
            continue
        indent, dash, key, rest = len(fm.group(1)), fm.group(2), fm.group(3), fm.group(4)
        if dash:
            while stack and stack[-1][0] >= indent:
                stack.pop()
            parent = tuple(k for _, k in stack)
            idx = items.get((indent, parent), 0)
            items[(indent, parent)] = idx + 1
            stack.append((indent, idx))
            indent += 2
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = (*(k for _, k in stack), key)
        if not stack and key == "kind":
            kind = rest.strip("\"'")
        elif path == ("metadata", "name"):
            if "fullname" in rest and rest.startswith("{{"):
                name = fullname(release, values_of)
            elif rest.replace(" ", "") in ("{{.Release.Name}}", "{{-.Release.Name}}"):
                name = release.name
            elif "{{" not in rest and rest:
                name = rest.strip("\"'")
        if rest == "":
            stack.append((indent, key))
            continue
        known = all(a is True for a in active)
        vm = _VALUE.match(rest)
        if vm and known:
            fields[path] = tuple(vm.group(1).split("."))
        elif rest.startswith("{{") and known:
            m = _TOYAML.match(rest)
            if m:
                fields[path] = tuple(m.group(1).split("."))
    if kind not in WORKLOAD_KINDS or not name:
        return None
    return HelmObject(release=release, kind=kind, name=name, template=tfile, fields=fields)


def body(obj: HelmObject) -> dict[str, Any]:
    """The object as far as the templates say plainly, with the release's values filled in."""
    doc: dict[str, Any] = {"kind": obj.kind, "metadata": {"name": obj.name, "namespace": obj.release.namespace}}
    for fpath, vpath in sorted(obj.fields.items(), key=lambda kv: [str(x) for x in kv[0]]):
        v, layer, _ = value(obj.release, vpath)
        if layer is None:
            continue
        node: Any = doc
        for k, nxt in zip(fpath, (*fpath[1:], None), strict=True):
            if nxt is None:
                if isinstance(node, dict):
                    node[k] = v
                elif isinstance(node, list) and isinstance(k, int):
                    while len(node) <= k:
                        node.append({})
                    node[k] = v
                break
            child: Any = [] if isinstance(nxt, int) else {}
            if isinstance(node, dict):
                node = node.setdefault(k, child)
            elif isinstance(node, list) and isinstance(k, int):
                while len(node) <= k:
                    node.append({})
                if not node[k]:
                    node[k] = child
                node = node[k]
    if obj.kind == "HorizontalPodAutoscaler":
        doc.setdefault("spec", {}).setdefault("scaleTargetRef", {"kind": "Deployment", "name": obj.name})
    return doc


# --------------------------------------------------------------------------- edits

def locate(files: Mapping[str, str], edit: FieldEdit) -> tuple[FieldEdit | None, str]:
    """``edit`` (of a field of a release's object, ``edit.deployed`` naming the release) moved to the
    values layer that sets it; (None, why) when the chart alone knows the value or the place is shared."""
    rels, _ = releases(files)
    rel = next((r for r in rels if r.key in edit.deployed), None)
    if rel is None:
        return None, f"{edit.file}: no Helm release of this repository renders it"
    obj = next((o for o in helm_objects(files, rel) if o.template == edit.file and o.kind == edit.doc_kind
                and o.name == edit.doc_name), None)
    where = f"{rel.label}: {edit.doc_kind}/{edit.doc_name} {format_path(edit.path)}"
    if obj is None:
        return None, f"{where}: not an object its templates name plainly"
    vpath = next((v + tuple(edit.path[len(f):]) for f, v in obj.fields.items()
                  if tuple(edit.path[:len(f)]) == f), None)
    if vpath is None:
        return None, f"{where}: only the chart knows this value (its template does not take it from one value)"
    if rel.unknown_values:
        return None, f"{where}: {rel.unknown_values}; not editing {format_path(vpath)} in a values file"
    current, layer, at = value(rel, vpath)
    if layer is None:
        return None, f"{where}: .Values.{format_path(vpath)} is set nowhere in this repository (the chart's default)"
    if layer.file == posixpath.join(rel.chart, "values.yaml"):
        others = [r.label for r in rels if r.chart == rel.chart and r.key != rel.key]
        if others:
            return None, (f"{where}: set by the chart's values.yaml, which {', '.join(others)} also use; "
                          "editing it would change them too")
    if edit.old is not None and str(edit.old) != str(current):
        return None, f"{where}: the plan changes {edit.old!r} but {layer.label} sets {current!r}"
    return FieldEdit(file=layer.file, doc_kind=layer.doc_kind, doc_name=layer.doc_name, path=at, old=current,
                     new=edit.new), f"{where} is .Values.{format_path(vpath)}, set by {layer.label}: editing {layer.file}"
