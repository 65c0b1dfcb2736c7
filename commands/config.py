"""The environment map (`cutover.toml`): its shape is part of the outside interface.

Tokens and signing secrets never live here; they come from environment variables (see `Tokens`).
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from commands.registry import APPROVABLE

DEFAULT_CONFIG_PATH = "cutover.toml"
REQUIRED_SECRETS = (
    "richpanel_api_key",
    "richpanel_webhook_token",
    "richpanel_bot_agent_id",
    "openai_api_key",
    "shopify_admin_api_token",
)
DEFAULT_ALARM_KINDS = ("shopify-429s", "worker-error-rate", "openai-failures", "token-refresh-errors")

SlackId = Annotated[str, Field(pattern=r"^[UWS][A-Z0-9]{2,}$")]  # users (U/W) and user groups (S)
SlackUserId = Annotated[str, Field(pattern=r"^[UW][A-Z0-9]{2,}$")]  # a person, not a group
GitHubLogin = Annotated[str, Field(pattern=r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")]


class ConfigError(Exception):
    """An invalid or missing environment map: the message names the file, the key and what is wrong."""


class _Strict(BaseModel):
    # Unknown keys are typos until proven otherwise: refuse them rather than ignore a setting.
    model_config = ConfigDict(extra="forbid", frozen=True)


Minutes = Annotated[float, Field(gt=0, le=24 * 60)]  # fractional: 0.1 is 6 s (tests and the demo run short)


class SsmFlag(_Strict):
    ssm_parameter: str
    propagation_seconds: float = Field(300, ge=0, le=3600)  # how long the worker may keep an old value cached


class LambdaEnvFlag(_Strict):
    lambda_env: str = "RICHPANEL_OUTBOUND_ENABLED"
    propagation_seconds: float = Field(300, ge=0, le=3600)


class CanarySettings(_Strict):
    processed_marker: str = "order_status_processed"  # logged with ticket_id=<id> per handled ticket
    outbound_marker: str = "outbound_message_sent"  # logged with ticket_id=<id> when a customer is contacted
    timeout_minutes: Minutes = 10  # wait this long for the processed line
    confirm_timeout_minutes: Minutes = 15  # wait this long for a person's confirmation


class WatchSettings(_Strict):
    minutes: Minutes = 15  # watch the alarms and the worker's Errors this long after enable-outbound
    poll_seconds: float = Field(10, gt=0, le=600)
    insufficient_data: Literal["warn", "fail"] = "warn"
    max_errors: int = Field(0, ge=0)  # the worker's Errors summed over the watch above this rolls back


class RollbackSettings(_Strict):
    quiet_minutes: Minutes = 5  # no worker invocations for this long proves the stop


class Endpoints(_Strict):
    """Real hosts by default; the sandbox points them at loopback."""

    shopify: str | None = None  # default: https://<shop_domain>
    richpanel: str = "https://api.richpanel.com"
    openai: str | None = None  # default: OPENAI_BASE_URL, else https://api.openai.com/v1

    @field_validator("shopify", "richpanel", "openai")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^\s/]+", v):
            raise ValueError("must be an http(s) URL")
        return v.rstrip("/") if v else v


class HttpTarget(_Strict):
    url: str
    auth_header_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class MaxAges(_Strict):
    preflight: Minutes = 60
    canary: Minutes = 60


class ShopifySettings(_Strict):
    api_version: str = Field("2026-10", pattern=r"^\d{4}-\d{2}$")
    # How a rejected token is refreshed: re-read the secret (another process may have rotated it),
    # or exchange app credentials (client_credentials grant; needs the two secrets below).
    refresh: Literal["reread", "client_credentials"] = "reread"
    client_id_secret: str | None = None
    client_secret_secret: str | None = None

    @model_validator(mode="after")
    def _grant_needs_credentials(self) -> ShopifySettings:
        if self.refresh == "client_credentials" and not (self.client_id_secret and self.client_secret_secret):
            raise ValueError("refresh = 'client_credentials' needs client_id_secret and client_secret_secret")
        return self


class EnvConfig(_Strict):
    aws_account_id: str = Field(pattern=r"^\d{12}$")
    aws_region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    shop_domain: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*\.myshopify\.com$")
    worker_function: str
    worker_log_group: str
    refresh_marker: str = "shopify_token_refresh_success"
    refresh_max_age_hours: float = Field(8, gt=0)
    alarms: list[str] = Field(min_length=1)
    outbound_flag: SsmFlag | LambdaEnvFlag
    internal_test_address: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    runners: list[SlackId] = Field(default_factory=list)
    approvers: list[SlackId] = Field(default_factory=list)
    # GitHub login -> Slack user id: who may type a command as a pull request comment (the mapped person
    # must be a runner, and a member or collaborator with write access); also names a manual dispatcher
    github_logins: dict[GitHubLogin, SlackUserId] = Field(default_factory=dict)
    approval_required: list[str] = Field(default_factory=lambda: ["canary", "enable-outbound"])
    max_age_minutes: MaxAges = Field(default_factory=MaxAges)
    approval_ttl_minutes: Minutes = 30  # an approval request expires
    canary: CanarySettings = Field(default_factory=CanarySettings)
    watch: WatchSettings = Field(default_factory=WatchSettings)
    rollback: RollbackSettings = Field(default_factory=RollbackSettings)
    secrets: dict[str, str]
    endpoints: Endpoints = Field(default_factory=Endpoints)
    richpanel_http_target: HttpTarget | None = None
    shopify: ShopifySettings = Field(default_factory=ShopifySettings)
    check_timeout_s: float = Field(20.0, gt=0, le=300)
    http_timeout_s: float = Field(10.0, gt=0, le=120)

    @field_validator("approval_required")
    @classmethod
    def _approvable(cls, v: list[str]) -> list[str]:
        wrong = [name for name in v if name not in APPROVABLE]
        if wrong:
            raise ValueError(f"{', '.join(wrong)} cannot need an approval (approvable: {', '.join(APPROVABLE)})")
        return v

    @field_validator("secrets")
    @classmethod
    def _required_secrets(cls, v: dict[str, str]) -> dict[str, str]:
        missing = [name for name in REQUIRED_SECRETS if name not in v]
        if missing:
            raise ValueError(f"missing required secret ids: {', '.join(missing)}")
        return v

    def shopify_url(self) -> str:
        return self.endpoints.shopify or f"https://{self.shop_domain}"

    def openai_url(self) -> str:
        return self.endpoints.openai or os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1").rstrip("/")


class GitHubConfig(_Strict):
    repo: str | None = Field(None, pattern=r"^[\w.-]+/[\w.-]+$")
    default_pr: int | None = Field(None, gt=0)
    # executor = "github-actions": the workflow the Slack app dispatches, and the branch it runs from
    # (the workflow and the map come from this ref, never from a pull request's branch)
    workflow: str = Field("cutover.yml", pattern=r"^[\w.-]+\.ya?ml$")
    ref: str = Field("main", min_length=1, max_length=255, pattern=r"^[^\s~^:?*\[\\]+$")

    def repository(self) -> str | None:
        return os.environ.get("GITHUB_REPOSITORY") or self.repo


class SlackConfig(_Strict):
    channel: str | None = None


class CutoverConfig(_Strict):
    evidence_dir: str = "evidence"
    state: str = "sqlite:///var/cutover.db"
    executor: Literal["local", "github-actions"] = "local"
    max_concurrency: int = Field(16, ge=1, le=64)  # checks in flight within one run (mostly waiting on I/O)
    # Runs in flight at once in the Slack app (each in a worker process); more queue. Sized by CPUs:
    # runs are CPU bursts, and past that they only slow the acks (bench/ack.py --sandbox).
    max_concurrent_runs: int | None = Field(None, ge=1, le=64)

    def concurrent_runs(self) -> int:
        return self.max_concurrent_runs or max(2, 2 * (os.cpu_count() or 1))

    github: GitHubConfig = Field(default_factory=GitHubConfig)
    slack: SlackConfig = Field(default_factory=SlackConfig)
    envs: dict[str, EnvConfig] = Field(min_length=1)

    @field_validator("envs")
    @classmethod
    def _env_names(cls, v: dict[str, EnvConfig]) -> dict[str, EnvConfig]:
        for name in v:
            if not re.fullmatch(r"[a-z][a-z0-9-]{0,31}", name):
                raise ValueError(f"environment name {name!r} must be lower-case letters, digits and '-'")
        return v

    def env(self, name: str) -> EnvConfig:
        if name not in self.envs:
            known = ", ".join(sorted(self.envs))
            shown = repr(name) if len(name) <= 40 else f"{name[:40]!r}… ({len(name)} characters)"  # never a 10 kB echo
            raise ConfigError(f"unknown environment {shown}; this map has: {known}")
        return self.envs[name]


class Tokens(BaseSettings):
    """Tokens come only from the process environment, never from the map."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    slack_bot_token: str | None = None
    slack_signing_secret: str | None = None
    slack_app_token: str | None = None
    slack_api_url: str | None = None
    github_token: str | None = None
    github_api_url: str = "https://api.github.com"


def config_path() -> Path:
    return Path(os.environ.get("CUTOVER_CONFIG", DEFAULT_CONFIG_PATH))


def load_config(path: Path | str | None = None) -> CutoverConfig:
    """Read and validate the map; any problem is one ConfigError naming file, key and what is wrong."""
    path = Path(path) if path is not None else config_path()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file (set CUTOVER_CONFIG, or copy cutover.example.toml to cutover.toml)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return CutoverConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{_key(err['loc'])}: {_message(err)}" for err in exc.errors())
        raise ConfigError(f"{path}: {problems}") from None


def _key(loc: tuple[int | str, ...]) -> str:
    # Union members show up in pydantic's path (e.g. "SsmFlag"); a user only knows the TOML keys.
    parts = [str(p) for p in loc if not (isinstance(p, str) and p[:1].isupper())]
    return ".".join(parts) or "(top level)"


def _message(err: dict) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key (a typo?)"
    if err["type"] == "missing":
        return "required key is missing"
    return str(err["msg"]).removeprefix("Value error, ")
