"""The local provider tells a PR's diff from its commits (the review UI shows it), after the merge
too, and None for commits it cannot know."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import git
import pytest

from agents.demo import prepare_workspace
from tools.providers.local import LocalProvider

pytestmark = pytest.mark.integration
FILE = "apps/ml-serving/image-captioner.yaml"


def test_local_pr_diff(tmp_path: Path) -> None:
    (tmp_path / "ws").mkdir()
    _, _, remote = prepare_workspace(tmp_path / "ws", datetime.now(UTC).replace(microsecond=0))
    text = (git.Repo(remote).heads["main"].commit.tree / FILE).data_stream.read().decode()
    assert "maxReplicas: 6" in text
    prov = LocalProvider(remote=str(remote), base="main", workdir=tmp_path / "clone")
    res = prov.publish(branch="remediator/test/diff", title="t", body="b", message="m", incident_ids=["inc-1"],
                       files={FILE: text.replace("maxReplicas: 6", "maxReplicas: 3")})
    diff = prov.diff(pr=res.pr)
    assert diff is not None and f"--- a/{FILE}" in diff and "-    maxReplicas: 6" in diff and "+    maxReplicas: 3" in diff
    merged = prov.merge(pr=res.pr)
    assert prov.diff(pr=merged) == diff   # the branch is gone; its commits are still known
    fresh = LocalProvider(remote=str(remote), base="main", workdir=tmp_path / "other-clone")
    assert fresh.diff(pr=merged) == diff   # another clone fetches them (merged into main)
    assert prov.diff(pr=merged.model_copy(update={"head_sha": "0" * 40})) is None
    assert prov.diff(pr=merged.model_copy(update={"base_sha": None})) is None
