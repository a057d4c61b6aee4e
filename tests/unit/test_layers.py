"""DESIGN.md's layering, checked on the source: which room may import which, and third-party
clients only inside their adapter in tools/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROOMS = ("agents", "tools", "memory", "playbooks")
MAY_IMPORT = {"agents": {"agents", "tools", "memory", "playbooks"}, "tools": {"tools", "memory"},
              "memory": {"memory"}, "playbooks": {"playbooks", "memory"}}
# third-party client -> the only modules that may import it
CLIENTS = {
    "prometheus_api_client": {"tools/prometheus.py"},
    "git": {"tools/gitops.py", "tools/seed.py"},   # seed.py: the demo's bare remote, built with the same client
    "kubernetes": {"tools/kube.py"},
    "slack_sdk": {"tools/slack.py"},
    "openai": {"tools/llm.py"},
    "github": {"tools/providers/github.py"},
    "gitlab": {"tools/providers/gitlab.py"},
}
IO_MODULES = {"requests", "socket", "subprocess", "sqlalchemy", "urllib", "http", "os", "pathlib"}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
    return out


def _sources() -> list[Path]:
    return sorted(p for room in ROOMS for p in (REPO / room).rglob("*.py") if "migrations" not in p.parts)


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(REPO)))
def test_rooms_import_only_what_design_allows(path: Path) -> None:
    rel = path.relative_to(REPO).as_posix()
    room = rel.split("/")[0]
    for mod in _imports(path):
        top = mod.split(".")[0]
        if top in ROOMS:
            assert top in MAY_IMPORT[room], f"{rel} imports {mod}: {room}/ may import only {sorted(MAY_IMPORT[room])}"
        if top in CLIENTS:
            assert rel in CLIENTS[top], f"{rel} imports {mod}: only {sorted(CLIENTS[top])} may"
        if rel.startswith("tools/detectors/"):
            assert top not in IO_MODULES and top not in CLIENTS, f"{rel} imports {mod}: detectors are pure (no I/O)"
        if room == "tools" and top == "memory":
            assert mod == "memory.records", f"{rel} imports {mod}: tools may use memory's records only"
