"""tools.yamledit: minimal-diff edits of commented, multi-document YAML."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memory.records import FieldEdit
from tools.errors import PermanentError
from tools.yamledit import YamlParseError, apply_edits, get_value, parse_documents

MIS = """\
# vision-language-model: answers shopper questions about product images.
# Owner: assistant-ml. Edit through PRs only; Argo CD syncs this folder.
apiVersion: ai.apexlogic.com/v1alpha1
kind: MultimodalInferenceService
metadata:
  name: vision-language-model
  namespace: ml-serving
  labels: {project: customer-engagement, criticality: critical}
spec:
  modelRef:
    name: vl_model_v2
    version: "2.1.0"
    path: 'models/vl_model_v2/v2.1.0'
  resourceRequests: {cpu: "4", memory: 16Gi, gpu: "1"}
  autoscaling:
    # HPA bounds rendered by the operator; keep maxReplicas within the GPU pool quota.
    minReplicas: 2
    maxReplicas: 6   # agreed with capacity planning
    targetCPUUtilization: 70
  responsibleAI:
    fairness: {enabled: true, protectedAttributes: ["gender", "age_group"], threshold: 0.05}
"""

MULTI = """\
# api-gateway: edge API (Envoy-based).
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api-gateway
  namespace: web
spec:
  # replicas is owned by the HPA below.
  selector:
    matchLabels:
      app.kubernetes.io/name: api-gateway
  template:
    spec:
      containers:
        - name: api-gateway
          image: registry.example.com/storefront/api-gateway:3.14.2
          resources:
            requests:
              cpu: 1
              memory: 2Gi
---
apiVersion: v1
kind: Service
metadata:
  name: api-gateway
spec:
  ports:
    - {name: http, port: 80}
---
# Scales on CPU. Lower maxReplicas to cap spend.
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: api-gateway
  namespace: web
spec:
  minReplicas: 2
  maxReplicas: 12
"""

MIS_KIND, MIS_NAME = "MultimodalInferenceService", "vision-language-model"


def edit(path: tuple, new, *, kind: str = MIS_KIND, name: str = MIS_NAME, file: str = "apps/x.yaml") -> FieldEdit:
    return FieldEdit(file=file, doc_kind=kind, doc_name=name, path=path, new=new)


def changed_lines(old: str, new: str) -> list[tuple[str, str]]:
    a, b = old.splitlines(), new.splitlines()
    assert len(a) == len(b), "line count changed"
    return [(x, y) for x, y in zip(a, b, strict=True) if x != y]


def test_block_int_keeps_comment_and_everything_else():
    out = apply_edits(MIS, [edit(("spec", "autoscaling", "maxReplicas"), 3)])
    assert changed_lines(MIS, out) == [("    maxReplicas: 6   # agreed with capacity planning",
                                         "    maxReplicas: 3   # agreed with capacity planning")]
    assert get_value(out, doc_kind=MIS_KIND, doc_name=MIS_NAME, path=("spec", "autoscaling", "maxReplicas")) == 3


def test_quoted_string_stays_quoted_single_and_double():
    out = apply_edits(MIS, [edit(("spec", "modelRef", "version"), "2.0.3"),
                            edit(("spec", "modelRef", "path"), "models/vl_model_v2/v2.0.3")])
    assert changed_lines(MIS, out) == [
        ('    version: "2.1.0"', '    version: "2.0.3"'),
        ("    path: 'models/vl_model_v2/v2.1.0'", "    path: 'models/vl_model_v2/v2.0.3'"),
    ]


def test_flow_mapping_and_flow_sequence_values():
    out = apply_edits(MIS, [edit(("spec", "resourceRequests", "memory"), "24Gi"),
                            edit(("spec", "resourceRequests", "cpu"), 2),
                            edit(("spec", "responsibleAI", "fairness", "protectedAttributes", 1), "age"),
                            edit(("spec", "responsibleAI", "fairness", "threshold"), 0.1)])
    assert changed_lines(MIS, out) == [
        ('  resourceRequests: {cpu: "4", memory: 16Gi, gpu: "1"}', '  resourceRequests: {cpu: "2", memory: 24Gi, gpu: "1"}'),
        ('    fairness: {enabled: true, protectedAttributes: ["gender", "age_group"], threshold: 0.05}',
         '    fairness: {enabled: true, protectedAttributes: ["gender", "age"], threshold: 0.1}'),
    ]
    # a quoted field stays a string even when the new value is given as a number
    assert get_value(out, doc_kind=MIS_KIND, doc_name=MIS_NAME, path=("spec", "resourceRequests", "cpu")) == "2"


def test_multi_document_only_selected_document_changes():
    out = apply_edits(MULTI, [edit(("spec", "maxReplicas"), 8, kind="HorizontalPodAutoscaler", name="api-gateway")])
    assert changed_lines(MULTI, out) == [("  maxReplicas: 12", "  maxReplicas: 8")]
    out = apply_edits(MULTI, [edit(("spec", "template", "spec", "containers", 0, "resources", "requests", "cpu"),
                                   "500m", kind="Deployment", name="api-gateway")])
    assert changed_lines(MULTI, out) == [("              cpu: 1", "              cpu: 500m")]


def test_string_that_would_change_type_is_quoted():
    out = apply_edits(MULTI, [edit(("spec", "template", "spec", "containers", 0, "image"), "yes",
                                   kind="Deployment", name="api-gateway")])
    assert '          image: "yes"' in out.splitlines()
    docs = parse_documents(out, "x")
    assert docs[0]["spec"]["template"]["spec"]["containers"][0]["image"] == "yes"


def test_missing_key_inserted_with_parent_indentation():
    out = apply_edits(MULTI, [edit(("spec", "replicas"), 3, kind="Deployment", name="api-gateway")])
    added = [ln for ln in out.splitlines() if ln not in MULTI.splitlines()]
    assert added == ["  replicas: 3"]
    assert len(out.splitlines()) == len(MULTI.splitlines()) + 1
    assert get_value(out, doc_kind="Deployment", doc_name="api-gateway", path=("spec", "replicas")) == 3
    assert get_value(out, doc_kind="HorizontalPodAutoscaler", doc_name="api-gateway", path=("spec", "maxReplicas")) == 12
    out = apply_edits(MIS, [edit(("spec", "autoscaling", "scaleDownDelay"), "5m")])
    assert [ln for ln in out.splitlines() if ln not in MIS.splitlines()] == ["    scaleDownDelay: 5m"]
    out = apply_edits(MIS, [edit(("spec", "resourceRequests", "ephemeral"), "1Gi")])
    assert changed_lines(MIS, out) == [('  resourceRequests: {cpu: "4", memory: 16Gi, gpu: "1"}',
                                        '  resourceRequests: {ephemeral: 1Gi, cpu: "4", memory: 16Gi, gpu: "1"}')]


@pytest.mark.parametrize(("e", "words"), [
    (edit(("spec", "maxReplicas"), 3, kind="HorizontalPodAutoscaler", name="nope"), ["HorizontalPodAutoscaler", "nope"]),
    (edit(("spec", "nothere", "maxReplicas"), 3), ["spec.nothere", MIS_NAME]),
    (edit(("spec", "autoscaling"), 3), ["collection"]),
])
def test_missing_document_or_parent_is_permanent_error(e, words):
    with pytest.raises(PermanentError) as info:
        apply_edits(MIS, [e])
    assert "apps/x.yaml" in str(info.value)
    for w in words:
        assert w in str(info.value)


def test_get_value_and_parse_documents():
    assert get_value(MIS, doc_kind=MIS_KIND, doc_name=MIS_NAME, path=("spec", "modelRef", "version")) == "2.1.0"
    assert get_value(MIS, doc_kind=MIS_KIND, doc_name=MIS_NAME, path=("spec", "missing")) is None
    assert get_value(MIS, doc_kind="Deployment", doc_name=MIS_NAME, path=("spec",)) is None
    docs = parse_documents("---\na: 1\n---\n---\n- x\n", "f.yaml")
    assert docs == [{"a": 1}, {}, {}]


@pytest.mark.parametrize(("text", "line"), [
    ("a: 1\nb:\n  c: 2\n   d: 3\n", 4),          # bad indentation
    ("a: 1\nb:\n\tc: 2\n", 3),                    # tab
    ("a: 1\nb: [1, 2\nc: 3\n", 3),                # unclosed flow sequence
])
def test_parse_error_names_file_and_line(text, line):
    with pytest.raises(YamlParseError) as info:
        parse_documents(text, "apps/broken.yaml")
    assert info.value.line == line
    assert str(info.value).startswith(f"apps/broken.yaml:{line}: YAML does not parse")
    assert isinstance(info.value, PermanentError)


PATHS = [
    (MIS, MIS_KIND, MIS_NAME, ("spec", "autoscaling", "maxReplicas")),
    (MIS, MIS_KIND, MIS_NAME, ("spec", "autoscaling", "minReplicas")),
    (MULTI, "HorizontalPodAutoscaler", "api-gateway", ("spec", "maxReplicas")),
    (MULTI, "Deployment", "api-gateway", ("spec", "template", "spec", "containers", 0, "resources", "requests", "cpu")),
]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(PATHS), st.integers(min_value=-(10**12), max_value=10**12))
def test_property_int_changes_one_line_and_reads_back(target, value):
    text, kind, name, path = target
    out = apply_edits(text, [edit(path, value, kind=kind, name=name)])
    diff = changed_lines(text, out)
    assert len(diff) <= 1
    if diff:
        old, new = diff[0]
        assert old.split(":")[0] == new.split(":")[0]
        assert new.split("#")[0].rstrip().endswith(str(value))
    assert get_value(out, doc_kind=kind, doc_name=name, path=path) == value


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=30), st.sampled_from([("spec", "modelRef", "version"), ("spec", "modelRef", "name"),
                                             ("spec", "resourceRequests", "memory")]))
def test_property_any_string_reads_back_on_one_line(value, path):
    out = apply_edits(MIS, [edit(path, value)])
    assert len(changed_lines(MIS, out)) <= 1
    assert get_value(out, doc_kind=MIS_KIND, doc_name=MIS_NAME, path=path) == value


def test_an_alias_bomb_and_an_oversized_file_are_refused_naming_the_file() -> None:
    import pytest as _pytest

    from tools.yamledit import MAX_YAML_BYTES, YamlParseError, parse_documents

    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(12))
    with _pytest.raises(YamlParseError, match=r"apps/bomb.yaml.*alias bomb"):
        parse_documents(bomb, "apps/bomb.yaml")
    big = "a: " + "x" * (MAX_YAML_BYTES + 1) + "\n"
    with _pytest.raises(YamlParseError, match=r"apps/big.yaml.*over the .*-byte limit"):
        parse_documents(big, "apps/big.yaml")
    assert parse_documents("a: &x 1\nb: *x\n", "ok.yaml") == [{"a": 1, "b": 1}]   # a few aliases are fine
