"""The composition root: the one place that turns Settings into adapters."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from agents.config import ConfigError, Settings, read_secret
from agents.cycle import Deps
from memory.store import Store
from playbooks.loader import load_playbooks
from tools.auditlog import JsonLinesAuditLog
from tools.errors import PermanentError
from tools.gitops import GitRepo
from tools.prometheus import PrometheusSource
from tools.protocols import MetricsSource, Notifier, PullRequests
from tools.providers.local import LocalProvider
from tools.replay import ReplaySource


def open_store(settings: Settings) -> Store:
    return Store.open(settings.memory.url)


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


def build_provider(settings: Settings) -> PullRequests:
    g = settings.gitops
    common = {"remote": g.remote, "base": g.branch, "workdir": settings.workdir / "pr",
              "author_name": g.author_name, "author_email": g.author_email}
    if g.provider == "local":
        return LocalProvider(**common)
    token = read_secret(g.token, g.token_file)
    if not token:
        raise ConfigError(f"gitops.provider is {g.provider} but no token: set REMEDIATOR_GITOPS__TOKEN or gitops.token_file")
    assert g.repository is not None  # validated with the settings
    hosted = {**common, "repository": g.repository, "token": token, "api_url": g.api_url,
              "approval_label": g.approval_label}
    try:
        if g.provider == "github":
            from tools.providers.github import GitHubProvider

            return GitHubProvider(**hosted, merge_method=g.merge_method)
        from tools.providers.gitlab import GitLabProvider

        return GitLabProvider(**hosted, merge_method=g.merge_method)
    except PermanentError as e:
        raise ConfigError(f"gitops ({g.provider}): {e}") from None


def build_notifier(settings: Settings) -> Notifier | None:
    if not settings.slack.enabled:
        return None
    token = read_secret(settings.slack.bot_token, settings.slack.bot_token_file)
    if not token:
        raise ConfigError("slack.enabled is true but no token: set REMEDIATOR_SLACK__BOT_TOKEN or slack.bot_token_file")
    from tools.slack import SlackNotifier

    return SlackNotifier(token=token, base_url=settings.slack.api_url)


def build_planner(settings: Settings, store: Store):  # type: ignore[no-untyped-def]
    from agents.planners.llm import KVUsageLedger, LLMPlanner

    s = settings.llm
    llm = None
    if s.provider == "openai":
        from tools.llm import OpenAIChat

        llm = OpenAIChat(base_url=s.base_url, model=str(s.model), api_key=read_secret(s.api_key, s.api_key_file) or "none",
                         timeout_s=s.timeout_s, max_tokens=s.max_tokens, structured=s.structured)
    return LLMPlanner(llm, budget_tokens_per_incident=s.budget_tokens_per_incident,
                      price_per_1k_tokens=s.price_per_1k_prompt_tokens,
                      price_per_1k_completion_tokens=s.price_per_1k_completion_tokens,
                      monthly_budget_usd=s.monthly_budget_usd, ledger=KVUsageLedger(store.get_kv, store.set_kv))


def build_deps(settings: Settings, *, store: Store | None = None, dry_run: bool = False,
               on_progress: Callable[[str], None] | None = None, replay_shift_to: datetime | None = None) -> Deps:
    g = settings.gitops
    deps = Deps(
        settings=settings,
        store=store or open_store(settings),
        metrics=build_metrics(settings, replay_shift_to=replay_shift_to),
        repo=GitRepo(remote=g.remote, branch=g.branch, workdir=settings.workdir / "repo",
                     policies_dir=g.policies_dir, author_name=g.author_name, author_email=g.author_email),
        prs=build_provider(settings),
        auditlog=JsonLinesAuditLog(paths=[Path(p) for p in settings.auditlog.paths]),
        playbooks=load_playbooks(),
        notifier=build_notifier(settings),
        dry_run=dry_run,
    )
    deps.planner = build_planner(settings, deps.store)
    if on_progress is not None:
        deps.on_progress = on_progress
    return deps


def checkpoint_path(settings: Settings) -> Path:
    return settings.checkpoint_path
