"""Turning a plan's field edits into new file contents: each edit is moved to where its value is
really set (a kustomize overlay patch) and written with the layout-preserving YAML writer."""

from __future__ import annotations

from collections.abc import Sequence

from agents.deps import Deps
from agents.state import CycleState
from memory.records import FieldEdit
from tools import helm, kustomize
from tools.errors import PermanentError


def relocate(deps: Deps, state: CycleState, edits: list[FieldEdit]) -> tuple[list[FieldEdit], list[str], str]:
    """``(edits, notes, problem)``: the edits placed where their values are set when the repo has
    overlays; an ambiguous location is a problem (the caller notifies instead of editing)."""
    snap = state["snapshot"]
    charted = [e for e in edits if any(helm.is_release_key(d) for d in e.deployed)]
    if not (snap.get("effective") or snap.get("rendered") or snap.get("patch_files") or charted):
        return edits, [], ""   # no kustomization includes anything: every value is set where it is read
    tree = kustomize.Tree(deps.repo.read_tree())
    moved: list[FieldEdit] = []
    notes: list[str] = []
    problems: list[str] = []
    for e in charted:   # a Helm release's field: the values layer that sets it
        located, why = helm.locate(tree, e)
        if located is None:
            problems.append(why)
        else:
            moved.append(located)
            notes.append(why)
    rel = kustomize.relocate(tree, [e for e in edits if e not in charted])
    problems += rel.problems
    if problems:
        return edits, [], "; ".join(problems)
    return moved + list(rel.edits), notes + list(rel.notes), ""


def edited_files(deps: Deps, edits: Sequence[FieldEdit], *, must_exist: bool) -> dict[str, str]:
    """Repo path -> new content of every file the edits touch (base branch + edits). With
    ``must_exist`` a file gone from the base branch is a PermanentError, else it counts as empty."""
    files: dict[str, str] = {}
    for fname in sorted({e.file for e in edits}):
        text = deps.repo.read_file(path=fname)
        if text is None:
            if must_exist:
                raise PermanentError(f"{fname} is not in the base branch any more")
            text = ""
        files[fname] = kustomize.apply_edits(text, [e for e in edits if e.file == fname])
    return files
