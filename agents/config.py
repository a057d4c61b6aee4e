"""Daemon configuration: typed, bounded, documented. Loaded only by the CLI and handed on.

A YAML file gives the values; any key can be overridden by an environment variable
``REMEDIATOR_<SECTION>__<KEY>`` (e.g. ``REMEDIATOR_PROMETHEUS__URL``). Secrets (tokens,
API keys) are accepted only from the environment or from a ``*_file`` path, never inline.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from tools.errors import scrub, without_userinfo

_DURATION = re.compile(r"^\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?\s*$")


def parse_duration(value: Any) -> timedelta:
    """``90s``, ``5m``, ``1h30m``, ``7d`` or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=float(value))
    m = _DURATION.match(str(value))
    if not m or not any(m.groups()):
        raise ValueError(f"{value!r} is not a duration; write e.g. 90s, 5m, 1h30m or 7d")
    d, h, mi, s = (int(g or 0) for g in m.groups())
    return timedelta(days=d, hours=h, minutes=mi, seconds=s)


def http_url(value: Any) -> Any:
    """A base URL of an HTTP API (Prometheus, the LLM endpoint, a Git host or Slack API): http(s)://host...
    ``None`` passes (the default applies)."""
    if value is None:
        return value
    parts = urlsplit(str(value))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http:// or https:// URL with a host, e.g. http://prometheus:9090")
    return value


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PrometheusSettings(Section):
    url: str = Field(default="http://127.0.0.1:9090", description="Prometheus base URL")
    timeout_s: float = Field(default=30, gt=0, le=600, description="per-query timeout")
    scrape_interval: timedelta = Field(default=timedelta(seconds=60), description="rate windows are at least 4x this")
    retries: int = Field(default=3, ge=0, le=10)
    queries: dict[str, str] = Field(default_factory=dict, description="override default PromQL per signal")
    replay_file: Path | None = Field(default=None, description="read an OpenMetrics file instead of Prometheus (demo, tests)")
    replay_ends_now: bool = Field(default=False, description="shift the replayed samples so the last one is the cycle's start")

    _dur = field_validator("scrape_interval", mode="before")(lambda v: parse_duration(v))
    _url = field_validator("url")(lambda v: http_url(v))


class GitOpsSettings(Section):
    remote: str = Field(..., description="URL or path of the GitOps repository")
    branch: str = Field(default="main", min_length=1)
    provider: Literal["local", "github", "gitlab"] = "local"
    workdir: Path | None = Field(default=None, description="where clones live; default beside the state DB")
    author: str = Field(default="remediator <remediator@localhost>", description="commit identity of the bot")
    policies_dir: str = "policies"
    repository: str | None = Field(default=None, description="github: owner/name; gitlab: group/project (path or numeric id)")
    api_url: str | None = Field(default=None, description="API base URL (GitHub Enterprise / self-hosted GitLab); default public")
    merge_method: Literal["merge", "squash", "rebase", "label"] = Field(
        default="merge", description="how an approval lands: merge through the provider, or add the approval label")
    approval_label: str = "remediator-approved"
    token_file: Path | None = Field(default=None, description="file holding the provider token (github/gitlab)")
    token: SecretStr | None = Field(default=None, description="provider token; env REMEDIATOR_GITOPS__TOKEN only")

    _url = field_validator("api_url")(lambda v: http_url(v))

    @property
    def author_name(self) -> str:
        return self.author.split("<")[0].strip() or "remediator"

    @property
    def author_email(self) -> str:
        m = re.search(r"<([^>]+)>", self.author)
        return m.group(1) if m else "remediator@localhost"


class AuditLogSettings(Section):
    paths: list[Path] = Field(default_factory=list)
    initial_lookback: timedelta = Field(default=timedelta(hours=1), description="what the first run reads")

    _dur = field_validator("initial_lookback", mode="before")(lambda v: parse_duration(v))


class MemorySettings(Section):
    url: str = Field(default="sqlite:////var/lib/remediator/state.db", description="sqlite:////abs/path or postgresql://...")
    keep_cycle_checkpoints: int = Field(default=10, ge=1, le=10000, description=(
        "LangGraph checkpoints are kept for this many most recent finished cycles (older ones are pruned)"))

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not (v.startswith("sqlite:") or v.startswith("postgresql")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return v

    @property
    def sqlite_path(self) -> Path | None:
        if self.url.startswith("sqlite:///"):
            return Path(self.url[len("sqlite:///"):])
        return None


class LLMSettings(Section):
    provider: Literal["none", "openai"] = "none"
    base_url: str | None = None
    model: str | None = None
    timeout_s: float = Field(default=30, gt=0, le=600)
    max_tokens: int = Field(default=1024, ge=16, le=32768)
    api_key: SecretStr | None = Field(default=None, description="env REMEDIATOR_LLM__API_KEY only")
    api_key_file: Path | None = None
    structured: Literal["json_schema", "tool"] = Field(default="json_schema", description="how the answer's schema is asked for")
    budget_tokens_per_incident: int = Field(default=8000, ge=256, le=1_000_000)
    price_per_1k_prompt_tokens: float = Field(default=0.0, ge=0, description="USD, for the agent's own FinOps")
    price_per_1k_completion_tokens: float | None = Field(default=None, ge=0, description="USD; default = the prompt price")
    monthly_budget_usd: float | None = Field(default=None, ge=0, description="past it the deterministic planner decides")

    _url = field_validator("base_url")(lambda v: http_url(v))


class SlackSettings(Section):
    enabled: bool = False
    channel: str = "#remediator"
    bot_token: SecretStr | None = Field(default=None, description="env REMEDIATOR_SLACK__BOT_TOKEN only")
    bot_token_file: Path | None = None
    signing_secret: SecretStr | None = Field(default=None, description="env REMEDIATOR_SLACK__SIGNING_SECRET only")
    signing_secret_file: Path | None = None
    approvers: list[str] = Field(default_factory=list)
    api_url: str | None = Field(default=None, description="Slack Web API base URL (proxy / Enterprise Grid); default Slack's")

    _url = field_validator("api_url")(lambda v: http_url(v))


class SchedulerSettings(Section):
    interval: timedelta = Field(default=timedelta(minutes=5), description="time between cycle starts")

    _dur = field_validator("interval", mode="before")(lambda v: parse_duration(v))

    @field_validator("interval")
    @classmethod
    def _min(cls, v: timedelta) -> timedelta:
        if v < timedelta(seconds=10):
            raise ValueError("must be at least 10s")
        return v


# an incident resolves after this long without its finding, unless detection.resolve_after says otherwise: a
# noisy cost series dips under its gate for a cycle or two while the excursion goes on, and with 15 min
# (min_duration) 422 of 538 incidents on NAB's AWS series were the same excursion reopened, each one a PR
# closed and opened again (bench/README.md, "One deciding path")
DEFAULT_RESOLVE_AFTER = timedelta(hours=1)


class DetectionSettings(Section):
    min_duration: timedelta = Field(default=timedelta(minutes=15), description="shorter cost excursions are noise")
    resolve_after: timedelta | None = Field(
        default=None, description="an incident whose finding stayed away this long resolves (unset: 1h, or "
                                  "min_duration if longer); longer keeps a flapping signal one incident, like "
                                  "Prometheus' keep_firing_for")
    history: timedelta = Field(default=timedelta(days=7), description="how much metric history a cycle reads")
    cost_min_ratio: float = Field(default=1.3, gt=1.0, le=100, description="cost must exceed its baseline by this factor")
    cost_z: float = Field(default=4.0, gt=0, le=100, description="and by this many robust standard deviations")
    drift_min_samples: int = Field(default=200, ge=1, description="predictions needed on each side before drift is judged")
    fairness_min_group: int = Field(default=100, ge=1, description="outcomes needed per group")

    _dur = field_validator("min_duration", "history", mode="before")(lambda v: parse_duration(v))
    _resolve = field_validator("resolve_after", mode="before")(lambda v: None if v is None else parse_duration(v))

    @property
    def quiet_before_resolve(self) -> timedelta:
        return self.resolve_after if self.resolve_after is not None else max(self.min_duration, DEFAULT_RESOLVE_AFTER)


class VerifySettings(Section):
    grace: timedelta = Field(default=timedelta(minutes=15), description="time after a merge for Argo CD / Flux to apply it")
    failed_checks: int = Field(default=3, ge=1, le=100, description="cycles still firing after the grace before a revert PR")
    worse_factor: float = Field(default=1.1, gt=1.0, le=10, description="signal this much worse than at approval: revert at once")

    _dur = field_validator("grace", mode="before")(lambda v: parse_duration(v))


class AuditSettings(Section):
    anchor_interval: timedelta = Field(default=timedelta(hours=1), description=(
        "how often the audit chain head is anchored in the GitOps remote (0s: every cycle that added entries)"))
    signing_key_file: Path | None = Field(default=None, description=(
        "Ed25519 private key (PEM) that signs the anchors; audit verify checks their signatures with it"))
    anchors: bool = Field(default=True, description="write and check anchors in the GitOps remote")

    _dur = field_validator("anchor_interval", mode="before")(lambda v: parse_duration(v))


class HTTPSettings(Section):
    """Where ``serve`` (review UI, Slack, /metrics) and the ``daemon`` (/metrics, /healthz, /readyz) listen,
    and who may decide in the review UI."""

    host: str = Field(default="127.0.0.1", min_length=1, description="address serve and daemon listen on")
    port: int = Field(default=8080, ge=1, le=65535, description="port of `remediator serve`")
    daemon_port: int = Field(default=9464, ge=0, le=65535, description=(
        "port of the daemon's /metrics, /healthz, /readyz (0: not served)"))
    ui_token: SecretStr | None = Field(default=None, description="env REMEDIATOR_HTTP__UI_TOKEN only")
    ui_token_file: Path | None = Field(default=None, description="file holding the review UI's bearer token")
    ui_token_user: str = Field(default="token", min_length=1, max_length=100, description=(
        "who a decision taken with the bearer token is recorded as (ui:<this>)"))
    ui_require_sign_in: bool = Field(default=False, description=(
        "the review UI's pages too (not only its decisions) need a signed-in user"))
    trusted_user_header: str | None = Field(default=None, description=(
        "header set by an authenticating proxy (e.g. X-Forwarded-User); believed only from trusted_proxies"))
    trusted_proxies: list[str] = Field(default_factory=lambda: ["127.0.0.1", "::1"], description=(
        "addresses or CIDRs of the proxies whose trusted_user_header is believed"))

    @model_validator(mode="after")
    def _sign_in_possible(self) -> HTTPSettings:
        if self.ui_require_sign_in and self.ui_token is None and self.ui_token_file is None \
                and self.trusted_user_header is None:
            raise ValueError("ui_require_sign_in needs a way to sign in: http.ui_token_file or http.trusted_user_header")
        return self

    @field_validator("trusted_user_header")
    @classmethod
    def _header(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9-]{1,100}", v):
            raise ValueError("must be an HTTP header name (letters, digits, dashes), e.g. X-Forwarded-User")
        return v

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, v: list[str]) -> list[str]:
        import ipaddress

        for item in v:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR") from None
        return v


class Settings(BaseSettings):
    """The whole daemon config. Unknown keys are errors (a typo must not be silently ignored)."""

    model_config = SettingsConfigDict(
        env_prefix="REMEDIATOR_", env_nested_delimiter="__", extra="forbid", case_sensitive=False,
    )

    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)
    gitops: GitOpsSettings
    auditlog: AuditLogSettings = Field(default_factory=AuditLogSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    slack: SlackSettings = Field(default_factory=SlackSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    detection: DetectionSettings = Field(default_factory=DetectionSettings)
    verify: VerifySettings = Field(default_factory=VerifySettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    http: HTTPSettings = Field(default_factory=HTTPSettings)

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)  # env overrides the file

    @model_validator(mode="after")
    def _paths(self) -> Settings:
        if self.llm.provider == "openai" and not self.llm.model:
            raise ValueError("llm.model is required when llm.provider is openai")
        if self.gitops.provider != "local" and not self.gitops.repository:
            raise ValueError(f"gitops.repository is required when gitops.provider is {self.gitops.provider}")
        return self

    @property
    def state_dir(self) -> Path:
        p = self.memory.sqlite_path
        if p is not None:
            return p.parent
        base = str(state_home())
        return Path(base) / "remediator"

    @property
    def checkpoint_path(self) -> Path:
        return self.state_dir / "checkpoints.sqlite"

    @property
    def workdir(self) -> Path:
        if self.gitops.workdir is not None:
            return self.gitops.workdir
        remote, _, _ = without_userinfo(self.gitops.remote)   # a password never names a folder
        slug = re.sub(r"[^A-Za-z0-9]+", "-", remote).strip("-")[-60:]
        return self.state_dir / "git" / slug


SECRET_KEYS = {("gitops", "token"), ("llm", "api_key"), ("slack", "bot_token"), ("slack", "signing_secret"),
               ("http", "ui_token")}


class ConfigError(Exception):
    """Bad config or usage: one line naming the file and key. Exit code 2."""


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if not str(p).startswith("function-")) or "(top level)"


def load_settings(path: Path | str) -> Settings:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"config {path}: cannot read ({e.strerror}); pass --config FILE") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config {path}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path}: top level must be a mapping of sections (prometheus, gitops, ...)")
    for section, key in SECRET_KEYS:
        if isinstance(data.get(section), dict) and key in data[section]:
            env = f"REMEDIATOR_{section.upper()}__{key.upper()}"
            raise ConfigError(
                f"config {path}: {section}.{key}: secrets are not accepted in the config file; "
                f"set {env} or {section}.{key}_file"
            )
    return validate_settings(data, source=str(path))


MAX_PROBLEMS_SHOWN = 5   # every problem of a config at once (one line), so a fix is not one run per key


def validate_settings(data: dict[str, Any], *, source: str = "config") -> Settings:
    try:
        return Settings(**data)
    except ValidationError as e:
        errs = e.errors()
        shown = "; ".join(_problem(err) for err in errs[:MAX_PROBLEMS_SHOWN])
        more = f" [+{len(errs) - MAX_PROBLEMS_SHOWN} more]" if len(errs) > MAX_PROBLEMS_SHOWN else ""
        raise ConfigError(f"config {source}: {shown}{more}") from None


def _problem(err: Any) -> str:
    """One validation error as 'key: what is wrong (got value)'."""
    key = _loc(err["loc"])
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key (check the spelling; see `remediator --help` and the README's config section)"
    elif err["type"] == "missing":
        msg = "required key is missing"
    got = err.get("input")
    if isinstance(got, str):
        got = scrub(got)   # a rejected URL may hold user:password@
    extra = f" (got {got!r})" if err["type"] not in ("extra_forbidden", "missing") and not isinstance(got, dict) else ""
    return f"{key}: {msg}{extra}"


def read_secret(value: SecretStr | None, file: Path | None) -> str | None:
    if value is not None:
        return value.get_secret_value()
    if file is not None:
        try:
            return file.read_text().strip()
        except OSError as e:
            raise ConfigError(f"cannot read secret file {file}: {e.strerror}") from None
    return None


# --------------------------------------------------------------------------- the environment
# Besides the REMEDIATOR_<SECTION>__<KEY> settings, the only environment the program reads.

def state_home() -> Path:
    """``$XDG_STATE_HOME``, else ``~/.local/state``."""
    return Path(os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state"))


def env_log_level(default: str = "INFO") -> str:
    """``$REMEDIATOR_LOG_LEVEL`` (DEBUG, INFO, WARNING, ERROR)."""
    return os.environ.get("REMEDIATOR_LOG_LEVEL", default).upper()


def env_log_format() -> str:
    """``$REMEDIATOR_LOG_FORMAT``: ``json``, ``text`` or ``auto`` (default: text on a terminal, else JSON)."""
    return os.environ.get("REMEDIATOR_LOG_FORMAT", "auto").lower()


def local_user(default: str = "cli") -> str:
    """Who runs the CLI (``$USER``): the actor of a decision taken without ``--actor``."""
    return os.environ.get("USER", default)
