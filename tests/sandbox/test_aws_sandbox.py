"""integrations.sandbox.aws: the moto server starts on loopback, seeds the cutover's world fast, resets."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from integrations.sandbox.aws import AwsSandbox, AwsSeed

REGION = "eu-west-1"
NOW = datetime.now(UTC).replace(microsecond=0)
ROOT = Path(__file__).resolve().parents[2]


def make_seed(**overrides: object) -> AwsSeed:
    fields: dict[str, object] = {
        "region": REGION,
        "secrets": {"rp-mw/dev/openai/api_key": "sk-test-1", "rp-mw/dev/shopify/admin_api_token": "shpat_test"},
        "function_name": "rp-mw-dev-worker",
        "function_env": {"RICHPANEL_OUTBOUND_ENABLED": "false", "MW_ALLOW_NETWORK_READS": "true"},
        "log_group": "/aws/lambda/rp-mw-dev-worker",
        "refresh_marker": "shopify_token_refresh_success",
        "refresh_age_hours": 1.5,
        "alarms": {"dev-429s": "OK", "dev-errors": "ALARM"},
        "alarm_actions_enabled": False,
        "ssm_flag": "/rp-mw/dev/outbound_enabled",
        "unrelated_log_lines": 1000,
        "invocations_per_minute": [(NOW - timedelta(minutes=m), float(m)) for m in range(1, 6)],
    }
    fields.update(overrides)
    return AwsSeed(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[AwsSandbox]:
    with AwsSandbox(region=REGION) as sb:
        yield sb
        sb.reset()  # moto's state is process-wide: leave none of this module's world to the next


@pytest.fixture
def fresh(sandbox: AwsSandbox) -> AwsSandbox:
    sandbox.reset()
    sandbox.latency_s = 0.0
    return sandbox


def test_cold_start_and_seed_time() -> None:
    """Measured in a fresh interpreter: moto's first use of each backend (SSM imports EC2) is the cost."""
    script = f"""
import time
t0 = time.perf_counter()
from datetime import UTC, datetime
from tests.sandbox.test_aws_sandbox import make_seed
from integrations.sandbox.aws import AwsSandbox
t1 = time.perf_counter()
sb = AwsSandbox(region={REGION!r}).start()
sb.seed(make_seed(), now=datetime.now(UTC))
t2 = time.perf_counter()
sb.seed(make_seed(function_name="second", log_group="/second", ssm_flag="/second", secrets={{}}), now=datetime.now(UTC))
t3 = time.perf_counter()
sb.stop()
print(f"{{t1 - t0:.3f}} {{t2 - t1:.3f}} {{t3 - t2:.3f}}")
"""
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30, check=True
    ).stdout.split()
    imports, start_seed, warm_seed = (float(x) for x in out[-3:])
    # Timings are figures, not assertions (bench/startup.py); this proves a cold start seeds twice.
    print(f"imports {imports:.2f}s, cold start+seed {start_seed:.2f}s, warm seed {warm_seed:.2f}s")
    assert min(imports, start_seed, warm_seed) > 0


def test_endpoint_and_env(sandbox: AwsSandbox) -> None:
    assert sandbox.endpoint_url.startswith("http://127.0.0.1:")
    assert not sandbox.endpoint_url.endswith(":0")
    env = sandbox.env()
    assert env["AWS_ENDPOINT_URL"] == sandbox.endpoint_url
    assert env["AWS_ACCESS_KEY_ID"] == env["AWS_SECRET_ACCESS_KEY"] == "testing"
    assert env["AWS_DEFAULT_REGION"] == REGION
    # A plain boto3 client with exactly these settings reaches the sandbox.
    sts = boto3.client(
        "sts",
        region_name=env["AWS_DEFAULT_REGION"],
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    assert sts.get_caller_identity()["Account"] == "123456789012"


def test_seed_builds_the_world(fresh: AwsSandbox) -> None:
    seed = make_seed()
    seeded = fresh.seed(seed, now=NOW)
    c = lambda s: fresh.client(s, REGION)  # noqa: E731

    assert c("secretsmanager").get_secret_value(SecretId="rp-mw/dev/openai/api_key")["SecretString"] == "sk-test-1"
    conf = c("lambda").get_function_configuration(FunctionName=seed.function_name)
    assert conf["Environment"]["Variables"] == seed.function_env
    assert conf["FunctionArn"] == seeded.function_arn
    assert c("iam").get_role(RoleName=f"{seed.function_name}-role")["Role"]["Arn"] == conf["Role"]

    events = []
    kwargs = {"logGroupName": seed.log_group}
    while True:
        page = c("logs").filter_log_events(**kwargs)
        events += page["events"]
        if not page.get("nextToken"):
            break
        kwargs["nextToken"] = page["nextToken"]
    markers = sorted(e["timestamp"] for e in events if seed.refresh_marker in e["message"])
    assert len(events) == seed.unrelated_log_lines + 3  # three successes: 1.5 h, 3.5 h, 5.5 h ago
    assert markers[-1] == int((NOW - timedelta(hours=1.5)).timestamp() * 1000)
    assert len(markers) == 3
    assert {e["logStreamName"] for e in events} == set(seeded.log_streams)

    alarms = c("cloudwatch").describe_alarms(AlarmNames=list(seed.alarms))["MetricAlarms"]
    assert {a["AlarmName"]: a["StateValue"] for a in alarms} == seed.alarms
    assert all(a["ActionsEnabled"] is False and a["AlarmActions"] == [seeded.topic_arn] for a in alarms)
    assert seeded.topic_arn in [t["TopicArn"] for t in c("sns").list_topics()["Topics"]]

    assert c("ssm").get_parameter(Name=seed.ssm_flag)["Parameter"]["Value"] == "false"

    data = c("cloudwatch").get_metric_data(
        MetricDataQueries=[
            {
                "Id": "m",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/Lambda",
                        "MetricName": "Invocations",
                        "Dimensions": [{"Name": "FunctionName", "Value": seed.function_name}],
                    },
                    "Period": 60,
                    "Stat": "Sum",
                },
            }
        ],
        StartTime=NOW - timedelta(hours=1),
        EndTime=NOW,
    )["MetricDataResults"][0]
    assert sum(data["Values"]) == 15.0


def test_seed_without_marker_writes_none(fresh: AwsSandbox) -> None:
    seed = make_seed(refresh_age_hours=None, unrelated_log_lines=50)
    fresh.seed(seed, now=NOW)
    events = fresh.client("logs", REGION).filter_log_events(logGroupName=seed.log_group)["events"]
    assert len(events) == 50
    assert not [e for e in events if seed.refresh_marker in e["message"]]


def test_reset_clears_state(fresh: AwsSandbox) -> None:
    fresh.seed(make_seed(), now=NOW)
    sm = fresh.client("secretsmanager", REGION)
    assert len(sm.list_secrets()["SecretList"]) == 2
    fresh.reset()
    assert sm.list_secrets()["SecretList"] == []


def test_latency_delays_aws_answers_only(fresh: AwsSandbox) -> None:
    sts = fresh.client("sts", REGION)
    sts.get_caller_identity()  # warm the connection
    t = time.perf_counter()
    sts.get_caller_identity()
    fast = time.perf_counter() - t

    fresh.latency_s = 0.3
    t = time.perf_counter()
    sts.get_caller_identity()
    slow = time.perf_counter() - t
    fresh.reset()  # the control API is not delayed (bench figures, not asserted here)
    fresh.latency_s = 0.0

    assert slow >= 0.3, "the injected latency delays AWS's answers"
    assert fast < slow


def test_stop_closes_the_port() -> None:
    sb = AwsSandbox(region=REGION).start()
    url = sb.endpoint_url
    with urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", data=b"", method="POST"), timeout=2):
        pass
    sb.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=2)


def test_constructor_latency_applies() -> None:
    with AwsSandbox(region=REGION, latency_s=0.2) as slow:
        t = time.perf_counter()
        slow.client("sts").get_caller_identity()
        assert time.perf_counter() - t >= 0.2


def test_seed_refresh_variants_and_alarms_without_actions(fresh: AwsSandbox) -> None:
    seed = make_seed(
        refresh_marker_json=True,
        refresh_failure_age_hours=0.5,
        alarms_without_actions=("dev-errors",),
        unrelated_log_lines=20,
    )
    seeded = fresh.seed(seed, now=NOW)
    events = fresh.client("logs", REGION).filter_log_events(logGroupName=seed.log_group)["events"]
    mentions = sorted((e["timestamp"], e["message"]) for e in events if seed.refresh_marker in e["message"])
    assert len(events) == 20 + 3 + 2  # three successes, two lines of one failed refresh
    successes = [json.loads(m) for _, m in mentions if m.startswith("{") and '"event": "shopify_token_refresh_s' in m]
    assert [s["event"] for s in successes] == [seed.refresh_marker] * 3
    failures = [m for _, m in mentions if "false" in m.lower()]
    assert len(failures) == 2
    assert mentions[-1][0] >= int((NOW - timedelta(hours=0.5)).timestamp() * 1000)  # the failure is the newest

    alarms = fresh.client("cloudwatch", REGION).describe_alarms(AlarmNames=list(seed.alarms))["MetricAlarms"]
    assert {a["AlarmName"]: a["AlarmActions"] for a in alarms} == {"dev-429s": [seeded.topic_arn], "dev-errors": []}
