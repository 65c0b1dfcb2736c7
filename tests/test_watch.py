"""The watch's rules on the sandbox (commands/watch.py through the real /enable-outbound, in-process):
reads that fail (moto answering 503 for this module's envs only), an alarm that disappears, and a
rollback that preempts the run mid-watch."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from commands.config import CutoverConfig, load_config
from commands.execute import Outcome, execute
from commands.request import RunRequest
from commands.state import store_for
from commands.watch import alarm_value, time_left
from integrations.sandbox.env import ENGINEER, Sandbox, Scenario
from tests.test_enable_outbound_support import (
    add_envs,
    lever,
    lever_writes,
    record_phases,
    wait_for,
    watching,
    write_map,
)

BLIND, FLAKY, VANISH, PREEMPT = "wt-blind", "wt-flaky", "wt-vanish", "wt-preempt"
SCENARIOS = {name: Scenario(approval_required=(), rule_enabled=True) for name in (BLIND, FLAKY, VANISH, PREEMPT)}
WATCH = {BLIND: {"minutes": 0.05}, FLAKY: {"minutes": 0.1}, VANISH: {"minutes": 0.5}, PREEMPT: {"minutes": 0.5}}


class Blinds:
    """WSGI middleware before moto: DescribeAlarms and GetMetricData naming a blinded env answer 503."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.blinded: set[str] = set()
        self.refused: dict[str, int] = {}
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "") + environ.get("HTTP_X_AMZ_TARGET", "")
        if self.blinded and ("DescribeAlarms" in path or "GetMetricData" in path):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            with self.lock:
                hit = next((env for env in self.blinded if f"rp-mw-{env}-".encode() in body), None)
                if hit is not None:
                    self.refused[hit] = self.refused.get(hit, 0) + 1
            if hit is not None:
                start_response("503 Service Unavailable", [("Content-Type", "text/plain"), ("Content-Length", "0")])
                return [b""]
        return self.app(environ, start_response)

    def blind(self, env: str) -> None:
        with self.lock:
            self.blinded.add(env)

    def see(self, env: str) -> None:
        with self.lock:
            self.blinded.discard(env)

    def count(self, env: str) -> int:
        with self.lock:
            return self.refused.get(env, 0)


@pytest.fixture(scope="module")
def blinds(sandbox: Sandbox) -> Iterator[Blinds]:
    add_envs(sandbox, SCENARIOS)
    found: list[Blinds] = []
    sandbox.aws.wrap_app(lambda app: found.append(Blinds(app)) or found[0])
    yield found[0]
    found[0].blinded.clear()  # the wrapper stays in front of moto for the session: a pass-through from now on


@pytest.fixture(scope="module")
def watch_config(sandbox: Sandbox, blinds, tmp_path_factory) -> CutoverConfig:
    return load_config(write_map(sandbox, tmp_path_factory.mktemp("watch"), watch=WATCH))


def enable(config: CutoverConfig, env: str, progress: list | None = None) -> Outcome:
    record_phases(store_for(config), env, "preflight", "canary")
    request = RunRequest("enable-outbound", env, requested_by=ENGINEER)
    return execute(request, config=config, progress=(progress.append if progress is not None else lambda _: None))


def in_background(fn: Callable[[], Outcome]) -> tuple[threading.Thread, list[Outcome]]:
    out: list[Outcome] = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    return thread, out


def checks(outcome: Outcome) -> dict[str, Any]:
    return {c.name: c for c in outcome.report.checks}


def test_reads_that_stay_unknown_past_the_window_fail_and_roll_back(sandbox, blinds, watch_config):
    store = store_for(watch_config)
    progress: list = []
    thread, out = in_background(lambda: enable(watch_config, BLIND, progress))
    wait_for(lambda: watching(store, BLIND) and lever(sandbox, BLIND)[0] == "true", what="the watch")
    blinds.blind(BLIND)
    try:
        thread.join(60)
    finally:
        blinds.see(BLIND)
    [outcome] = out
    watch = checks(outcome)["watch"]
    assert outcome.report.overall_status == "FAIL"
    assert watch.status == "FAIL" and "unknown is not PASS" in watch.detail and "rolling back" in watch.detail
    assert "HTTP 503" in watch.detail  # the reason the reads failed
    assert [c.name for c in outcome.report.checks][-3:] == ["outbound_flag", "rule_paused", "no_invocations"]
    assert lever(sandbox, BLIND)[0] == "false"
    assert blinds.count(BLIND) >= 2  # retried within the poll, not given up at the first failure
    assert any(c.name == "watch" and "unknown since" in c.detail for c in progress)  # said so while it lasted


def test_reads_that_fail_for_a_while_and_come_back_leave_a_warning(sandbox, blinds, watch_config):
    store = store_for(watch_config)
    thread, out = in_background(lambda: enable(watch_config, FLAKY))
    wait_for(lambda: watching(store, FLAKY) and lever(sandbox, FLAKY)[0] == "true", what="the watch")
    blinds.blind(FLAKY)
    try:
        # Each poll retries its two reads about four times: this many refusals span more than one whole poll.
        wait_for(lambda: blinds.count(FLAKY) >= 20, what="reads refused for more than a poll")
    finally:
        blinds.see(FLAKY)
    thread.join(60)
    [outcome] = out
    watch = checks(outcome)["watch"]
    assert outcome.report.overall_status == "PASS"
    assert watch.status == "WARN" and "reads failed for" in watch.detail and "before they came back" in watch.detail
    assert lever(sandbox, FLAKY)[0] == "true"


def test_an_alarm_deleted_during_the_watch_rolls_back(sandbox, blinds, watch_config):
    store = store_for(watch_config)
    thread, out = in_background(lambda: enable(watch_config, VANISH))
    wait_for(lambda: watching(store, VANISH) and lever(sandbox, VANISH)[0] == "true", what="the watch")
    name = f"rp-mw-{VANISH}-token-refresh-errors"
    sandbox.aws.client("cloudwatch").delete_alarms(AlarmNames=[name])
    thread.join(60)
    [outcome] = out
    assert f"required alarm {name} no longer exists" in checks(outcome)["watch"].detail
    assert lever(sandbox, VANISH)[0] == "false"


def test_a_rollback_that_preempts_the_watch_is_in_charge_and_the_watch_stops(sandbox, blinds, watch_config):
    store = store_for(watch_config)
    thread, out = in_background(lambda: enable(watch_config, PREEMPT))
    wait_for(lambda: watching(store, PREEMPT) and lever(sandbox, PREEMPT)[0] == "true", what="the watch")
    rollback = execute(
        RunRequest("rollback", PREEMPT, requested_by="U0ONCALL", confirmations=("rule-paused",)), config=watch_config
    )
    thread.join(60)
    [outcome] = out
    watch = checks(outcome)["watch"]
    assert watch.status == "SKIP" and f"preempted by rollback run {rollback.report.run_id}" in watch.detail
    assert [c.name for c in outcome.report.checks] == ["alarms", "outbound_flag", "propagation", "watch"]
    assert lever(sandbox, PREEMPT)[0] == "false"
    assert lever_writes(sandbox, PREEMPT, "false") == 2  # the seed and the rollback's one write: no second rollback
    assert not watching(store, PREEMPT)


def test_the_value_in_an_alarm_reason_and_the_time_left_read_as_people_expect():
    reason = "Threshold Crossed: 1 out of the last 1 datapoints [12.5 (30/11/25 03:00:00)] was >= the threshold (1.0)."
    assert alarm_value(reason) == "12.5"
    assert alarm_value("Unchecked: Initial alarm creation") is None
    assert [time_left(s) for s in (-3, 4.25, 42, 185)] == ["0.0 s", "4.2 s", "42 s", "3 min 05 s"]
