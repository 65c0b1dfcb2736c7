"""/preflight: the runbook's read-only checks, concurrently, fail closed.

Check names are part of the report format (see DESIGN.md). Nothing here writes anywhere: AWS calls
are reads, the Shopify client refuses writes by construction, Richpanel and OpenAI get one GET each.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from commands.checks import Check, Shared, Skip, Verdict, failed, passed, run_checks, warned
from commands.config import ConfigError, CutoverConfig, EnvConfig, SsmFlag
from commands.redaction import REDACTOR
from commands.report import CheckResult, Report, Status, missing_checks, new_run_id, utc_now
from commands.request import RunRequest
from commands.run_context import RunContext
from commands.state import StateError, store_for
from integrations.aws import Aws, CallerIdentity, FlagReading, SecretPresence, role_arn_from_caller
from integrations.errors import UpstreamError
from integrations.openai import OpenAIClient
from integrations.richpanel import RichpanelClient
from integrations.shopify import ShopifyClient, ShopifyResult, exchange_token
from integrations.worker_log import is_event
from integrations.worker_log import worker_event as worker_event  # re-exported: the parser lives in integrations

# The deployed worker's safety flags the runbook requires before any cutover step.
REQUIRED_FLAGS = {
    "MW_ALLOW_NETWORK_READS": "true",
    "RICHPANEL_READ_ONLY": "true",
    "RICHPANEL_WRITE_DISABLED": "true",
    "RICHPANEL_OUTBOUND_ENABLED": "false",
    "SHOPIFY_OUTBOUND_ENABLED": "true",
    "SHOPIFY_WRITE_DISABLED": "true",
}
SHOP_DOMAIN_FLAG = "SHOPIFY_SHOP_DOMAIN"
T = TypeVar("T")


class PreflightContext:
    """Per-run state shared by the checks: one AWS client, each secret read at most once."""

    def __init__(self, request: RunRequest, env: EnvConfig, config: CutoverConfig | None = None) -> None:
        self.request = request
        self.env = env
        self.config = config  # the map: which state store a rollback uses (rollback_ready)
        self.region = request.aws_region or env.aws_region
        self.shop_domain = request.shop_domain or env.shop_domain
        self.aws = Aws(region=self.region, read_timeout_s=env.http_timeout_s)
        self.identity: Shared[CallerIdentity] = Shared(self.aws.caller_identity)
        self._presence = {name: Shared(_bind(self.aws.secret_presence, sid)) for name, sid in env.secrets.items()}
        self._values = {name: Shared(_bind(self._read_secret, name)) for name in env.secrets}
        self._closers: list[Callable[[], None]] = []
        # One Shopify client for both Shopify checks: a rejected token is refreshed once per run.
        self.shopify: Shared[ShopifyClient] = Shared(lambda: _new_shopify(self))

    # --- prerequisites ------------------------------------------------------------------
    def identity_problem(self, identity: CallerIdentity) -> str | None:
        """Why this AWS identity must not be trusted for this environment, or None."""
        problems = []
        if identity.account != self.env.aws_account_id:
            problems.append(
                f"AWS account {identity.account} is not {self.request.env}'s account {self.env.aws_account_id}"
            )
        if self.region != self.env.aws_region:
            problems.append(f"region {self.region} (from --aws-region) differs from the map's {self.env.aws_region}")
        return "; ".join(problems) or None

    def require_identity(self) -> None:
        """Skip the calling check unless aws_identity passes: never act on the wrong account."""
        try:
            identity = self.identity.get()
        except UpstreamError as exc:
            raise Skip(f"AWS identity unknown ({exc.reason}): see aws_identity") from None
        if self.identity_problem(identity):
            raise Skip("wrong AWS account or region: see aws_identity") from None

    def read(self, fetch: Callable[[], T]) -> T:
        """An AWS read whose answer counts only for the right account; no credentials means SKIP."""
        try:
            result = fetch()
        except UpstreamError:
            self.require_identity()  # if AWS itself is unreachable or wrong, that is the reason
            raise
        self.require_identity()
        return result

    def _read_secret(self, name: str) -> str:
        value = self.aws.secret_value(self.env.secrets[name])
        REDACTOR.register(name, value)  # before anything else can see it
        return value

    def secret(self, name: str) -> str:
        """A secret's value, or Skip with the reason (the `secrets.<name>` check reports the cause)."""
        try:
            return self._values[name].get()
        except UpstreamError as exc:
            self.require_identity()
            raise Skip(f"secret {name} could not be read ({exc.reason})") from None
        except ValueError as exc:  # refused by the redactor: too short to hide safely
            raise Skip(str(exc)) from None

    def reread_secret(self, name: str) -> str:
        """A fresh read (another process may have rotated it), replacing the shared value."""
        self._values[name] = Shared(_bind(self._read_secret, name))
        return self.secret(name)

    def presence(self, name: str) -> SecretPresence:
        return self._presence[name].get()

    def closing(self, client: Any) -> Any:
        self._closers.append(client.close)
        return client

    def close(self) -> None:
        for close in self._closers:
            close()


def _bind(fn: Callable[[str], Any], arg: str) -> Callable[[], Any]:
    return lambda: fn(arg)


class SecretCredential:
    """The Shopify client's credential: the token secret, refreshed by re-reading or by a grant."""

    def __init__(self, ctx: PreflightContext, name: str) -> None:
        self.ctx = ctx
        self.name = name
        self.source = f"secret {ctx.env.secrets[name]} ({name})"

    def get(self) -> str:
        return self.ctx.secret(self.name)

    def refresh(self) -> str:
        settings = self.ctx.env.shopify
        if settings.refresh == "client_credentials":
            grant = exchange_token(
                base_url=self.ctx.env.shopify_url(),
                client_id=_secret_by_id(self.ctx, settings.client_id_secret),
                client_secret=_secret_by_id(self.ctx, settings.client_secret_secret),
                refresh_token=None,
                timeout_s=self.ctx.env.http_timeout_s,
            )
            REDACTOR.register("shopify_access_token", grant.access_token)
            return grant.access_token
        return self.ctx.reread_secret(self.name)


def _secret_by_id(ctx: PreflightContext, secret_id: str | None) -> str:
    assert secret_id is not None  # guaranteed by ShopifySettings' validator
    value = ctx.aws.secret_value(secret_id)
    REDACTOR.register(secret_id, value)
    return value


# --- the checks ---------------------------------------------------------------------------
def check_aws_identity(ctx: PreflightContext) -> Verdict:
    identity = ctx.identity.get()
    data = {"account": identity.account, "region": ctx.region, "arn": identity.arn}
    problem = ctx.identity_problem(identity)
    if problem:
        return failed(f"{problem}: stop, and use credentials for {ctx.request.env}", **data)
    return passed(f"account {identity.account} in {ctx.region}", **data)


def check_secret(ctx: PreflightContext, name: str) -> Verdict:
    presence = ctx.read(lambda: ctx.presence(name))
    secret_id = ctx.env.secrets[name]
    if presence.deleted:
        return failed(f"{secret_id} is scheduled for deletion: restore it", secret_id=secret_id)
    if not presence.exists:
        return failed(f"{secret_id} does not exist in {ctx.region}", secret_id=secret_id)
    changed = presence.last_changed.isoformat() if presence.last_changed else None
    return passed(f"{secret_id} exists", secret_id=secret_id, last_changed=changed)


def check_env_flags(ctx: PreflightContext) -> Verdict:
    expected = {**REQUIRED_FLAGS, SHOP_DOMAIN_FLAG: ctx.env.shop_domain}
    actual = ctx.read(lambda: ctx.aws.function_env(ctx.env.worker_function, expected))
    missing = [k for k in expected if k not in actual]
    # Which flag is wrong and what it must be, never what it is: the report goes to Slack, GitHub and
    # proof files, and a deployed value can be anything (a pasted token, an address).
    wrong = [k for k, v in expected.items() if k in actual and actual[k].strip().lower() != v.lower()]
    problems = [f"missing {', '.join(missing)}"] if missing else []
    problems += [
        f"{k} does not match the env's shop {ctx.env.shop_domain}"
        if k == SHOP_DOMAIN_FLAG
        else f"{k} must be {expected[k]}"
        for k in wrong
    ]
    if ctx.shop_domain != ctx.env.shop_domain:
        problems.append(f"--shop-domain {ctx.shop_domain} differs from the map's {ctx.env.shop_domain}")
    data = {
        "function": ctx.env.worker_function,
        "missing": missing,
        "wrong": wrong,
        "required": {k: expected[k] for k in wrong},
    }
    if problems:
        return failed(f"{ctx.env.worker_function}: " + "; ".join(problems), **data)
    return passed(f"{len(expected)} safety flags as required on {ctx.env.worker_function}", **data)


def check_richpanel(ctx: PreflightContext) -> Verdict:
    key = ctx.secret("richpanel_api_key")
    ctx.require_identity()
    client = ctx.closing(
        RichpanelClient(
            base_url=ctx.env.endpoints.richpanel,
            api_key=key,
            key_source=f"secret {ctx.env.secrets['richpanel_api_key']}",
            timeout_s=ctx.env.http_timeout_s,
        )
    )
    result = client.health()
    return passed(f"authenticated GET answered {result.status_code}", status_code=result.status_code)


def _new_shopify(ctx: PreflightContext) -> ShopifyClient:
    credential = SecretCredential(ctx, "shopify_admin_api_token")
    credential.get()  # a missing token is a SKIP, before any call
    ctx.require_identity()
    return ctx.closing(
        ShopifyClient(
            base_url=ctx.env.shopify_url(),
            shop_domain=ctx.shop_domain,
            credential=credential,
            api_version=ctx.env.shopify.api_version,
            timeout_s=ctx.env.http_timeout_s,
        )
    )


SHOP_QUERY = "{ shop { name myshopifyDomain } }"
_DOMAIN_MAX = 255  # a hostname's length limit: an odd answer is cut, not echoed whole


def _shop_answered(
    ctx: PreflightContext, result: ShopifyResult, call: str, shop: Any, domain_keys: tuple[str, ...], **data: Any
) -> Verdict:
    """PASS only when the API answered with a name, for the env's own shop: a token or endpoint of
    another shop (staging's token in prod's secret, a copied endpoint) is a FAIL naming both shops."""
    shop = shop if isinstance(shop, dict) else {}
    domains = [shop[k].strip()[:_DOMAIN_MAX] for k in domain_keys if isinstance(shop.get(k), str) and shop[k].strip()]
    expected = ctx.env.shop_domain
    data = {"status_code": result.status_code, "refreshed": result.refreshed, "answered_for": domains[:1], **data}
    if not shop.get("name"):
        return failed(f"{call} answered without the shop's name", **data)
    if not domains:
        return failed(f"{call} answered without the shop's domain: cannot prove it is {expected}", **data)
    if expected.lower() not in (d.lower() for d in domains):
        return failed(
            f"{call} answered for {domains[0]}, not {ctx.request.env}'s shop {expected}: the token or the "
            f"endpoint belongs to another shop; fix {ctx.env.secrets['shopify_admin_api_token']} or the endpoint",
            **data,
        )
    note = " after one credential refresh" if result.refreshed else ""
    return passed(f"{call} answered {result.status_code} for {expected}{note}", **data)


def check_shopify_rest(ctx: PreflightContext) -> Verdict:
    result = ctx.shopify.get().shop()
    # `domain` is the primary domain (often a custom one); `myshopify_domain` names the shop itself
    return _shop_answered(
        ctx, result, "shop.json", result.data.get("shop"), ("myshopify_domain", "domain"), call_limit=result.call_limit
    )


def check_shopify_graphql(ctx: PreflightContext) -> Verdict:
    result = ctx.shopify.get().graphql(SHOP_QUERY)  # the client returns GraphQL's `data`
    return _shop_answered(
        ctx, result, SHOP_QUERY, result.data.get("shop"), ("myshopifyDomain",), throttle=result.throttle
    )


def check_refresh_marker(ctx: PreflightContext) -> Verdict:
    max_age = ctx.env.refresh_max_age_hours
    now = utc_now()
    # Look further back than the limit, so a stale marker reports its age instead of "none".
    window_h = max(24.0, 3 * max_age)
    marker = ctx.env.refresh_marker
    found = ctx.read(
        lambda: ctx.aws.newest_log_event(
            ctx.env.worker_log_group,
            marker,  # server side: only lines with the phrase come back, so calls do not grow with log volume
            since=now - timedelta(hours=window_h),
            until=now,
            accept=lambda message: is_event(message, marker),  # client side: the line is that event
        )
    )
    data: dict[str, Any] = {
        "log_group": ctx.env.worker_log_group,
        "api_calls": found.api_calls,
        "complete": found.complete,
        "not_the_event": found.rejected,
    }
    if found.timestamp is None:
        why = "the log search stopped before the end" if not found.complete else f"none in the last {window_h:g} h"
        if found.rejected:
            why += f" ({found.rejected} lines mention it but record another event, e.g. `{marker}=false`)"
        return failed(f"no '{marker}' marker: {why}; check the worker's token refresh job", **data)
    age_h = round((now - found.timestamp).total_seconds() / 3600, 2)
    data |= {"last_success_age_hours": age_h, "last_success_at": found.timestamp.isoformat()}
    if age_h > max_age:
        return failed(
            f"last token refresh success {age_h} h ago (limit {max_age:g} h): the refresh job is failing", **data
        )
    return passed(f"last token refresh success {age_h} h ago (limit {max_age:g} h)", **data)


def check_openai(ctx: PreflightContext) -> Verdict:
    key = ctx.secret("openai_api_key")
    ctx.require_identity()
    client = ctx.closing(OpenAIClient(base_url=ctx.env.openai_url(), api_key=key, timeout_s=ctx.env.http_timeout_s))
    result = client.list_models()
    data = {"status_code": result.status_code, "model_count": result.model_count}
    if result.model_count == 0:
        # Not PASS: nothing shows the worker can use a model. Not FAIL: a key restricted by scopes can
        # see no models here and still run inference (UPSTREAMS.md), so the key may well be fine.
        return warned(
            "key accepted but sees no models: WARN, not FAIL, because a key restricted by scopes may list nothing "
            "and still run inference; if the project allows no model, the worker cannot classify: check the "
            "key's permissions and the project's allowed models",
            **data,
        )
    return passed(f"key accepted: {result.model_count} models visible", **data)


def check_alarms(ctx: PreflightContext) -> Verdict:
    wanted = ctx.env.alarms
    states = ctx.read(lambda: ctx.aws.alarms(wanted))
    missing = [n for n in wanted if n not in states]
    firing = [n for n in wanted if n in states and states[n].state == "ALARM"]
    inert = [n for n in wanted if n in states and not states[n].actions_enabled]
    no_data = [n for n in wanted if n in states and states[n].state == "INSUFFICIENT_DATA"]
    # Actions on, but none configured: going to ALARM notifies nobody and triggers nothing.
    silent = [n for n in wanted if n in states and states[n].actions_enabled and not states[n].alarm_actions]
    data = {
        "states": {n: states[n].state for n in states},
        "missing": missing,
        "firing": firing,
        "actions_disabled": inert,
        "no_alarm_actions": silent,
    }
    problems = [f"missing: {', '.join(missing)}"] if missing else []
    problems += [f"in ALARM: {', '.join(firing)}"] if firing else []
    problems += [f"actions disabled (would never roll back): {', '.join(inert)}"] if inert else []
    caveats = [f"INSUFFICIENT_DATA: {', '.join(no_data)} (no datapoints yet; not proof of health)"] if no_data else []
    caveats += [f"no alarm actions (an ALARM notifies nobody): {', '.join(silent)}"] if silent else []
    if problems:
        return failed("; ".join(problems + caveats), **data)
    if caveats:
        return warned("; ".join(caveats), **data)
    return passed(f"{len(wanted)} alarms exist, OK, actions enabled", **data)


def check_outbound_flag(ctx: PreflightContext) -> Verdict:
    """The outbound lever the map names, read now: it must be false before any cutover step."""
    lever = ctx.env.outbound_flag
    function = ctx.env.worker_function
    read: Callable[[], bool | None]
    if isinstance(lever, SsmFlag):
        where = f"SSM parameter {lever.ssm_parameter}"
        absent = f"{where} does not exist in {ctx.region}: create it with the value false"
        data: dict[str, Any] = {"lever": "ssm_parameter", "name": lever.ssm_parameter}
        read = lambda: ctx.aws.read_ssm_flag(lever.ssm_parameter)  # noqa: E731
    else:
        where = f"{lever.lambda_env} on {function}"
        absent = f"{lever.lambda_env} is not set on {function}: set it to false"
        data = {"lever": "lambda_env", "name": lever.lambda_env, "function": function}
        read = lambda: ctx.aws.read_lambda_flag(function, lever.lambda_env)  # noqa: E731
    try:
        value = ctx.read(read)
    except UpstreamError as exc:
        return failed(f"cannot read {where}: {exc}", **data, code=exc.code)
    data["enabled"] = value
    if value is None:
        return failed(absent, **data)
    if value:
        return failed(
            f"outbound is ON ({where} = true): the worker may contact customers; run /rollback {ctx.request.env} "
            "or set it to false before any cutover step",
            **data,
        )
    return passed(f"outbound is off ({where} = false)", **data)


# --- rollback_ready: a rollback could act now ------------------------------------------------------
# What a rollback does to the lever: SSM PutParameter (then a read-back), or the Lambda form's
# read-modify-write of the worker's environment. Proven with IAM's policy simulator: nothing is written.
ROLLBACK_ACTIONS_SSM = ("ssm:PutParameter",)
ROLLBACK_ACTIONS_LAMBDA = ("lambda:GetFunctionConfiguration", "lambda:UpdateFunctionConfiguration")
_CALL_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "403"}
_DENY_HINT = {
    "implicitDeny": "no policy allows it: grant it",
    "explicitDeny": "a Deny in a policy, permissions boundary or SCP blocks it: remove that deny",
}
_Part = tuple[Status, str, dict[str, Any]]  # one part of the check: its status, a sentence, its evidence


def lever_arn(env: EnvConfig, *, partition: str, region: str, account: str) -> str:
    """The ARN of what a rollback writes: the SSM parameter (its name without the leading slash, as in
    AWS's ARN format: `parameter/rp-mw/prod/outbound_enabled`) or the worker function."""
    flag = env.outbound_flag
    if isinstance(flag, SsmFlag):
        return f"arn:{partition}:ssm:{region}:{account}:parameter/{flag.ssm_parameter.lstrip('/')}"
    return f"arn:{partition}:lambda:{region}:{account}:function:{env.worker_function}"


def check_rollback_ready(ctx: PreflightContext) -> Verdict:
    """The lever exists and reads now (its value is the evidence: what a rollback changes from), the bot's
    role may write it (denied: FAIL naming action and resource; unprovable: WARN with what to grant), and
    the store that holds the env's lock answers. Nothing is written anywhere but the store's own probe."""
    ctx.require_identity()
    identity = ctx.identity.get()
    env, lever = ctx.env, ctx.env.outbound_flag
    partition = identity.arn.split(":")[1] if identity.arn.startswith("arn:") else "aws"
    resource = lever_arn(env, partition=partition, region=ctx.region, account=identity.account)
    read: Callable[[], FlagReading]
    if isinstance(lever, SsmFlag):
        where, actions = f"SSM parameter {lever.ssm_parameter}", ROLLBACK_ACTIONS_SSM
        data: dict[str, Any] = {"lever": "ssm_parameter", "name": lever.ssm_parameter}
        read = lambda: ctx.aws.ssm_flag(lever.ssm_parameter)  # noqa: E731
    else:
        where, actions = f"{lever.lambda_env} on {env.worker_function}", ROLLBACK_ACTIONS_LAMBDA
        data = {"lever": "lambda_env", "name": lever.lambda_env, "function": env.worker_function}
        read = lambda: ctx.aws.lambda_flag(env.worker_function, lever.lambda_env)  # noqa: E731
    data |= {"resource": resource, "actions": list(actions)}
    parts = [
        _lever_now(read, where),
        _rollback_permission(ctx, identity.arn, actions, resource),
        _rollback_store(ctx),
    ]
    for _, _, part_data in parts:
        data |= part_data
    fails = [text for status, text, _ in parts if status == Status.FAIL]
    caveats = [text for status, text, _ in parts if status == Status.WARN]
    if fails:
        return failed("; ".join(fails + caveats), **data)
    if caveats:
        return warned("; ".join(caveats + [text for status, text, _ in parts if status == Status.PASS]), **data)
    return passed("a rollback can act: " + "; ".join(text for _, text, _ in parts), **data)


def _lever_now(read: Callable[[], FlagReading], where: str) -> _Part:
    try:
        reading = read()
    except UpstreamError as exc:
        return Status.FAIL, f"a rollback cannot read {where}: {exc}", {"value": None, "code": exc.code}
    if reading.value is None:
        why = f"{where} does not exist: a rollback has no lever to turn off; create it with the value false"
        return Status.FAIL, why, {"value": None}
    at = reading.modified_at.isoformat() if reading.modified_at else None
    text = "true" if reading.value else "false"
    return Status.PASS, f"{where} = {text} now", {"value": reading.value, "version": reading.version, "modified_at": at}


def _rollback_permission(ctx: PreflightContext, caller: str, actions: tuple[str, ...], resource: str) -> _Part:
    try:
        principal = role_arn_from_caller(caller)
    except ValueError:
        why = f"cannot prove the rollback permission: {caller} is not a role or user IAM can simulate; run as a role"
        return Status.WARN, why, {"principal": None}
    try:
        decisions = ctx.aws.simulate(principal, actions, [resource])
    except UpstreamError as exc:
        if exc.code != "NoSuchEntity" or ":assumed-role/" not in caller:
            return _simulator_failed(exc, principal)
        # STS's assumed-role ARN drops the role's path: the full ARN comes from iam:GetRole.
        role_name = principal.rsplit("/", 1)[-1]
        try:
            principal = ctx.aws.role_arn(role_name)
        except UpstreamError as get_exc:
            if get_exc.code in _CALL_DENIED:
                why = (
                    f"cannot prove the rollback permission: IAM knows no {principal} (the role has a path) and the "
                    f"bot may not read its role: grant it iam:GetRole on its role {role_name}"
                )
                return Status.WARN, why, {"principal": principal, "grant": "iam:GetRole"}
            return Status.FAIL, f"cannot find the bot's role {role_name}: {get_exc}", {"principal": principal}
        try:
            decisions = ctx.aws.simulate(principal, actions, [resource])
        except UpstreamError as again:
            return _simulator_failed(again, principal)
    found = {a: decisions.get((a, resource), "missing") for a in actions}
    data: dict[str, Any] = {"principal": principal, "decisions": found}
    denied = [
        f"{principal} may not {a} on {resource} ({d}: {_DENY_HINT[d]})" for a, d in found.items() if d in _DENY_HINT
    ]
    if denied:
        return Status.FAIL, "a rollback could not turn outbound off: " + "; ".join(denied), data
    unknown = [a for a, d in found.items() if d != "allowed"]
    if unknown:
        why = (
            "cannot prove the rollback permission: IAM's policy simulator gave no decision for "
            f"{', '.join(unknown)} on {resource}"
        )
        return Status.WARN, why, data
    return Status.PASS, f"{principal} may {' and '.join(actions)} on {resource} (IAM policy simulator)", data


def _simulator_failed(exc: UpstreamError, principal: str) -> _Part:
    if exc.code in _CALL_DENIED:
        why = (
            f"cannot prove the rollback permission: {principal} may not call IAM's policy simulator; grant it "
            f"iam:SimulatePrincipalPolicy on itself ({principal})"
        )
        return Status.WARN, why, {"principal": principal, "grant": "iam:SimulatePrincipalPolicy"}
    return Status.FAIL, f"cannot ask IAM's policy simulator about {principal}: {exc}", {"principal": principal}


def _rollback_store(ctx: PreflightContext) -> _Part:
    if ctx.config is None:
        return Status.FAIL, "the state store is unknown to this preflight: no map given", {"state": None}
    url = ctx.config.state
    try:
        store = store_for(ctx.config)  # the very store a rollback of this process takes the lock in
        store.check_reachable()
        holder = store.lock_holder(ctx.request.env)
    except (StateError, ConfigError) as exc:
        return Status.FAIL, f"the state store a rollback uses ({url}) is not reachable: {exc}", {"state": url}
    lock = f"{holder.holder.command} run {holder.holder.run_id}" if holder else None
    held = f", lock held by {lock} (a rollback preempts it)" if lock else ""
    # the URL stays in the data: the detail reads the same whichever map (and store) ran the preflight
    return Status.PASS, f"the state store answers{held}", {"state": store.url, "lock_held_by": lock}


def preflight_checks(ctx: PreflightContext) -> list[Check]:
    def bound(fn: Callable[..., Verdict], *args: Any) -> Callable[[], Verdict]:
        return lambda: fn(ctx, *args)

    checks = [Check("aws_identity", bound(check_aws_identity))]
    checks += [Check(f"secrets.{name}", bound(check_secret, name)) for name in ctx.env.secrets]
    checks += [
        Check("bot_agent_id_secret_present", bound(check_secret, "richpanel_bot_agent_id")),
        Check("env_flags", bound(check_env_flags)),
        Check("outbound_flag", bound(check_outbound_flag)),
        Check("rollback_ready", bound(check_rollback_ready)),
        Check("richpanel_get", bound(check_richpanel)),
        Check("shopify_rest", bound(check_shopify_rest)),
        Check("shopify_graphql", bound(check_shopify_graphql)),
        Check("shopify_token_refresh_last_success", bound(check_refresh_marker)),
        Check("openai_models", bound(check_openai)),
        Check("alarms", bound(check_alarms)),
    ]
    return checks


def run_preflight(run: RunContext) -> Report:
    request, config, progress = run.request, run.config, run.progress
    env = config.env(request.env)
    started = utc_now()
    ctx = PreflightContext(request, env, config)
    checks = preflight_checks(ctx)
    try:
        results = run_checks(
            checks, max_workers=config.max_concurrency, timeout_s=env.check_timeout_s, on_result=progress
        )
    finally:
        ctx.close()
    results += missing_checks([c.name for c in checks], results)
    return Report(
        command="preflight",
        env=request.env,
        run_id=run.run_id,
        started_at=started,
        finished_at=utc_now(),
        checks=results,
        requested_by=request.requested_by,
        pr=request.pr,
    )


def plan_preflight(request: RunRequest, config: CutoverConfig) -> Report:
    """A dry run: each check and the one system it would call, calling none of them."""
    env = config.env(request.env)
    flag = env.outbound_flag
    lever = (
        f"AWS SSM GetParameter {flag.ssm_parameter}"
        if hasattr(flag, "ssm_parameter")
        else f"AWS Lambda GetFunctionConfiguration {env.worker_function} ({flag.lambda_env})"
    )
    rollback_actions = " and ".join(ROLLBACK_ACTIONS_SSM if isinstance(flag, SsmFlag) else ROLLBACK_ACTIONS_LAMBDA)
    steps = [("aws_identity", f"AWS STS GetCallerIdentity (expects account {env.aws_account_id}, {env.aws_region})")]
    steps += [(f"secrets.{name}", f"AWS Secrets Manager DescribeSecret {sid}") for name, sid in env.secrets.items()]
    steps += [
        ("bot_agent_id_secret_present", f"AWS Secrets Manager DescribeSecret {env.secrets['richpanel_bot_agent_id']}"),
        ("env_flags", f"AWS Lambda GetFunctionConfiguration {env.worker_function}"),
        ("outbound_flag", lever),
        ("rollback_ready", f"{lever}, IAM SimulatePrincipalPolicy ({rollback_actions} on it) and the state store"),
        ("richpanel_get", f"Richpanel GET {env.endpoints.richpanel}/v1/users"),
        ("shopify_rest", f"Shopify GET {env.shopify_url()}/admin/api/{env.shopify.api_version}/shop.json"),
        ("shopify_graphql", f"Shopify POST {env.shopify_url()}/admin/api/{env.shopify.api_version}/graphql.json"),
        ("shopify_token_refresh_last_success", f"AWS CloudWatch Logs FilterLogEvents {env.worker_log_group}"),
        ("openai_models", f"OpenAI GET {env.openai_url()}/models"),
        ("alarms", f"AWS CloudWatch DescribeAlarms ({len(env.alarms)} alarms)"),
    ]
    now = utc_now()
    return Report(
        command="preflight",
        env=request.env,
        run_id=request.run_id or new_run_id(),
        started_at=now,
        finished_at=now,
        checks=[CheckResult(name=n, status=Status.SKIP, detail=f"dry run: would call {what}") for n, what in steps],
        requested_by=request.requested_by,
        pr=request.pr,
        dry_run=True,
    )
