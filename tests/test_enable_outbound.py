"""/enable-outbound on the sandbox through signed Slack requests (the real Bolt app over HTTP, the real
command, moto for the lever, the alarms and the worker's metrics), and through the CLI.

The canary is not run here: its PASS (and the preflight before it) are recorded in the store as the
canary command records them. Every environment is this module's own; the map gives each the watch a
test needs (short windows, fractional minutes).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import pytest

from bot.terminal.cli import main
from commands.chart import marks_from_report
from commands.config import CutoverConfig, Tokens, load_config
from commands.execute import execute
from commands.report import Report
from commands.state import LockHolder, RunStatus, store_for
from integrations.sandbox.env import ENGINEER, Sandbox, Scenario
from tests.conftest import assert_nothing_planted
from tests.slack_support import CHANNEL, served_bot
from tests.test_enable_outbound_support import (
    add_envs,
    lever,
    lever_writes,
    record_phases,
    set_alarm,
    wait_for,
    watching,
    write_map,
)

QUIET, ALARM, ERRORS, NODATA_WARN, NODATA_FAIL, EARLY, TWICE, DRY, CLI = (
    "eo-quiet",
    "eo-alarm",
    "eo-errors",
    "eo-nodata-warn",
    "eo-nodata-fail",
    "eo-early",
    "eo-twice",
    "eo-dry",
    "eo-cli",
)
NO_CANARY, ROLLED_BACK, MISSING, INERT, LOCKED = ("eo-nocanary", "eo-rolledback", "eo-missing", "eo-inert", "eo-locked")
APPROVAL = "eo-approval"  # the map's default: canary and enable-outbound need a manager's approval
# The rule is enabled (the canary leaves it so): the worker invokes, so the watch's positive control has
# something to find, and an automatic rollback's `no_invocations` ends as soon as it sees one.
LIVE = Scenario(approval_required=(), rule_enabled=True)
SCENARIOS = {
    **{name: LIVE for name in (QUIET, ALARM, ERRORS, NODATA_WARN, NODATA_FAIL, EARLY, TWICE, CLI)},
    **{name: Scenario(approval_required=()) for name in (DRY, NO_CANARY, ROLLED_BACK, MISSING, LOCKED)},
    INERT: Scenario(approval_required=(), alarm_actions_enabled=False),
    APPROVAL: Scenario(),
}
WATCH = {
    QUIET: {"minutes": 0.05},
    ALARM: {"minutes": 0.5},  # long: the alarm fires inside it, and the rollback ends it
    ERRORS: {"minutes": 0.5, "max_errors": 2},
    NODATA_WARN: {"minutes": 0.05},
    NODATA_FAIL: {"minutes": 0.5, "insufficient_data": "fail"},
    EARLY: {"minutes": 0.02},
    TWICE: {"minutes": 0.05},
    CLI: {"minutes": 0.02},
}
PROPAGATION = {EARLY: 30.0}  # the worker's own log must end this wait long before it runs out


@pytest.fixture(scope="module")
def eo(sandbox: Sandbox) -> Sandbox:
    add_envs(sandbox, SCENARIOS)
    sandbox.aws.client("cloudwatch").delete_alarms(AlarmNames=[f"rp-mw-{MISSING}-openai-failures"])
    return sandbox


@pytest.fixture(scope="module")
def eo_map(eo: Sandbox, tmp_path_factory) -> Path:
    return write_map(eo, tmp_path_factory.mktemp("enable-outbound"), watch=WATCH, propagation=PROPAGATION)


@pytest.fixture(scope="module")
def eo_config(eo_map: Path) -> CutoverConfig:
    return load_config(eo_map)


@pytest.fixture
def slack(eo, eo_config):
    with served_bot(execute, config=eo_config, fake=eo.slack, tokens=Tokens()) as h:
        yield h


def final_text(h, count: int = 1, timeout_s: float = 40.0) -> str:
    messages = h.final_messages(count, timeout_s=timeout_s)
    assert len(messages) >= count, [m.all_text()[:300] for m in h.fake.messages(CHANNEL)]
    return "\n".join(m.all_text() for m in messages)


def run_of(store, env: str, command: str = "enable-outbound"):
    return store.last_run(env, command)


# --- the watch --------------------------------------------------------------------------------------


def test_a_quiet_watch_passes_with_outbound_on_and_one_message_edited_with_the_time_left(eo, eo_config, slack):
    store = store_for(eo_config)
    record_phases(store, QUIET, "preflight", "canary")
    before = lever(eo, QUIET)
    assert before[0] == "false"
    reply = slack.command("/enable-outbound", QUIET, user=ENGINEER)
    assert reply.json()["text"] == f"Enable outbound {QUIET} queued"
    text = final_text(slack)
    assert f"PASS enable-outbound {QUIET}" in text
    assert lever(eo, QUIET) == ("true", before[1] + 1)  # one write, read back true
    [message] = slack.fake.messages(CHANNEL)  # one message, edited in place
    progress = [json.dumps(v) for v in message.history[1:-1]]
    assert any("watching:" in p and "left of 0.05 min" in p for p in progress)
    report = Report.model_validate_json(next((eo_config_dir(eo_config) / QUIET).rglob("report.json")).read_text())
    assert [c.name for c in report.checks] == ["alarms", "outbound_flag", "propagation", "watch"]
    assert all(c.status == "PASS" for c in report.checks), report.checks
    checks = {c.name: c for c in report.checks}
    assert "set to true (was false), read back true" in checks["outbound_flag"].detail
    assert checks["outbound_flag"].data["previous"] == "false"
    assert "4 alarms OK for the whole 0.05 min" in checks["watch"].detail
    assert "so it sees the function" in checks["watch"].detail  # the positive control found invocations
    assert run_of(store, QUIET).status == RunStatus.PASS
    assert not watching(store, QUIET)  # the watch is over: nothing left for a restart to resume
    assert_nothing_planted(eo, text, *(json.dumps(v) for v in message.history))


def eo_config_dir(config: CutoverConfig) -> Path:
    return Path(config.evidence_dir)


def test_an_alarm_during_the_watch_rolls_back_at_once_naming_the_alarm_and_its_value(eo, eo_config, slack):
    store = store_for(eo_config)
    record_phases(store, ALARM, "preflight", "canary")
    slack.command("/enable-outbound", ALARM, user=ENGINEER)
    wait_for(lambda: watching(store, ALARM) and lever(eo, ALARM)[0] == "true", what="outbound on and watched")
    reason = "Threshold Crossed: 1 out of the last 1 datapoints [7.0 (30/11/25 03:00:00)] was greater than 0.0"
    name = set_alarm(eo, ALARM, "worker-error-rate", "ALARM", reason)
    text = final_text(slack)
    assert f"FAIL enable-outbound {ALARM}" in text
    assert lever(eo, ALARM)[0] == "false"  # rolled back, read back
    assert f"alarm {name} is in ALARM (value 7.0)" in text
    for step in ("`rule_paused`", "`no_invocations`"):  # /rollback's own steps ran
        assert step in text
    report = latest_report(eo_config, ALARM)
    names = [c.name for c in report.checks]
    assert names == [
        "alarms",
        "outbound_flag",
        "propagation",
        "watch",
        "outbound_flag",
        "rule_paused",
        "no_invocations",
    ]
    watch = report.checks[3]
    assert watch.status == "FAIL" and watch.data["alarm"] == name and watch.data["alarm_value"] == "7.0"
    [transition] = watch.data["alarm_transitions"]  # OK -> ALARM, stamped inside the watch window
    assert transition["alarm"] == name and transition["state"] == "ALARM"
    assert watch.data["window_start"] <= transition["at"] <= report.finished_at.isoformat()
    marks, _ = marks_from_report(report)  # the chart marks it: a red line labelled with the state only
    assert ("alarm: ALARM", "alarm") in {(m.label, m.kind) for m in marks}
    assert {"outbound on", "outbound off"} <= {m.label for m in marks}
    assert "set to false (was true), read back false" in report.checks[4].detail
    rollback = run_of(store, ALARM, "rollback")  # recorded: the phase rules see the rollback
    assert rollback is not None and rollback.requested_by == "cutover-bot"
    assert not watching(store, ALARM)
    assert "was rolled back" in refusal(slack, ALARM, earlier=1)  # the canary no longer counts


def latest_report(config: CutoverConfig, env: str) -> Report:
    found = sorted((eo_config_dir(config) / env).rglob("report.json"))
    assert found, f"no evidence for {env}"
    return Report.model_validate_json(found[-1].read_text())


def test_worker_errors_above_the_bound_roll_back(eo, eo_config, slack):
    store = store_for(eo_config)
    record_phases(store, ERRORS, "preflight", "canary")
    slack.command("/enable-outbound", ERRORS, user=ENGINEER)
    wait_for(lambda: watching(store, ERRORS) and lever(eo, ERRORS)[0] == "true", what="outbound on and watched")
    eo.envs[ERRORS].worker.put_errors(3)
    text = final_text(slack)
    assert f"FAIL enable-outbound {ERRORS}" in text
    assert "Errors reached 3 since outbound went on (above watch.max_errors = 2)" in text
    assert lever(eo, ERRORS)[0] == "false"
    assert [c.name for c in latest_report(eo_config, ERRORS).checks][-3:] == [
        "outbound_flag",
        "rule_paused",
        "no_invocations",
    ]


def test_insufficient_data_with_warn_keeps_watching_and_says_so(eo, eo_config, slack):
    store = store_for(eo_config)
    record_phases(store, NODATA_WARN, "preflight", "canary")
    slack.command("/enable-outbound", NODATA_WARN, user=ENGINEER)
    wait_for(lambda: watching(store, NODATA_WARN), what="the watch")
    name = set_alarm(eo, NODATA_WARN, "openai-failures", "INSUFFICIENT_DATA", "no datapoints")
    text = final_text(slack)
    assert f"PASS enable-outbound {NODATA_WARN}" in text  # WARN passes, with its caveat shown
    assert lever(eo, NODATA_WARN)[0] == "true"  # not rolled back
    watch = {c.name: c for c in latest_report(eo_config, NODATA_WARN).checks}["watch"]
    assert watch.status == "WARN"
    assert f"INSUFFICIENT_DATA seen on {name} (watch.insufficient_data = warn)" in watch.detail
    [message] = slack.fake.messages(CHANNEL)
    assert any("(warn: still watching)" in json.dumps(v) for v in message.history)  # the progress said so


def test_insufficient_data_with_fail_rolls_back(eo, eo_config, slack):
    store = store_for(eo_config)
    record_phases(store, NODATA_FAIL, "preflight", "canary")
    slack.command("/enable-outbound", NODATA_FAIL, user=ENGINEER)
    wait_for(lambda: watching(store, NODATA_FAIL) and lever(eo, NODATA_FAIL)[0] == "true", what="the watch")
    name = set_alarm(eo, NODATA_FAIL, "openai-failures", "INSUFFICIENT_DATA", "no datapoints")
    text = final_text(slack)
    assert f"FAIL enable-outbound {NODATA_FAIL}" in text
    assert f"{name} in INSUFFICIENT_DATA (watch.insufficient_data = fail)" in text
    assert lever(eo, NODATA_FAIL)[0] == "false"


def test_the_propagation_wait_ends_when_the_workers_log_shows_it_read_true(eo, eo_config, slack):
    store = store_for(eo_config)
    record_phases(store, EARLY, "preflight", "canary")
    env = eo.envs[EARLY]
    slack.command("/enable-outbound", EARLY, user=ENGINEER)
    wait_for(lambda: lever(eo, EARLY)[0] == "true", what="outbound on")
    ticket = httpx.post(  # a customer writes in: the rule hands it to the worker, which reads the lever
        f"{env.richpanel.url}/v1/tickets",
        headers={"x-richpanel-key": env.secrets["richpanel_api_key"]},
        json={"ticket": {"subject": "where is my order", "comment": {"body": "order 1001?"}}},
        timeout=5,
    ).json()["ticket"]
    assert env.worker.wait_for("outbound", ticket["id"], timeout_s=10)
    text = final_text(slack)
    assert f"PASS enable-outbound {EARLY}" in text
    propagation = {c.name: c for c in latest_report(eo_config, EARLY).checks}["propagation"]
    assert "the worker's log shows it read true" in propagation.detail
    assert "not waiting the full 30 s" in propagation.detail
    assert propagation.data["waited_s"] < 30
    assert propagation.data["log_event"] == "outbound_message_sent"  # the event, not the line (ticket ids)


# --- one at a time ------------------------------------------------------------------------------------


def test_two_runners_at_once_flip_the_flag_once_and_the_other_is_refused_naming_the_holder(eo, eo_config, slack):
    store = store_for(eo_config)
    record_phases(store, TWICE, "preflight", "canary")
    assert lever_writes(eo, TWICE, "true") == 0
    barrier = threading.Barrier(2)
    replies = []

    def send() -> None:
        barrier.wait()
        replies.append(slack.command("/enable-outbound", TWICE, user=ENGINEER).json()["text"])

    threads = [threading.Thread(target=send) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert replies == [f"Enable outbound {TWICE} queued"] * 2
    text = final_text(slack, 2)
    winner = run_of(store, TWICE)
    assert winner is not None and winner.status == RunStatus.PASS
    assert f"PASS enable-outbound {TWICE}" in text
    assert f"{TWICE} is locked by the enable-outbound run {winner.run_id} requested by {ENGINEER}" in text
    assert lever_writes(eo, TWICE, "true") == 1  # exactly one flip
    assert [r.command for r in store.runs(TWICE)].count("enable-outbound") == 1


# --- refusals -------------------------------------------------------------------------------------


def refusal(h, env: str, *, earlier: int = 0) -> str:
    """The refusal of `/enable-outbound env`: at the ack (ephemeral) when the app's gate sees the store,
    else as the run's channel message (after `earlier` final messages already there)."""
    reply = h.command("/enable-outbound", env, user=ENGINEER).json()
    if reply["response_type"] == "ephemeral":
        assert "Nothing was run" in reply["text"]
        return reply["text"]
    return h.final_messages(earlier + 1, timeout_s=40)[-1].all_text()


def test_refused_without_a_pass_canary(eo, eo_config, slack):
    record_phases(store_for(eo_config), NO_CANARY, "preflight")
    text = refusal(slack, NO_CANARY)
    assert f"no PASS canary for {NO_CANARY} in the last 60 min" in text
    assert lever(eo, NO_CANARY) == ("false", 1)


def test_refused_when_the_canary_was_followed_by_a_rollback(eo, eo_config, slack):
    record_phases(store_for(eo_config), ROLLED_BACK, "preflight", "canary", "rollback")
    text = refusal(slack, ROLLED_BACK)
    assert f"{ROLLED_BACK} was rolled back" in text and "after the last PASS canary" in text
    assert lever(eo, ROLLED_BACK) == ("false", 1)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        (MISSING, f"required alarm rp-mw-{MISSING}-openai-failures does not exist"),
        (INERT, f"required alarm rp-mw-{INERT}-shopify-429s, rp-mw-{INERT}-worker-error-rate"),
    ],
)
def test_refused_before_anything_changes_when_an_alarm_is_missing_or_cannot_act(eo, eo_config, slack, env, says):
    record_phases(store_for(eo_config), env, "preflight", "canary")
    reply = slack.command("/enable-outbound", env, user=ENGINEER).json()
    assert reply["response_type"] == "ephemeral"
    assert says in reply["text"] and "Nothing was run" in reply["text"]
    if env == INERT:
        assert "has its actions disabled" in reply["text"]
    assert slack.fake.messages(CHANNEL) == []
    assert lever(eo, env) == ("false", 1)


def test_refused_while_another_mutating_command_holds_the_lock(eo, eo_config, slack):
    store = store_for(eo_config)
    record_phases(store, LOCKED, "preflight", "canary")
    held = store.acquire(LOCKED, LockHolder(run_id="c0ffee0001", command="canary", requested_by="U0OTHER"), 60)
    try:
        slack.command("/enable-outbound", LOCKED, user=ENGINEER)
        text = final_text(slack)
    finally:
        store.release(held)
    assert f"{LOCKED} is locked by the canary run c0ffee0001 requested by U0OTHER" in text
    assert lever(eo, LOCKED) == ("false", 1)


# --- dry run and the CLI -------------------------------------------------------------------------------


def test_dry_run_shows_every_step_and_the_exact_change_and_changes_nothing(eo, eo_config, slack):
    store = store_for(eo_config)
    record_phases(store, DRY, "preflight", "canary")
    runs_before = len(store.runs(DRY))
    slack.command("/enable-outbound", f"{DRY} dry-run", user=ENGINEER)
    text = final_text(slack)
    assert f"DRY RUN enable-outbound {DRY}: would run, 4 steps" in text
    for step in ("`alarms`", "`outbound_flag`", "`propagation`", "`watch`"):
        assert step in text
    assert f"would set SSM parameter /rp-mw/{DRY}/outbound_enabled to true" in text
    assert "PutParameter" in text
    assert lever(eo, DRY) == ("false", 1)
    assert len(store.runs(DRY)) == runs_before
    assert not watching(store, DRY)


def test_the_cli_runs_the_same_command_and_exits_by_its_verdict(eo, eo_map, eo_config, tmp_path, capsys):
    store = store_for(eo_config)
    argv = ["enable-outbound", "--env", CLI, "--config", str(eo_map)]
    assert main([*argv, "--dry-run"]) == 1  # no canary yet: refused, exit 1, one line
    assert "refused: no PASS canary" in capsys.readouterr().err
    record_phases(store, CLI, "preflight", "canary")
    out = tmp_path / "report.json"
    assert main([*argv, "--out-json", str(out)]) == 0
    report = Report.model_validate_json(out.read_text())
    assert report.overall_status == "PASS" and [c.name for c in report.checks][-1] == "watch"
    assert lever(eo, CLI)[0] == "true"
    assert run_of(store, CLI).status == RunStatus.PASS


def test_without_the_approval_an_env_requires_the_cli_is_refused_and_nothing_changes(eo, eo_map, eo_config, capsys):
    record_phases(store_for(eo_config), APPROVAL, "preflight", "canary")
    assert main(["enable-outbound", "--env", APPROVAL, "--config", str(eo_map)]) == 1
    assert f"/enable-outbound in {APPROVAL} needs a manager's approval" in capsys.readouterr().err
    assert lever(eo, APPROVAL) == ("false", 1)
    assert not watching(store_for(eo_config), APPROVAL)
