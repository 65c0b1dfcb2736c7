"""The watch survives the bot: two app instances in sequence on one SQLite store.

The first is the production server (`python -m bot serve`, a subprocess on the sandbox) that takes a
signed /enable-outbound and is killed with SIGKILL mid-watch (its whole process group: gunicorn, its
worker, the run's process). The second is the app as production composes it (bot.slack.compose
.build_bot) on the same map: it finds the watch in the store, tells the channel it was interrupted,
and resumes it for the time left, or rolls back when the window passed unwatched.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from bot.slack.app import CutoverBot
from bot.slack.compose import build_bot
from commands.config import CutoverConfig, Tokens, load_config
from commands.execute import execute
from commands.report import Report
from commands.state import LockHolder, RunRecord, RunStatus, WatchState, store_for
from integrations.sandbox.env import CHANNEL, ENGINEER, Sandbox, Scenario
from integrations.sandbox.slack_requests import signed_headers, slash_command_body
from tests.slack_support import is_final
from tests.test_enable_outbound_support import (
    add_envs,
    lever,
    lever_writes,
    record_phases,
    wait_for,
    watching,
    write_map,
)

RESTART, STALE, TAKEN = "eo-restart", "eo-stale", "eo-taken"
SCENARIOS = {
    RESTART: Scenario(approval_required=(), rule_enabled=True),
    STALE: Scenario(approval_required=(), rule_enabled=True, outbound_enabled=True),
    TAKEN: Scenario(approval_required=(), outbound_enabled=True),
}
WATCH = {RESTART: {"minutes": 0.15}}  # 9 s: long enough to kill the first bot inside it


@pytest.fixture(scope="module")
def restart_env(sandbox: Sandbox) -> Sandbox:
    add_envs(sandbox, SCENARIOS)
    return sandbox


@pytest.fixture
def restart_map(restart_env: Sandbox, tmp_path: Path) -> Path:
    return write_map(restart_env, tmp_path, watch=WATCH)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served_in_a_subprocess(map_path: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    port = free_port()
    root = str(Path(__file__).resolve().parents[1])  # the repository: `-m bot` from another working directory
    pythonpath = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "CUTOVER_CONFIG": str(map_path), "PORT": str(port), "PYTHONPATH": pythonpath}
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve", "--port", str(port), "--host", "127.0.0.1"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: gunicorn, its worker and the runs' processes
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"the server exited: {(tmp_path / 'serve.log').read_text()[-2000:]}")
            try:
                return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout_s=60, what="python -m bot serve to answer /healthz")
        yield proc, url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        log.close()


@contextmanager
def second_bot(config: CutoverConfig) -> Iterator[CutoverBot]:
    """The app as production composes it; the runs in threads (the resume runs in the app process anyway)."""
    executor = ThreadPoolExecutor(max_workers=2)
    bot = build_bot(config, Tokens(), runner=execute, executor=executor, update_interval_s=0.2)
    try:
        yield bot
    finally:
        executor.shutdown(wait=True)
        bot.shutdown()


def finals(sandbox: Sandbox, count: int, timeout_s: float = 40.0) -> list[str]:
    def found() -> list[str]:
        done = [m.all_text() for m in sandbox.slack.messages(CHANNEL) if is_final(m)]
        return done if len(done) >= count else []

    return wait_for(found, timeout_s=timeout_s, what=f"{count} final messages in the channel")


def reports(config: CutoverConfig, env: str) -> list[Report]:
    paths = sorted((Path(config.evidence_dir) / env).rglob("report.json"))
    return [Report.model_validate_json(p.read_text()) for p in paths]


def test_a_watch_interrupted_by_a_killed_bot_is_resumed_by_the_next_one(restart_env, restart_map, tmp_path):
    sandbox = restart_env
    config = load_config(restart_map)
    store = store_for(config)
    record_phases(store, RESTART, "preflight", "canary")
    sandbox.slack.reset()
    with served_in_a_subprocess(restart_map, tmp_path) as (proc, url):
        body = slash_command_body(
            "/enable-outbound", RESTART, user=ENGINEER, channel=CHANNEL, response_url=sandbox.slack.response_url("r1")
        )
        reply = httpx.post(
            f"{url}/slack/events", content=body, headers=signed_headers(body, sandbox.slack_signing_secret)
        )
        assert reply.json()["text"] == f"Enable outbound {RESTART} queued"
        seen: list[datetime] = []

        def polled_twice() -> bool:  # the watch loop is saving its polls in the store
            state = next((w for w in store.active_watches() if w.env == RESTART), None)
            if state is not None and state.last_poll_at is not None and state.last_poll_at not in seen:
                seen.append(state.last_poll_at)
            return len(seen) >= 3

        wait_for(polled_twice, timeout_s=30, what="the first bot's watch to poll")
        os.killpg(proc.pid, signal.SIGKILL)  # the bot dies mid-watch: no chance to clean up
        proc.wait(timeout=10)
    first = store.last_run(RESTART, "enable-outbound")
    assert first is not None and first.status == RunStatus.RUNNING  # it never finished
    assert lever(sandbox, RESTART)[0] == "true"
    assert watching(store, RESTART)

    with second_bot(config):
        texts = finals(sandbox, 2)
    notice = next(t for t in texts if "was interrupted" in t)
    assert f"The enable-outbound watch on {RESTART} (run {first.run_id}" in notice
    assert "Resuming it for the" in notice
    result = next(t for t in texts if "enable-outbound" in t and "PASS" in t and t != notice)
    assert f"PASS enable-outbound {RESTART}" in result
    old = store.get_run(RESTART, first.run_id)
    assert old is not None and old.status == RunStatus.INTERRUPTED
    resumed = store.last_run(RESTART, "enable-outbound")
    assert resumed is not None and resumed.run_id != first.run_id and resumed.status == RunStatus.PASS
    assert f"resumed as run {resumed.run_id}" in old.summary
    [report] = [r for r in reports(config, RESTART) if r.run_id == resumed.run_id]
    checks = {c.name: c for c in report.checks}
    assert [c.name for c in report.checks] == ["resumed", "watch"]
    assert checks["resumed"].status == "WARN" and f"resumed the watch of run {first.run_id}" in checks["resumed"].detail
    assert checks["watch"].status == "WARN"  # passes, with the restart's unwatched gap as its caveat
    assert "resumed after a restart: unwatched for" in checks["watch"].detail
    assert lever(sandbox, RESTART)[0] == "true" and lever_writes(sandbox, RESTART, "true") == 1  # never flipped again
    assert not watching(store, RESTART)
    assert store.lock_holder(RESTART) is None


def test_a_watch_whose_window_passed_unwatched_is_rolled_back_saying_why(restart_env, restart_map):
    sandbox = restart_env
    config = load_config(restart_map)
    store = store_for(config)
    record_phases(store, STALE, "preflight", "canary")
    now = datetime.now(UTC)
    dead = "deadbeef01"
    store.record_run_start(
        RunRecord(
            run_id=dead,
            env=STALE,
            command="enable-outbound",
            started_at=now - timedelta(minutes=3),
            requested_by=ENGINEER,
            surface="slack",
        )
    )
    store.save_watch(
        WatchState(
            env=STALE,
            run_id=dead,
            started_at=now - timedelta(minutes=3),
            ends_at=now - timedelta(minutes=1),
            poll_seconds=0.5,
            requested_by=ENGINEER,
            channel=CHANNEL,
            last_poll_at=now - timedelta(minutes=2),
        )
    )
    assert lever(sandbox, STALE)[0] == "true"
    sandbox.slack.reset()
    with second_bot(config):
        texts = finals(sandbox, 2)
    notice = next(t for t in texts if "was interrupted" in t)
    assert "while unwatched: rolling back" in notice
    result = next(t for t in texts if t != notice)
    assert f"FAIL enable-outbound {STALE}" in result
    assert "cannot be resumed safely" in result and "longer than one poll interval" in result
    assert lever(sandbox, STALE)[0] == "false"
    report = reports(config, STALE)[-1]
    assert [c.name for c in report.checks] == ["resumed", "outbound_flag", "rule_paused", "no_invocations"]
    assert store.get_run(STALE, dead).status == RunStatus.INTERRUPTED
    assert store.last_run(STALE, "rollback").requested_by == "cutover-bot"  # the phase rules see it
    assert not watching(store, STALE)
    assert json.dumps(report.checks[0].data).count(dead) == 1


def test_a_watch_whose_env_is_held_by_a_rollback_is_left_to_it(restart_env, restart_map):
    sandbox = restart_env
    config = load_config(restart_map)
    store = store_for(config)
    now = datetime.now(UTC)
    store.save_watch(
        WatchState(
            env=TAKEN,
            run_id="deadbeef02",
            started_at=now - timedelta(seconds=30),
            ends_at=now + timedelta(minutes=5),
            poll_seconds=0.5,
            requested_by=ENGINEER,
            channel=CHANNEL,
            last_poll_at=now - timedelta(seconds=20),
        )
    )
    rollback = store.acquire(TAKEN, LockHolder(run_id="feedface01", command="rollback", requested_by="U0OTHER"), 60)
    sandbox.slack.reset()
    try:
        with second_bot(config):
            texts = finals(sandbox, 2)
    finally:
        store.release(rollback)
    assert any("was not resumed" in t and "rollback run feedface01" in t for t in texts)
    assert lever(sandbox, TAKEN) == ("true", 1)  # nothing written: the rollback is in charge
    assert not watching(store, TAKEN)
