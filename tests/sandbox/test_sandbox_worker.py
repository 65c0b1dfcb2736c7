"""The simulated Order Status worker, composed into the sandbox: what a canary, a watch and a rollback observe.

Real httpx to the Richpanel fake (the canary's ticket), real boto3 to moto (logs, metrics, the lever),
read through the product's own clients. moto's state is process-wide: names are this module's own.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from integrations.aws import Aws
from integrations.richpanel import RichpanelClient
from integrations.sandbox.env import OUTBOUND_ENV_KEY, REGION, EnvSandbox, Sandbox, Scenario, outbound_parameter
from integrations.sandbox.worker import OUTBOUND_MARKER, PROCESSED_MARKER, WorkerFaults

SUFFIX = secrets.token_hex(2)
TEXT, JSON = f"wk{SUFFIX}", f"wk{SUFFIX}-json"
INTERNAL = "cutover-canary@example.com"


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(
        {
            TEXT: Scenario(unrelated_log_lines=10, worker_interval_s=0.05),
            JSON: Scenario(
                unrelated_log_lines=10, outbound_flag="lambda_env", worker_log_format="json", worker_interval_s=0.05
            ),
        }
    ) as sandbox:
        sandbox.wait_until_seeded()
        yield sandbox


@pytest.fixture(scope="module")
def aws(sb: Sandbox) -> Aws:
    return Aws(region=REGION, max_attempts=1)


def _fresh(sb: Sandbox, aws: Aws, name: str) -> Iterator[EnvSandbox]:
    env = sb.envs[name]
    assert env.worker is not None
    env.worker.faults = WorkerFaults()
    yield env
    env.set_rule(enabled=False, by="test")
    env.worker.faults = WorkerFaults()
    if env.scenario.outbound_flag == "lambda_env":
        aws.set_lambda_flag(env.function_name, OUTBOUND_ENV_KEY, False)
    else:
        aws.set_ssm_flag(outbound_parameter(env.name), False)
    env.worker.wait_idle(5.0)


@pytest.fixture
def env(sb: Sandbox, aws: Aws) -> Iterator[EnvSandbox]:
    yield from _fresh(sb, aws, TEXT)


@pytest.fixture
def json_env(sb: Sandbox, aws: Aws) -> Iterator[EnvSandbox]:
    yield from _fresh(sb, aws, JSON)


def canary_ticket(env: EnvSandbox) -> str:
    with RichpanelClient(
        base_url=env.richpanel.url,
        api_key=env.secrets["richpanel_api_key"],
        timeout_s=2.0,
        internal_test_address=INTERNAL,
    ) as rp:
        return rp.create_ticket(from_email=INTERNAL, subject="canary", body="Where is order #1001?")


def bot_replies(env: EnvSandbox, ticket_id: str) -> int:
    with RichpanelClient(base_url=env.richpanel.url, api_key=env.secrets["richpanel_api_key"], timeout_s=2.0) as rp:
        return rp.outbound_replies(ticket_id, env.secrets["richpanel_bot_agent_id"]).bot_public_replies


def window(start: datetime) -> tuple[datetime, datetime]:
    return start - timedelta(seconds=5), datetime.now(UTC) + timedelta(minutes=1)


# --- the rule gates the worker --------------------------------------------------------------------------


def test_paused_rule_means_no_processing_and_no_invocations(env: EnvSandbox, aws: Aws) -> None:
    assert env.worker is not None
    started = datetime.now(UTC)
    ticket_id = canary_ticket(env)
    assert env.worker.wait_for("invocation", ticket_id, timeout_s=0.3) is None
    time.sleep(0.2)
    assert env.worker.done("invocation") == [a for a in env.worker.done("invocation") if a.at < started]
    found = aws.find_ticket_event(env.log_group, PROCESSED_MARKER, ticket_id, *window(started))
    assert (found.found, found.complete) == (False, True)


def test_enabled_rule_processes_the_ticket_with_the_lever_off(env: EnvSandbox, aws: Aws) -> None:
    assert env.worker is not None
    started = datetime.now(UTC)
    env.set_rule(enabled=True, by="U0ENGINEER")
    ticket_id = canary_ticket(env)
    assert env.worker.wait_for("processed", ticket_id, timeout_s=5) is not None

    line = aws.find_ticket_event(env.log_group, PROCESSED_MARKER, ticket_id, *window(started))
    assert line.found is True
    assert line.form == "text"
    assert line.message is not None and f"{PROCESSED_MARKER} ticket_id={ticket_id} intent=order_status" in line.message
    invocations = aws.metric_datapoints(env.function_name, "Invocations", *window(started), period_s=60)
    assert invocations.complete and invocations.total >= 1  # put by the worker: moto makes none on invoke

    # the lever is off: nobody was contacted, and the outbound query is proven by the processed line
    outbound = aws.find_ticket_event(env.log_group, OUTBOUND_MARKER, ticket_id, *window(started))
    assert (outbound.found, outbound.complete) == (False, True)
    assert bot_replies(env, ticket_id) == 0
    assert ticket_id in env.worker.processed
    assert ticket_id not in env.worker.outbound


def test_lever_on_in_ssm_contacts_the_customer(env: EnvSandbox, aws: Aws) -> None:
    assert env.worker is not None
    started = datetime.now(UTC)
    assert aws.set_ssm_flag(outbound_parameter(env.name), True).value is True
    env.set_rule(enabled=True)
    ticket_id = canary_ticket(env)
    assert env.worker.wait_for("processed", ticket_id, timeout_s=5) is not None
    assert bot_replies(env, ticket_id) == 1
    sent = aws.find_ticket_event(env.log_group, OUTBOUND_MARKER, ticket_id, *window(started))
    assert sent.found is True
    assert ticket_id in env.worker.outbound


def test_json_lines_and_the_lambda_env_lever(json_env: EnvSandbox, aws: Aws) -> None:
    env = json_env
    assert env.worker is not None
    started = datetime.now(UTC)
    env.set_rule(enabled=True)
    quiet = canary_ticket(env)
    assert env.worker.wait_for("processed", quiet, timeout_s=5) is not None
    line = aws.find_ticket_event(env.log_group, PROCESSED_MARKER, quiet, *window(started))
    assert (line.found, line.form) == (True, "json")
    assert bot_replies(env, quiet) == 0

    assert aws.set_lambda_flag(env.function_name, OUTBOUND_ENV_KEY, True).value is True
    loud = canary_ticket(env)
    assert env.worker.wait_for("processed", loud, timeout_s=5) is not None
    assert bot_replies(env, loud) == 1
    sent = aws.find_ticket_event(env.log_group, OUTBOUND_MARKER, loud, *window(started))
    assert (sent.found, sent.form) == (True, "json")


# --- faults -------------------------------------------------------------------------------------------


def test_never_processes(env: EnvSandbox, aws: Aws) -> None:
    assert env.worker is not None
    env.worker.faults.never_processes = True
    started = datetime.now(UTC)
    env.set_rule(enabled=True)
    ticket_id = canary_ticket(env)
    assert env.worker.wait_for("skipped", ticket_id, timeout_s=5) is not None
    assert env.worker.wait_for("processed", ticket_id, timeout_s=0.3) is None
    found = aws.find_ticket_event(env.log_group, PROCESSED_MARKER, ticket_id, *window(started))
    assert (found.found, found.complete) == (False, True)


def test_contacts_customer_with_lever_off(env: EnvSandbox, aws: Aws) -> None:
    assert env.worker is not None
    env.worker.faults.contacts_customer_with_lever_off = True
    started = datetime.now(UTC)
    assert aws.ssm_flag(outbound_parameter(env.name)).value is False
    env.set_rule(enabled=True)
    ticket_id = canary_ticket(env)
    assert env.worker.wait_for("processed", ticket_id, timeout_s=5) is not None
    assert bot_replies(env, ticket_id) == 1
    assert aws.find_ticket_event(env.log_group, OUTBOUND_MARKER, ticket_id, *window(started)).found
    assert env.worker.done("outbound", ticket_id)[0].detail == "lever off (worker bug)"


def test_logs_late(env: EnvSandbox, aws: Aws) -> None:
    assert env.worker is not None
    env.worker.faults.logs_late_s = 0.8
    started = datetime.now(UTC)
    env.set_rule(enabled=True)
    ticket_id = canary_ticket(env)
    handled = env.worker.wait_for("invocation", ticket_id, timeout_s=5)
    assert handled is not None
    early = aws.find_ticket_event(env.log_group, PROCESSED_MARKER, ticket_id, *window(started))
    assert early.found is False  # handled, but the line is not searchable yet
    written = env.worker.wait_for("processed", ticket_id, timeout_s=5)
    assert written is not None and (written.at - handled.at) >= timedelta(seconds=0.7)
    late = aws.find_ticket_event(env.log_group, PROCESSED_MARKER, ticket_id, *window(started))
    assert late.found is True
    assert late.timestamp is not None and late.timestamp < written.at  # stamped when handled, seen later


def test_background_invocations_until_the_rule_is_paused(env: EnvSandbox, aws: Aws) -> None:
    assert env.worker is not None
    started = datetime.now(UTC)
    env.set_rule(enabled=True)
    deadline = time.monotonic() + 5
    while len([a for a in env.worker.done("invocation") if a.at >= started]) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    env.set_rule(enabled=False)
    paused_at = datetime.now(UTC)
    env.worker.wait_idle()
    count = env.worker.invocations
    last = env.worker.last_invocation_at
    assert last is not None and started <= last <= paused_at

    # a quiet window starting after the pause (whole seconds: CloudWatch and moto count in seconds)
    quiet_from = datetime.fromtimestamp(math.ceil(paused_at.timestamp()) + 1, tz=UTC)
    while datetime.now(UTC) < quiet_from + timedelta(seconds=0.5):
        time.sleep(0.05)
    assert env.worker.invocations == count
    quiet_to = datetime.now(UTC) + timedelta(seconds=1)
    quiet = aws.metric_datapoints(env.function_name, "Invocations", quiet_from, quiet_to, period_s=1)
    assert quiet.complete is True
    assert quiet.empty is True
    # the positive control: the same query over the time before the pause finds the invocations
    before = aws.metric_datapoints(
        env.function_name, "Invocations", started - timedelta(seconds=1), quiet_from, period_s=1
    )
    assert before.total >= 5
    assert before.last_at is not None and before.last_at <= paused_at


def test_ignores_pause_keeps_invoking_for_a_while(env: EnvSandbox) -> None:
    assert env.worker is not None
    env.worker.faults.ignores_pause_s = 0.4
    env.set_rule(enabled=True)
    time.sleep(0.15)
    env.set_rule(enabled=False)
    paused_at = datetime.now(UTC)
    time.sleep(0.7)
    after = [a for a in env.worker.done("invocation") if a.at > paused_at]
    assert after, "in-flight invocations after the pause"
    assert max(a.at for a in after) < paused_at + timedelta(seconds=0.6)


def test_put_errors_is_what_the_watch_sums(env: EnvSandbox, aws: Aws) -> None:
    assert env.worker is not None
    started = datetime.now(UTC)
    env.worker.put_errors(2)
    env.worker.put_errors(1)
    errors = aws.metric_datapoints(env.function_name, "Errors", *window(started))
    assert (errors.total, errors.complete) == (3.0, True)
    assert len(env.worker.done("errors")) >= 2


def test_insights_fault_is_per_env(sb: Sandbox, env: EnvSandbox, aws: Aws) -> None:
    assert env.worker is not None
    other = sb.envs[JSON]
    started = datetime.now(UTC) - timedelta(minutes=5)
    env.worker.faults.insights_running = True
    stalled = aws.insights_query(env.log_group, "fields @message | limit 1", *window(started), 0.2, poll_s=0.05)
    fine = aws.insights_query(other.log_group, "fields @message | limit 1", *window(started), 2.0, poll_s=0.05)
    assert (stalled.status, stalled.complete) == ("Running", False)
    assert (fine.status, fine.complete) == ("Complete", True)


# --- lifecycle ------------------------------------------------------------------------------------------


def test_sandbox_starts_fast_and_stops_its_worker_threads() -> None:
    name = f"wk{SUFFIX}-life"
    t0 = time.perf_counter()
    sandbox = Sandbox({name: Scenario(unrelated_log_lines=0, rule_enabled=True, worker_interval_s=0.02)}).start()
    try:
        started_in = time.perf_counter() - t0
        worker = sandbox.envs[name].worker
        assert worker is not None
        assert sandbox.envs[name].richpanel.rule_enabled is True
        assert worker.wait_for("invocation", None, timeout_s=5) is not None  # background invocations run
        assert any(t.name == f"sandbox-worker-rp-mw-{name}-worker" for t in threading.enumerate())
    finally:
        sandbox.stop()
    assert not any(t.name == f"sandbox-worker-rp-mw-{name}-worker" and t.is_alive() for t in threading.enumerate())
    print(f"sandbox with a worker started in {started_in:.2f}s")
    assert started_in < 1.5  # about 0.3 s warm; the worker adds a thread, no AWS calls at start
