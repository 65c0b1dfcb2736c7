"""/rollback on the sandbox: the real command through signed Slack requests and through the CLI.

moto over HTTP holds the lever (SSM or the worker's Lambda environment) and the worker's Invocations;
the simulated worker invokes while Richpanel's rule is enabled; the GitHub, Slack and Richpanel fakes
take injected faults. Every environment here is this module's own (added to the session sandbox).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.execution.evidence_publisher import OUTBOX_DIR, publisher_for
from bot.slack.blocks import CONFIRM_ACTION
from bot.terminal.cli import main
from commands.checks import passed
from commands.config import CutoverConfig, Tokens, load_config
from commands.execute import execute, store_for
from commands.lever import aws_for
from commands.report import Report
from commands.request import RunRequest
from commands.run_context import RunContext, Steps
from commands.state import LockHolder, RunStatus
from integrations.sandbox.env import (
    ENGINEER,
    MOTO_ACCOUNT_ID,
    OUTBOUND_ENV_KEY,
    PR_NUMBER,
    Sandbox,
    Scenario,
    outbound_parameter,
)
from integrations.sandbox.http import Fault
from integrations.sandbox.slack_requests import signed_headers, slash_command_body
from tests.conftest import assert_nothing_planted
from tests.slack_support import CHANNEL, is_final, served_bot

PAUSE, SLACK_CONFIRM, SLACK_WARN, LAMBDA, DOWN, METRIC, SILENT, LOCKED, DRY, WRONG = (
    "rbk-pause",
    "rbk-click",
    "rbk-warn",
    "rbk-lambda",
    "rbk-down",
    "rbk-metric",
    "rbk-silent",
    "rbk-locked",
    "rbk-dry",
    "rbk-wrong",
)
ELSEWHERE = "C0ELSEWHERE"


@pytest.fixture(scope="module")
def envs(sandbox: Sandbox) -> Iterator[dict[str, Any]]:
    scenarios = {
        PAUSE: Scenario(rule_enabled=True, outbound_enabled=True),
        SLACK_CONFIRM: Scenario(rule_enabled=True, outbound_enabled=True),
        SLACK_WARN: Scenario(outbound_enabled=True),
        LAMBDA: Scenario(outbound_flag="lambda_env", outbound_enabled=True),
        DOWN: Scenario(rule_enabled=True, outbound_enabled=True),
        METRIC: Scenario(),
        SILENT: Scenario(outbound_enabled=True),  # never invoked: the positive control finds nothing
        LOCKED: Scenario(),
        DRY: Scenario(outbound_enabled=True),
        WRONG: Scenario(outbound_enabled=True, config_account_id="999988887777"),  # the map names another account
    }
    added = {name: sandbox.add_env(name, scenario) for name, scenario in scenarios.items()}
    yield added
    for env in added.values():  # no background invocations left filling moto for the modules after this one
        env.set_rule(enabled=False, by="test teardown")


@pytest.fixture(scope="module")
def rb_config_path(sandbox: Sandbox, envs, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("rollback")
    path = sandbox.write_config(directory, evidence_dir=str(directory / "evidence"))
    # A shorter quiet window than the sandbox's default keeps this module fast (still whole seconds).
    path.write_text(path.read_text().replace("quiet_minutes = 0.05", "quiet_minutes = 0.0166"))
    return path


@pytest.fixture(scope="module")
def rb_config(rb_config_path) -> CutoverConfig:
    return load_config(rb_config_path)


def ssm_value(sandbox: Sandbox, env: str) -> tuple[str, int]:
    param = sandbox.aws.client("ssm").get_parameter(Name=outbound_parameter(env))["Parameter"]
    return param["Value"], param["Version"]


def lambda_env(sandbox: Sandbox, env: str) -> dict[str, str]:
    config = sandbox.aws.client("lambda").get_function_configuration(FunctionName=f"rp-mw-{env}-worker")
    return dict(config["Environment"]["Variables"])


def pause_and_leave_a_trace(env) -> None:
    """A person paused the rule; the worker's last invocation is in the window before the rollback."""
    env.set_rule(enabled=False, by="test")
    assert env.worker.wait_idle(5)
    env.worker.invoke()


def cli_rollback(config_path: Path, env: str, tmp_path: Path, *extra: str) -> tuple[int, Report]:
    out = tmp_path / f"{env}-{time.monotonic_ns()}.json"
    code = main(["rollback", "--env", env, "--config", str(config_path), "--out-json", str(out), *extra])
    return code, Report.model_validate_json(out.read_text())


def by_name(report: Report) -> dict[str, Any]:
    return {c.name: c for c in report.checks}


# --- the CLI ----------------------------------------------------------------------------------------


def test_rollback_passes_with_the_rule_paused_and_is_idempotent(sandbox, envs, rb_config_path, tmp_path, capsys):
    assert ssm_value(sandbox, PAUSE)[0] == "true"
    pause_and_leave_a_trace(envs[PAUSE])
    code, report = cli_rollback(rb_config_path, PAUSE, tmp_path, "--confirm", "rule-paused")
    assert code == 0, capsys.readouterr()
    checks = by_name(report)
    assert [c.name for c in report.checks] == ["outbound_flag", "rule_paused", "no_invocations"]
    assert all(c.status == "PASS" for c in report.checks), report.checks
    assert "set to false (was true), read back false" in checks["outbound_flag"].detail
    assert checks["outbound_flag"].data["previous"] == "true"
    assert checks["outbound_flag"].data["propagation_seconds"] == 0.5
    assert checks["rule_paused"].data["confirmed_by"].startswith("cli:")
    assert "the same query finds" in checks["no_invocations"].detail
    value, version = ssm_value(sandbox, PAUSE)
    assert value == "false"

    envs[PAUSE].worker.invoke()  # the control of the second run: an invocation before it
    code, again = cli_rollback(rb_config_path, PAUSE, tmp_path, "--confirm", "rule-paused")
    assert code == 0
    assert all(c.status == "PASS" for c in again.checks), again.checks
    assert "already false" in by_name(again)["outbound_flag"].detail
    assert ssm_value(sandbox, PAUSE) == ("false", version)  # nothing written the second time


def test_lambda_env_form_keeps_every_other_variable(sandbox, envs, rb_config_path, tmp_path):
    before = lambda_env(sandbox, LAMBDA)
    assert before[OUTBOUND_ENV_KEY] == "true" and len(before) > 3
    pause_and_leave_a_trace(envs[LAMBDA])
    code, report = cli_rollback(rb_config_path, LAMBDA, tmp_path, "--confirm", "rule-paused")
    after = lambda_env(sandbox, LAMBDA)
    assert after == {**before, OUTBOUND_ENV_KEY: "false"}
    flag = by_name(report)["outbound_flag"]
    assert flag.status == "PASS" and "read back false" in flag.detail
    assert OUTBOUND_ENV_KEY in flag.detail
    assert code == 0, report.checks


def test_no_invocations_ever_is_a_warning_not_a_proof(envs, rb_config_path, tmp_path):
    code, report = cli_rollback(rb_config_path, SILENT, tmp_path, "--confirm", "rule-paused")
    quiet = by_name(report)["no_invocations"]
    assert quiet.status == "WARN"
    assert "cannot tell the query sees this function" in quiet.detail
    assert quiet.data["control_invocations"] == 0
    assert by_name(report)["outbound_flag"].status == "PASS"
    assert code == 0  # WARN passes with its caveat shown


def test_wrong_aws_account_changes_nothing_and_says_so(sandbox, envs, rb_config_path, tmp_path):
    code, report = cli_rollback(rb_config_path, WRONG, tmp_path, "--confirm", "rule-paused", "--include-aws-account-id")
    flag = by_name(report)["outbound_flag"]
    assert flag.status == "FAIL"
    assert "NOT changed" in flag.detail and f"for account {MOTO_ACCOUNT_ID}, not {WRONG}'s 999988887777" in flag.detail
    assert ssm_value(sandbox, WRONG)[0] == "true"  # nothing written in an account that is not the env's
    assert [c.name for c in report.checks] == ["outbound_flag", "rule_paused", "no_invocations"]  # all attempted
    assert code == 1


@pytest.fixture
def metric_hook(rb_config) -> Iterator[Callable[[str], None]]:
    """Makes the CloudWatch client the command uses answer GetMetricData as `PartialData` or an error
    (moto always answers Complete), through botocore's own event hooks on the real client."""
    client = aws_for(rb_config.env(METRIC))._client("cloudwatch")
    registered: list[tuple[str, Callable[..., Any]]] = []

    def install(kind: str) -> None:
        if kind == "partial":

            def partial(parsed: dict[str, Any], **_: Any) -> None:
                for result in parsed.get("MetricDataResults", []):
                    result["StatusCode"] = "PartialData"

            registered.append(("after-call.cloudwatch.GetMetricData", partial))
        else:

            class Http:
                status_code = 403

            def denied(**_: Any) -> tuple[Any, dict[str, Any]]:
                error = {"Code": "AccessDenied", "Message": "not allowed: cloudwatch:GetMetricData"}
                return Http(), {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 403}}

            registered.append(("before-call.cloudwatch.GetMetricData", denied))
        for event, handler in registered:
            client.meta.events.register(event, handler)

    yield install
    for event, handler in registered:
        client.meta.events.unregister(event, handler)


@pytest.mark.parametrize(("kind", "reason"), [("partial", "StatusCode PartialData"), ("error", "access denied")])
def test_partial_or_failed_metric_query_fails_no_invocations(
    sandbox, envs, rb_config_path, tmp_path, metric_hook, kind, reason
):
    envs[METRIC].worker.invoke()
    metric_hook(kind)
    code, report = cli_rollback(rb_config_path, METRIC, tmp_path, "--confirm", "rule-paused")
    quiet = by_name(report)["no_invocations"]
    assert quiet.status == "FAIL"
    assert reason in quiet.detail
    assert by_name(report)["outbound_flag"].status == "PASS"  # the other steps ran
    assert by_name(report)["rule_paused"].status == "PASS"
    assert code == 1
    assert ssm_value(sandbox, METRIC)[0] == "false"


def test_rollback_preempts_the_lock_holder_whose_next_step_is_skipped(envs, rb_config, rb_config_path, tmp_path):
    store = store_for(rb_config)
    holder = LockHolder(run_id="canary-held", command="canary", requested_by="cli:someone", surface="cli")
    lease = store.acquire(LOCKED, holder, 60)
    canary = RunContext(
        RunRequest(command="canary", env=LOCKED), rb_config, rb_config.env(LOCKED), store, "canary-held", lease=lease
    )
    steps = Steps(canary)
    assert steps.run("before", lambda: passed("still holds the lock")).status == "PASS"

    envs[LOCKED].worker.invoke()
    result: dict[str, Any] = {}

    def run_rollback() -> None:
        result["code"], result["report"] = cli_rollback(rb_config_path, LOCKED, tmp_path, "--confirm", "rule-paused")

    rollback = threading.Thread(target=run_rollback)
    rollback.start()
    taken = _wait(lambda: (info := store.lock_holder(LOCKED)) and info.holder.command == "rollback" and info)
    after = steps.run("next", lambda: passed("must not run"))  # the held run's next step, during the rollback
    rollback.join(30)
    assert after.status == "SKIP"
    assert f"preempted by rollback run {taken.holder.run_id}" in after.detail
    report = result["report"]
    assert report.run_id == taken.holder.run_id
    assert by_name(report)["outbound_flag"].status == "PASS"
    assert store.lock_holder(LOCKED) is None  # the rollback released the lock it took
    assert any("preempt" in e.action for e in store.audit_trail(LOCKED, 50))
    assert result["code"] == 0


def test_dry_run_changes_nothing_and_writes_nothing(sandbox, envs, rb_config, rb_config_path, tmp_path):
    before_flag = ssm_value(sandbox, DRY)
    before_github = len(sandbox.github.received())
    code, report = cli_rollback(rb_config_path, DRY, tmp_path, "--dry-run", "--pr", str(PR_NUMBER))
    assert code == 0
    assert report.dry_run and all(c.status == "SKIP" for c in report.checks)
    flag = by_name(report)["outbound_flag"]
    assert f"SSM parameter {outbound_parameter(DRY)} to false" in flag.detail
    assert "PutParameter" in flag.detail
    assert ssm_value(sandbox, DRY) == before_flag
    assert len(sandbox.github.received()) == before_github
    assert store_for(rb_config).runs(DRY) == []


# --- Slack ------------------------------------------------------------------------------------------


def _slash(h, command: str, text: str, *, channel: str = CHANNEL):
    body = slash_command_body(
        command, text, user=ENGINEER, channel=channel, response_url=h.fake.response_url(f"r{time.monotonic_ns()}")
    )
    return h.post(body, signed_headers(body, h.secret))


def _wait(predicate: Callable[[], Any], timeout_s: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def _running(store, env: str):
    return next((r for r in store.runs(env, 5, command="rollback") if r.status == RunStatus.RUNNING), None)


def test_slack_rollback_from_any_channel_with_the_click_during_the_run_and_without_it(sandbox, envs, rb_config):
    store = store_for(rb_config)
    with served_bot(execute, config=rb_config, fake=sandbox.slack, tokens=Tokens()) as h:
        refused = _slash(h, "/preflight", SLACK_CONFIRM, channel=ELSEWHERE).json()
        assert "Nothing was run" in refused["text"]  # only rollback works from anywhere
        pause_and_leave_a_trace(envs[SLACK_CONFIRM])
        envs[SLACK_WARN].worker.invoke()
        for env in (SLACK_CONFIRM, SLACK_WARN):
            ack = _slash(h, "/rollback", env, channel=ELSEWHERE)
            assert ack.json()["text"] == f"Rollback {env} queued"
        run = _wait(lambda: _running(store, SLACK_CONFIRM))
        # The button's effect, as bot/slack/person_steps.py records it: the run does not wait for it.
        store.record_confirmation(SLACK_CONFIRM, run.run_id, "rule-paused", ENGINEER, "slack")
        finals = _wait(lambda: len(done := [m for m in h.fake.messages(ELSEWHERE) if is_final(m)]) == 2 and done)
    assert all(m.channel == ELSEWHERE for m in finals)
    text = {env: next(m for m in finals if f"rollback {env}" in m.all_text()) for env in (SLACK_CONFIRM, SLACK_WARN)}
    clicked = text[SLACK_CONFIRM].all_text()
    assert f"PASS rollback {SLACK_CONFIRM}" in clicked
    assert f"confirmed by {ENGINEER}" in clicked or f"confirmed by <@{ENGINEER}>" in clicked
    waiting = text[SLACK_WARN]
    assert "not yet confirmed" in waiting.all_text()
    buttons = [
        e
        for b in waiting.blocks
        if b.get("type") == "actions"
        for e in b["elements"]
        if e["action_id"] == CONFIRM_ACTION
    ]
    assert buttons and json.loads(buttons[0]["value"])["step"] == "rule-paused"
    for env in (SLACK_CONFIRM, SLACK_WARN):
        assert ssm_value(sandbox, env)[0] == "false"
    last = store.last_run(SLACK_WARN, "rollback")
    assert last is not None and last.status == RunStatus.PASS
    assert_nothing_planted(sandbox, *(json.dumps(m.history) for m in finals))


def test_rollback_completes_with_richpanel_github_and_slack_web_api_down(sandbox, envs, rb_config, tmp_path):
    env = envs[DOWN]
    richpanel_calls = len(env.richpanel.received())
    env.richpanel.inject("", Fault("status", 500))
    delays = (0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 1.0, 2.0)
    kwargs = {"publisher_factory": lambda: publisher_for(rb_config), "evidence_retry_delays_s": delays}
    with served_bot(execute, config=rb_config, fake=sandbox.slack, tokens=Tokens(), bot_kwargs=kwargs) as h:
        assert _slash(h, "/rollback", f"{DOWN} dry-run").status_code == 200  # the runners' group, now cached
        h.final_messages(1)
        sandbox.github.inject("/repos/", Fault("status", 503))
        sandbox.slack.inject("/api/", Fault("status", 500))
        ack = _slash(h, "/rollback", f"{DOWN} pr={PR_NUMBER}")
        assert ack.json()["text"] == f"Rollback {DOWN} queued"
        final = _wait(lambda: [r for r in h.fake.responses() if f"rollback {DOWN}" in json.dumps(r)], timeout_s=30)
        text = json.dumps(final[-1])
        assert f"FAIL rollback {DOWN}" in text
        assert "no_invocations" in text and "tickets still reach the worker" in text  # names what failed
        assert "rule_paused" in text
        assert "evidence pending" in text
        assert ssm_value(sandbox, DOWN)[0] == "false"
        outbox = Path(rb_config.evidence_dir) / OUTBOX_DIR
        assert list(outbox.glob("*.json")), "the evidence waits in the outbox"
        assert len(env.richpanel.received()) == richpanel_calls  # a rollback calls nothing on Richpanel

        sandbox.github.clear_faults()  # GitHub is back: the queued evidence lands without another run
        marker = f"<!-- cutover:{DOWN}:rollback -->"
        _wait(lambda: any(marker in c["body"] for c in sandbox.github.comments(PR_NUMBER)), timeout_s=30)
    report = store_for(rb_config).last_run(DOWN, "rollback")
    assert report is not None and report.status == RunStatus.FAIL


def test_rollback_evidence_is_queued_not_awaited_and_lands_when_github_is_up(sandbox, envs, rb_config, tmp_path):
    """The command's own result says "queued" (it never waited on GitHub); a background send delivers it."""
    envs[DRY].worker.invoke()
    publisher = publisher_for(rb_config)
    outcome = execute(
        RunRequest(command="rollback", env=DRY, pr=PR_NUMBER, confirmations=("rule-paused",)),
        config=rb_config,
        publisher=publisher,
    )
    assert outcome.evidence.state == "pending"
    assert "without waiting on GitHub" in outcome.evidence.detail
    marker = f"<!-- cutover:{DRY}:rollback -->"
    _wait(lambda: any(marker in c["body"] for c in sandbox.github.comments(PR_NUMBER)), timeout_s=20)
    run = _wait(lambda: (r := store_for(rb_config).get_run(DRY, outcome.report.run_id)) and r.evidence_url and r)
    assert run.evidence_url
