"""The whole sandbox: moto for AWS, loopback fakes for Shopify, Richpanel and OpenAI, per environment.

It writes an environment map (TOML) whose endpoints point at loopback, seeds AWS with generated
secrets, and plants PII in what the fakes return, so tests can prove none of it escapes.
It returns TOML text rather than a config object: `integrations` never imports `commands`.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from integrations.sandbox.aws import AwsSandbox, AwsSeed
from integrations.sandbox.github import GitHubFake
from integrations.sandbox.iam import IamFake
from integrations.sandbox.openai import OpenAIFake
from integrations.sandbox.richpanel import RichpanelFake
from integrations.sandbox.shopify import ShopifyFake
from integrations.sandbox.slack import SlackFake
from integrations.sandbox.worker import InsightsStall, Lever, SimulatedWorker, WorkerFaults

REPO = "acme/rp-mw"
PR_NUMBER = 7
PR_BRANCH = "cutover/order-status"
CHANNEL = "C0CUTOVER"
RUNNERS_GROUP = "S0CUTOVER"
ENGINEER, MANAGER = "U0ENGINEER", "U0MANAGER1"

MOTO_ACCOUNT_ID = "123456789012"  # moto's default account
BOT_ROLE = "cutover-bot"  # the bot runs as this role, assumed: STS names it as an assumed-role ARN
REGION = "us-east-2"
HEALTHY_FLAGS = {
    "MW_ALLOW_NETWORK_READS": "true",
    "RICHPANEL_READ_ONLY": "true",
    "RICHPANEL_WRITE_DISABLED": "true",
    "RICHPANEL_OUTBOUND_ENABLED": "false",
    "SHOPIFY_OUTBOUND_ENABLED": "true",
    "SHOPIFY_WRITE_DISABLED": "true",
}
SECRET_NAMES = (
    "richpanel_api_key",
    "richpanel_webhook_token",
    "richpanel_bot_agent_id",
    "openai_api_key",
    "shopify_admin_api_token",
)
OUTBOUND_ENV_KEY = "RICHPANEL_OUTBOUND_ENABLED"  # the `lambda_env` form's key (the map's default)
ALARM_KINDS = ("shopify-429s", "worker-error-rate", "openai-failures", "token-refresh-errors")


@dataclass
class Scenario:
    """What is wrong with one environment; the defaults describe a healthy one."""

    missing_secrets: tuple[str, ...] = ()  # logical names not created in Secrets Manager
    flag_overrides: dict[str, str | None] = field(default_factory=dict)  # None removes the flag
    refresh_age_hours: float | None = 1.0  # None: no marker at all
    alarm_states: dict[str, str] = field(default_factory=dict)  # kind -> OK | ALARM | INSUFFICIENT_DATA
    alarm_actions_enabled: bool = True
    config_account_id: str = MOTO_ACCOUNT_ID  # a different id plays "wrong AWS account"
    unrelated_log_lines: int = 50
    # the outbound lever the map names: an SSM parameter, or a key of the worker's environment
    outbound_flag: Literal["ssm_parameter", "lambda_env"] = "ssm_parameter"
    outbound_enabled: bool | None = False  # the lever's value; None: the parameter or key does not exist
    alarms_without_actions: tuple[str, ...] = ()  # kinds whose AlarmActions is empty
    refresh_marker_json: bool = False  # the worker logs its refresh successes as JSON lines
    refresh_failure_age_hours: float | None = None  # a failed refresh logged this long ago (mentions the marker)
    shop_answers_as: str | None = None  # the Shopify fake answers for this shop instead of the env's
    openai_models: tuple[str, ...] | None = None  # what GET /v1/models lists (None: the fake's default)
    # the simulated Order Status worker (integrations/sandbox/worker.py) and the rule that feeds it
    rule_enabled: bool = False  # Richpanel's automation rule at start; a person flips it: env.set_rule(...)
    worker_log_format: Literal["text", "json"] = "text"
    worker_faults: WorkerFaults = field(default_factory=WorkerFaults)  # copied per env: flip env.worker.faults
    worker_interval_s: float = 0.25  # a background Invocations datapoint this often while the rule is enabled
    # the IAM policy simulator's answer for calls that name this env's resources (others: allowed)
    iam_decision: Literal["allowed", "implicitDeny", "explicitDeny", "refuse"] = "allowed"
    iam_actions: tuple[str, ...] = ()  # the actions iam_decision applies to (empty: every action)
    # the map's cutover keys for this env (None: the map's default, canary and enable-outbound)
    approval_required: tuple[str, ...] | None = None
    # the worker gets a function URL, and the map approves it (and the webhook token) as Richpanel's HTTP
    # target: what /canary's http_target step compares
    worker_url: bool = False


@dataclass
class EnvSandbox:
    """One environment's generated identity, fakes and planted PII."""

    name: str
    scenario: Scenario
    shop_domain: str
    secrets: dict[str, str]  # logical name -> generated value
    shopify: ShopifyFake
    richpanel: RichpanelFake
    openai: OpenAIFake
    pii: tuple[str, ...]  # strings that must never appear in any output
    worker: SimulatedWorker | None = None  # started with the sandbox
    function_url: str | None = None  # the worker's function URL: the map's approved Richpanel HTTP target

    def secret_id(self, name: str) -> str:
        return f"rp-mw/{self.name}/{name}"

    @property
    def function_name(self) -> str:
        return f"rp-mw-{self.name}-worker"

    @property
    def log_group(self) -> str:
        return f"/aws/lambda/rp-mw-{self.name}-worker"

    def set_rule(self, *, enabled: bool, by: str | None = None) -> None:
        """A person enables or pauses the Richpanel automation rule that feeds the worker."""
        self.richpanel.set_rule(enabled=enabled, by=by)

    @property
    def fakes(self) -> tuple[ShopifyFake, RichpanelFake, OpenAIFake]:
        return (self.shopify, self.richpanel, self.openai)


def _generated_secrets() -> dict[str, str]:
    return {
        "richpanel_api_key": f"rpk_{secrets.token_hex(16)}",
        "richpanel_webhook_token": f"whk_{secrets.token_hex(16)}",
        "richpanel_bot_agent_id": f"agent-{secrets.token_hex(8)}",
        "openai_api_key": f"sk-proj-{secrets.token_urlsafe(24)}",
        "shopify_admin_api_token": f"shpat_{secrets.token_hex(16)}",
    }


class Sandbox:
    """`with Sandbox({"prod": Scenario()}) as sb: config = load_config(sb.write_config(tmp))`.

    While running, the process environment points every client at loopback through the ecosystem's
    own variables: AWS_ENDPOINT_URL (+ the bot's credentials: the role `cutover-bot`, assumed, so STS answers
    an assumed-role ARN as in production), AWS_ENDPOINT_URL_IAM (the policy simulator fake),
    GITHUB_API_URL/GITHUB_TOKEN, SLACK_API_URL and the
    Slack tokens. A pull request #7 exists on the GitHub fake, and the runners' user group holds the
    engineer on the Slack fake.
    """

    def __init__(self, envs: dict[str, Scenario] | None = None, *, latency_s: float = 0.0) -> None:
        self.scenarios = envs if envs is not None else {"prod": Scenario()}
        self.latency_s = latency_s
        self.aws = AwsSandbox(region=REGION)
        self.github_token = f"ghs_{secrets.token_hex(18)}"
        self.slack_bot_token = f"xoxb-{secrets.randbelow(10**12)}-{secrets.token_hex(12)}"
        self.slack_signing_secret = secrets.token_hex(16)
        self.github = GitHubFake(repo=REPO, token=self.github_token)
        self.slack = SlackFake(token=self.slack_bot_token, groups={RUNNERS_GROUP: [ENGINEER]})
        self.envs: dict[str, EnvSandbox] = {}
        self._ssm_seeding: threading.Thread | None = None
        self._saved_environ: dict[str, str | None] = {}
        self._applied_environ: dict[str, str] = {}
        self.iam = IamFake()  # moto has no SimulatePrincipalPolicy; every other IAM call passes through to moto
        self.bot_role_arn = ""  # set by start(): the role the bot's credentials assumed
        self.bot_access_key_id = ""
        self._marker = f"cutover-sandbox-world-{secrets.token_hex(6)}"  # gone: moto was reset under this sandbox

    def start(self) -> Sandbox:
        self.aws.start()
        self.iam.upstream_url = self.aws.endpoint_url
        self.iam.start()
        self.aws.wrap_app(lambda app: InsightsStall(app, self._insights_stalled))
        self.github.start()
        self.slack.start()
        self.github.add_pr(PR_NUMBER, PR_BRANCH)
        self._mark_world()
        self._apply_environ(
            {
                **self.aws.env(),
                **self._bot_credentials(),
                "AWS_ENDPOINT_URL_IAM": self.iam.url,
                "GITHUB_API_URL": self.github.url,
                "GITHUB_TOKEN": self.github_token,
                "SLACK_API_URL": self.slack.url + "/api/",
                "SLACK_BOT_TOKEN": self.slack_bot_token,
                "SLACK_SIGNING_SECRET": self.slack_signing_secret,
            }
        )
        now = datetime.now(UTC)
        for name, scenario in self.scenarios.items():
            self.envs[name] = env = self._start_env(name, scenario)
            self.aws.seed(self._aws_seed(env), now=now)
            self._create_function_url(env)
            self._start_worker(env)
        # moto's first SSM call costs about 1 s (it loads EC2 data): seed the outbound flags in the
        # background; `config_toml()` waits for it (preflight reads them), as does `wait_until_seeded()`.
        self._ssm_seeding = threading.Thread(target=self._seed_outbound_flags, name="sandbox-ssm", daemon=True)
        self._ssm_seeding.start()
        self.set_latency(self.latency_s)
        return self

    def _bot_credentials(self) -> dict[str, str]:
        """The bot's AWS identity: a role it assumed, as in production (STS answers `assumed-role/...`).

        The sandbox's own seeding and the simulated worker keep the plain fake keys, so a test can tell
        the bot's AWS calls from theirs by the access key id (`bot_access_key_id`).
        """
        statement = {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}
        trust = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
        iam = self.aws.client("iam")
        try:
            role = iam.create_role(RoleName=BOT_ROLE, AssumeRolePolicyDocument=trust)["Role"]
        except iam.exceptions.EntityAlreadyExistsException:  # moto's state is process-wide: another sandbox made it
            role = iam.get_role(RoleName=BOT_ROLE)["Role"]
        self.bot_role_arn = role["Arn"]
        creds = self.aws.client("sts").assume_role(RoleArn=self.bot_role_arn, RoleSessionName="cutover-bot-sandbox")
        self.bot_access_key_id = creds["Credentials"]["AccessKeyId"]
        return {
            "AWS_ACCESS_KEY_ID": self.bot_access_key_id,
            "AWS_SECRET_ACCESS_KEY": creds["Credentials"]["SecretAccessKey"],
            "AWS_SESSION_TOKEN": creds["Credentials"]["SessionToken"],
        }

    def wait_until_seeded(self, timeout_s: float = 30.0) -> None:
        if self._ssm_seeding is not None:
            self._ssm_seeding.join(timeout_s)

    def _seed_outbound_flags(self) -> None:
        ssm = self.aws.client("ssm")
        for env in list(self.envs.values()):
            _seed_outbound_flag(ssm, env)

    def world_intact(self) -> bool:
        """Whether moto still holds this sandbox's world (its state is process-wide: a test of the AWS sandbox
        itself may have reset it under us)."""
        try:
            self.aws.client("secretsmanager").describe_secret(SecretId=self._marker)
        except Exception:
            return False
        return True

    def _mark_world(self) -> None:
        self.aws.client("secretsmanager").create_secret(Name=self._marker, SecretString="sandbox world marker")

    def reseed(self) -> None:
        """The same world again after moto was reset: the bot's role and credentials, and every env's
        resources as `start`/`add_env` made them (a test's later changes to them are not replayed)."""
        self.wait_until_seeded()
        self._mark_world()
        self._apply_environ(self._bot_credentials())
        ssm = self.aws.client("ssm")
        now = datetime.now(UTC)
        for env in self.envs.values():
            self.aws.seed(self._aws_seed(env), now=now)
            self._create_function_url(env)
            _seed_outbound_flag(ssm, env)

    def reapply_environ(self) -> None:
        """Point the process's variables at this sandbox again (something in between pointed them elsewhere)."""
        os.environ.update(self._applied_environ)

    def add_env(self, name: str, scenario: Scenario) -> EnvSandbox:
        """One more environment on the running sandbox (own fakes, own AWS resources); write the config again."""
        if name in self.envs:
            raise ValueError(f"environment {name} exists already")
        self.wait_until_seeded()
        self.scenarios = {**self.scenarios, name: scenario}
        self.envs[name] = env = self._start_env(name, scenario)
        self.aws.seed(self._aws_seed(env), now=datetime.now(UTC))
        self._create_function_url(env)
        _seed_outbound_flag(self.aws.client("ssm"), env)
        self._start_worker(env)
        for fake in env.fakes:
            fake.latency_s = self.aws.latency_s
        return env

    def stop(self) -> None:
        self.wait_until_seeded()
        for env in self.envs.values():
            if env.worker is not None:
                env.worker.stop()
        for env in self.envs.values():
            for fake in env.fakes:
                fake.stop()
        self.iam.stop()
        self.github.stop()
        self.slack.stop()
        self.aws.stop()
        for key, value in self._saved_environ.items():
            if os.environ.get(key) != self._applied_environ.get(key):
                continue  # another sandbox started after this one owns it now: leave it pointing there
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_environ.clear()
        self._applied_environ.clear()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start_worker(self, env: EnvSandbox) -> None:
        sc = env.scenario
        if sc.outbound_flag == "lambda_env":
            lever = Lever(lambda_env=OUTBOUND_ENV_KEY)
        else:
            lever = Lever(ssm_parameter=outbound_parameter(env.name))
        env.worker = SimulatedWorker(
            endpoint_url=self.aws.endpoint_url,
            region=REGION,
            function_name=env.function_name,
            log_group=env.log_group,
            lever=lever,
            richpanel=env.richpanel,
            bot_agent_id=env.secrets["richpanel_bot_agent_id"],
            faults=replace(sc.worker_faults),
            log_format=sc.worker_log_format,
            invocation_interval_s=sc.worker_interval_s,
            ready=self.wait_until_seeded,
        ).start()
        if sc.rule_enabled:
            env.set_rule(enabled=True, by="sandbox")
        if sc.iam_decision != "allowed":
            self.iam.set_rule(sc.iam_decision, actions=sc.iam_actions, resources=self.env_resources(env))

    def _create_function_url(self, env: EnvSandbox) -> None:
        """The worker's endpoint, which Richpanel's HTTP target calls (the canary compares the two)."""
        if not env.scenario.worker_url:
            return
        lam = self.aws.client("lambda")
        env.function_url = lam.create_function_url_config(FunctionName=env.function_name, AuthType="NONE")[
            "FunctionUrl"
        ]

    def env_resources(self, env: EnvSandbox) -> tuple[str, ...]:
        """Names that identify this env's AWS resources in an ARN (for the IAM simulator's per-env rules)."""
        alarms = tuple(f"rp-mw-{env.name}-{k}" for k in ALARM_KINDS)
        return (env.function_name, env.log_group, outbound_parameter(env.name), f"rp-mw/{env.name}/", *alarms)

    def _insights_stalled(self, log_groups: list[str]) -> bool:
        return any(
            env.worker is not None and env.worker.faults.insights_running and env.log_group in log_groups
            for env in list(self.envs.values())
        )

    def set_latency(self, seconds: float) -> None:
        """The same delay on every upstream, AWS included (for the benches)."""
        self.aws.latency_s = seconds
        for env in self.envs.values():
            for fake in env.fakes:
                fake.latency_s = seconds

    def planted(self) -> list[str]:
        """Every secret value and PII string the sandbox planted: none may appear in any output."""
        out: list[str] = [self.github_token, self.slack_bot_token, self.slack_signing_secret]
        for env in self.envs.values():
            out += list(env.secrets.values()) + list(env.pii)
        return out

    def _apply_environ(self, values: dict[str, str]) -> None:
        for key, value in values.items():
            self._saved_environ.setdefault(key, os.environ.get(key))
            self._applied_environ[key] = os.environ[key] = value

    def _start_env(self, name: str, scenario: Scenario) -> EnvSandbox:
        values = _generated_secrets()
        shop_domain = f"rp-mw-{name}.myshopify.com"
        owner_email = f"owner.{secrets.token_hex(3)}@example.com"
        customer_phone = f"+1 (555) {secrets.randbelow(900) + 100}-{secrets.randbelow(9000) + 1000}"
        answers_as = scenario.shop_answers_as or shop_domain
        shopify = ShopifyFake(answers_as, f"Order Status {name}", {values["shopify_admin_api_token"]})
        shopify.start()
        richpanel = RichpanelFake(values["richpanel_api_key"]).start()
        openai = OpenAIFake(values["openai_api_key"], models=scenario.openai_models).start()
        return EnvSandbox(
            name=name,
            scenario=scenario,
            shop_domain=shop_domain,
            secrets=values,
            shopify=shopify,  # type: ignore[arg-type]
            richpanel=richpanel,  # type: ignore[arg-type]
            openai=openai,  # type: ignore[arg-type]
            pii=(owner_email, customer_phone),
        )

    def _aws_seed(self, env: EnvSandbox) -> AwsSeed:
        sc = env.scenario
        flags = {**HEALTHY_FLAGS, "SHOPIFY_SHOP_DOMAIN": env.shop_domain}
        if sc.outbound_flag == "lambda_env":
            if sc.outbound_enabled is None:
                flags.pop(OUTBOUND_ENV_KEY, None)
            else:
                flags[OUTBOUND_ENV_KEY] = "true" if sc.outbound_enabled else "false"
        for key, value in sc.flag_overrides.items():
            if value is None:
                flags.pop(key, None)
            else:
                flags[key] = value
        # A worker's env also holds values that are not flags; the bot must never read them out.
        flags["WORKER_CONTACT_EMAIL"] = env.pii[0]
        return AwsSeed(
            region=REGION,
            secrets={env.secret_id(n): v for n, v in env.secrets.items() if n not in sc.missing_secrets},
            function_name=f"rp-mw-{env.name}-worker",
            function_env=flags,
            log_group=f"/aws/lambda/rp-mw-{env.name}-worker",
            refresh_marker="shopify_token_refresh_success",
            refresh_age_hours=sc.refresh_age_hours,
            alarms={f"rp-mw-{env.name}-{k}": sc.alarm_states.get(k, "OK") for k in ALARM_KINDS},
            alarm_actions_enabled=sc.alarm_actions_enabled,
            alarms_without_actions=tuple(f"rp-mw-{env.name}-{k}" for k in sc.alarms_without_actions),
            refresh_marker_json=sc.refresh_marker_json,
            refresh_failure_age_hours=sc.refresh_failure_age_hours,
            ssm_flag=None,  # seeded in the background: see start()
            unrelated_log_lines=sc.unrelated_log_lines,
        )

    # --- the environment map ---------------------------------------------------------------
    def config_toml(
        self, *, evidence_dir: str = "evidence", extra_top: str = "", state: str = "sqlite:///cutover-sandbox.db"
    ) -> str:
        self.wait_until_seeded()  # the map is the way in: once it exists, the world it describes does
        q = json.dumps  # TOML basic strings are JSON-compatible for these values
        lines = [
            f"evidence_dir = {q(evidence_dir)}",
            f"state = {q(state)}",
            'executor = "local"',
            extra_top,
            "[github]",
            f"repo = {q(REPO)}",
            "[slack]",
            f"channel = {q(CHANNEL)}",
        ]
        for name, env in self.envs.items():
            alarms = ", ".join(q(f"rp-mw-{name}-{k}") for k in ALARM_KINDS)
            lines += [
                f"[envs.{name}]",
                f"aws_account_id = {q(env.scenario.config_account_id)}",
                f"aws_region = {q(REGION)}",
                f"shop_domain = {q(env.shop_domain)}",
                f'worker_function = "rp-mw-{name}-worker"',
                f'worker_log_group = "/aws/lambda/rp-mw-{name}-worker"',
                'refresh_marker = "shopify_token_refresh_success"',
                "refresh_max_age_hours = 8",
                f"alarms = [{alarms}]",
                _outbound_flag_line(env),
                'internal_test_address = "cutover-canary@example.com"',
                f"runners = [{q(RUNNERS_GROUP)}]",
                f"approvers = [{q(MANAGER)}]",
                "check_timeout_s = 5",
                "http_timeout_s = 2",
                # The cutover's waits, short on the sandbox (the real defaults are minutes).
                "approval_ttl_minutes = 2",
                *(
                    [f"approval_required = [{', '.join(q(c) for c in env.scenario.approval_required)}]"]
                    if env.scenario.approval_required is not None
                    else []
                ),
                f"[envs.{name}.canary]",
                "timeout_minutes = 0.25",
                "confirm_timeout_minutes = 0.5",
                f"[envs.{name}.watch]",
                "minutes = 0.1",
                "poll_seconds = 0.5",
                f"[envs.{name}.rollback]",
                "quiet_minutes = 0.05",
                *(
                    [
                        f"[envs.{name}.richpanel_http_target]",  # approved: the worker's URL, the webhook token
                        f"url = {q(env.function_url)}",
                        f"auth_header_sha256 = {q(_sha256(env.secrets['richpanel_webhook_token']))}",
                    ]
                    if env.function_url
                    else []
                ),
                f"[envs.{name}.secrets]",
                *(f"{n} = {q(env.secret_id(n))}" for n in SECRET_NAMES),
                f"[envs.{name}.endpoints]",
                f"shopify = {q(env.shopify.url)}",
                f"richpanel = {q(env.richpanel.url)}",
                f"openai = {q(env.openai.base_url)}",
            ]
        return "\n".join(lines) + "\n"

    def write_config(self, directory: Path | str, **kwargs: str) -> Path:
        """The map in `directory`, with its state store beside it (each map its own phases and locks)."""
        path = Path(directory) / "cutover.sandbox.toml"
        kwargs.setdefault("state", f"sqlite:///{(Path(directory) / 'cutover-state.db').resolve()}")
        path.write_text(self.config_toml(**kwargs), encoding="utf-8")
        return path


def _outbound_flag_line(env: EnvSandbox) -> str:
    # The sandbox's worker reads the lever on every ticket: nothing to wait for but a moment.
    if env.scenario.outbound_flag == "lambda_env":
        return f'outbound_flag = {{ lambda_env = "{OUTBOUND_ENV_KEY}", propagation_seconds = 0.5 }}'
    return f'outbound_flag = {{ ssm_parameter = "{outbound_parameter(env.name)}", propagation_seconds = 0.5 }}'


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def outbound_parameter(name: str) -> str:
    """The SSM parameter an environment's map names as its outbound lever (the `ssm_parameter` form)."""
    return f"/rp-mw/{name}/outbound_enabled"


def _seed_outbound_flag(ssm: Any, env: EnvSandbox) -> None:
    sc = env.scenario
    if sc.outbound_flag == "ssm_parameter" and sc.outbound_enabled is not None:
        value = "true" if sc.outbound_enabled else "false"
        ssm.put_parameter(Name=outbound_parameter(env.name), Value=value, Type="String", Overwrite=True)


@contextmanager
def running(envs: dict[str, Scenario] | None = None, *, latency_s: float = 0.0) -> Iterator[Sandbox]:
    sandbox = Sandbox(envs, latency_s=latency_s)
    try:
        yield sandbox.start()
    finally:
        sandbox.stop()
