"""executor = "github-actions": a signed slash command to the real Bolt app (over HTTP) posts the run
message and dispatches exactly one workflow run on the sandbox's GitHub (PyGithub over HTTP), with the
inputs the workflow declares and no secret in them, and links that run in the channel. A failed dispatch
is said in the channel and nothing else happens; a rollback whose dispatch fails runs here instead.
The workflow itself passes actionlint and keeps the shape the issue asks for."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bot.execution.actions import WORKFLOW_INPUTS
from commands.config import ConfigError, Tokens
from commands.execute import execute, store_for
from commands.registry import COMMANDS
from integrations.sandbox.env import ENGINEER, PR_NUMBER, Sandbox, Scenario
from integrations.sandbox.http import Fault
from tests.actions_support import WORKFLOW, declared_inputs, load, message_with, workflow, write_map
from tests.conftest import assert_nothing_planted
from tests.slack_support import CHANNEL, served_bot
from tests.waiting import wait_for

ENV = "actions"


@pytest.fixture(scope="module")
def env_name(sandbox: Sandbox) -> str:
    if ENV not in sandbox.envs:
        sandbox.add_env(ENV, Scenario())
    return ENV


@pytest.fixture
def actions_config(sandbox, env_name, tmp_path):
    return load(write_map(sandbox, tmp_path, executor="github-actions"))


@pytest.fixture
def github(sandbox):
    fake = sandbox.github
    yield fake
    fake.run_details = True
    fake.run_name_template = None


def new_dispatches(github, before: int) -> list[dict]:
    return github.dispatches[before:]


def test_a_slash_command_dispatches_exactly_one_run_with_the_right_inputs_and_links_it(sandbox, actions_config, github):
    before = len(github.dispatches)
    with served_bot(execute, config=actions_config, fake=sandbox.slack, tokens=Tokens()) as h:
        reply = h.command("/preflight", f"{ENV} pr={PR_NUMBER}", user=ENGINEER)
        assert reply.json() == {"text": f"Preflight {ENV} queued", "response_type": "in_channel"}
        message = wait_for(message_with(lambda: h.fake.messages(CHANNEL), "running on GitHub Actions"), what="link")
    [dispatch] = new_dispatches(github, before)
    assert (dispatch["workflow"], dispatch["ref"]) == ("cutover.yml", "main")
    inputs = dispatch["inputs"]
    run_id = inputs["run_id"]
    assert re.fullmatch(r"[0-9a-f]{10}", run_id)
    assert inputs == {
        "command": "preflight",
        "env": ENV,
        "pr": str(PR_NUMBER),
        "slack_channel": CHANNEL,
        "slack_ts": message.ts,  # the runner edits the very message the app posted
        "requested_by": ENGINEER,
        "approval_id": "",
        "dry_run": "false",
        "run_id": run_id,
    }
    assert set(inputs) == set(declared_inputs()) and len(inputs) <= 25
    assert all(isinstance(v, str) for v in inputs.values())
    assert_nothing_planted(
        sandbox, json.dumps(dispatch), *(r.body.decode() for r in github.received("POST", "dispatches"))
    )
    # the exact workflow run, as GitHub named it (return_run_details), is linked; still "in progress"
    assert f"{github.html}/actions/runs/{dispatch['run_id']}|workflow run" in message.all_text()
    assert message.all_text().count("⏳") == 1 and f"run `{run_id}`" in message.all_text()
    # nothing ran in the app's process: no run in the store, no evidence written
    assert store_for(actions_config).runs(ENV) == []
    assert not list(Path(actions_config.evidence_dir).rglob("report.json"))


def test_without_run_details_the_run_is_found_by_its_run_name(sandbox, actions_config, github):
    github.run_details = False  # an older GitHub: 204, no run named
    github.run_name_template = workflow()["run-name"]  # the fake names runs as the workflow does
    before = len(github.dispatches)
    with served_bot(execute, config=actions_config, fake=sandbox.slack, tokens=Tokens()) as h:
        h.command("/preflight", ENV, user=ENGINEER)
        message = wait_for(message_with(lambda: h.fake.messages(CHANNEL), "running on GitHub Actions"), what="link")
    [dispatch] = new_dispatches(github, before)
    [run] = [r for r in github.workflow_runs if r["id"] == dispatch["run_id"]]
    assert dispatch["inputs"]["run_id"] in run["display_title"]  # the run-name carries the bot's run id
    assert f"{github.html}/actions/runs/{run['id']}|workflow run" in message.all_text()
    assert github.received("GET", r"/actions/workflows/cutover\.yml/runs")


def test_a_run_github_does_not_name_and_that_cannot_be_found_links_the_workflow_and_names_the_run_id(
    sandbox, actions_config, github
):
    from bot.execution.actions import ActionsDispatcher
    from integrations.github import GitHubChatOps

    github.run_details = False
    github.run_name_template = "cutover"  # a run-name without the run id: the run cannot be told apart
    client = GitHubChatOps(repo=github.repo, token=sandbox.github_token, base_url=github.url)
    dispatcher = ActionsDispatcher(actions_config, client, find_timeout_s=0.3)
    before = len(github.dispatches)
    kwargs = {"dispatcher": dispatcher}
    with served_bot(execute, config=actions_config, fake=sandbox.slack, tokens=Tokens(), bot_kwargs=kwargs) as h:
        h.command("/preflight", ENV, user=ENGINEER)
        message = wait_for(message_with(lambda: h.fake.messages(CHANNEL), "running on GitHub Actions"), what="link")
    [dispatch] = new_dispatches(github, before)  # looking for the run never dispatches again
    run_id = dispatch["inputs"]["run_id"]
    assert f"{github.html}/actions/workflows/cutover.yml|the workflow's runs (look for run `{run_id}`)" in (
        message.all_text()
    )
    assert len(github.received("GET", r"/actions/workflows/cutover\.yml/runs")) >= 1


def test_a_failed_dispatch_is_said_in_the_channel_and_nothing_else_happens(sandbox, actions_config, github):
    github.inject(r"/dispatches$", Fault("status", status=422, body={"message": "Unexpected inputs provided"}))
    before = len(github.dispatches)
    with served_bot(execute, config=actions_config, fake=sandbox.slack, tokens=Tokens()) as h:
        assert h.command("/preflight", ENV, user=ENGINEER).status_code == 200
        [final] = h.final_messages(1)
        text = final.all_text()
        assert f"Preflight {ENV} did not start" in text and "Nothing ran" in text
        assert "cutover.yml on main was not dispatched" in text and "HTTP 422" in text
        assert len(h.fake.messages(CHANNEL)) == 1  # the run's one message, edited: no second post
        assert h.bot.recent.latest_first()[0].state == "did not run"
    assert new_dispatches(github, before) == []
    assert store_for(actions_config).runs(ENV) == []  # nothing half done: no run recorded, no lock taken
    assert store_for(actions_config).lock_holder(ENV) is None
    assert not list(Path(actions_config.evidence_dir).rglob("report.json"))


def test_a_rollback_whose_dispatch_fails_runs_here_when_this_host_has_credentials(sandbox, actions_config, github):
    github.inject(r"/dispatches$", Fault("status", status=502))
    with served_bot(execute, config=actions_config, fake=sandbox.slack, tokens=Tokens()) as h:
        h.command("/rollback", ENV, user=ENGINEER)
        result = wait_for(
            message_with(lambda: h.fake.messages(CHANNEL), f"rollback {ENV}"), timeout_s=60, what="the rollback result"
        )
        notes = [m for m in h.fake.messages(CHANNEL) if "Running Rollback" in m.all_text()]
    assert "here instead" in notes[0].all_text() and "HTTP 502" in notes[0].all_text()
    [run] = store_for(actions_config).runs(ENV)
    assert (run.command, run.requested_by, run.surface) == ("rollback", ENGINEER, "slack")  # ran in this process
    assert run.status in ("PASS", "FAIL") and run.run_id in result.all_text()


def test_a_rollback_whose_dispatch_fails_on_a_host_without_credentials_says_how_to_run_it(
    sandbox, actions_config, github
):
    github.inject(r"/dispatches$", Fault("status", status=500))
    with served_bot(execute, config=actions_config, fake=sandbox.slack, tokens=Tokens()) as h:
        h.bot.local_credentials = lambda: False
        h.command("/rollback", ENV, user=ENGINEER)
        [final] = h.final_messages(1)
    text = final.all_text()
    assert f"Rollback {ENV} did not start" in text and "no AWS credentials of its own" in text
    assert f"python -m bot rollback --env {ENV}" in text
    assert store_for(actions_config).runs(ENV) == []


def test_github_actions_mode_without_a_github_token_refuses_to_start(sandbox, actions_config):
    from bot.slack.app import CutoverBot

    tokens = Tokens(slack_bot_token="xoxb-x", slack_signing_secret="s" * 16, github_token=None)
    with pytest.raises(ConfigError, match="GITHUB_TOKEN"):
        CutoverBot(config=actions_config, tokens=tokens)


# --- the workflow file -----------------------------------------------------------------------


def test_the_workflow_passes_actionlint():
    actionlint = Path(sys.executable).parent / "actionlint"
    done = subprocess.run([str(actionlint), str(WORKFLOW)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_workflow_declares_what_the_app_sends_and_scopes_credentials_per_environment():
    flow = workflow()
    inputs = declared_inputs()
    assert tuple(inputs) == WORKFLOW_INPUTS and len(inputs) <= 25
    assert inputs["command"]["options"] == list(COMMANDS)
    assert "inputs.run_id" in flow["run-name"]
    assert flow["permissions"] == {
        "id-token": "write",
        "contents": "write",
        "pull-requests": "write",
        "statuses": "write",
        "deployments": "write",
    }
    assert flow["on"]["issue_comment"] == {"types": ["created"]}
    jobs = flow["jobs"]
    dispatched = jobs["dispatched"]
    assert dispatched["environment"] == "${{ inputs.env }}"  # OIDC subject repo:ORG/REPO:environment:NAME
    group = dispatched["concurrency"]
    assert group["cancel-in-progress"] is False and group["queue"] == "max"
    assert "inputs.env" in group["group"] and "'rollback' && 'rollback'" in group["group"]
    assert jobs["comment-run"]["environment"] == "${{ needs.comment-accept.outputs.env }}"
    assert "github.event.issue.pull_request" in jobs["comment-accept"]["if"]
    assert "id-token" not in jobs["comment-accept"]["permissions"]  # the accept job gets no AWS role
    for job in jobs.values():
        for s in job["steps"]:
            if "configure-aws-credentials" in str(s.get("uses")):
                assert s["with"]["role-to-assume"] == "${{ vars.CUTOVER_AWS_ROLE_ARN }}"
            if "run" in s:  # script injection: no expression is ever interpolated into a script
                assert "${{" not in s["run"], s["run"]
            if "checkout" in str(s.get("uses")):
                assert "ref" not in (s.get("with") or {})  # never a pull request's branch
