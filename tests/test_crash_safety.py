"""Crash safety: the production server (`python -m bot serve`, a subprocess on the sandbox) is killed with
SIGKILL in the middle of a /rollback; the next app (bot.slack.compose.build_bot on the same map and store)
finds the run RUNNING, records it INTERRUPTED, tells the channel what to do, and the dead run's lock frees
when its lease runs out (a new rollback takes it over at once). Evidence a run queued while GitHub was down
survives the kill in the outbox and is delivered by the next process.

The kill in the middle of the enable-outbound watch and its resume are in tests/test_enable_outbound_restart.py.
"""

from __future__ import annotations

import os
import signal
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from bot.execution.evidence_publisher import OUTBOX_DIR
from commands.config import load_config
from commands.execute import execute
from commands.outbox import Outbox
from commands.request import RunRequest
from commands.state import RunStatus, store_for
from integrations.sandbox.env import CHANNEL, ENGINEER, PR_NUMBER, Sandbox, Scenario, outbound_parameter
from integrations.sandbox.http import Fault
from integrations.sandbox.slack_requests import signed_headers, slash_command_body
from tests.test_enable_outbound_restart import second_bot, served_in_a_subprocess
from tests.test_enable_outbound_support import add_envs, lever, wait_for

# The reliability suite (issue 23): in the default run, and alone with python -m pytest -m reliability
pytestmark = pytest.mark.reliability

KILLED, QUEUED, DEPLOYED = "cs-killed", "cs-queued", "cs-deployed"
SCENARIOS = {
    KILLED: Scenario(outbound_enabled=True),
    QUEUED: Scenario(outbound_enabled=True),
    DEPLOYED: Scenario(outbound_enabled=True),
}


@pytest.fixture(scope="module")
def crash_env(sandbox: Sandbox) -> Sandbox:
    add_envs(sandbox, SCENARIOS)
    return sandbox


def crash_map(sandbox: Sandbox, directory: Path) -> Path:
    """State and evidence in `directory`; the killed env's quiet window long enough to kill the server in it."""
    text = sandbox.config_toml(
        evidence_dir=str(directory / "evidence"), state=f"sqlite:///{(directory / 'state.db').resolve()}"
    )
    for env in (KILLED, DEPLOYED):
        section = f"[envs.{env}.rollback]\nquiet_minutes = 0.05\n"
        assert section in text
        text = text.replace(section, f"[envs.{env}.rollback]\nquiet_minutes = 0.5\n")
    text = text.replace("quiet_minutes = 0.05", "quiet_minutes = 0.0166")  # the other envs: fast
    path = directory / "cutover.sandbox.toml"
    path.write_text(text, encoding="utf-8")
    return path


def slash(url: str, sandbox: Sandbox, command: str, text: str, rid: str) -> httpx.Response:
    body = slash_command_body(
        command, text, user=ENGINEER, channel=CHANNEL, response_url=sandbox.slack.response_url(rid)
    )
    return httpx.post(
        f"{url}/slack/events", content=body, headers=signed_headers(body, sandbox.slack_signing_secret), timeout=10
    )


def _who_holds(outbox: Outbox) -> str:
    """Diagnostics: the outbox's lock files with the processes holding a lock on them, and the drainer's stack."""
    import sys
    import traceback

    inodes = {str(p.stat().st_ino): p.name for p in outbox.root.rglob("*.lock")}
    held = []
    for line in Path("/proc/locks").read_text().splitlines():
        parts = line.split()
        inode = parts[5].split(":")[-1] if len(parts) > 5 else ""
        if inode in inodes:
            pid = parts[4]
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
            except OSError:
                cmd = "?"
            held.append(f"{inodes[inode]} held by pid {pid} ({'this process' if pid == str(os.getpid()) else cmd})")
    stacks = [
        "".join(traceback.format_stack(frame)[-6:])
        for thread_id, frame in sys._current_frames().items()
        if any(t.ident == thread_id and "drainer" in t.name for t in __import__("threading").enumerate())
    ]
    return f"locks: {held or 'none'}; drainer stacks: {stacks or 'no drainer thread'}"


def channel_texts(sandbox: Sandbox) -> list[str]:
    return [m.all_text() for m in sandbox.slack.messages(CHANNEL)]


def test_a_rollback_killed_mid_run_is_recorded_interrupted_the_channel_told_and_the_outbox_delivered(
    crash_env, tmp_path
):
    sandbox = crash_env
    map_path = crash_map(sandbox, tmp_path)
    config = load_config(map_path)
    store = store_for(config)
    outbox = Outbox(Path(config.evidence_dir) / OUTBOX_DIR)
    sandbox.slack.reset()
    sandbox.github.inject("/repos/", Fault("status", 503))  # GitHub is down for the first process
    try:
        with served_in_a_subprocess(map_path, tmp_path) as (proc, url):
            # 1. A rollback with a PR finishes while GitHub is down: its evidence waits in the outbox.
            assert slash(url, sandbox, "/rollback", f"{QUEUED} pr={PR_NUMBER}", "q1").status_code == 200
            done = wait_for(
                lambda: [t for t in channel_texts(sandbox) if f"rollback {QUEUED}" in t and "pending" in t],
                timeout_s=60,
                what="the queued rollback's result in the channel",
            )
            assert "PASS rollback" in done[0] or "FAIL rollback" in done[0]
            queued = store.last_run(QUEUED, "rollback")
            assert queued is not None and queued.status in (RunStatus.PASS, RunStatus.FAIL)
            assert wait_for(lambda: outbox.pending(), timeout_s=10, what="the evidence job in the outbox")

            # 2. A rollback killed in its quiet window: the lever is already false, the run not finished.
            assert slash(url, sandbox, "/rollback", KILLED, "k1").status_code == 200

            def in_the_quiet_window() -> bool:
                run = store.last_run(KILLED, "rollback")
                return run is not None and run.status == RunStatus.RUNNING and lever(sandbox, KILLED)[0] == "false"

            wait_for(in_the_quiet_window, timeout_s=30, what="the rollback to write the lever and wait")
            os.killpg(proc.pid, signal.SIGKILL)  # no chance to clean up
            proc.wait(timeout=10)
    finally:
        sandbox.github.clear_faults()

    killed = store.last_run(KILLED, "rollback")
    assert killed is not None and killed.status == RunStatus.RUNNING  # the store says it never finished
    held = store.lock_holder(KILLED)
    assert held is not None and held.holder.run_id == killed.run_id  # the dead run's lock, until its lease ends
    assert store.lock_holder(KILLED, now=held.expires_at - timedelta(seconds=1)) is not None
    assert store.lock_holder(KILLED, now=held.expires_at + timedelta(seconds=1)) is None  # nobody renews it
    assert outbox.pending(), "the queued evidence survived the kill"
    assert not [c for c in sandbox.github.comments(PR_NUMBER) if queued.run_id in c.get("body", "")]

    sandbox.slack.reset()
    with second_bot(config):
        notice = wait_for(
            lambda: [t for t in channel_texts(sandbox) if "was interrupted" in t and killed.run_id in t],
            timeout_s=30,
            what="the interrupted-run notice",
        )[0]
        since = len(sandbox.github.requests)
        try:
            delivered = wait_for(
                lambda: [c for c in sandbox.github.comments(PR_NUMBER) if queued.run_id in c.get("body", "")],
                timeout_s=30,
                what="the queued evidence on the PR",
            )
        except AssertionError as exc:  # say what the outbox and GitHub saw, for a failure seen once under xdist
            jobs = [{k: j.get(k) for k in ("attempts", "last_error", "steps")} for j in outbox.pending()]
            seen = [f"{r.method} {r.path}" for r in sandbox.github.requests[since:]][:40]
            raise AssertionError(
                f"{exc}; outbox: {jobs}; GitHub since the second bot: {seen}; {_who_holds(outbox)}"
            ) from None
        wait_for(lambda: not outbox.pending(), timeout_s=30, what="the outbox to empty")  # nothing in it was lost
    assert f"The rollback of {KILLED} (run {killed.run_id}" in notice
    assert f"/rollback {KILLED}` again" in notice and "idempotent" in notice
    assert "frees at" in notice  # when the lock lapses
    after = store.get_run(KILLED, killed.run_id)
    assert after is not None and after.status == RunStatus.INTERRUPTED and "was interrupted" in after.summary
    assert any(a.action == "run.interrupted" and a.run_id == killed.run_id for a in store.audit_trail(KILLED))
    assert delivered and not outbox.pending()

    # What the notice says to do works at once: a new rollback takes the dead run's lock over.
    outcome = execute(RunRequest("rollback", KILLED, requested_by=ENGINEER), config=config)
    checks = {c.name: c for c in outcome.report.checks}
    assert checks["outbound_flag"].status == "PASS" and "already false" in checks["outbound_flag"].detail
    assert store.lock_holder(KILLED) is None
    ssm = sandbox.aws.client("ssm").get_parameter(Name=outbound_parameter(KILLED))["Parameter"]
    assert ssm["Value"] == "false"


def test_a_run_killed_mid_way_ends_its_github_deployment_as_error_instead_of_in_progress_for_ever(crash_env, tmp_path):
    sandbox = crash_env
    map_path = crash_map(sandbox, tmp_path)
    config = load_config(map_path)
    store = store_for(config)
    with served_in_a_subprocess(map_path, tmp_path) as (proc, url):
        assert slash(url, sandbox, "/rollback", f"{DEPLOYED} pr={PR_NUMBER}", "d1").status_code == 200

        def started() -> bool:
            run = store.last_run(DEPLOYED, "rollback")
            deployed = sandbox.github.deployments(DEPLOYED)
            return bool(run and run.status == RunStatus.RUNNING and deployed and deployed[0]["statuses"])

        wait_for(started, timeout_s=30, what="the rollback's deployment in progress")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    [deployment] = sandbox.github.deployments(DEPLOYED)
    assert [s["state"] for s in deployment["statuses"]] == ["in_progress"]  # what a crash leaves behind

    killed = store.last_run(DEPLOYED, "rollback")
    assert killed is not None
    with second_bot(config):
        wait_for(
            lambda: len(sandbox.github.deployments(DEPLOYED)[0]["statuses"]) == 2,
            timeout_s=30,
            what="the interrupted run's deployment to end",
        )
    [deployment] = sandbox.github.deployments(DEPLOYED)
    assert [s["state"] for s in deployment["statuses"]] == ["in_progress", "error"]
    assert (
        f"interrupted: the bot stopped before run {killed.run_id} finished" in deployment["statuses"][-1]["description"]
    )
    assert store.get_run(DEPLOYED, killed.run_id).status == RunStatus.INTERRUPTED
