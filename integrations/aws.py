"""AWS reads and the outbound-flag writes the cutover needs, as typed results.

Every botocore failure becomes `UpstreamError(system="aws", action="<api> <resource>", code=<AWS code>)`.
Secret values and environment values never appear in an error: calls that carry them drop the
upstream message (AWS validation messages can echo request values) and keep only the code.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from integrations.errors import UpstreamError

# Service models are parsed once per process, not once per run (about 50 ms per run saved).
_MODEL_LOADER = botocore.loaders.create_loader()

# Clients are thread-safe and cost ~25 ms of CPU each to build, which a busy bot takes from its
# Slack acks: one per process per (service, region, endpoint, timeouts, environment), shared by
# every run. Refreshable credentials (roles, SSO) refresh inside the client as usual.
_SHARED_CLIENTS: dict[tuple[Any, ...], Any] = {}
_SHARED_LOCK = threading.Lock()
_ENVIRONMENT = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")


def _environment_key() -> tuple[str | None, ...]:
    """What boto3 reads from the environment when it builds a client: a change means a new client."""
    return tuple(os.environ.get(name) for name in _ENVIRONMENT)


SERVICES = ("sts", "secretsmanager", "lambda", "logs", "cloudwatch", "ssm")


def preload_models(services: Sequence[str] = SERVICES) -> None:
    """Parse the service models now (a throwaway client each, no network), e.g. before forking workers."""
    session = _new_session("us-east-1")
    for service in services:
        session.client(service, aws_access_key_id="preload", aws_secret_access_key="preload")


def _new_session(region: str) -> boto3.session.Session:
    # Sessions are not thread-safe: one per client built (rare, under the lock), sharing the models.
    botocore_session = botocore.session.Session()
    botocore_session.register_component("data_loader", _MODEL_LOADER)
    return boto3.session.Session(botocore_session=botocore_session, region_name=region)


T = TypeVar("T")

_ALARM_CHUNK = 100  # describe_alarms accepts at most 100 AlarmNames per call
_MAX_PAGES = 20  # bound for pagination loops that should end after one or two pages

# Codes that mean "the caller may not do this". moto answers with the bare code "403".
_ACCESS_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "403"}
_BAD_CREDENTIALS = {
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
}
_THROTTLED = {"Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded"}
_NOT_FOUND = {"ResourceNotFoundException", "ParameterNotFound", "ResourceNotFound", "NotFound"}


@dataclass(frozen=True)
class CallerIdentity:
    account: str
    arn: str
    region: str


@dataclass(frozen=True)
class SecretPresence:
    secret_id: str
    exists: bool
    deleted: bool  # scheduled for deletion: counts as not present
    last_changed: datetime | None


@dataclass(frozen=True)
class LogLookup:
    timestamp: datetime | None  # newest matching event, None when none matched
    message: str | None
    api_calls: int
    complete: bool  # False: the call bound was hit with pages left, so a newer event may exist


@dataclass(frozen=True)
class AlarmState:
    name: str
    state: str  # OK | ALARM | INSUFFICIENT_DATA
    actions_enabled: bool
    reason: str


@dataclass(frozen=True)
class MetricSum:
    total: float
    datapoints: int
    complete: bool  # only when every page said StatusCode == "Complete"
    status_code: str


class Aws:
    """One boto3 session for one region; clients are created lazily, once, under a lock."""

    def __init__(
        self,
        *,
        region: str,
        endpoint_url: str | None = None,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 10.0,
        max_attempts: int = 2,
    ) -> None:
        self.region = region
        # endpoint_url=None lets boto3 honour AWS_ENDPOINT_URL (and per-service variants) itself.
        self._endpoint_url = endpoint_url
        self._config_key = (connect_timeout_s, read_timeout_s, max_attempts)
        self._config = Config(
            region_name=region,
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            # total_max_attempts counts the first try, so max_attempts=2 means one retry.
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
        )
        self._clients: dict[str, Any] = {}

    def _client(self, service: str) -> Any:
        client = self._clients.get(service)
        if client is None:
            key = (service, self.region, self._endpoint_url, self._config_key, _environment_key())
            with _SHARED_LOCK:
                client = _SHARED_CLIENTS.get(key)
                if client is None:
                    client = _new_session(self.region).client(
                        service, endpoint_url=self._endpoint_url, config=self._config
                    )
                    _SHARED_CLIENTS[key] = client
            self._clients[service] = client
        return client

    def _call(self, action: str, fn: Callable[[], T], *, sensitive: bool = False) -> T:
        try:
            return fn()
        except (ClientError, BotoCoreError) as exc:
            _raise_upstream(action, exc, sensitive=sensitive)

    # --- identity and secrets -------------------------------------------------------------

    def caller_identity(self) -> CallerIdentity:
        sts = self._client("sts")
        resp = self._call("get_caller_identity", sts.get_caller_identity)
        return CallerIdentity(account=resp["Account"], arn=resp["Arn"], region=sts.meta.region_name)

    def secret_presence(self, secret_id: str) -> SecretPresence:
        """Metadata only: describe_secret never reads the value."""
        sm = self._client("secretsmanager")
        try:
            resp = sm.describe_secret(SecretId=secret_id)
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                return SecretPresence(secret_id, exists=False, deleted=False, last_changed=None)
            _raise_upstream(f"describe_secret {secret_id}", exc)
        except BotoCoreError as exc:
            _raise_upstream(f"describe_secret {secret_id}", exc)
        deleted = resp.get("DeletedDate") is not None
        last_changed = resp.get("LastChangedDate") or resp.get("CreatedDate")
        return SecretPresence(secret_id, exists=not deleted, deleted=deleted, last_changed=last_changed)

    def secret_value(self, secret_id: str) -> str:
        """The SecretString. The caller registers it with the redactor before anything else sees it."""
        sm = self._client("secretsmanager")
        resp = self._call(
            f"get_secret_value {secret_id}", lambda: sm.get_secret_value(SecretId=secret_id), sensitive=True
        )
        value = resp.get("SecretString")
        if value is None:
            raise UpstreamError(
                "aws",
                f"get_secret_value {secret_id}",
                "the secret has no SecretString (binary secrets are unsupported)",
            )
        return value

    # --- the worker function ---------------------------------------------------------------

    def _function_config(self, function_name: str) -> dict[str, Any]:
        lam = self._client("lambda")
        # sensitive: the response holds the whole environment, which may contain secrets.
        return self._call(
            f"get_function_configuration {function_name}",
            lambda: lam.get_function_configuration(FunctionName=function_name),
            sensitive=True,
        )

    def function_env(self, function_name: str, keys: Iterable[str]) -> dict[str, str]:
        """Only the named keys that are present; other values may be secrets and never leave here."""
        env = self._function_config(function_name).get("Environment", {}).get("Variables", {})
        return {k: env[k] for k in keys if k in env}

    # --- logs --------------------------------------------------------------------------------

    def newest_log_event(
        self, log_group: str, term: str, *, since: datetime, until: datetime, max_calls: int = 20
    ) -> LogLookup:
        """Newest event containing `term` as a phrase, filtered server-side.

        Unrelated lines never reach us, so the number of calls depends on the matches, not on log
        volume. Pages may be empty while nextToken remains (the service scans in slices), hence the bound.
        """
        if not term or '"' in term:
            raise ValueError("log term must be a non-empty phrase without double quotes")
        logs = self._client("logs")
        action = f"filter_log_events {log_group}"
        kwargs: dict[str, Any] = {
            "logGroupName": log_group,
            "filterPattern": f'"{term}"',
            "startTime": _ms(since),
            "endTime": _ms(until),
        }
        newest_ts: int | None = None
        newest_msg: str | None = None
        calls = 0
        token: str | None = None
        while calls < max_calls:
            if token:
                kwargs["nextToken"] = token
            resp = self._call(action, lambda: logs.filter_log_events(**kwargs))
            calls += 1
            for event in resp.get("events", []):
                ts = event.get("timestamp")
                if ts is not None and (newest_ts is None or ts > newest_ts):
                    newest_ts, newest_msg = ts, event.get("message")
            token = resp.get("nextToken")
            if not token:
                break
        timestamp = datetime.fromtimestamp(newest_ts / 1000, tz=UTC) if newest_ts is not None else None
        return LogLookup(timestamp=timestamp, message=newest_msg, api_calls=calls, complete=not token)

    # --- CloudWatch -------------------------------------------------------------------------

    def alarms(self, names: Sequence[str]) -> dict[str, AlarmState]:
        """State of the named alarms; names not found are simply absent from the result."""
        cw = self._client("cloudwatch")
        wanted = list(dict.fromkeys(names))
        found: dict[str, AlarmState] = {}
        for i in range(0, len(wanted), _ALARM_CHUNK):  # an empty AlarmNames would list every alarm
            chunk = wanted[i : i + _ALARM_CHUNK]
            kwargs: dict[str, Any] = {
                "AlarmNames": chunk,
                "AlarmTypes": ["MetricAlarm", "CompositeAlarm"],  # the default omits composite alarms
                "MaxRecords": 100,
            }
            action = f"describe_alarms {','.join(chunk)}"
            for _ in range(_MAX_PAGES):
                resp = self._call(action, lambda kw=kwargs: cw.describe_alarms(**kw))
                for alarm in [*resp.get("MetricAlarms", []), *resp.get("CompositeAlarms", [])]:
                    name = alarm["AlarmName"]
                    if name in chunk:
                        found[name] = AlarmState(
                            name=name,
                            state=alarm.get("StateValue", ""),
                            actions_enabled=bool(alarm.get("ActionsEnabled", False)),
                            reason=alarm.get("StateReason", ""),
                        )
                token = resp.get("NextToken")
                if not token:
                    break
                kwargs["NextToken"] = token
        return found

    def metric_sum(
        self,
        namespace: str,
        metric_name: str,
        dimensions: dict[str, str],
        *,
        since: datetime,
        until: datetime,
        period_s: int = 60,
    ) -> MetricSum:
        """Sum of a metric over [since, until). No datapoints can mean zero or a wrong query: callers decide."""
        cw = self._client("cloudwatch")
        kwargs: dict[str, Any] = {
            "MetricDataQueries": [
                {
                    "Id": "m0",
                    "MetricStat": {
                        "Metric": {
                            "Namespace": namespace,
                            "MetricName": metric_name,
                            "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
                        },
                        "Period": period_s,
                        "Stat": "Sum",
                    },
                    "ReturnData": True,
                }
            ],
            "StartTime": since,
            "EndTime": until,
        }
        action = f"get_metric_data {namespace}/{metric_name}"
        total = 0.0
        points = 0
        status = "Complete"
        token: str | None = None
        for _ in range(_MAX_PAGES):
            resp = self._call(action, lambda: cw.get_metric_data(**kwargs))
            for result in resp.get("MetricDataResults", []):
                values = result.get("Values", [])
                total += float(sum(values))
                points += len(values)
                status = result.get("StatusCode", "")
            token = resp.get("NextToken")
            if not token:
                break
            kwargs["NextToken"] = token
        # PartialData on an earlier page is normal when NextToken follows; the last page decides.
        complete = not token and status == "Complete"
        return MetricSum(total=total, datapoints=points, complete=complete, status_code=status)

    # --- the outbound flag ------------------------------------------------------------------

    def read_ssm_flag(self, name: str) -> bool | None:
        """None when the parameter does not exist."""
        ssm = self._client("ssm")
        action = f"get_parameter {name}"
        try:
            resp = ssm.get_parameter(Name=name)
        except ClientError as exc:
            if _code(exc) == "ParameterNotFound":
                return None
            _raise_upstream(action, exc)
        except BotoCoreError as exc:
            _raise_upstream(action, exc)
        return _parse_flag(action, resp["Parameter"]["Value"])

    def write_ssm_flag(self, name: str, value: bool) -> bool:
        """Overwrite, then return what a read finds (not what we meant to write)."""
        ssm = self._client("ssm")
        text = "true" if value else "false"
        self._call(
            f"put_parameter {name}",
            lambda: ssm.put_parameter(Name=name, Value=text, Type="String", Overwrite=True),
        )
        read = self.read_ssm_flag(name)
        if read is None:
            raise UpstreamError("aws", f"get_parameter {name}", "the parameter was written but cannot be read back")
        return read

    def read_lambda_flag(self, function_name: str, key: str) -> bool | None:
        """None when the key is not in the function's environment."""
        env = self.function_env(function_name, [key])
        if key not in env:
            return None
        return _parse_flag(f"get_function_configuration {function_name} {key}", env[key])

    def write_lambda_flag(self, function_name: str, key: str, value: bool) -> bool:
        """update_function_configuration replaces the whole map: read, merge one key, write with RevisionId."""
        lam = self._client("lambda")
        config = self._function_config(function_name)
        env = dict(config.get("Environment", {}).get("Variables", {}))
        env[key] = "true" if value else "false"
        kwargs: dict[str, Any] = {"FunctionName": function_name, "Environment": {"Variables": env}}
        if config.get("RevisionId"):
            kwargs["RevisionId"] = config["RevisionId"]  # refuses the write if someone changed it since the read
        self._call(
            f"update_function_configuration {function_name}",
            lambda: lam.update_function_configuration(**kwargs),
            sensitive=True,
        )
        read = self.read_lambda_flag(function_name, key)
        if read is None:
            raise UpstreamError(
                "aws", f"get_function_configuration {function_name}", f"{key} was written but is absent on read-back"
            )
        return read


def _ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # naive times are UTC, as boto3 treats them
    return int(moment.timestamp() * 1000)


def _parse_flag(action: str, raw: str) -> bool:
    text = raw.strip().lower()
    if text in ("true", "false"):
        return text == "true"
    # The value itself is not echoed: a misconfigured key could name a secret.
    raise UpstreamError("aws", action, f"flag value is not true or false ({len(raw)} characters)", code="InvalidFlag")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _raise_upstream(action: str, exc: ClientError | BotoCoreError, *, sensitive: bool = False) -> NoReturn:
    if isinstance(exc, ClientError):
        code = _code(exc) or None
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = "" if sensitive else str(exc.response.get("Error", {}).get("Message", ""))[:300]
        raise UpstreamError("aws", action, _client_reason(code or "", message), status_code=status, code=code) from exc
    name = type(exc).__name__
    if isinstance(exc, ParamValidationError) and sensitive:
        detail = "invalid request parameters (details withheld: they can echo request values)"
    else:
        detail = str(exc)
    raise UpstreamError("aws", action, _botocore_reason(name, detail), code=name) from exc


def _client_reason(code: str, message: str) -> str:
    suffix = f" ({message})" if message else ""
    if code in _ACCESS_DENIED:
        return f"access denied: grant the cutover role this permission{suffix}"
    if code in _BAD_CREDENTIALS:
        return f"the AWS credentials are invalid or expired: refresh them{suffix}"
    if code in _THROTTLED:
        return f"throttled by AWS: retry shortly{suffix}"
    if code in _NOT_FOUND:
        return f"not found: check the name and the region{suffix}"
    if code == "PreconditionFailedException":
        return f"changed by someone else since it was read (RevisionId): read again and retry{suffix}"
    if code == "ResourceConflictException":
        return f"another update is in progress: retry when it has finished{suffix}"
    return f"AWS refused the call{suffix}"


def _botocore_reason(name: str, detail: str) -> str:
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return "no AWS credentials found: configure the credential chain (env, profile or role)"
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError"):
        return f"cannot reach the AWS endpoint: {detail}"
    if name == "ReadTimeoutError":
        return f"AWS did not answer in time: {detail}"
    return detail
