"""AWS reads and the outbound-flag writes the cutover needs, as typed results.

Every botocore failure becomes `UpstreamError(system="aws", action="<api> <resource>", code=<AWS code>)`.
Secret values and environment values never appear in an error: calls that carry them drop the
upstream message (AWS validation messages can echo request values) and keep only the code.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar
from xml.etree import ElementTree

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from integrations.errors import UPSTREAM_TEXT_MAX, UpstreamError
from integrations.worker_log import ticket_event_form

# Service models are parsed once per process, not once per run (about 50 ms per run saved).
_MODEL_LOADER = botocore.loaders.create_loader()

# Clients are thread-safe and cost ~25 ms of CPU each to build, which a busy bot takes from its
# Slack acks: one per process per (service, region, endpoint, timeouts, environment), shared by
# every run. Refreshable credentials (roles, SSO) refresh inside the client as usual.
_SHARED_CLIENTS: dict[tuple[Any, ...], Any] = {}
_SHARED_LOCK = threading.Lock()
_ENVIRONMENT = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL_IAM",  # the IAM policy simulator may live elsewhere (moto has none)
)


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
    rejected: int = 0  # lines that contain the term but that `accept` refused (e.g. `<marker>=false`)


@dataclass(frozen=True)
class AlarmState:
    name: str
    state: str  # OK | ALARM | INSUFFICIENT_DATA
    actions_enabled: bool
    reason: str
    alarm_actions: tuple[str, ...] = ()  # AlarmActions' targets: none means going to ALARM notifies nobody


@dataclass(frozen=True)
class MetricSum:
    total: float
    datapoints: int
    complete: bool  # only when every page said StatusCode == "Complete"
    status_code: str


# --- results of the cutover commands' AWS reads (canary, enable-outbound, rollback) -----------


@dataclass(frozen=True)
class FlagReading:
    """The outbound lever as read back: its value and which write is in effect (the read-back proof)."""

    value: bool | None  # None: the SSM parameter or the function's environment key is absent
    version: str | None  # SSM parameter Version, or the function's RevisionId
    modified_at: datetime | None  # SSM LastModifiedDate, or the function's LastModified
    source: str = ""  # "ssm /rp-mw/prod/outbound_enabled" or "lambda rp-mw-prod-worker RICHPANEL_OUTBOUND_ENABLED"
    update_status: str | None = None  # Lambda LastUpdateStatus (InProgress | Successful | Failed); None for SSM
    written_version: str | None = None  # after a write: the version the write created (SSM) or returned (Lambda)
    arn: str | None = None  # the parameter's or the function's ARN: names the account the reading came from

    @property
    def overwritten(self) -> bool:
        """A write whose read-back shows another version: someone wrote after us."""
        return self.written_version is not None and self.version != self.written_version


@dataclass(frozen=True)
class MetricSeries:
    """A function's metric per period. `points` empty means no datapoint: zero or a wrong query, not proof of zero."""

    function: str
    metric: str
    points: tuple[tuple[datetime, float], ...]  # (period start, value), oldest first; only periods with data
    status_code: str  # the last page's StatusCode: Complete | PartialData | InternalError | Forbidden ("" if none)
    complete: bool  # every page read and the last said Complete
    messages: tuple[str, ...] = ()  # the service's messages (codes and values), e.g. why data is partial
    api_calls: int = 0

    @property
    def empty(self) -> bool:
        return not self.points

    @property
    def total(self) -> float:
        return float(sum(v for _, v in self.points))

    @property
    def last_at(self) -> datetime | None:
        return self.points[-1][0] if self.points else None


@dataclass(frozen=True)
class TicketEvent:
    """The worker's log line for one ticket (`marker ticket_id=<id>`, as text or JSON)."""

    found: bool
    timestamp: datetime | None
    message: str | None
    form: str | None  # "text" | "json" | None
    api_calls: int
    complete: bool  # False: the page bound was hit with pages left, so "not found" proves nothing
    candidates: int = 0  # lines the server matched that were not this ticket's marker line (checked client-side)
    filter_pattern: str = ""


@dataclass(frozen=True)
class InsightsResult:
    """A Logs Insights query. Rows only when the status is Complete: partial rows are never returned."""

    query_id: str
    status: str  # Complete | Scheduled | Running | Failed | Cancelled | Timeout | Unknown
    complete: bool
    rows: tuple[dict[str, str], ...]
    reason: str  # why it is not complete (person-readable); "" when complete
    polls: int


@dataclass(frozen=True)
class AlarmDetail:
    """What a watch needs of an alarm: can it act, and what is it saying."""

    name: str
    kind: str  # "metric" | "composite"
    state: str  # OK | ALARM | INSUFFICIENT_DATA
    reason: str
    actions_enabled: bool
    alarm_actions: tuple[str, ...]
    ok_actions: tuple[str, ...]
    insufficient_data_actions: tuple[str, ...]
    state_updated_at: datetime | None
    treat_missing_data: str | None  # metric alarms only
    namespace: str | None
    metric: str | None
    dimensions: dict[str, str]


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
                    client.meta.events.register("before-parse", reject_malformed)
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
        self,
        log_group: str,
        term: str,
        *,
        since: datetime,
        until: datetime,
        max_calls: int = 20,
        accept: Callable[[str], bool] | None = None,
    ) -> LogLookup:
        """Newest event containing `term` as a phrase, filtered server-side, that `accept` (if given) keeps.

        Unrelated lines never reach us, so the number of calls depends on the matches, not on log
        volume. Pages may be empty while nextToken remains (the service scans in slices), hence the bound.
        A phrase is only a candidate (`<term>=false` contains it too): `accept` decides on each message.
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
        calls = rejected = 0
        token: str | None = None
        while calls < max_calls:
            if token:
                kwargs["nextToken"] = token
            resp = self._call(action, lambda: logs.filter_log_events(**kwargs))
            calls += 1
            for event in resp.get("events", []):
                ts, message = event.get("timestamp"), event.get("message") or ""
                if accept is not None and not accept(message):
                    rejected += 1
                elif ts is not None and (newest_ts is None or ts > newest_ts):
                    newest_ts, newest_msg = ts, message
            token = resp.get("nextToken")
            if not token:
                break
        timestamp = datetime.fromtimestamp(newest_ts / 1000, tz=UTC) if newest_ts is not None else None
        return LogLookup(
            timestamp=timestamp, message=newest_msg, api_calls=calls, complete=not token, rejected=rejected
        )

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
                            alarm_actions=tuple(alarm.get("AlarmActions") or ()),
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

    # --- the cutover commands: the lever with its read-back proof ----------------------------

    def ssm_flag(self, name: str) -> FlagReading:
        """The SSM form of the lever, with Version and LastModifiedDate; value None when the parameter is absent."""
        ssm = self._client("ssm")
        action = f"get_parameter {name}"
        source = f"ssm {name}"
        try:
            resp = ssm.get_parameter(Name=name)
        except ClientError as exc:
            if _code(exc) == "ParameterNotFound":
                return FlagReading(None, None, None, source=source)
            _raise_upstream(action, exc)
        except BotoCoreError as exc:
            _raise_upstream(action, exc)
        param = resp["Parameter"]
        version = param.get("Version")
        return FlagReading(
            value=_parse_flag(action, param["Value"]),
            version=str(version) if version is not None else None,
            modified_at=_aware(param.get("LastModifiedDate")),
            source=source,
            arn=param.get("ARN"),
        )

    def set_ssm_flag(self, name: str, value: bool) -> FlagReading:
        """Overwrite (a new version each time), then read back: the reading says what is in effect now."""
        ssm = self._client("ssm")
        text = "true" if value else "false"
        resp = self._call(
            f"put_parameter {name}",
            lambda: ssm.put_parameter(Name=name, Value=text, Type="String", Overwrite=True),
        )
        read = self.ssm_flag(name)
        if read.value is None:
            raise UpstreamError("aws", f"get_parameter {name}", "the parameter was written but cannot be read back")
        written = resp.get("Version")
        return replace(read, written_version=str(written) if written is not None else None)

    def lambda_flag(self, function_name: str, key: str) -> FlagReading:
        """The Lambda-environment form of the lever, with RevisionId and LastModified; None when the key is absent."""
        config = self._function_config(function_name)
        env = config.get("Environment", {}).get("Variables", {})
        source = f"lambda {function_name} {key}"
        value = _parse_flag(f"get_function_configuration {function_name} {key}", env[key]) if key in env else None
        return FlagReading(
            value=value,
            version=config.get("RevisionId"),
            modified_at=_lambda_time(config.get("LastModified")),
            source=source,
            update_status=config.get("LastUpdateStatus"),
            arn=config.get("FunctionArn"),
        )

    def set_lambda_flag(self, function_name: str, key: str, value: bool) -> FlagReading:
        """Read the whole environment, change one key, write it back with RevisionId, read back.

        update_function_configuration replaces the whole map: every other variable is written back as read.
        A RevisionId mismatch (someone changed the function since our read) is refused by AWS
        (PreconditionFailedException) and becomes an UpstreamError that says so.
        """
        lam = self._client("lambda")
        config = self._function_config(function_name)
        env = dict(config.get("Environment", {}).get("Variables", {}))
        env[key] = "true" if value else "false"
        kwargs: dict[str, Any] = {"FunctionName": function_name, "Environment": {"Variables": env}}
        if config.get("RevisionId"):
            kwargs["RevisionId"] = config["RevisionId"]
        resp = self._call(
            f"update_function_configuration {function_name}",
            lambda: lam.update_function_configuration(**kwargs),
            sensitive=True,
        )
        read = self.lambda_flag(function_name, key)
        if read.value is None:
            raise UpstreamError(
                "aws", f"get_function_configuration {function_name}", f"{key} was written but is absent on read-back"
            )
        return replace(read, written_version=resp.get("RevisionId"))

    # --- the cutover commands: the worker's metrics, logs and URL ----------------------------

    def metric_datapoints(
        self,
        function: str,
        metric: str,
        start: datetime,
        end: datetime,
        period_s: int = 60,
        *,
        namespace: str = "AWS/Lambda",
        stat: str = "Sum",
    ) -> MetricSeries:
        """One value per period that has data, oldest first, and the StatusCode that says whether it is all.

        The caller decides: PartialData (or no result at all) is not complete; `empty` is not zero.
        """
        cw = self._client("cloudwatch")
        kwargs: dict[str, Any] = {
            "MetricDataQueries": [
                {
                    "Id": "m0",
                    "MetricStat": {
                        "Metric": {
                            "Namespace": namespace,
                            "MetricName": metric,
                            "Dimensions": [{"Name": "FunctionName", "Value": function}],
                        },
                        "Period": period_s,
                        "Stat": stat,
                    },
                    "ReturnData": True,
                }
            ],
            "StartTime": start,
            "EndTime": end,
            "ScanBy": "TimestampAscending",
        }
        action = f"get_metric_data {namespace}/{metric} {function}"
        points: dict[datetime, float] = {}
        status = ""
        messages: list[str] = []
        calls = 0
        token: str | None = None
        for _ in range(_MAX_PAGES):
            resp = self._call(action, lambda: cw.get_metric_data(**kwargs))
            calls += 1
            messages += [_metric_message(m) for m in resp.get("Messages", [])]
            page_status = ""
            for result in resp.get("MetricDataResults", []):
                if result.get("Id") != "m0":
                    continue
                for ts, value in zip(result.get("Timestamps", []), result.get("Values", []), strict=False):
                    stamp = _aware(ts)
                    if stamp is not None:
                        points[stamp] = points.get(stamp, 0.0) + float(value)
                page_status = result.get("StatusCode", "")
                messages += [_metric_message(m) for m in result.get("Messages", [])]
            status = page_status
            token = resp.get("NextToken")
            if not token:
                break
            kwargs["NextToken"] = token
        return MetricSeries(
            function=function,
            metric=metric,
            points=tuple(sorted(points.items())),
            status_code=status,
            complete=not token and status == "Complete",
            messages=tuple(messages),
            api_calls=calls,
        )

    def find_ticket_event(
        self,
        log_group: str,
        marker: str,
        ticket_id: str,
        start: datetime,
        end: datetime,
        *,
        max_calls: int = 20,
    ) -> TicketEvent:
        """The first line in [start, end] that is `marker` for `ticket_id`, as text or as JSON.

        The server filters on simple terms (the marker and the id, both required), so unrelated lines
        never reach us and the calls per poll do not grow with log volume; each line it returns is then
        checked here (the marker as the event, the id exactly: `1042` never matches `10420`). Pages may
        be empty while nextToken remains: they are followed up to `max_calls`. `complete` False means
        the bound was hit, so an absence proves nothing.
        """
        if not marker or '"' in marker or any(c.isspace() for c in marker):
            raise ValueError("marker must be one word without quotes")
        if not ticket_id or '"' in ticket_id or any(c.isspace() for c in ticket_id):
            raise ValueError("ticket_id must be one word without quotes")
        pattern = _ticket_filter_pattern(marker, ticket_id)
        logs = self._client("logs")
        action = f"filter_log_events {log_group}"
        kwargs: dict[str, Any] = {
            "logGroupName": log_group,
            "filterPattern": pattern,
            "startTime": _ms(start),
            "endTime": _ms(end),
        }
        calls = 0
        candidates = 0
        token: str | None = None
        while calls < max_calls:
            if token:
                kwargs["nextToken"] = token
            resp = self._call(action, lambda: logs.filter_log_events(**kwargs))
            calls += 1
            for event in resp.get("events", []):
                message = event.get("message") or ""
                form = ticket_line_form(message, marker, ticket_id)
                if form is None:
                    candidates += 1
                    continue
                ts = event.get("timestamp")
                return TicketEvent(
                    found=True,
                    timestamp=datetime.fromtimestamp(ts / 1000, tz=UTC) if ts is not None else None,
                    message=message,
                    form=form,
                    api_calls=calls,
                    complete=True,
                    candidates=candidates,
                    filter_pattern=pattern,
                )
            token = resp.get("nextToken")
            if not token:
                break
        return TicketEvent(
            found=False,
            timestamp=None,
            message=None,
            form=None,
            api_calls=calls,
            complete=not token,
            candidates=candidates,
            filter_pattern=pattern,
        )

    def insights_query(
        self,
        log_group: str,
        query: str,
        start: datetime,
        end: datetime,
        timeout_s: float = 30.0,
        *,
        poll_s: float = 0.5,
        limit: int | None = None,
    ) -> InsightsResult:
        """Start a Logs Insights query and poll it; rows only when the status is Complete.

        Scheduled or Running past `timeout_s`, or Failed | Cancelled | Timeout | Unknown, come back as an
        explicit incomplete result (no rows: partial rows are not evidence) with the reason.
        """
        logs = self._client("logs")
        action = f"start_query {log_group}"
        kwargs: dict[str, Any] = {
            "logGroupName": log_group,
            "startTime": _ms(start) // 1000,  # Logs Insights takes seconds, not ms
            "endTime": -(-_ms(end) // 1000),  # rounded up: the end second is inside the window
            "queryString": query,
        }
        if limit is not None:
            kwargs["limit"] = limit
        query_id = self._call(action, lambda: logs.start_query(**kwargs))["queryId"]
        deadline = time.monotonic() + timeout_s
        polls = 0
        status = "Unknown"
        while True:
            resp = self._call(f"get_query_results {log_group}", lambda: logs.get_query_results(queryId=query_id))
            polls += 1
            status = str(resp.get("status") or "Unknown")
            if status == "Complete":
                rows = tuple(
                    {f["field"]: f.get("value", "") for f in row if "field" in f} for row in resp.get("results", [])
                )
                return InsightsResult(query_id, status, True, rows, "", polls)
            if status not in ("Scheduled", "Running"):
                reason = f"the Logs Insights query ended {status}: its rows are not evidence; run it again"
                return InsightsResult(query_id, status, False, (), reason, polls)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                reason = (
                    f"the Logs Insights query was still {status} after {timeout_s:g} s: partial rows are not "
                    "evidence; retry or widen the timeout"
                )
                return InsightsResult(query_id, status, False, (), reason, polls)
            time.sleep(min(poll_s, remaining))

    def function_url(self, function: str) -> str | None:
        """The function's URL (get_function_url_config); None when it has none."""
        lam = self._client("lambda")
        action = f"get_function_url_config {function}"
        try:
            resp = lam.get_function_url_config(FunctionName=function)
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                return None
            _raise_upstream(action, exc)
        except BotoCoreError as exc:
            _raise_upstream(action, exc)
        return resp.get("FunctionUrl") or None

    def alarm_details(self, names: Sequence[str]) -> dict[str, AlarmDetail]:
        """Everything a watch needs of the named alarms; names not found are absent from the result."""
        cw = self._client("cloudwatch")
        wanted = list(dict.fromkeys(names))
        found: dict[str, AlarmDetail] = {}
        for i in range(0, len(wanted), _ALARM_CHUNK):  # an empty AlarmNames would list every alarm
            chunk = wanted[i : i + _ALARM_CHUNK]
            kwargs: dict[str, Any] = {
                "AlarmNames": chunk,
                "AlarmTypes": ["MetricAlarm", "CompositeAlarm"],
                "MaxRecords": 100,
            }
            action = f"describe_alarms {','.join(chunk)}"
            for _ in range(_MAX_PAGES):
                resp = self._call(action, lambda kw=kwargs: cw.describe_alarms(**kw))
                kinds = [("metric", a) for a in resp.get("MetricAlarms", [])] + [
                    ("composite", a) for a in resp.get("CompositeAlarms", [])
                ]
                for kind, alarm in kinds:
                    name = alarm.get("AlarmName", "")
                    if name in chunk:
                        found[name] = _alarm_detail(kind, alarm)
                token = resp.get("NextToken")
                if not token:
                    break
                kwargs["NextToken"] = token
        return found

    # --- IAM policy simulation ---------------------------------------------------------------

    def simulate(
        self, policy_source_arn: str, actions: Sequence[str], resources: Sequence[str] = ("*",)
    ) -> dict[tuple[str, str], str]:
        """iam:SimulatePrincipalPolicy: the decision per (action, resource).

        Decisions are IAM's: allowed | explicitDeny | implicitDeny. A pair the service did not answer is
        "missing" (unknown is not allowed). The source must be a role or user ARN: see
        `role_arn_from_caller`. The IAM endpoint comes from AWS_ENDPOINT_URL_IAM when set.
        """
        iam = self._client("iam")
        wanted_resources = list(resources) or ["*"]
        action = f"simulate_principal_policy {policy_source_arn}"
        kwargs: dict[str, Any] = {
            "PolicySourceArn": policy_source_arn,
            "ActionNames": list(actions),
            "ResourceArns": wanted_resources,
        }
        decisions: dict[tuple[str, str], str] = {}
        for _ in range(_MAX_PAGES):
            try:
                resp = iam.simulate_principal_policy(**kwargs)
            except ClientError as exc:
                if _code(exc) in _ACCESS_DENIED:
                    raise UpstreamError(
                        "aws",
                        action,
                        "access denied: the cutover role may not simulate its own policy; grant it "
                        "iam:SimulatePrincipalPolicy on itself",
                        status_code=exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"),
                        code=_code(exc),
                    ) from exc
                if _code(exc) == "NoSuchEntity":
                    raise UpstreamError(
                        "aws",
                        action,
                        "no such role or user: check the ARN (a role with a path needs its full ARN, see iam:GetRole)",
                        status_code=exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"),
                        code="NoSuchEntity",
                    ) from exc
                _raise_upstream(action, exc)
            except BotoCoreError as exc:
                _raise_upstream(action, exc)
            for result in resp.get("EvaluationResults", []):
                name = result.get("EvalActionName", "")
                decisions[(name, result.get("EvalResourceName") or "*")] = result.get("EvalDecision", "")
                for specific in result.get("ResourceSpecificResults", []) or []:
                    key = (name, specific.get("EvalResourceName") or "*")
                    decisions[key] = specific.get("EvalResourceDecision", "")
            if not resp.get("IsTruncated") or not resp.get("Marker"):
                break
            kwargs["Marker"] = resp["Marker"]
        for name in actions:
            for resource in wanted_resources:
                decisions.setdefault((name, resource), "missing")
        return decisions

    def role_arn(self, role_name: str) -> str:
        """The full ARN of a role (with its path), for a role whose assumed-role ARN omits the path."""
        iam = self._client("iam")
        resp = self._call(f"get_role {role_name}", lambda: iam.get_role(RoleName=role_name))
        return resp["Role"]["Arn"]


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


class MalformedAnswer(BotoCoreError):
    """A body that cannot be read (cut off, not JSON or XML). botocore would parse a broken JSON body as an
    empty success (a secret "present", a flag "absent"): unknown is never success."""

    fmt = "the answer could not be read ({detail}): nothing in it was trusted"


def reject_malformed(operation_model: Any, response_dict: dict[str, Any], **_: Any) -> None:
    """botocore's before-parse hook: a JSON or XML answer must parse before botocore reads it."""
    body = response_dict.get("body")
    if not isinstance(body, bytes | bytearray) or not body.strip() or operation_model.has_streaming_output:
        return
    service = operation_model.service_model
    protocol = getattr(service, "resolved_protocol", None) or service.metadata.get("protocol", "")
    status = response_dict.get("status_code")
    try:
        if protocol in ("json", "rest-json"):
            json.loads(body.decode("utf-8"))
        elif protocol in ("query", "ec2", "rest-xml"):
            ElementTree.fromstring(body)  # noqa: S314 - botocore parses the same bytes with ElementTree next
    except (ValueError, ElementTree.ParseError) as exc:  # the body is not echoed: it may hold anything
        raise MalformedAnswer(detail=f"HTTP {status}, {len(body)} bytes, {type(exc).__name__}") from None


def _raise_upstream(action: str, exc: ClientError | BotoCoreError, *, sensitive: bool = False) -> NoReturn:
    if isinstance(exc, ClientError):
        code = _code(exc) or None
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = "" if sensitive else str(exc.response.get("Error", {}).get("Message", ""))[:UPSTREAM_TEXT_MAX]
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


# --- helpers of the cutover commands' reads ---------------------------------------------------

_SIMPLE_TERM = re.compile(r"[A-Za-z0-9_]+")
_CALLER_ARN = re.compile(r"arn:(?P<partition>aws[\w-]*):(?P<service>sts|iam)::(?P<account>\d{12}):(?P<resource>.+)")


def role_arn_from_caller(arn: str) -> str:
    """The ARN to simulate for the caller: an assumed role becomes its IAM role; users and roles pass through.

    `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION` -> `arn:aws:iam::ACCOUNT:role/ROLE`. The STS ARN
    carries no role path: a role with a path needs `Aws.role_arn(ROLE)` (iam:GetRole) for its full ARN.
    """
    m = _CALLER_ARN.fullmatch(arn.strip())
    if m is None:
        raise ValueError("not an IAM or STS principal ARN")
    partition, service, account, resource = m["partition"], m["service"], m["account"], m["resource"]
    if service == "iam" and resource.startswith(("user/", "role/")):
        return arn.strip()
    if service == "sts" and resource.startswith("assumed-role/"):
        parts = resource.split("/")
        if len(parts) >= 3 and parts[1]:
            return f"arn:{partition}:iam::{account}:role/{parts[1]}"
    raise ValueError("cannot simulate this principal: use a role or user ARN")


def ticket_line_form(message: str, marker: str, ticket_id: str) -> str | None:
    """The form ("json" or "text") when `message` is the worker's `marker` line for `ticket_id`, else None.

    The marker must be the line's event (integrations/worker_log.py, the parser the preflight uses too),
    not merely a word on it: `retrying after <marker> ticket_id=1042` is not that line. The id must be
    exactly the ticket's (`1042` never matches `10420`).
    """
    return ticket_event_form(message, marker, ticket_id)


def _ticket_filter_pattern(marker: str, ticket_id: str) -> str:
    # Both as plain terms (AND) when both are simple words: the server then returns only this ticket's lines.
    # A pattern of two terms starting with a quote is read as one phrase by moto, hence the fallback to
    # the marker alone (a quoted phrase when it is not a simple word).
    if _SIMPLE_TERM.fullmatch(marker) and marker[0].isalpha() and _SIMPLE_TERM.fullmatch(ticket_id):
        return f"{marker} {ticket_id}"
    return marker if _SIMPLE_TERM.fullmatch(marker) and marker[0].isalpha() else f'"{marker}"'


def _aware(moment: Any) -> datetime | None:
    """A timezone-aware UTC datetime (botocore gives tzlocal or tzutc; naive means UTC)."""
    if not isinstance(moment, datetime):
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _lambda_time(raw: Any) -> datetime | None:
    """Lambda's LastModified: `2024-05-01T12:00:00.000+0000` (a string, not a timestamp)."""
    if isinstance(raw, datetime):
        return _aware(raw)
    if not isinstance(raw, str) or not raw:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            return datetime.strptime(raw, fmt).astimezone(UTC)
        except ValueError:
            continue
    try:
        return _aware(datetime.fromisoformat(raw))
    except ValueError:
        return None


def _metric_message(message: dict[str, Any]) -> str:
    code, value = message.get("Code", ""), message.get("Value", "")
    return f"{code}: {value}" if code and value else str(code or value)


def _alarm_detail(kind: str, alarm: dict[str, Any]) -> AlarmDetail:
    return AlarmDetail(
        name=alarm.get("AlarmName", ""),
        kind=kind,
        state=alarm.get("StateValue", ""),
        reason=alarm.get("StateReason", ""),
        actions_enabled=bool(alarm.get("ActionsEnabled", False)),
        alarm_actions=tuple(alarm.get("AlarmActions", [])),
        ok_actions=tuple(alarm.get("OKActions", [])),
        insufficient_data_actions=tuple(alarm.get("InsufficientDataActions", [])),
        state_updated_at=_aware(alarm.get("StateUpdatedTimestamp")),
        treat_missing_data=alarm.get("TreatMissingData") if kind == "metric" else None,
        namespace=alarm.get("Namespace"),
        metric=alarm.get("MetricName"),
        dimensions={d["Name"]: d["Value"] for d in alarm.get("Dimensions", []) if "Name" in d and "Value" in d},
    )
