"""A loopback AWS for the tests and the demo: moto's ThreadedMotoServer plus a seed of the cutover's world.

moto keeps its state in process-wide backends, so every sandbox in one process shares the same
state, and `reset()` clears all of it.
"""

from __future__ import annotations

import io
import json
import random
import time
import urllib.request
import uuid
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.config import Config
from moto.moto_server.werkzeug_app import MotoRequestHandler
from moto.server import ThreadedMotoServer

FAKE_KEY = "testing"

_LOG_BATCH_EVENTS = 10_000  # put_log_events limits: 10,000 events, 1 MiB (26 bytes overhead each), 24 h span
_LOG_BATCH_BYTES = 1_000_000
_LOG_BATCH_SPAN_MS = 24 * 3600 * 1000 - 1
_METRIC_BATCH = 500


@dataclass
class AwsSeed:
    region: str
    secrets: dict[str, str]  # secret id -> value
    function_name: str
    function_env: dict[str, str]
    log_group: str
    refresh_marker: str
    refresh_age_hours: float | None  # None: no marker line at all
    alarms: dict[str, str]  # name -> OK | ALARM | INSUFFICIENT_DATA
    alarm_actions_enabled: bool = True
    ssm_flag: str | None = None  # parameter name, seeded "false"
    unrelated_log_lines: int = 0
    # seeded with put_metric_data: moto creates no metric when a function is invoked
    invocations_per_minute: list[tuple[datetime, float]] = field(default_factory=list)
    alarms_without_actions: tuple[str, ...] = ()  # names seeded with AlarmActions=[] (notify nobody)
    refresh_marker_json: bool = False  # the success lines as JSON ({"event": marker, ...}) instead of text
    # failed refreshes this many hours ago: lines that contain the marker but are not its event
    # (`<marker>=false ...` and a JSON line with a `<marker>: false` field)
    refresh_failure_age_hours: float | None = None


@dataclass(frozen=True)
class AwsSeeded:
    """What seeding created, for tests that add to it."""

    function_arn: str
    topic_arn: str
    log_streams: tuple[str, ...]  # the newest marker is in the first, older markers in the second


class _Latency:
    """WSGI middleware: wait before every AWS answer (not the /moto-api control calls)."""

    def __init__(self, app: Callable[..., Any], delay: Callable[[], float]) -> None:
        self._app = app
        self._delay = delay

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        seconds = self._delay()
        if seconds > 0 and not environ.get("PATH_INFO", "").startswith("/moto-api/"):
            time.sleep(seconds)
        return self._app(environ, start_response)


class _QuietHandler(MotoRequestHandler):
    """No access log on stderr: tests and the demo print their own output."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class AwsSandbox:
    """`with AwsSandbox() as aws: os.environ.update(aws.env()); aws.seed(seed, now=now)`."""

    def __init__(self, *, region: str = "us-east-1", latency_s: float = 0.0) -> None:
        self.region = region
        self.latency_s = latency_s  # may be changed while running (seed fast, then benchmark slow)
        self._server: ThreadedMotoServer | None = None
        self.endpoint_url = ""
        self._session = boto3.session.Session(
            aws_access_key_id=FAKE_KEY, aws_secret_access_key=FAKE_KEY, region_name=region
        )
        self._clients: dict[tuple[str, str], Any] = {}

    def start(self) -> AwsSandbox:
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        # ThreadedMotoServer builds its WSGI app inside its thread and has no hook for middleware;
        # werkzeug's handler reads `server.app` on every request, so wrapping it there delays every answer.
        wsgi = server._server
        assert wsgi is not None
        wsgi.app = _Latency(wsgi.app, lambda: self.latency_s)
        wsgi.RequestHandlerClass = _QuietHandler  # socketserver builds one handler per request from this
        host, port = server.get_host_and_port()
        self._server = server
        self.endpoint_url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> AwsSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """Variables that point boto3's own resolution at this sandbox, with fake credentials."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": FAKE_KEY,
            "AWS_SECRET_ACCESS_KEY": FAKE_KEY,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",  # never wander off to the instance metadata service
        }

    def reset(self) -> None:
        """Forget every resource (moto's state is process-wide: this clears other sandboxes too)."""
        req = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=5) as resp:
            resp.read()

    def wrap_app(self, wrap: Callable[[Callable[..., Any]], Callable[..., Any]]) -> Any:
        """Put WSGI middleware in front of moto while running (e.g. a fault on one call); returns it."""
        assert self._server is not None and self._server._server is not None, "start the sandbox first"
        wsgi = self._server._server
        wsgi.app = wrap(wsgi.app)
        return wsgi.app

    def client(self, service: str, region: str | None = None) -> Any:
        """A boto3 client on this sandbox with the fake credentials, for seeding and for tests."""
        key = (service, region or self.region)
        if key not in self._clients:
            self._clients[key] = self._session.client(
                service,
                region_name=key[1],
                endpoint_url=self.endpoint_url,
                config=Config(retries={"total_max_attempts": 1}),
            )
        return self._clients[key]

    # --- seeding ----------------------------------------------------------------------------

    def seed(self, seed: AwsSeed, *, now: datetime) -> AwsSeeded:
        now = now if now.tzinfo else now.replace(tzinfo=UTC)
        rng = random.Random(f"{seed.function_name}:{now.isoformat()}")
        c = lambda service: self.client(service, seed.region)  # noqa: E731

        sm = c("secretsmanager")
        for secret_id, value in seed.secrets.items():
            sm.create_secret(Name=secret_id, SecretString=value)

        role = c("iam").create_role(
            RoleName=f"{seed.function_name}-role"[:64],
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
        )["Role"]
        function_arn = c("lambda").create_function(
            FunctionName=seed.function_name,
            Runtime="python3.12",
            Role=role["Arn"],
            Handler="handler.handle",
            Code={"ZipFile": _tiny_zip()},
            Environment={"Variables": dict(seed.function_env)},
            Timeout=30,
        )["FunctionArn"]

        streams = (
            f"{now:%Y/%m/%d}/[$LATEST]{uuid.UUID(int=rng.getrandbits(128)).hex}",
            f"{now:%Y/%m/%d}/[$LATEST]{uuid.UUID(int=rng.getrandbits(128)).hex}",
        )
        logs = c("logs")
        logs.create_log_group(logGroupName=seed.log_group)
        for stream in streams:
            logs.create_log_stream(logGroupName=seed.log_group, logStreamName=stream)
        newest: list[tuple[int, str]] = []
        older: list[tuple[int, str]] = []
        if seed.refresh_age_hours is not None:
            # The worker refreshes periodically: older successes exist too, in another stream,
            # so a lookup that keeps the last event it reads instead of the newest is caught.
            base = now - timedelta(hours=seed.refresh_age_hours)
            newest.append((_ms(base), _marker_line(seed.refresh_marker, base, rng, as_json=seed.refresh_marker_json)))
            for extra_h in (2, 4):
                at = base - timedelta(hours=extra_h)
                older.append((_ms(at), _marker_line(seed.refresh_marker, at, rng, as_json=seed.refresh_marker_json)))
        if seed.refresh_failure_age_hours is not None:
            failed_at = now - timedelta(hours=seed.refresh_failure_age_hours)
            newest += [(_ms(failed_at) + i, line) for i, line in enumerate(_failure_lines(seed.refresh_marker, rng))]
        unrelated = list(_unrelated_lines(seed.unrelated_log_lines, now, rng))
        half = len(unrelated) // 2
        self.put_log_lines(seed.log_group, streams[0], newest + unrelated[:half])
        self.put_log_lines(seed.log_group, streams[1], older + unrelated[half:])

        topic_arn = c("sns").create_topic(Name=f"{seed.function_name}-alarms"[:256])["TopicArn"]
        cw = c("cloudwatch")
        for name, state in seed.alarms.items():
            cw.put_metric_alarm(
                AlarmName=name,
                Namespace="AWS/Lambda",
                MetricName="Errors",
                Dimensions=[{"Name": "FunctionName", "Value": seed.function_name}],
                Statistic="Sum",
                Period=60,
                EvaluationPeriods=1,
                Threshold=1.0,
                ComparisonOperator="GreaterThanOrEqualToThreshold",
                TreatMissingData="missing",
                ActionsEnabled=seed.alarm_actions_enabled,
                AlarmActions=[] if name in seed.alarms_without_actions else [topic_arn],
            )
            cw.set_alarm_state(AlarmName=name, StateValue=state, StateReason=f"seeded {state}")

        metric_data = [
            {
                "MetricName": "Invocations",
                "Dimensions": [{"Name": "FunctionName", "Value": seed.function_name}],
                "Timestamp": ts if ts.tzinfo else ts.replace(tzinfo=UTC),
                "Value": float(value),
                "Unit": "Count",
            }
            for ts, value in seed.invocations_per_minute
        ]
        for i in range(0, len(metric_data), _METRIC_BATCH):
            cw.put_metric_data(Namespace="AWS/Lambda", MetricData=metric_data[i : i + _METRIC_BATCH])

        if seed.ssm_flag:
            c("ssm").put_parameter(Name=seed.ssm_flag, Value="false", Type="String", Overwrite=True)

        return AwsSeeded(function_arn=function_arn, topic_arn=topic_arn, log_streams=streams)

    def put_log_lines(
        self, log_group: str, stream: str, lines: Iterable[tuple[int, str]], region: str | None = None
    ) -> int:
        """(ms timestamp, message) lines, sorted and batched within put_log_events' limits; returns calls made."""
        logs = self.client("logs", region)
        events = [{"timestamp": ts, "message": msg} for ts, msg in sorted(lines)]
        calls = 0
        batch: list[dict[str, Any]] = []
        size = 0
        for event in events:
            event_size = len(event["message"].encode()) + 26
            if batch and (
                len(batch) >= _LOG_BATCH_EVENTS
                or size + event_size > _LOG_BATCH_BYTES
                or event["timestamp"] - batch[0]["timestamp"] > _LOG_BATCH_SPAN_MS
            ):
                logs.put_log_events(logGroupName=log_group, logStreamName=stream, logEvents=batch)
                calls += 1
                batch, size = [], 0
            batch.append(event)
            size += event_size
        if batch:
            logs.put_log_events(logGroupName=log_group, logStreamName=stream, logEvents=batch)
            calls += 1
        return calls


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _tiny_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("handler.py", "def handle(event, context):\n    return {'ok': True}\n")
    return buf.getvalue()


def _marker_line(marker: str, at: datetime, rng: random.Random, *, as_json: bool = False) -> str:
    rid = uuid.UUID(int=rng.getrandbits(128))
    if as_json:
        return json.dumps({"level": "INFO", "event": marker, "token_kind": "offline", "expires_in_s": 86399})
    return f"[INFO]\t{at:%Y-%m-%dT%H:%M:%S.%f}Z\t{rid}\t{marker} token_kind=offline expires_in_s=86399"


def _failure_lines(marker: str, rng: random.Random) -> list[str]:
    """A failed refresh as a worker might log it: each line contains the marker, neither is its event."""
    rid = uuid.UUID(int=rng.getrandbits(128))
    return [
        f"[ERROR]\t{rid}\t{marker}=false status=401 retry_in_s=300",
        json.dumps({"level": "ERROR", "event": "shopify_token_refresh_failed", marker: False, "status": 401}),
    ]


def _unrelated_lines(count: int, now: datetime, rng: random.Random) -> Iterable[tuple[int, str]]:
    """Lambda-shaped noise over the last 12 hours: START/END/REPORT and the worker's own lines."""
    span_ms = 12 * 3600 * 1000
    end = _ms(now)
    for i in range(count):
        ts = end - rng.randrange(span_ms)
        rid = uuid.UUID(int=rng.getrandbits(128))
        kind = i % 5
        if kind == 0:
            msg = f"START RequestId: {rid} Version: $LATEST"
        elif kind == 1:
            ticket = rng.randrange(10**6, 10**7)
            msg = f"[INFO]\t{rid}\tticket {ticket} intent=order_status confidence=0.{rng.randrange(80, 99)}"
        elif kind == 2:
            msg = f"[INFO]\t{rid}\tshopify GET orders.json status=200 elapsed_ms={rng.randrange(80, 900)}"
        elif kind == 3:
            msg = f"END RequestId: {rid}"
        else:
            msg = (
                f"REPORT RequestId: {rid}\tDuration: {rng.uniform(50, 2500):.2f} ms\t"
                f"Billed Duration: {rng.randrange(50, 2500)} ms\tMemory Size: 512 MB\t"
                f"Max Memory Used: {rng.randrange(90, 200)} MB"
            )
        yield ts, msg
