"""/canary through Slack on the sandbox: signed slash commands and signed button clicks to the real
Bolt app over HTTP, the real canary on moto and the Richpanel fake with its simulated worker.

The person-steps are done as a person would: enable the rule in Richpanel (the sandbox's rule), then
press the run's "Done" button (a signed block_actions request, checked and recorded by the app).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.slack.blocks import CONFIRM_ACTION
from commands.config import CutoverConfig, Tokens, load_config
from commands.execute import execute, store_for
from integrations.sandbox.env import ENGINEER, EnvSandbox, Sandbox
from integrations.sandbox.slack import Message
from integrations.sandbox.slack_requests import block_action_body, signed_headers
from tests.conftest import assert_nothing_planted
from tests.slack_support import CHANNEL, Harness, served_bot
from tests.test_canary import (
    INTERNAL,
    ROLLBACK_STEPS,
    STEPS,
    canary_envs,
    faulty,
    lever,
    passed_preflight,
    settle,
    tuned,
)


@pytest.fixture
def envs(sandbox: Sandbox) -> Iterator[dict[str, EnvSandbox]]:
    found = canary_envs(sandbox)
    yield found
    settle(found)


@pytest.fixture
def config(sandbox: Sandbox, envs, tmp_path: Path) -> CutoverConfig:
    return load_config(sandbox.write_config(tmp_path, evidence_dir=str(tmp_path / "evidence")))


def _button(h: Harness, step: str, timeout_s: float = 15.0) -> tuple[Message, dict[str, Any]]:
    """The channel message showing the "Done" button of `step`, once the run asks for it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for message in h.fake.messages(CHANNEL):
            for block in message.blocks:
                if block.get("type") == "actions" and block.get("block_id") == f"confirm:{step}":
                    return message, block["elements"][0]
        time.sleep(0.02)
    raise AssertionError(f"no button for {step} appeared: {[m.all_text()[:1500] for m in h.fake.messages()]}")


def _press(h: Harness, step: str, *, user: str = ENGINEER) -> None:
    message, button = _button(h, step)
    assert button["action_id"] == CONFIRM_ACTION
    body = block_action_body(
        CONFIRM_ACTION,
        button["value"],
        user=user,
        channel=CHANNEL,
        message_ts=message.ts,
        response_url=h.fake.response_url(f"click-{step}"),
        blocks=message.blocks,
    )
    assert h.post(body, signed_headers(body, h.secret)).status_code == 200


def _report(tmp_path: Path, env: str) -> tuple[dict[str, Any], str]:
    [path] = (tmp_path / "evidence" / env).rglob("report.json")
    files = "\n".join(p.read_text() for p in path.parent.iterdir() if p.suffix != ".png")
    return json.loads(path.read_text()), files


def test_slash_canary_passes_with_one_internal_ticket_processed_and_no_contact(sandbox, config, envs, tmp_path):
    env = envs["canary-slack"]
    passed_preflight(config, env.name)
    before = len(env.richpanel.requests)
    processed, outbound = len(env.worker.processed), len(env.worker.outbound)
    with served_bot(execute, config=config, fake=sandbox.slack, tokens=Tokens()) as h:
        ack = h.command("/canary", env.name, user=ENGINEER)
        assert ack.json()["text"] == f"Canary {env.name} queued"
        _press(h, "http-target")  # the person checked Richpanel's HTTP target shows the approved URL
        _button(h, "rule-enabled")  # asked for the rule
        assert len(env.worker.processed) == processed  # nothing sent before the rule is confirmed
        env.set_rule(enabled=True, by=ENGINEER)  # the person enables the rule in Richpanel...
        _press(h, "rule-enabled")  # ...and says so
        [final] = h.final_messages(1, timeout_s=30)
        text = final.all_text()
        everything = [json.dumps(v) for m in h.fake.messages(CHANNEL) for v in m.history]
        everything += [r.body.decode("utf-8", "replace") for r in h.fake.requests]  # a chart upload is binary
    assert f"PASS canary {env.name}" in text, text
    assert f"next: `/enable-outbound {env.name}`" in text
    report, files = _report(tmp_path, env.name)
    assert report["overall_status"] == "PASS"
    assert [c["name"] for c in report["checks"]] == STEPS
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["rule_enabled"]["data"]["confirmed_by"] == ENGINEER
    assert by_name["rule_enabled"]["data"]["confirmed_on"] == "slack"
    assert by_name["http_target"]["data"]["confirmed_by"] == ENGINEER
    writes = [r for r in env.richpanel.requests[before:] if r.method != "GET"]
    assert [(r.method, r.path) for r in writes] == [("POST", "/v1/tickets")]  # one ticket: the only write
    assert writes[0].json()["ticket"]["via"]["source"]["from"]["address"] == INTERNAL
    assert report["run_id"] in writes[0].json()["ticket"]["subject"]
    assert len(env.worker.processed) == processed + 1
    assert len(env.worker.outbound) == outbound
    assert by_name["no_customer_contact"]["data"]["customer_contacted"] is False
    assert lever(sandbox, env) == "false"
    confirmations = store_for(config).confirmation(report["run_id"], "rule-enabled")
    assert confirmations is not None and confirmations.confirmed_by == ENGINEER
    assert_nothing_planted(sandbox, files, *everything)


def test_a_customer_contact_fails_the_canary_rolls_back_and_the_channel_says_so(sandbox, config, envs, tmp_path):
    env = faulty(envs["canary-slack"], contacts_customer_with_lever_off=True)  # replies although the lever is off
    passed_preflight(config, env.name)
    quick = tuned(config, env.name, timeout_minutes=0.1, quiet_minutes=0.02)
    with served_bot(execute, config=quick, fake=sandbox.slack, tokens=Tokens()) as h:
        h.command("/canary", env.name, user=ENGINEER)
        _press(h, "http-target")
        env.set_rule(enabled=True, by=ENGINEER)
        _press(h, "rule-enabled")
        _button(h, "rule-paused")  # the automatic rollback asks for the rule to be paused
        env.set_rule(enabled=False, by=ENGINEER)
        _press(h, "rule-paused")
        [final] = h.final_messages(1, timeout_s=30)
        text = final.all_text()
    assert f"FAIL canary {env.name}" in text
    assert "a customer was contacted" in text
    assert "Rolling back now" in text
    report, files = _report(tmp_path, env.name)
    assert [c["name"] for c in report["checks"]] == STEPS + ROLLBACK_STEPS
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["no_customer_contact"]["status"] == "FAIL"
    assert by_name["outbound_flag"]["status"] == "PASS"  # the rollback's own read-back
    assert lever(sandbox, env) == "false"
    assert env.worker.outbound  # the fault did contact the customer
    assert_nothing_planted(sandbox, files, text)
