"""Shared test setup: no global git identity, no REMEDIATOR_* leaking in from the environment.
`--live` runs the LLM evals against the real endpoint named by REMEDIATOR_LLM__BASE_URL/MODEL/API_KEY."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parent.parent

# tests/run.sh (CI) uses the "ci" profile: the same examples on every run, so a CI result does not
# depend on the draw. Plain `pytest` keeps hypothesis' random exploration, which is how new
# counterexamples are found (then pinned with @example).
settings.register_profile("ci", derandomize=True)


@pytest.fixture(autouse=True, scope="session")
def _isolated_env(tmp_path_factory: pytest.TempPathFactory):
    gitcfg = tmp_path_factory.mktemp("gitcfg") / "gitconfig"
    gitcfg.write_text("")
    saved = dict(os.environ)
    for k in list(os.environ):
        if k.startswith("REMEDIATOR_"):
            del os.environ[k]
    os.environ.update({"GIT_CONFIG_GLOBAL": str(gitcfg), "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"})
    yield
    os.environ.clear()
    os.environ.update(saved)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--live", action="store_true", default=False,
                     help="run the LLM evals against the real OpenAI-compatible endpoint from REMEDIATOR_LLM__*")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--live", default=False):
        os.environ["REMEDIATOR_EVAL_LIVE"] = "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The scenario tests first: they are the longest, so with several test processes they start
    at once and the short tests fill in around them."""
    items.sort(key=lambda item: item.get_closest_marker("scenario") is None)
