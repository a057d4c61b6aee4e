"""The composition root: the one place that turns Settings into adapters."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TypedDict

from langgraph.checkpoint.memory import InMemorySaver

from agents.checkpoint import open_checkpointer
from agents.config import ConfigError, Settings, read_secret
from agents.deps import Checkpointer, Deps, log_progress
from agents.planners.ledger import KVUsageLedger
from agents.planners.llm import LLMPlanner
from memory.errors import StoreMissing
from memory.store import Store
from playbooks.loader import load_playbooks
from tools.anchors import GitAnchors, Signer
from tools.auditlog import JsonLinesAuditLog
from tools.embeddings import EmbeddingFiles
from tools.errors import PermanentError
from tools.gitops import GitRepo
from tools.llm import OpenAIChat  # imports openai itself on first use
from tools.prometheus import PrometheusSource
from tools.protocols import MetricsSource, PullRequests
from tools.providers.local import LocalProvider
from tools.replay import ReplaySource
from tools.slack import SlackNotifier, SlackSignature


def open_store(settings: Settings) -> Store:
    """The store, created and migrated when it does not exist yet (cycles, the daemon)."""
    return Store.open(settings.memory.url)


def open_existing_store(settings: Settings) -> Store:
    """The store for commands that only read or decide: StoreMissing when there is none."""
    return Store.open_existing(settings.memory.url)


def build_metrics(settings: Settings, *, replay_shift_to: datetime | None = None) -> MetricsSource:
    p = settings.prometheus
    scrape = int(p.scrape_interval.total_seconds())
    if p.replay_file is not None:
        if replay_shift_to is None and p.replay_ends_now:
            replay_shift_to = datetime.now(UTC)
        return ReplaySource(path=p.replay_file, lookback_s=max(300, 2 * scrape), scrape_interval_s=scrape,
                            shift_to=replay_shift_to)
    return PrometheusSource(url=p.url, timeout_s=p.timeout_s, scrape_interval_s=scrape, queries=p.queries,
                            retries=p.retries)


class HostedSettings(TypedDict):
    """What a hosted provider (GitHub, GitLab) is built from."""

    remote: str
    base: str
    workdir: Path
    author_name: str
    author_email: str
    repository: str
    token: str
    api_url: str | None
    approval_label: str
    merge_method: str


def build_provider(settings: Settings) -> PullRequests:
    g = settings.gitops
    workdir = settings.workdir / "pr"
    if g.provider == "local":
        return LocalProvider(remote=g.remote, base=g.branch, workdir=workdir, author_name=g.author_name,
                             author_email=g.author_email)
    token = read_secret(g.token, g.token_file)
    if not token:
        raise ConfigError(f"gitops.provider is {g.provider} but no token: set REMEDIATOR_GITOPS__TOKEN or gitops.token_file")
    assert g.repository is not None  # validated with the settings
    hosted = HostedSettings(remote=g.remote, base=g.branch, workdir=workdir, author_name=g.author_name,
                            author_email=g.author_email, repository=g.repository, token=token, api_url=g.api_url,
                            approval_label=g.approval_label, merge_method=g.merge_method)
    try:
        if g.provider == "github":
            from tools.providers.github import GitHubProvider  # the host's client only where it is configured

            return GitHubProvider(**hosted)
        from tools.providers.gitlab import GitLabProvider  # the host's client only where it is configured

        return GitLabProvider(**hosted)
    except PermanentError as e:
        raise ConfigError(f"gitops ({g.provider}): {e}") from None


def build_notifier(settings: Settings) -> SlackNotifier | None:
    if not settings.slack.enabled:
        return None
    token = read_secret(settings.slack.bot_token, settings.slack.bot_token_file)
    if not token:
        raise ConfigError("slack.enabled is true but no token: set REMEDIATOR_SLACK__BOT_TOKEN or slack.bot_token_file")
    return SlackNotifier(token=token, base_url=settings.slack.api_url)


def build_slack_signature(settings: Settings, clock: Callable[[], float]) -> SlackSignature | None:
    """The check of Slack's request signatures (None when Slack is off)."""
    if not settings.slack.enabled:
        return None
    secret = read_secret(settings.slack.signing_secret, settings.slack.signing_secret_file)
    if not secret:
        raise ConfigError("slack.enabled is true but no signing secret: set REMEDIATOR_SLACK__SIGNING_SECRET "
                          "or slack.signing_secret_file")
    return SlackSignature(secret, clock=clock)


def build_planner(settings: Settings, store: Store) -> LLMPlanner:
    s = settings.llm
    llm = None
    if s.provider == "openai":
        llm = OpenAIChat(base_url=s.base_url, model=str(s.model), api_key=read_secret(s.api_key, s.api_key_file) or "none",
                         timeout_s=s.timeout_s, max_tokens=s.max_tokens, structured=s.structured)
    return LLMPlanner(llm, budget_tokens_per_incident=s.budget_tokens_per_incident,
                      price_per_1k_tokens=s.price_per_1k_prompt_tokens,
                      price_per_1k_completion_tokens=s.price_per_1k_completion_tokens,
                      monthly_budget_usd=s.monthly_budget_usd, ledger=KVUsageLedger(store.get_kv, store.set_kv))


def build_ui_token(settings: Settings) -> str | None:
    """The review UI's bearer token (env REMEDIATOR_HTTP__UI_TOKEN or http.ui_token_file), or None."""
    token = read_secret(settings.http.ui_token, settings.http.ui_token_file)
    if token is not None and len(token) < 16:
        raise ConfigError("http.ui_token_file: the review UI token must be at least 16 characters "
                          "(e.g. openssl rand -hex 32)")
    return token


def build_repo(settings: Settings) -> GitRepo:
    g = settings.gitops
    return GitRepo(remote=g.remote, branch=g.branch, workdir=settings.workdir / "repo",
                   policies_dir=g.policies_dir, author_name=g.author_name, author_email=g.author_email)


def build_deps(settings: Settings, *, store: Store | None = None, dry_run: bool = False,
               on_progress: Callable[[str], None] | None = None, replay_shift_to: datetime | None = None,
               on_preview: Callable[[str], None] | None = None) -> Deps:
    if dry_run:   # works on a scratch copy: the real store (and its cursor) stay exactly as they were
        store = dry_run_store(settings, store)
    store = store or open_store(settings)
    # outside a cycle (a decision) the approval threads are opened from here; a dry run keeps them in memory
    checkpoints: Callable[[], AbstractContextManager[Checkpointer]] = partial(cycle_checkpointer, settings,
                                                                                 dry_run=dry_run)
    return Deps(
        settings=settings,
        store=store,
        metrics=build_metrics(settings, replay_shift_to=replay_shift_to),
        repo=build_repo(settings),
        prs=build_provider(settings),
        auditlog=JsonLinesAuditLog(paths=[Path(p) for p in settings.auditlog.paths]),
        playbooks=load_playbooks(),
        notifier=build_notifier(settings),
        planner=build_planner(settings, store),
        anchors=build_anchors(settings),
        embeddings=EmbeddingFiles(),
        dry_run=dry_run,
        open_checkpointer=checkpoints,
        on_progress=on_progress or log_progress,
        on_preview=on_preview,
    )


def build_anchors(settings: Settings, *, workdir: Path | None = None) -> GitAnchors | None:
    """Where the audit chain head is anchored: the GitOps remote (None with ``audit.anchors: false``)."""
    a, g = settings.audit, settings.gitops
    if not a.anchors:
        return None
    try:
        signer = Signer(a.signing_key_file) if a.signing_key_file is not None else None
    except PermanentError as e:
        raise ConfigError(str(e)) from None
    return GitAnchors(remote=g.remote, workdir=workdir or settings.workdir / "anchors", author_name=g.author_name,
                      author_email=g.author_email, signer=signer)


def dry_run_store(settings: Settings, store: Store | None = None) -> Store:
    """A scratch SQLite copy of the store (empty when there is no store yet), removed at exit."""
    folder = Path(tempfile.mkdtemp(prefix="remediator-dry-run-"))
    atexit.register(shutil.rmtree, folder, True)
    path = folder / "state.db"
    if store is not None:
        return store.scratch_copy(path)
    try:
        real = Store.open_existing(settings.memory.url)
    except StoreMissing:
        return Store.open(f"sqlite:///{path}")
    try:
        return real.scratch_copy(path)
    finally:
        real.close()


def cycle_checkpointer(settings: Settings, *, dry_run: bool = False) -> AbstractContextManager[Checkpointer]:
    """Where a cycle keeps its LangGraph checkpoints: in memory for a dry run (nothing is written)."""
    return nullcontext(InMemorySaver()) if dry_run else open_checkpointer(settings)


def checkpoint_path(settings: Settings) -> Path:
    return settings.checkpoint_path
