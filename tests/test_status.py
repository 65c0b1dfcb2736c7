"""`/cutover status ENV` (signed Slack requests to the real app) and `python -m bot status --env ENV`:
the phase and its age, the lock holder, the last runs with verdicts and evidence links, pending
approvals and the audit trail, read from the real store after a real run on the sandbox."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from bot.terminal.cli import main
from commands.config import CutoverConfig, Tokens, load_config
from commands.execute import execute, store_for
from commands.state import ApprovalRequest, LockHolder, RunRecord, RunStatus
from commands.state.model import utc_now
from integrations.sandbox.env import ENGINEER, MANAGER, Sandbox, Scenario
from tests.conftest import assert_nothing_planted
from tests.slack_support import served_bot

ENV, QUIET_ENV = "st-prod", "st-empty"
EVIDENCE_URL = "https://github.com/acme/rp-mw/pull/7#issuecomment-42"


@pytest.fixture(scope="module")
def st_config_path(sandbox: Sandbox, tmp_path_factory) -> Path:
    for name in (ENV, QUIET_ENV):
        sandbox.add_env(name, Scenario())
    directory = tmp_path_factory.mktemp("status")
    return sandbox.write_config(directory, evidence_dir=str(directory / "evidence"))


@pytest.fixture(scope="module")
def st_config(st_config_path) -> CutoverConfig:
    return load_config(st_config_path)


@pytest.fixture(scope="module")
def history(st_config, st_config_path) -> dict[str, str]:
    """A real preflight run, then a failed rollback with its evidence link, an approval request and a
    canary holding the lock, as the commands leave them in the store."""
    assert main(["preflight", "--env", ENV, "--config", str(st_config_path)]) == 0
    store = store_for(st_config)
    now = utc_now()
    rollback = store.record_run_start(
        RunRecord(run_id="rb00000001", env=ENV, command="rollback", started_at=now, requested_by=ENGINEER)
    )
    store.record_run_finish(ENV, rollback.run_id, RunStatus.FAIL, summary="no_invocations: 3 invocations")
    store.set_run_evidence(ENV, rollback.run_id, EVIDENCE_URL)
    store.audit(ENV, ENGINEER, "rollback.outbound_off", "slack", rollback.run_id, "SSM parameter false")
    approval = store.create_approval(
        ApprovalRequest(
            approval_id="ap00000001",
            env=ENV,
            command="canary",
            requested_by=ENGINEER,
            expires_at=now + timedelta(minutes=10),
        )
    )
    holder = LockHolder(run_id="cn00000001", command="canary", requested_by=ENGINEER, surface="slack")
    store.acquire(ENV, holder, 600)
    return {"rollback": rollback.run_id, "approval": approval.approval_id}


def test_cli_status_shows_phase_lock_runs_approvals_and_audit(st_config_path, history, capsys, sandbox):
    assert main(["status", "--env", ENV, "--config", str(st_config_path)]) == 0
    out = capsys.readouterr().out
    assert "phase: rollback FAILED" in out and f"run /rollback {ENV} again" in out
    assert "lock: held by the canary run cn00000001" in out
    assert f"rollback FAIL (run {history['rollback']})" in out
    assert EVIDENCE_URL in out
    assert "preflight PASS" in out  # the real run, from the store
    assert f"canary approval {history['approval']} requested by {ENGINEER}" in out
    assert "rollback.outbound_off by U0ENGINEER (slack) run rb00000001: SSM parameter false" in out
    assert_nothing_planted(sandbox, out)


def test_cli_status_of_an_unknown_env_is_bad_usage(st_config_path, capsys):
    assert main(["status", "--env", "nope", "--config", str(st_config_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown environment 'nope'" in err and "Traceback" not in err


def test_cli_status_of_an_env_with_no_runs(st_config_path, capsys):
    assert main(["status", "--env", QUIET_ENV, "--config", str(st_config_path)]) == 0
    out = capsys.readouterr().out
    assert "phase: no runs yet" in out and "lock: free" in out and "last runs: none yet" in out


def test_slack_status_is_ephemeral_unless_public(sandbox, st_config, history):
    with served_bot(execute, config=st_config, fake=sandbox.slack, tokens=Tokens()) as h:
        private = h.command("/cutover", f"status {ENV}", user=ENGINEER).json()
        public = h.command("/cutover", f"status {ENV} public", user=ENGINEER).json()
        overview = h.command("/cutover", "status", user=ENGINEER).json()
        unknown = h.command("/cutover", "status nope", user=ENGINEER).json()
    assert private["response_type"] == "ephemeral"
    text = private["text"]
    assert f"*Cutover status: {ENV}*" in text
    assert "*Phase:* rollback FAILED" in text
    assert "*Lock:* held by the canary run cn00000001" in text
    assert f"<{EVIDENCE_URL}|evidence>" in text
    assert f"canary approval {history['approval']}" in text
    assert "rollback.outbound_off" in text
    assert public["response_type"] == "in_channel"
    assert public["text"] == text
    assert overview["response_type"] == "ephemeral"
    assert f"*{ENV}*: rollback FAILED" in overview["text"] and f"*{QUIET_ENV}*: no runs yet" in overview["text"]
    assert "Nothing has run in this bot process" in overview["text"]
    assert unknown["response_type"] == "ephemeral" and "Unknown `/cutover status nope`" in unknown["text"]
    assert MANAGER not in text  # nobody but who acted is named
    assert_nothing_planted(sandbox, text, overview["text"])
