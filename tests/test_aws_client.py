"""integrations.aws against moto's ThreadedMotoServer over real HTTP (plus Stubber for what moto cannot say)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from botocore.stub import Stubber

from integrations.aws import Aws, LogLookup
from integrations.errors import UpstreamError
from integrations.sandbox.aws import AwsSandbox, AwsSeed

REGION = "us-east-2"
FN = "rp-mw-prod-worker"
LOG_GROUP = f"/aws/lambda/{FN}"
MARKER = "shopify_token_refresh_success"
FLAG = "/rp-mw/prod/outbound_enabled"
OPENAI_KEY = "sk-live-DO-NOT-LEAK-123"
ALARMS = {
    "rp-mw-prod-shopify-429s": "OK",
    "rp-mw-prod-worker-error-rate": "ALARM",
    "rp-mw-prod-openai-failures": "INSUFFICIENT_DATA",
}
NOW = datetime.now(UTC).replace(microsecond=0)


def make_seed(**overrides: object) -> AwsSeed:
    fields: dict[str, object] = {
        "region": REGION,
        "secrets": {"rp-mw/prod/openai/api_key": OPENAI_KEY, "rp-mw/prod/richpanel/bot_agent_id": "agent-7"},
        "function_name": FN,
        "function_env": {
            "RICHPANEL_OUTBOUND_ENABLED": "false",
            "SHOPIFY_SHOP_DOMAIN": "example.myshopify.com",
            "OPENAI_API_KEY": OPENAI_KEY,
        },
        "log_group": LOG_GROUP,
        "refresh_marker": MARKER,
        "refresh_age_hours": 3.0,
        "alarms": ALARMS,
        "ssm_flag": FLAG,
        "unrelated_log_lines": 300,
        "invocations_per_minute": [(NOW - timedelta(minutes=m), 3.0) for m in range(1, 11)],
    }
    fields.update(overrides)
    return AwsSeed(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[AwsSandbox]:
    saved = dict(os.environ)
    with AwsSandbox(region=REGION) as sb:
        os.environ.update(sb.env())  # the client finds the sandbox the way it finds real AWS: boto3's own chain
        try:
            yield sb
        finally:
            sb.reset()  # moto's state is process-wide: leave none of this module's world to the next
            os.environ.clear()
            os.environ.update(saved)


@pytest.fixture
def seeded(sandbox: AwsSandbox) -> AwsSandbox:
    sandbox.reset()
    sandbox.seed(make_seed(), now=NOW)
    return sandbox


@pytest.fixture(scope="module")
def aws(sandbox: AwsSandbox) -> Aws:
    # one client for the module, as in the product: a new boto3 session re-reads every service model
    return Aws(region=REGION, endpoint_url=sandbox.endpoint_url, max_attempts=1)


def lookup(aws: Aws, **kw: object) -> LogLookup:
    args: dict[str, object] = {"since": NOW - timedelta(hours=24), "until": NOW + timedelta(minutes=1)}
    args.update(kw)
    return aws.newest_log_event(LOG_GROUP, MARKER, **args)  # type: ignore[arg-type]


# --- identity and secrets -------------------------------------------------------------------


def test_caller_identity_via_aws_endpoint_url(seeded: AwsSandbox) -> None:
    aws = Aws(region=REGION, connect_timeout_s=1.0)  # endpoint from AWS_ENDPOINT_URL, as in production
    ident = aws.caller_identity()
    assert ident.account == "123456789012"
    assert ident.region == REGION
    assert ident.account in ident.arn


def test_secret_presence_found_missing_and_deleted(seeded: AwsSandbox, aws: Aws) -> None:
    found = aws.secret_presence("rp-mw/prod/openai/api_key")
    assert (found.exists, found.deleted) == (True, False)
    assert found.last_changed is not None
    assert OPENAI_KEY not in repr(found)

    missing = aws.secret_presence("rp-mw/prod/nope")
    assert (missing.exists, missing.deleted, missing.last_changed) == (False, False, None)

    seeded.client("secretsmanager", REGION).delete_secret(
        SecretId="rp-mw/prod/richpanel/bot_agent_id", RecoveryWindowInDays=7
    )
    deleted = aws.secret_presence("rp-mw/prod/richpanel/bot_agent_id")
    assert (deleted.exists, deleted.deleted) == (False, True)


def test_secret_value(seeded: AwsSandbox, aws: Aws) -> None:
    assert aws.secret_value("rp-mw/prod/openai/api_key") == OPENAI_KEY


def test_function_env_keeps_only_named_keys(seeded: AwsSandbox, aws: Aws) -> None:
    env = aws.function_env(FN, ["RICHPANEL_OUTBOUND_ENABLED", "SHOPIFY_SHOP_DOMAIN", "MW_ALLOW_NETWORK_READS"])
    assert env == {"RICHPANEL_OUTBOUND_ENABLED": "false", "SHOPIFY_SHOP_DOMAIN": "example.myshopify.com"}
    assert OPENAI_KEY not in repr(env)


# --- logs -------------------------------------------------------------------------------------


def test_newest_log_event_finds_newest_of_several_markers(seeded: AwsSandbox, aws: Aws) -> None:
    # The seed writes markers 3 h, 5 h and 7 h ago, the newest in the stream read first.
    found = lookup(aws)
    assert found.timestamp is not None
    assert abs(found.timestamp - (NOW - timedelta(hours=3))) < timedelta(seconds=1)
    assert found.message is not None
    assert MARKER in found.message
    assert found.complete is True

    # The window is honoured server-side: ending before the newest gives the next one.
    earlier = lookup(aws, until=NOW - timedelta(hours=4))
    assert earlier.timestamp is not None
    assert abs(earlier.timestamp - (NOW - timedelta(hours=5))) < timedelta(seconds=1)


def test_newest_log_event_none_without_marker(sandbox: AwsSandbox, aws: Aws) -> None:
    sandbox.reset()
    sandbox.seed(make_seed(refresh_age_hours=None), now=NOW)
    found = lookup(aws)
    assert (found.timestamp, found.message, found.complete) == (None, None, True)
    assert found.api_calls >= 1


def test_newest_log_event_calls_do_not_grow_with_unrelated_lines(seeded: AwsSandbox, aws: Aws) -> None:
    before = lookup(aws)
    logs = seeded.client("logs", REGION)
    logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName="2026/noise")
    start = int((NOW - timedelta(hours=2)).timestamp() * 1000)
    noise = [(start + i * 100, f"[INFO]\tticket {i} intent=order_status reply=queued") for i in range(10_000)]
    seeded.put_log_lines(LOG_GROUP, "2026/noise", noise, region=REGION)
    # Control: the noise is really there and inside the window (an unfiltered scan would page over it).
    assert aws.newest_log_event(LOG_GROUP, "reply=queued", since=NOW - timedelta(hours=24), until=NOW).timestamp

    after = lookup(aws)
    assert after.api_calls == before.api_calls
    assert after.timestamp == before.timestamp
    assert after.complete is True


def test_newest_log_event_bound_on_empty_pages(sandbox: AwsSandbox) -> None:
    """Empty pages with a nextToken are normal; the bound stops the walk and says it is incomplete."""
    stub_aws = Aws(region=REGION, endpoint_url=sandbox.endpoint_url)
    logs = stub_aws._client("logs")
    ts = int((NOW - timedelta(hours=1)).timestamp() * 1000)
    with Stubber(logs) as stub:
        stub.add_response("filter_log_events", {"events": [{"timestamp": ts, "message": MARKER}], "nextToken": "t1"})
        stub.add_response("filter_log_events", {"events": [], "nextToken": "t2"})
        stub.add_response("filter_log_events", {"events": [], "nextToken": "t3"})
        found = stub_aws.newest_log_event(LOG_GROUP, MARKER, since=NOW - timedelta(hours=8), until=NOW, max_calls=3)
    assert found.api_calls == 3
    assert found.complete is False
    assert found.timestamp == datetime.fromtimestamp(ts / 1000, tz=UTC)


# --- CloudWatch -------------------------------------------------------------------------------


def test_alarms_present_absent_and_state(seeded: AwsSandbox, aws: Aws) -> None:
    got = aws.alarms([*ALARMS, "rp-mw-prod-token-refresh-errors"])
    assert set(got) == set(ALARMS)  # the missing one is simply absent
    assert {name: a.state for name, a in got.items()} == ALARMS
    assert all(a.actions_enabled for a in got.values())
    assert aws.alarms([]) == {}


def test_alarms_actions_disabled(sandbox: AwsSandbox, aws: Aws) -> None:
    sandbox.reset()
    sandbox.seed(make_seed(alarm_actions_enabled=False), now=NOW)
    got = aws.alarms(list(ALARMS))
    assert set(got) == set(ALARMS)
    assert not any(a.actions_enabled for a in got.values())


def test_alarms_are_asked_in_chunks_of_100(sandbox: AwsSandbox) -> None:
    names = [f"alarm-{i:03d}" for i in range(150)]
    stub_aws = Aws(region=REGION, endpoint_url=sandbox.endpoint_url)
    cw = stub_aws._client("cloudwatch")
    common = {"AlarmTypes": ["MetricAlarm", "CompositeAlarm"], "MaxRecords": 100}
    with Stubber(cw) as stub:
        stub.add_response(
            "describe_alarms",
            {"MetricAlarms": [{"AlarmName": "alarm-000", "StateValue": "OK", "ActionsEnabled": True}]},
            {"AlarmNames": names[:100], **common},
        )
        stub.add_response(
            "describe_alarms",
            {"CompositeAlarms": [{"AlarmName": "alarm-149", "StateValue": "ALARM", "ActionsEnabled": False}]},
            {"AlarmNames": names[100:], **common},
        )
        got = stub_aws.alarms(names)
        stub.assert_no_pending_responses()
    assert set(got) == {"alarm-000", "alarm-149"}
    assert got["alarm-149"].state == "ALARM"
    assert got["alarm-149"].actions_enabled is False


def test_metric_sum_complete_and_total(seeded: AwsSandbox, aws: Aws) -> None:
    got = aws.metric_sum(
        "AWS/Lambda", "Invocations", {"FunctionName": FN}, since=NOW - timedelta(minutes=30), until=NOW
    )
    assert got.total == 30.0
    assert got.datapoints == 10
    assert got.complete is True
    assert got.status_code == "Complete"

    other = aws.metric_sum(
        "AWS/Lambda", "Invocations", {"FunctionName": "other"}, since=NOW - timedelta(minutes=30), until=NOW
    )
    assert (other.total, other.datapoints) == (0.0, 0)


def test_metric_sum_partial_data_is_not_complete(sandbox: AwsSandbox) -> None:
    stub_aws = Aws(region=REGION, endpoint_url=sandbox.endpoint_url)
    with Stubber(stub_aws._client("cloudwatch")) as stub:
        stub.add_response(
            "get_metric_data",
            {
                "MetricDataResults": [
                    {"Id": "m0", "Values": [2.0, 1.0], "Timestamps": [NOW, NOW], "StatusCode": "PartialData"}
                ]
            },
        )
        got = stub_aws.metric_sum("AWS/Lambda", "Invocations", {}, since=NOW - timedelta(minutes=5), until=NOW)
    assert (got.total, got.datapoints, got.complete, got.status_code) == (3.0, 2, False, "PartialData")


# --- the outbound flag ------------------------------------------------------------------------


def test_ssm_flag_write_and_read_back(seeded: AwsSandbox, aws: Aws) -> None:
    assert aws.read_ssm_flag(FLAG) is False
    assert aws.write_ssm_flag(FLAG, True) is True
    assert seeded.client("ssm", REGION).get_parameter(Name=FLAG)["Parameter"]["Value"] == "true"
    assert aws.read_ssm_flag(FLAG) is True
    assert aws.write_ssm_flag(FLAG, False) is False
    assert aws.read_ssm_flag("/rp-mw/prod/missing") is None


def test_ssm_flag_rejects_other_values_without_echoing_them(seeded: AwsSandbox, aws: Aws) -> None:
    seeded.client("ssm", REGION).put_parameter(Name=FLAG, Value="yes-please", Type="String", Overwrite=True)
    with pytest.raises(UpstreamError) as err:
        aws.read_ssm_flag(FLAG)
    assert err.value.code == "InvalidFlag"
    assert "yes-please" not in str(err.value)


def test_lambda_flag_write_merges_one_key_and_reads_back(seeded: AwsSandbox, aws: Aws) -> None:
    assert aws.read_lambda_flag(FN, "RICHPANEL_OUTBOUND_ENABLED") is False
    assert aws.read_lambda_flag(FN, "NOT_THERE") is None
    assert aws.write_lambda_flag(FN, "RICHPANEL_OUTBOUND_ENABLED", True) is True
    env = seeded.client("lambda", REGION).get_function_configuration(FunctionName=FN)["Environment"]["Variables"]
    assert env == {
        "RICHPANEL_OUTBOUND_ENABLED": "true",
        "SHOPIFY_SHOP_DOMAIN": "example.myshopify.com",
        "OPENAI_API_KEY": OPENAI_KEY,  # the rest of the map survives the write
    }
    assert aws.read_lambda_flag(FN, "RICHPANEL_OUTBOUND_ENABLED") is True


# --- errors -----------------------------------------------------------------------------------


def test_missing_function_names_function_and_code(seeded: AwsSandbox, aws: Aws) -> None:
    with pytest.raises(UpstreamError) as err:
        aws.function_env("rp-mw-prod-nope", ["X"])
    e = err.value
    assert e.system == "aws"
    assert "rp-mw-prod-nope" in e.action
    assert "get_function_configuration" in e.action
    assert e.code == "ResourceNotFoundException"
    assert e.status_code == 404
    assert "rp-mw-prod-nope" in str(e)
    assert "ResourceNotFoundException" in str(e)


def test_missing_log_group_is_an_error(seeded: AwsSandbox, aws: Aws) -> None:
    with pytest.raises(UpstreamError) as err:
        aws.newest_log_event("/aws/lambda/nope", MARKER, since=NOW - timedelta(hours=1), until=NOW)
    assert err.value.code == "ResourceNotFoundException"
    assert "/aws/lambda/nope" in err.value.action


@pytest.mark.parametrize(("code", "status"), [("AccessDeniedException", 400), ("403", 403)])
def test_access_denied_fails_closed(sandbox: AwsSandbox, code: str, status: int) -> None:
    """moto says "403" where AWS says AccessDeniedException: both map to access denied, never "absent"."""
    stub_aws = Aws(region=REGION, endpoint_url=sandbox.endpoint_url)
    with Stubber(stub_aws._client("secretsmanager")) as stub:
        stub.add_client_error(
            "describe_secret", service_error_code=code, service_message="not allowed", http_status_code=status
        )
        with pytest.raises(UpstreamError) as err:
            stub_aws.secret_presence("rp-mw/prod/openai/api_key")
    assert err.value.code == code
    assert err.value.status_code == status
    assert "access denied" in err.value.reason
    assert err.value.action == "describe_secret rp-mw/prod/openai/api_key"


def test_sensitive_call_drops_the_upstream_message(sandbox: AwsSandbox) -> None:
    """A validation message can echo the env map; the error keeps only the code."""
    stub_aws = Aws(region=REGION, endpoint_url=sandbox.endpoint_url)
    with Stubber(stub_aws._client("lambda")) as stub:
        stub.add_response(
            "get_function_configuration",
            {"RevisionId": "r1", "Environment": {"Variables": {"OPENAI_API_KEY": OPENAI_KEY}}},
        )
        stub.add_client_error(
            "update_function_configuration",
            service_error_code="InvalidParameterValueException",
            service_message=f"Value '{OPENAI_KEY}' at 'environment.variables' failed to satisfy constraint",
        )
        with pytest.raises(UpstreamError) as err:
            stub_aws.write_lambda_flag(FN, "RICHPANEL_OUTBOUND_ENABLED", True)
    assert err.value.code == "InvalidParameterValueException"
    assert OPENAI_KEY not in str(err.value)
    assert OPENAI_KEY not in repr(err.value)


def test_unreachable_endpoint_becomes_upstream_error() -> None:
    aws = Aws(region=REGION, endpoint_url="http://127.0.0.1:9", connect_timeout_s=0.5, max_attempts=1)
    with pytest.raises(UpstreamError) as err:
        aws.caller_identity()
    assert err.value.code == "EndpointConnectionError"
    assert "cannot reach" in err.value.reason


def test_concurrent_calls_share_one_client_per_service(seeded: AwsSandbox) -> None:
    aws = Aws(region=REGION, endpoint_url=seeded.endpoint_url)
    calls = [
        lambda: aws.caller_identity().account,
        lambda: aws.secret_presence("rp-mw/prod/openai/api_key").exists,
        lambda: aws.secret_presence("rp-mw/prod/richpanel/bot_agent_id").exists,
        lambda: aws.function_env(FN, ["SHOPIFY_SHOP_DOMAIN"]),
        lambda: lookup(aws).timestamp is not None,
        lambda: len(aws.alarms(list(ALARMS))),
        lambda: aws.read_ssm_flag(FLAG),
    ] * 3
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        results = list(pool.map(lambda f: f(), calls))
    assert results[:7] == ["123456789012", True, True, {"SHOPIFY_SHOP_DOMAIN": "example.myshopify.com"}, True, 3, False]
    assert len(aws._clients) == 6  # sts, secretsmanager, lambda, logs, cloudwatch, ssm


def test_newest_log_event_keeps_only_what_accept_keeps(seeded: AwsSandbox, aws: Aws) -> None:
    """The term is a server-side candidate filter; `accept` decides on each candidate, newest accepted wins."""
    logs = seeded.client("logs", REGION)
    logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName="2026/failures")
    newer = int((NOW - timedelta(hours=1)).timestamp() * 1000)
    lines = [(newer, f"{MARKER}=false status=401"), (newer + 1, f'{{"event": "refresh_failed", "{MARKER}": false}}')]
    seeded.put_log_lines(LOG_GROUP, "2026/failures", lines, region=REGION)

    substring = lookup(aws)  # without `accept`: any line containing the phrase
    assert substring.timestamp == datetime.fromtimestamp((newer + 1) / 1000, tz=UTC)
    assert substring.rejected == 0

    seen: list[str] = []

    def accept(message: str) -> bool:
        seen.append(message)
        return message.startswith("[INFO]")  # the seed's success lines

    found = lookup(aws, accept=accept)
    assert found.timestamp is not None
    assert abs(found.timestamp - (NOW - timedelta(hours=3))) < timedelta(seconds=1)
    assert found.message is not None and found.message.startswith("[INFO]")
    assert found.rejected == 2
    assert found.api_calls == substring.api_calls  # the same candidates, judged client-side
    assert len(seen) == 5  # three successes and two failures: no unrelated line reached the client
    assert all(MARKER in m for m in seen)


def test_newest_log_event_none_accepted_is_none(seeded: AwsSandbox, aws: Aws) -> None:
    found = lookup(aws, accept=lambda message: False)
    assert (found.timestamp, found.message, found.rejected, found.complete) == (None, None, 3, True)


def test_alarms_count_their_alarm_actions(sandbox: AwsSandbox, aws: Aws) -> None:
    sandbox.reset()
    sandbox.seed(make_seed(alarms_without_actions=("rp-mw-prod-shopify-429s",)), now=NOW)
    got = aws.alarms(list(ALARMS))
    assert got["rp-mw-prod-shopify-429s"].alarm_actions == ()
    assert got["rp-mw-prod-shopify-429s"].actions_enabled is True  # enabled, yet notifies nobody
    assert len(got["rp-mw-prod-worker-error-rate"].alarm_actions) == 1
    assert got["rp-mw-prod-worker-error-rate"].alarm_actions[0].startswith("arn:aws:sns:")
