"""The run a GitHub Actions workflow starts: the workflow's own `run:` step, executed with bash the way a
runner does (its env with the dispatch's inputs and the secrets), against the sandbox. It edits the Slack
message the app posted and attaches the same evidence to the PR as a run in the app; it trusts nothing in
its inputs: a forged approval, a phase the store does not show, a requester who is not a runner, or a
run id already used are refused, with the reason in Slack and on stderr, and nothing recorded."""

from __future__ import annotations

import json
import re
import secrets
from datetime import timedelta

import pytest
from slack_sdk import WebClient

from commands.config import Tokens
from commands.execute import execute, store_for
from commands.state import ApprovalRequest
from commands.state.model import utc_now
from integrations.sandbox.env import ENGINEER, MANAGER, PR_BRANCH, PR_NUMBER, Sandbox, Scenario
from tests.actions_support import load, message_with, run_step, write_map
from tests.conftest import assert_nothing_planted
from tests.slack_support import CHANNEL, is_final, served_bot
from tests.waiting import wait_for

ENV = "actions-runner"
STEP = ("dispatched", "Run the command")


@pytest.fixture(scope="module")
def env_name(sandbox: Sandbox) -> str:
    if ENV not in sandbox.envs:
        sandbox.add_env(ENV, Scenario())
    return ENV


def check_lines(text: str) -> list[str]:
    """The check names a result message shows, in order (`name` in backticks after a status icon)."""
    return re.findall(r"(?:✅|❌|⚠️|⏭️|⏭)\s(?:\*[A-Z]+\* )?`([a-z0-9_.-]+)`", text)


def proof(sandbox: Sandbox, run_id: str) -> dict:
    files = sandbox.github.files_at(PR_BRANCH)
    [path] = [p for p in files if p.endswith("/report.json") and run_id in p]
    report = json.loads(files[path])
    checks = [(c["name"], c["status"]) for c in report["checks"]]
    return {"command": report["command"], "env": report["env"], "overall": report["overall_status"], "checks": checks}


def test_the_workflow_run_posts_the_same_slack_and_pr_results_as_a_run_in_the_app(sandbox, env_name, tmp_path):
    from bot.execution.evidence_publisher import publisher_for

    local = load(write_map(sandbox, tmp_path / "local"))
    actions_path = write_map(sandbox, tmp_path / "actions", executor="github-actions")
    actions = load(actions_path)

    # the same command, run in the app's process (executor = "local")
    kwargs = {"publisher_factory": lambda: publisher_for(local)}
    with served_bot(execute, config=local, fake=sandbox.slack, tokens=Tokens(), bot_kwargs=kwargs) as h:
        h.command("/preflight", f"{ENV} pr={PR_NUMBER}", user=ENGINEER)
        [here] = h.final_messages(1, timeout_s=30)
    here_text = here.all_text()
    [local_run] = store_for(local).runs(ENV)

    # dispatched to GitHub Actions, then the workflow's step runs as a runner runs it
    before = len(sandbox.github.dispatches)
    with served_bot(execute, config=actions, fake=sandbox.slack, tokens=Tokens()) as h:
        h.command("/preflight", f"{ENV} pr={PR_NUMBER}", user=ENGINEER)
        wait_for(message_with(lambda: h.fake.messages(CHANNEL), "running on GitHub Actions"), what="the dispatch")
        [dispatch] = sandbox.github.dispatches[before:]
        inputs = dispatch["inputs"]
        done = run_step(*STEP, sandbox=sandbox, config_path=actions_path, inputs=inputs)
        assert done.returncode == 0, done.stderr
        [there] = h.fake.messages(CHANNEL)  # the app's message, edited by the runner: no second post
        assert there.ts == inputs["slack_ts"] and is_final(there)
        edits = there.updates

        # the same dispatch again (a re-run of the workflow run): refused, and the result stays as it was
        again = run_step(*STEP, sandbox=sandbox, config_path=actions_path, inputs=inputs)
        assert again.returncode == 1
        assert f"run {inputs['run_id']} is already recorded for {ENV}" in again.stderr
        assert h.fake.messages(CHANNEL)[0].updates == edits
    there_text = there.all_text()

    # Slack: the same verdict, the same checks in the same order, evidence attached, requested by the same person
    assert f"PASS preflight {ENV}" in here_text and f"PASS preflight {ENV}" in there_text
    assert check_lines(there_text) == check_lines(here_text) and len(check_lines(here_text)) >= 8
    assert "evidence attached" in here_text and "evidence attached" in there_text
    assert f"requested by <@{ENGINEER}>" in there_text
    assert f"{sandbox.github.url}/acme/rp-mw/actions/runs/424242|log" in there_text  # where it ran

    # the store: recorded under the run id the app announced, for the Slack requester, on the actions surface
    run = store_for(actions).get_run(ENV, inputs["run_id"])
    assert (run.command, run.status, run.requested_by, run.surface) == ("preflight", "PASS", ENGINEER, "actions")

    # the PR: the same proof files, one sticky comment edited in place, a success status from each run
    assert proof(sandbox, local_run.run_id) == proof(sandbox, run.run_id)
    stickies = [c for c in sandbox.github.comments(PR_NUMBER) if f"cutover:{ENV}:preflight" in c["body"]]
    assert len(stickies) == 1 and run.run_id in stickies[0]["body"]
    context = f"cutover/{ENV}/preflight"  # each run's status sits on the commit it described
    every = [s for c in sandbox.github.commits_on(PR_BRANCH) for s in sandbox.github.statuses(c["sha"])]
    assert [s["state"] for s in every if s["context"] == context].count("success") >= 2
    assert_nothing_planted(sandbox, done.stdout, done.stderr, there_text, json.dumps(inputs))


def _approval(store, *, env: str, command: str) -> str:
    """An approval given in Slack, approved by a manager: real, but for another run than the one using it."""
    now = utc_now()
    made = store.create_approval(
        ApprovalRequest(
            approval_id=f"ap-{secrets.token_hex(6)}",
            env=env,
            command=command,
            params={"pr": None, "dry_run": False},
            requested_by=ENGINEER,
            expires_at=now + timedelta(minutes=2),
        ),
        now=now - timedelta(seconds=1),
    )
    store.decide(made.approval_id, MANAGER, "approved", now)
    return made.approval_id


@pytest.mark.parametrize(
    ("case", "command", "expected"),
    [
        ("unknown approval", "preflight", "no approval forged-ap-1 in the store"),
        ("approval for another env", "preflight", "was given for a different env"),
        ("approval for another command", "preflight", "was given for a different command"),
        ("phase claimed, not in the store", "canary", f"no PASS preflight for {ENV}"),
        ("requester who is not a runner", "preflight", "may not run `/preflight`"),
    ],
)
def test_the_runner_trusts_no_input_that_claims_an_approval_a_phase_or_a_requester(
    sandbox, env_name, tmp_path, case, command, expected
):
    path = write_map(sandbox, tmp_path, executor="github-actions")
    store = store_for(load(path))
    approval = {
        "unknown approval": "forged-ap-1",
        "approval for another env": _approval(store, env="prod", command="preflight"),
        "approval for another command": _approval(store, env=ENV, command="canary"),
    }.get(case, "")
    client = WebClient(token=sandbox.slack_bot_token, base_url=sandbox.slack.api_url)
    sandbox.slack.reset()
    posted = client.chat_postMessage(channel=CHANNEL, text="⏳ started")  # the message the app would have posted
    inputs = {
        "command": command,
        "env": ENV,
        "requested_by": "U0MALLORY" if case.startswith("requester") else ENGINEER,
        "approval_id": approval,
        "slack_channel": CHANNEL,
        "slack_ts": posted["ts"],
        "run_id": secrets.token_hex(5),
    }
    done = run_step(*STEP, sandbox=sandbox, config_path=path, inputs=inputs)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "refused: " in done.stderr and expected in done.stderr
    assert "Traceback" not in done.stderr
    [message] = sandbox.slack.messages(CHANNEL)
    assert message.ts == posted["ts"] and "did not run" in message.all_text() and expected in message.all_text()
    assert store.runs(ENV) == []  # nothing ran, nothing recorded
    if approval and approval != "forged-ap-1":
        assert store.get_approval(approval).used_by_run is None  # not consumed by a run it was not for


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--requested-by", "alice; rm -rf /"], "--requested-by must be a Slack user id (U...) or github:<login>"),
        (["--requested-by", ENGINEER, "--slack-ts", "1700000000.000100"], "--slack-ts needs --slack-channel"),
        (["--requested-by", ENGINEER, "--slack-channel", "#cutover"], "--slack-channel must be a Slack channel id"),
        (["--requested-by", ENGINEER, "--run-id", "../../etc"], "--run-id must be 1-64 letters"),
    ],
)
def test_bad_workflow_inputs_are_usage_errors_in_one_line(sandbox, env_name, tmp_path, capsys, args, needle):
    from bot.terminal.cli import main

    path = write_map(sandbox, tmp_path, executor="github-actions")
    assert main(["preflight", "--env", ENV, "--config", str(path), *args]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err
    assert store_for(load(path)).runs(ENV) == []


def test_a_workflow_run_posts_its_chart_in_the_thread_of_its_slack_message(sandbox, env_name, tmp_path):
    path = write_map(sandbox, tmp_path, executor="github-actions")
    before = {f.file_id for f in sandbox.slack.files(CHANNEL)}
    inputs = {"command": "rollback", "env": ENV, "requested_by": ENGINEER, "slack_channel": CHANNEL}
    done = run_step(*STEP, sandbox=sandbox, config_path=path, inputs=inputs)
    assert done.returncode in (0, 1), done.stderr  # the verdict is the rollback's; the chart comes either way
    [posted] = [m for m in sandbox.slack.messages(CHANNEL) if f"rollback {ENV}" in m.all_text() and is_final(m)][-1:]
    [chart] = [f for f in sandbox.slack.files(CHANNEL) if f.file_id not in before]
    assert chart.filename == "chart.png" and chart.thread_ts == posted.ts  # in the run's own thread
    assert chart.content is not None and chart.content.startswith(b"\x89PNG")
    assert_nothing_planted(sandbox, chart.content.decode("latin-1"), chart.title or "", done.stdout, done.stderr)
