"""The CLI never accepts an approval from its input: `--approval ID` is looked up in the store and checked
against the binding of the run about to start (env, command, parameters, PR head, evidence), and used once.
Real parts: the CLI's `main`, the store, the GitHub fake for the PR head; the command is the test command
in the registry's `canary` slot (tests/approval_support.py)."""

from __future__ import annotations

import json
import secrets
from datetime import timedelta

import pytest

from bot.terminal.cli import main
from commands.config import load_config
from commands.execute import RunRequest, execute, store_for
from commands.state import ApprovalRequest, ApprovalStatus, RunStatus
from commands.state.model import utc_now
from integrations.sandbox.env import ENGINEER, MANAGER, Sandbox, Scenario
from tests.approval_support import use_noop_commands

ENV = "approvals"
PR = 71
BRANCH = "cutover/approvals"


@pytest.fixture(scope="module")
def env_name(sandbox: Sandbox) -> str:
    if ENV not in sandbox.envs:
        sandbox.add_env(ENV, Scenario())
    if PR not in sandbox.github.pulls:
        sandbox.github.add_pr(PR, BRANCH)
    return ENV


@pytest.fixture
def world(sandbox, env_name, tmp_path, monkeypatch):
    """A map and its own store, with a real PASS preflight in it (what a canary's approval rests on)."""
    use_noop_commands(monkeypatch, "canary", "enable-outbound")
    path = sandbox.write_config(tmp_path, evidence_dir=str(tmp_path / "evidence"))
    config = load_config(path)
    outcome = execute(RunRequest("preflight", ENV), config=config, evidence_root=tmp_path / "preflight")
    assert outcome.report.passed
    store = store_for(config)
    return {"path": path, "config": config, "store": store, "tmp": tmp_path, "sandbox": sandbox}


def approve(world, **overrides) -> str:
    """An approval given in Slack, as the store holds it: bound to what the flow showed, then decided."""
    store = world["store"]
    now = utc_now()
    basis = store.last_run(ENV, "preflight", RunStatus.PASS)
    fields = {
        "approval_id": f"ap-{secrets.token_hex(8)}",
        "env": ENV,
        "command": "canary",
        "params": {"pr": PR, "dry_run": False},
        "head_sha": world["sandbox"].github.head_sha(BRANCH),
        "evidence_sha256": basis.evidence_sha256,
        "requested_by": ENGINEER,
        "expires_at": now + timedelta(minutes=2),
        "channel": "C0CUTOVER",
    }
    decided_at = overrides.pop("decided_at", None)
    decision = overrides.pop("decision", "approved")
    fields.update(overrides)
    created = store.create_approval(ApprovalRequest(**fields), now=(decided_at or now) - timedelta(seconds=1))
    if decision:
        store.decide(created.approval_id, MANAGER, decision, decided_at or now)
    return created.approval_id


def cli(world, *args: str) -> int:
    base = ["--config", str(world["path"]), "--evidence-dir", str(world["tmp"] / "cli")]
    return main(["canary", "--env", ENV, *base, *args])


def test_an_approved_id_bound_to_this_run_runs_once_and_the_report_names_the_approver(world, capsys):
    aid = approve(world)
    out = world["tmp"] / "r.json"
    assert cli(world, "--pr", str(PR), "--approval", aid, "--out-json", str(out)) == 0
    first = json.loads(out.read_text())["checks"][0]
    assert first["name"] == "approval" and first["status"] == "PASS"
    assert f"approved by <@{MANAGER}>" in first["detail"]
    assert first["data"]["approval_id"] == aid
    record = world["store"].get_approval(aid)
    assert record.used_by_run == json.loads(out.read_text())["run_id"]

    capsys.readouterr()
    assert cli(world, "--pr", str(PR), "--approval", aid) == 1  # a second use
    err = capsys.readouterr().err
    assert f"approval {aid} was already used by run {record.used_by_run}" in err
    trail = [
        (e.action, e.surface) for e in reversed(world["store"].audit_trail(ENV)) if e.action.startswith("approval.")
    ]
    assert trail == [
        ("approval.request", "slack"),
        ("approval.decide", "slack"),
        ("approval.use", "cli"),
        ("approval.refused", "cli"),  # the second use, refused, is on the trail too
    ]
    assert len(world["store"].runs(ENV, command="canary")) == 1


def test_without_an_approval_the_cli_is_refused_with_who_may_approve(world, capsys):
    assert cli(world) == 1
    err = capsys.readouterr().err
    assert "needs a manager's approval in Slack" in err and f"<@{MANAGER}>" in err
    assert world["store"].runs(ENV, command="canary") == []


@pytest.mark.parametrize("forged", ["ap-0123456789abcdef", "'; DROP TABLE approvals; --", "ap-" + "f" * 200])
def test_a_forged_id_is_refused(world, capsys, forged):
    assert cli(world, "--pr", str(PR), "--approval", forged) == 1
    err = capsys.readouterr().err
    assert err.startswith("refused: ") and "Traceback" not in err
    assert "no approval" in err or "cannot be checked" in err
    assert world["store"].runs(ENV, command="canary") == []


def test_another_envs_commands_or_parameters_approval_is_refused_and_stays_unused(world, capsys):
    other_env = approve(world, env="prod")
    other_command = approve(world, command="enable-outbound")
    other_params = approve(world, params={"pr": None, "dry_run": False}, head_sha=None)
    for aid, differs in ((other_env, "env"), (other_command, "command"), (other_params, "params")):
        capsys.readouterr()
        assert cli(world, "--pr", str(PR), "--approval", aid) == 1
        err = capsys.readouterr().err
        assert f"approval {aid} was given for a different {differs}" in err, err
        assert world["store"].get_approval(aid).used_by_run is None
    assert world["store"].runs(ENV, command="canary") == []


def test_an_approval_for_another_head_is_void(world, capsys):
    stale = approve(world)
    pushed = world["sandbox"].github.push(BRANCH, {"README.md": b"new\n"}, message="pushed after the approval")
    assert cli(world, "--pr", str(PR), "--approval", stale) == 1
    err = capsys.readouterr().err
    assert f"approval {stale} is void: PR #{PR} has a new head commit" in err and pushed[:7] in err
    record = world["store"].get_approval(stale)
    assert record.status == ApprovalStatus.VOID and "new head commit" in record.void_reason
    assert cli(world, "--pr", str(PR), "--approval", stale) == 1  # and stays void
    assert "is void" in capsys.readouterr().err


def test_pending_rejected_and_stale_approvals_are_refused(world, capsys):
    pending = approve(world, decision=None)
    rejected = approve(world, decision="rejected")
    stale = approve(world, decided_at=utc_now() - timedelta(minutes=5))  # approved, past the map's 2 min
    for aid, words in (
        (pending, "is not approved yet"),
        (rejected, f"was rejected by {MANAGER}"),
        (stale, "expired at"),
    ):
        capsys.readouterr()
        assert cli(world, "--pr", str(PR), "--approval", aid) == 1
        assert words in capsys.readouterr().err
    assert world["store"].runs(ENV, command="canary") == []


def test_a_dry_run_needs_no_approval_and_uses_none(world, capsys):
    aid = approve(world)
    assert cli(world, "--pr", str(PR), "--dry-run") == 0  # a dry run changes nothing: nothing to approve
    assert cli(world, "--pr", str(PR), "--dry-run", "--approval", aid) == 0
    assert world["store"].get_approval(aid).used_by_run is None
    assert world["store"].runs(ENV, command="canary") == []
