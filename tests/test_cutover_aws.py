"""The AWS reads and writes of /canary, /enable-outbound and /rollback, against moto over HTTP.

Real boto3 on moto's ThreadedMotoServer (and on the loopback IAM simulator through AWS_ENDPOINT_URL_IAM),
with botocore's Stubber only for answers moto cannot give (PartialData, Failed queries, RevisionId).
moto's state is process-wide and other modules' sandboxes may be running: nothing here resets it,
every name is this module's own.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.stub import ANY, Stubber

from integrations.aws import Aws, FlagReading, role_arn_from_caller, ticket_line_form
from integrations.errors import UpstreamError
from integrations.sandbox.env import MOTO_ACCOUNT_ID, REGION, EnvSandbox, Sandbox, Scenario
from integrations.sandbox.worker import WorkerFaults

SUFFIX = secrets.token_hex(2)
SSM_ENV, LAMBDA_ENV, DENY_ENV = f"ca{SUFFIX}", f"ca{SUFFIX}-lam", f"ca{SUFFIX}-deny"
MARKER = "order_status_processed"
ROLE = f"arn:aws:iam::{MOTO_ACCOUNT_ID}:role/cutover-bot"


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(
        {
            SSM_ENV: Scenario(unrelated_log_lines=20),
            LAMBDA_ENV: Scenario(outbound_flag="lambda_env", unrelated_log_lines=20),
            DENY_ENV: Scenario(iam_decision="implicitDeny", iam_actions=("ssm:PutParameter",), unrelated_log_lines=0),
        }
    ) as sandbox:
        sandbox.wait_until_seeded()
        yield sandbox


@pytest.fixture(scope="module")
def aws(sb: Sandbox) -> Aws:
    return Aws(region=REGION, max_attempts=1)  # endpoints from AWS_ENDPOINT_URL(_IAM), as in production


@pytest.fixture
def stub_aws(sb: Sandbox) -> Aws:
    return Aws(region=REGION, endpoint_url=sb.aws.endpoint_url, max_attempts=1)


@pytest.fixture
def env(sb: Sandbox) -> EnvSandbox:
    return sb.envs[SSM_ENV]


def _param(name: str) -> str:
    return f"/rp-mw/{name}/outbound_enabled"


def _ticket_id() -> str:
    return str(secrets.randbelow(9 * 10**6) + 10**6)


def _window() -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    return now - timedelta(hours=1), now + timedelta(minutes=1)


def _put_lines(sb: Sandbox, group: str, lines: list[tuple[datetime, str]]) -> None:
    stream = f"test/{secrets.token_hex(6)}"
    sb.aws.client("logs").create_log_stream(logGroupName=group, logStreamName=stream)
    sb.aws.put_log_lines(group, stream, [(int(ts.timestamp() * 1000), msg) for ts, msg in lines])


# --- the lever, with its read-back proof ------------------------------------------------------------


def test_ssm_flag_reads_version_and_time_and_a_write_proves_itself(sb: Sandbox, aws: Aws) -> None:
    name = _param(SSM_ENV)
    before = aws.ssm_flag(name)
    assert before.value is False
    assert before.version is not None
    assert before.modified_at is not None and before.modified_at.tzinfo is not None
    assert before.source == f"ssm {name}"

    on = aws.set_ssm_flag(name, True)
    assert on.value is True
    assert int(on.version or 0) == int(before.version) + 1  # put_parameter(Overwrite) makes a new version
    assert on.written_version == on.version
    assert on.overwritten is False
    assert on.modified_at is not None and on.modified_at >= before.modified_at

    off = aws.set_ssm_flag(name, False)
    assert (off.value, int(off.version or 0)) == (False, int(before.version) + 2)
    assert aws.ssm_flag("/rp-mw/nowhere/outbound_enabled") == FlagReading(
        None, None, None, source="ssm /rp-mw/nowhere/outbound_enabled"
    )
    assert aws.read_ssm_flag(name) is False  # the old form still works


def test_ssm_flag_read_back_shows_a_later_writer(stub_aws: Aws) -> None:
    when = datetime.now(UTC)
    with Stubber(stub_aws._client("ssm")) as stub:
        stub.add_response("put_parameter", {"Version": 5})
        stub.add_response(
            "get_parameter",
            {"Parameter": {"Name": "/f", "Value": "false", "Version": 6, "LastModifiedDate": when}},
        )
        reading = stub_aws.set_ssm_flag("/f", True)
    assert (reading.value, reading.version, reading.written_version) == (False, "6", "5")
    assert reading.overwritten is True


def test_lambda_flag_merges_one_key_and_reads_back(sb: Sandbox, aws: Aws) -> None:
    env = sb.envs[LAMBDA_ENV]
    lam = sb.aws.client("lambda")
    before_env = lam.get_function_configuration(FunctionName=env.function_name)["Environment"]["Variables"]
    before = aws.lambda_flag(env.function_name, "RICHPANEL_OUTBOUND_ENABLED")
    assert before.value is False
    assert before.modified_at is not None
    assert before.update_status == "Successful"

    on = aws.set_lambda_flag(env.function_name, "RICHPANEL_OUTBOUND_ENABLED", True)
    assert on.value is True
    after_env = lam.get_function_configuration(FunctionName=env.function_name)["Environment"]["Variables"]
    assert after_env == {**before_env, "RICHPANEL_OUTBOUND_ENABLED": "true"}  # no other variable lost
    assert env.pii[0] in after_env.values()  # the worker's non-flag value survived the write
    assert env.pii[0] not in repr(on)  # and never left the client
    assert aws.lambda_flag(env.function_name, "NOT_THERE").value is None
    assert aws.set_lambda_flag(env.function_name, "RICHPANEL_OUTBOUND_ENABLED", False).value is False


def test_lambda_flag_writes_with_the_revision_it_read(stub_aws: Aws) -> None:
    """moto neither returns nor checks RevisionId: the Stubber proves we send it and report a conflict."""
    config = {
        "RevisionId": "rev-1",
        "LastModified": "2026-01-02T03:04:05.000+0000",
        "LastUpdateStatus": "Successful",
        "Environment": {"Variables": {"RICHPANEL_OUTBOUND_ENABLED": "false", "OTHER": "kept"}},
    }
    with Stubber(stub_aws._client("lambda")) as stub:
        stub.add_response("get_function_configuration", config, {"FunctionName": "fn"})
        stub.add_response(
            "update_function_configuration",
            {"RevisionId": "rev-2"},
            {
                "FunctionName": "fn",
                "RevisionId": "rev-1",
                "Environment": {"Variables": {"RICHPANEL_OUTBOUND_ENABLED": "true", "OTHER": "kept"}},
            },
        )
        stub.add_response(
            "get_function_configuration",
            {**config, "RevisionId": "rev-2", "Environment": {"Variables": {"RICHPANEL_OUTBOUND_ENABLED": "true"}}},
        )
        reading = stub_aws.set_lambda_flag("fn", "RICHPANEL_OUTBOUND_ENABLED", True)
        stub.assert_no_pending_responses()
    assert (reading.value, reading.version, reading.written_version, reading.overwritten) == (
        True,
        "rev-2",
        "rev-2",
        False,
    )
    assert reading.modified_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    with Stubber(stub_aws._client("lambda")) as stub:
        stub.add_response("get_function_configuration", config)
        stub.add_client_error(
            "update_function_configuration", service_error_code="PreconditionFailedException", http_status_code=412
        )
        with pytest.raises(UpstreamError, match="RevisionId"):
            stub_aws.set_lambda_flag("fn", "RICHPANEL_OUTBOUND_ENABLED", True)


# --- metrics: per period, with the StatusCode --------------------------------------------------------


def test_metric_datapoints_per_period_and_empty_is_not_zero(sb: Sandbox, aws: Aws, env: EnvSandbox) -> None:
    assert env.worker is not None
    base = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)
    for minute, value in ((1, 2.0), (2, 0.0), (4, 3.0)):
        env.worker.invoke(value, at=base + timedelta(minutes=minute, seconds=5))
    series = aws.metric_datapoints(env.function_name, "Invocations", base, base + timedelta(minutes=6), 60)
    assert series.complete is True
    assert series.status_code == "Complete"
    assert [v for _, v in series.points] == [2.0, 0.0, 3.0]  # a zero datapoint is data: not empty
    assert series.total == 5.0
    assert series.empty is False
    assert series.last_at == base + timedelta(minutes=4)
    assert all(ts.tzinfo is not None for ts, _ in series.points)

    nothing = aws.metric_datapoints(f"{env.function_name}-nope", "Invocations", base, base + timedelta(minutes=6))
    assert nothing.empty is True  # no datapoint: zero or a wrong query, the caller must not call it zero
    assert nothing.complete is True
    assert nothing.total == 0.0


@pytest.mark.parametrize(
    ("results", "status", "complete"),
    [
        ([{"Id": "m0", "Values": [1.0], "Timestamps": [datetime(2026, 1, 1, tzinfo=UTC)], "StatusCode": "PartialData"}],
         "PartialData", False),
        ([{"Id": "m0", "Values": [], "Timestamps": [], "StatusCode": "InternalError"}], "InternalError", False),
        ([], "", False),  # no result for the query at all
    ],
)  # fmt: skip
def test_metric_datapoints_partial_or_failed_is_not_complete(stub_aws: Aws, results, status, complete) -> None:
    with Stubber(stub_aws._client("cloudwatch")) as stub:
        stub.add_response(
            "get_metric_data",
            {"MetricDataResults": results, "Messages": [{"Code": "MaxQueryTimeRangeExceed", "Value": "x"}]},
            {"MetricDataQueries": ANY, "StartTime": ANY, "EndTime": ANY, "ScanBy": "TimestampAscending"},
        )
        series = stub_aws.metric_datapoints(
            "fn", "Invocations", datetime.now(UTC) - timedelta(minutes=5), datetime.now(UTC)
        )
    assert (series.status_code, series.complete) == (status, complete)
    assert series.messages == ("MaxQueryTimeRangeExceed: x",)


def test_metric_datapoints_access_denied_is_an_error(stub_aws: Aws) -> None:
    with Stubber(stub_aws._client("cloudwatch")) as stub:
        stub.add_client_error("get_metric_data", service_error_code="AccessDenied", http_status_code=403)
        with pytest.raises(UpstreamError, match="access denied") as info:
            stub_aws.metric_datapoints("fn", "Errors", datetime.now(UTC) - timedelta(minutes=5), datetime.now(UTC))
    assert "fn" in info.value.action


# --- logs: the worker's line for one ticket ----------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "form"),
    [
        ("order_status_processed ticket_id=1042 intent=order_status", "text"),
        ("[INFO]\t2026-01-01T00:00:00.000Z\trid\torder_status_processed ticket_id=1042 intent=order_status", "text"),
        ('order_status_processed ticket_id="1042"', "text"),
        ('{"event": "order_status_processed", "ticket_id": "1042"}', "json"),
        ('{"event": "order_status_processed", "ticket_id": 1042}', "json"),
        ('[INFO]\trid\t{"event": "order_status_processed", "ticket_id": "1042"}', "json"),
        ('{"level": "INFO", "message": "order_status_processed ticket_id=1042"}', "json"),
        ("order_status_processed ticket_id=10420 intent=order_status", None),
        ("order_status_processed ticket_id=1042x", None),
        ("order_status_processed_late ticket_id=1042", None),
        ("not order_status_processed: ticket 1042", None),
        ('{"event": "order_status_failed", "ticket_id": "1042", "note": "order_status_processed"}', None),
        ('{"event": "order_status_processed", "ticket_id": "10420"}', None),
        ('{"event": "order_status_processed", "ticket_id": true}', None),
    ],
)
def test_ticket_line_form(message: str, form: str | None) -> None:
    assert ticket_line_form(message, MARKER, "1042") == form


@pytest.mark.parametrize("as_json", [False, True])
def test_find_ticket_event_finds_the_line_in_either_form(sb: Sandbox, aws: Aws, env: EnvSandbox, as_json) -> None:
    tid = _ticket_id()
    now = datetime.now(UTC) - timedelta(minutes=5)
    line = (
        f'{{"event": "{MARKER}", "ticket_id": "{tid}", "intent": "order_status"}}'
        if as_json
        else f"[INFO]\t{now:%Y-%m-%dT%H:%M:%S}.000Z\trid\t{MARKER} ticket_id={tid} intent=order_status"
    )
    _put_lines(
        sb,
        env.log_group,
        [
            (now - timedelta(seconds=2), f"{MARKER} ticket_id={tid}0 intent=order_status"),  # another ticket
            (now - timedelta(seconds=1), f"order_status_skipped ticket_id={tid} intent=other"),
            (now, line),
        ],
    )
    start, end = _window()
    found = aws.find_ticket_event(env.log_group, MARKER, tid, start, end)
    assert found.found is True
    assert found.form == ("json" if as_json else "text")
    assert found.message == line
    assert found.timestamp is not None and abs(found.timestamp - now) < timedelta(seconds=1)
    assert found.complete is True
    assert found.filter_pattern == f"{MARKER} {tid}"
    assert found.candidates == 1  # ticket {tid}0 matched the server's terms and was rejected here

    missing = aws.find_ticket_event(env.log_group, MARKER, _ticket_id(), start, end)
    assert (missing.found, missing.complete, missing.message) == (False, True, None)
    before = aws.find_ticket_event(env.log_group, MARKER, tid, start, now - timedelta(minutes=1))
    assert before.found is False  # the window is honoured


def test_find_ticket_event_calls_do_not_grow_with_unrelated_lines(sb: Sandbox, aws: Aws) -> None:
    group = f"/aws/lambda/ca{SUFFIX}-noise"
    sb.aws.client("logs").create_log_group(logGroupName=group)
    tid = _ticket_id()
    now = datetime.now(UTC) - timedelta(minutes=30)
    _put_lines(sb, group, [(now, f"{MARKER} ticket_id={tid} intent=order_status")])
    start, end = _window()
    before = aws.find_ticket_event(group, MARKER, tid, start, end)
    absent_before = aws.find_ticket_event(group, MARKER, "999", start, end)

    # 10,000 lines in the window: other tickets processed, other events for this ticket, Lambda noise
    noise = []
    for i in range(10_000):
        at = now - timedelta(minutes=20) + timedelta(milliseconds=100 * i)
        kind = i % 4
        if kind == 0:
            msg = f"{MARKER} ticket_id={1_000_000 + i} intent=order_status"
        elif kind == 1:
            msg = f"order_status_classified ticket_id={tid} confidence=0.9{i % 10}"
        elif kind == 2:
            msg = f"START RequestId: {i:08x} Version: $LATEST"
        else:
            msg = f'{{"event": "{MARKER}", "ticket_id": "{2_000_000 + i}"}}'
        noise.append((at, msg))
    _put_lines(sb, group, noise)
    # control: the noise is there and inside the window (an unfiltered scan would page through it)
    assert aws.find_ticket_event(group, MARKER, str(1_000_000 + 4 * 17), start, end).found

    after = aws.find_ticket_event(group, MARKER, tid, start, end)
    absent_after = aws.find_ticket_event(group, MARKER, "999", start, end)
    assert (after.found, after.timestamp, after.api_calls) == (True, before.timestamp, before.api_calls)
    assert absent_after.api_calls == absent_before.api_calls
    assert absent_after.complete is True


def test_find_ticket_event_follows_empty_pages_within_a_bound(stub_aws: Aws) -> None:
    ts = int((datetime.now(UTC) - timedelta(minutes=1)).timestamp() * 1000)
    logs = stub_aws._client("logs")
    start, end = _window()
    with Stubber(logs) as stub:
        stub.add_response("filter_log_events", {"events": [], "nextToken": "t1"})
        stub.add_response("filter_log_events", {"events": [], "nextToken": "t2"})
        stub.add_response(
            "filter_log_events",
            {"events": [{"timestamp": ts, "message": f"{MARKER} ticket_id=1042"}]},
            {
                "logGroupName": "g",
                "filterPattern": f"{MARKER} 1042",
                "startTime": ANY,
                "endTime": ANY,
                "nextToken": "t2",
            },
        )
        found = stub_aws.find_ticket_event("g", MARKER, "1042", start, end)
        stub.assert_no_pending_responses()
    assert (found.found, found.api_calls, found.complete) == (True, 3, True)

    with Stubber(logs) as stub:
        for i in range(3):
            stub.add_response("filter_log_events", {"events": [], "nextToken": f"t{i}"})
        bounded = stub_aws.find_ticket_event("g", MARKER, "1042", start, end, max_calls=3)
    assert (bounded.found, bounded.api_calls, bounded.complete) == (False, 3, False)  # absence not proven


def test_find_ticket_event_rejects_patterns_it_cannot_filter_safely(aws: Aws, env: EnvSandbox) -> None:
    start, end = _window()
    for marker, tid in (('a"b', "1"), ("two words", "1"), (MARKER, "1 2"), ("", "1"), (MARKER, "")):
        with pytest.raises(ValueError, match="one word without quotes"):
            aws.find_ticket_event(env.log_group, marker, tid, start, end)


def test_find_ticket_event_missing_group_is_an_error(aws: Aws) -> None:
    start, end = _window()
    with pytest.raises(UpstreamError) as info:
        aws.find_ticket_event(f"/aws/lambda/ca{SUFFIX}-none", MARKER, "1", start, end)
    assert info.value.code == "ResourceNotFoundException"


# --- Logs Insights: rows only when Complete ------------------------------------------------------------


def test_insights_query_complete_returns_rows(sb: Sandbox, aws: Aws, env: EnvSandbox) -> None:
    tid = _ticket_id()
    _put_lines(sb, env.log_group, [(datetime.now(UTC) - timedelta(minutes=2), f"{MARKER} ticket_id={tid}")])
    start, end = _window()
    result = aws.insights_query(env.log_group, "fields @timestamp, @message | limit 10000", start, end, 5.0)
    assert (result.status, result.complete, result.reason) == ("Complete", True, "")
    assert any(f"ticket_id={tid}" in row.get("@message", "") for row in result.rows)


def test_insights_query_running_past_the_timeout_has_no_rows(sb: Sandbox, aws: Aws, env: EnvSandbox) -> None:
    assert env.worker is not None
    start, end = _window()
    env.worker.faults.insights_running = True
    try:
        result = aws.insights_query(env.log_group, "fields @message | limit 5", start, end, 0.3, poll_s=0.1)
    finally:
        env.worker.faults.insights_running = False
    assert (result.status, result.complete, result.rows) == ("Running", False, ())
    assert "still Running after 0.3 s" in result.reason
    assert result.polls >= 2
    # control: the same query completes once the fault is gone, with the rows the stalled one withheld
    again = aws.insights_query(env.log_group, "fields @message | limit 5", start, end, 5.0)
    assert again.complete and again.rows


@pytest.mark.parametrize("status", ["Failed", "Cancelled", "Timeout", "Unknown"])
def test_insights_query_terminal_states_are_incomplete(stub_aws: Aws, status: str) -> None:
    start, end = _window()
    with Stubber(stub_aws._client("logs")) as stub:
        stub.add_response("start_query", {"queryId": "q1"})
        stub.add_response("get_query_results", {"status": "Running", "results": []})
        stub.add_response(
            "get_query_results", {"status": status, "results": [[{"field": "@message", "value": "partial"}]]}
        )
        result = stub_aws.insights_query("g", "fields @message", start, end, 5.0, poll_s=0.01)
    assert (result.status, result.complete, result.rows, result.polls) == (status, False, (), 2)
    assert status in result.reason


# --- the function URL and the alarms ------------------------------------------------------------------


def test_function_url_absent_then_present(sb: Sandbox, aws: Aws) -> None:
    env = sb.envs[LAMBDA_ENV]
    assert aws.function_url(env.function_name) is None
    lam = sb.aws.client("lambda")
    url = lam.create_function_url_config(FunctionName=env.function_name, AuthType="NONE")["FunctionUrl"]
    try:
        assert aws.function_url(env.function_name) == url
    finally:
        lam.delete_function_url_config(FunctionName=env.function_name)
    with pytest.raises(UpstreamError):
        Aws(region=REGION, endpoint_url="http://127.0.0.1:9", connect_timeout_s=0.3, max_attempts=1).function_url("x")


def test_alarm_details_has_what_a_watch_needs(sb: Sandbox, aws: Aws, env: EnvSandbox) -> None:
    names = [f"rp-mw-{env.name}-worker-error-rate", f"rp-mw-{env.name}-shopify-429s"]
    cw = sb.aws.client("cloudwatch")
    cw.set_alarm_state(AlarmName=names[0], StateValue="ALARM", StateReason="Errors >= 1 for 1 datapoint")
    try:
        got = aws.alarm_details([*names, "rp-mw-absent"])
    finally:
        cw.set_alarm_state(AlarmName=names[0], StateValue="OK", StateReason="back to OK")
    assert set(got) == set(names)
    firing = got[names[0]]
    assert (firing.state, firing.reason, firing.kind) == ("ALARM", "Errors >= 1 for 1 datapoint", "metric")
    assert firing.actions_enabled is True
    assert len(firing.alarm_actions) == 1 and firing.alarm_actions[0].startswith("arn:aws:sns:")
    assert firing.state_updated_at is not None and firing.state_updated_at.tzinfo is not None
    assert abs(firing.state_updated_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert firing.treat_missing_data == "missing"
    assert (firing.namespace, firing.metric, firing.dimensions) == (
        "AWS/Lambda",
        "Errors",
        {"FunctionName": env.function_name},
    )
    assert aws.alarm_details([]) == {}


# --- IAM policy simulation (moto has none: the loopback simulator, real boto3 over HTTP) ------------------


@pytest.fixture
def iam_rules(sb: Sandbox) -> Iterator[None]:
    saved = list(sb.iam.rules)
    yield
    sb.iam.clear_rules()
    for rule in saved:
        sb.iam.set_rule(rule.decision, actions=rule.actions, resources=rule.resources)
    sb.iam.page_size = 1000


def _param_arn(env_name: str) -> str:
    return f"arn:aws:ssm:{REGION}:{MOTO_ACCOUNT_ID}:parameter/rp-mw/{env_name}/outbound_enabled"


def test_simulate_reaches_the_simulator_via_aws_endpoint_url_iam(sb: Sandbox, aws: Aws, iam_rules) -> None:
    before = len(sb.iam.simulations)
    actions = ["ssm:GetParameter", "ssm:PutParameter"]
    got = aws.simulate(ROLE, actions, [_param_arn(SSM_ENV)])
    assert got == {(a, _param_arn(SSM_ENV)): "allowed" for a in actions}
    sim = sb.iam.simulations[before]
    assert (sim.policy_source_arn, sim.actions, sim.resources) == (ROLE, tuple(actions), (_param_arn(SSM_ENV),))
    form = sb.iam.received("POST")[-1].form()
    assert form["Action"] == "SimulatePrincipalPolicy"
    assert form["Version"] == "2010-05-08"
    assert form["ActionNames.member.2"] == "ssm:PutParameter"


def test_simulate_per_env_decision_from_the_scenario(aws: Aws) -> None:
    denied = aws.simulate(ROLE, ["ssm:GetParameter", "ssm:PutParameter"], [_param_arn(DENY_ENV)])
    assert denied == {
        ("ssm:GetParameter", _param_arn(DENY_ENV)): "allowed",
        ("ssm:PutParameter", _param_arn(DENY_ENV)): "implicitDeny",
    }
    assert aws.simulate(ROLE, ["ssm:PutParameter"], [_param_arn(SSM_ENV)]) == {
        ("ssm:PutParameter", _param_arn(SSM_ENV)): "allowed"
    }


def test_simulate_explicit_deny_and_wildcards(sb: Sandbox, aws: Aws, iam_rules) -> None:
    fn_arn = f"arn:aws:lambda:{REGION}:{MOTO_ACCOUNT_ID}:function:rp-mw-{LAMBDA_ENV}-worker"
    sb.iam.deny(actions=("lambda:Update*",), resources=(f"rp-mw-{LAMBDA_ENV}-worker",), explicit=True)
    got = aws.simulate(ROLE, ["lambda:GetFunctionConfiguration", "lambda:UpdateFunctionConfiguration"], [fn_arn])
    assert got[("lambda:UpdateFunctionConfiguration", fn_arn)] == "explicitDeny"
    assert got[("lambda:GetFunctionConfiguration", fn_arn)] == "allowed"
    # a function whose name merely ends the same is another resource
    other = f"arn:aws:lambda:{REGION}:{MOTO_ACCOUNT_ID}:function:x-rp-mw-{LAMBDA_ENV}-worker"
    assert aws.simulate(ROLE, ["lambda:UpdateFunctionConfiguration"], [other]) == {
        ("lambda:UpdateFunctionConfiguration", other): "allowed"
    }
    # no resources means "*"
    assert aws.simulate(ROLE, ["sts:GetCallerIdentity"], []) == {("sts:GetCallerIdentity", "*"): "allowed"}


def test_simulate_follows_pages(sb: Sandbox, aws: Aws, iam_rules) -> None:
    sb.iam.page_size = 2
    before = len(sb.iam.received("POST"))
    actions = [f"logs:Action{i}" for i in range(5)]
    got = aws.simulate(ROLE, actions, ["*"])
    assert got == {(a, "*"): "allowed" for a in actions}
    assert len(sb.iam.received("POST")) - before == 3


def test_simulate_refused_is_access_denied_not_allowed(sb: Sandbox, aws: Aws, iam_rules) -> None:
    sb.iam.refuse(resources=(f"rp-mw/{SSM_ENV}/",))
    with pytest.raises(UpstreamError) as info:
        aws.simulate(ROLE, ["ssm:PutParameter"], [_param_arn(SSM_ENV)])
    err = info.value
    assert (err.code, err.status_code) == ("AccessDenied", 403)
    assert "iam:SimulatePrincipalPolicy" in err.reason


def test_simulate_rejects_an_sts_arn_and_converts_it(aws: Aws) -> None:
    caller = aws.caller_identity().arn  # moto: arn:aws:sts::123456789012:user/moto
    assert caller.startswith("arn:aws:sts::")
    with pytest.raises(UpstreamError) as info:
        aws.simulate(f"arn:aws:sts::{MOTO_ACCOUNT_ID}:assumed-role/cutover-bot/run-1", ["ssm:GetParameter"])
    assert info.value.code == "InvalidInput"
    role = role_arn_from_caller(f"arn:aws:sts::{MOTO_ACCOUNT_ID}:assumed-role/cutover-bot/run-1")
    assert aws.simulate(role, ["ssm:GetParameter"]) == {("ssm:GetParameter", "*"): "allowed"}


def test_simulate_unanswered_pairs_are_missing(stub_aws: Aws) -> None:
    with Stubber(stub_aws._client("iam")) as stub:
        stub.add_response(
            "simulate_principal_policy",
            {
                "EvaluationResults": [
                    {
                        "EvalActionName": "ssm:PutParameter",
                        "EvalResourceName": "*",
                        "EvalDecision": "allowed",
                        "ResourceSpecificResults": [
                            {"EvalResourceName": "arn:p1", "EvalResourceDecision": "explicitDeny"}
                        ],
                    }
                ],
                "IsTruncated": False,
            },
        )
        got = stub_aws.simulate(ROLE, ["ssm:PutParameter", "ssm:GetParameter"], ["arn:p1", "arn:p2"])
    assert got[("ssm:PutParameter", "arn:p1")] == "explicitDeny"  # the resource-specific answer wins
    assert got[("ssm:PutParameter", "arn:p2")] == "missing"
    assert got[("ssm:GetParameter", "arn:p1")] == "missing"


def test_other_iam_calls_pass_through_to_moto(sb: Sandbox, aws: Aws, env: EnvSandbox) -> None:
    assert aws.role_arn(f"{env.function_name}-role") == f"arn:aws:iam::{MOTO_ACCOUNT_ID}:role/{env.function_name}-role"
    with pytest.raises(UpstreamError) as info:
        aws.role_arn("no-such-role")
    assert info.value.code == "NoSuchEntity"


def test_a_plain_boto3_iam_client_parses_the_simulator(sb: Sandbox) -> None:
    """The XML is read by botocore's own IAM model (query protocol), not by code of ours."""
    iam = boto3.client(
        "iam",
        region_name=REGION,
        endpoint_url=sb.iam.url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    assert iam.meta.service_model.protocol == "query"
    resp = iam.simulate_principal_policy(
        PolicySourceArn=ROLE, ActionNames=["ssm:PutParameter"], ResourceArns=[_param_arn(DENY_ENV)]
    )
    (result,) = resp["EvaluationResults"]
    assert result["EvalActionName"] == "ssm:PutParameter"
    assert result["EvalResourceName"] == _param_arn(DENY_ENV)
    assert result["EvalDecision"] == "implicitDeny"
    assert resp["IsTruncated"] is False
    assert result["MatchedStatements"] == []


@pytest.mark.parametrize(
    ("arn", "expected"),
    [
        (f"arn:aws:sts::{MOTO_ACCOUNT_ID}:assumed-role/cutover-bot/session-1", ROLE),
        ("arn:aws-us-gov:sts::111122223333:assumed-role/R/s", "arn:aws-us-gov:iam::111122223333:role/R"),
        ("arn:aws:iam::111122223333:user/alice", "arn:aws:iam::111122223333:user/alice"),
        ("arn:aws:iam::111122223333:role/path/to/R", "arn:aws:iam::111122223333:role/path/to/R"),
    ],
)
def test_role_arn_from_caller(arn: str, expected: str) -> None:
    assert role_arn_from_caller(arn) == expected


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:sts::111122223333:federated-user/bob",
        "arn:aws:iam::111122223333:root",
        "arn:aws:sts::111122223333:assumed-role//s",
        "arn:aws:s3:::bucket",
        "not an arn",
    ],
)
def test_role_arn_from_caller_refuses_what_cannot_be_simulated(arn: str) -> None:
    with pytest.raises(ValueError, match="ARN"):
        role_arn_from_caller(arn)


def test_worker_faults_are_copied_per_env(sb: Sandbox) -> None:
    """Flipping one env's worker fault leaves the Scenario (and every other env) alone."""
    env = sb.envs[SSM_ENV]
    assert env.worker is not None and env.worker.faults is not env.scenario.worker_faults
    assert env.scenario.worker_faults == WorkerFaults()
