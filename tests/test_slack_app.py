"""The real Bolt app, served over HTTP on loopback, receiving signed slash commands and talking to SlackFake."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from commands.config import ConfigError
from commands.execute import EvidenceResult, UsageError
from commands.redaction import REDACTOR
from commands.report import CheckResult, Status
from integrations.sandbox.http import Fault
from integrations.sandbox.slack import api_params, block_kit_problem
from tests.slack_support import (
    ALICE,
    BOB,
    CHANNEL,
    GROUP,
    MALLORY,
    ScriptedRunner,
    checks_of,
    command_body,
    is_final,
    make_config,
    served_bot,
    signed_headers,
)


def test_a_command_is_acked_then_started_updated_and_finished_in_the_channel():
    hold = threading.Event()
    runner = ScriptedRunner(checks=checks_of(4, failing=1, detail="reason"), delay_s=0.15, hold=hold)
    with served_bot(runner, update_interval_s=0.2) as h:
        response = h.command("/preflight", "prod pr=12")
        assert not hold.is_set() and not any(is_final(m) for m in h.fake.messages(CHANNEL)), "acked before the run"
        hold.set()

        assert response.status_code == 200
        ack = response.json()
        assert ack["response_type"] == "in_channel"
        assert ack["text"] == "Preflight prod queued"

        [final] = h.final_messages(1)
        assert final.channel == CHANNEL
        first = json.dumps(final.history[0])
        assert f"Preflight prod started by <@{ALICE}> for PR #12" in first
        assert final.updates >= 2  # at least one progress edit and the final edit
        assert any("checks done" in json.dumps(v) for v in final.history[1:-1])
        text = final.all_text()
        assert "FAIL preflight prod: 1 failed, 3 passed" in text
        assert "`check_000`: reason (0)" in text
        assert text.index("check_000") < text.index("check_001")  # failing first
        assert "kept locally" in text
        assert block_kit_problem(final.blocks) is None
        [request] = runner.calls
        assert (request.command, request.env, request.requested_by, request.pr) == ("preflight", "prod", ALICE, 12)
        assert h.fake.calls("auth.test") == []  # authorize= : no auth.test, at start-up or per request


def test_progress_edits_are_throttled_and_the_last_edit_is_the_result():
    runner = ScriptedRunner(checks=checks_of(30), delay_s=0.01)  # 30 checks in ~0.3 s
    with served_bot(runner, update_interval_s=1.0) as h:
        h.command("/preflight", "dev")
        [final] = h.final_messages(1)
        assert final.updates <= 2  # 30 checks, throttled to at most one edit per second + the final one
        assert "PASS preflight dev" in final.all_text()
        assert "next: `/canary dev`" in final.all_text()


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda body, h: {**h, "X-Slack-Signature": "v0=" + "0" * 64}, id="forged"),
        pytest.param(lambda body, h: signed_headers(body, timestamp=int(time.time()) - 301), id="stale"),
        pytest.param(lambda body, h: {"Content-Type": h["Content-Type"]}, id="unsigned"),
        pytest.param(lambda body, h: signed_headers(body, secret="another-apps-secret-000000"), id="wrong-secret"),
    ],
)
def test_a_request_slack_did_not_sign_gets_401_and_runs_nothing(mutate):
    with served_bot() as h:
        body = command_body("/preflight", "prod", user=ALICE, response_url=h.fake.response_url("x"))
        response = h.post(body, mutate(body, signed_headers(body)))
        assert response.status_code == 401
        time.sleep(0.1)
        assert h.runner.calls == []
        assert h.fake.requests == []


def test_an_unauthorised_user_is_refused_privately_with_who_may():
    with served_bot() as h:
        response = h.command("/preflight", "prod", user=MALLORY)
        assert response.status_code == 200
        reply = response.json()
        assert reply["response_type"] == "ephemeral"
        assert f"<@{MALLORY}> may not run `/preflight` in prod" in reply["text"]
        assert f"<@{ALICE}>" in reply["text"]
        assert f"<!subteam^{GROUP}>" in reply["text"]
        time.sleep(0.1)
        assert h.runner.calls == []
        assert h.fake.messages() == []


def test_a_member_of_an_allowed_user_group_may_run_and_membership_is_cached():
    with served_bot() as h:
        assert h.command("/preflight", "prod", user=BOB).json()["response_type"] == "in_channel"
        assert h.command("/preflight", "dev", user=BOB).json()["response_type"] == "in_channel"
        h.final_messages(2)
        lookups = h.fake.calls("usergroups.users.list")
        assert len(lookups) == 1
        assert api_params(lookups[0])["usergroup"] == GROUP
        assert [c.requested_by for c in h.runner.calls] == [BOB, BOB]


def test_an_empty_runners_list_refuses_everyone():
    with served_bot(config=make_config(runners=[])) as h:
        text = h.command("/preflight", "prod").json()["text"]
        assert "`envs.prod.runners` is empty" in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "missing the environment (one of: dev, prod)"),
        ("stage", "unknown environment `stage` (known: dev, prod)"),
        ("prod pr=abc", "`pr=abc`: pr must be a positive integer"),
        ("prod pr=0", "`pr=0`: pr must be a positive integer"),
        ("prod now please", "unknown words: `now`, `please`"),
    ],
)
def test_bad_arguments_get_a_private_usage_naming_the_problem(text, expected):
    with served_bot() as h:
        reply = h.command("/preflight", text).json()
        assert reply["response_type"] == "ephemeral"
        assert expected in reply["text"]
        assert "Usage: `/preflight ENV [pr=N] [dry-run]`" in reply["text"]
        time.sleep(0.05)
        assert h.runner.calls == []


def test_a_retry_of_a_request_already_handled_runs_once():
    runner = ScriptedRunner(delay_s=0.2)
    with served_bot(runner) as h:
        body = command_body("/preflight", "prod", user=ALICE, response_url=h.fake.response_url("r"))
        first = h.post(body, signed_headers(body))
        retry = h.post(body, {**signed_headers(body), "X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
        assert first.status_code == 200
        assert first.json()["text"] == "Preflight prod queued"
        assert retry.status_code == 200
        assert retry.text == ""
        h.final_messages(1)
        time.sleep(0.3)
        assert len(runner.calls) == 1
        assert len(h.fake.messages(CHANNEL)) == 1


def test_twenty_concurrent_slow_commands_are_all_acked_and_all_answered():
    hold = threading.Event()  # every run blocks until all 20 are acked: the acks cannot wait on runs
    runner = ScriptedRunner(checks=checks_of(2), delay_s=0.05, hold=hold)
    with served_bot(runner) as h, ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(lambda i: h.command("/preflight", "prod" if i % 2 else "dev"), range(20)))
        # With Bolt's 5-thread pool doing the work, commands 6..20 would wait 3 s and get 404.
        assert [r.status_code for r in responses] == [200] * 20
        assert all(r.json()["response_type"] == "in_channel" for r in responses)
        hold.set()
        finals = h.final_messages(20, timeout_s=15)
        assert len(finals) == 20
        assert len(runner.calls) == 20


def test_a_report_of_200_long_checks_stays_within_block_kit_limits():
    checks = [
        CheckResult(name=f"secrets.check_{i:03d}", status=Status.FAIL if i % 3 == 0 else Status.PASS, detail="x" * 5000)
        for i in range(200)
    ]
    with served_bot(ScriptedRunner(checks=checks)) as h:
        h.command("/preflight", "prod")
        [final] = h.final_messages(1)
        assert block_kit_problem(final.blocks) is None  # and the fake would have refused it with invalid_blocks
        assert "more checks, see the evidence" in final.all_text()
        assert "FAIL preflight prod: 67 failed, 133 passed" in final.all_text()


def test_channel_messages_carry_no_secret_and_no_email():
    secret = "sk-live-PLANTED-0123456789abcdef"
    REDACTOR.register("planted_secret", secret)
    checks = [
        CheckResult(name="richpanel_get", status=Status.FAIL, detail=f"401 with key {secret} for jane.doe@example.com"),
        CheckResult(name="openai_models", status=Status.PASS, detail=f"echo {secret}"),
    ]
    runner = ScriptedRunner(
        checks=checks,
        delay_s=0.25,
        evidence=EvidenceResult("pending", f"GitHub said {secret} to ops@example.com"),
    )
    with served_bot(runner) as h:
        ack = h.command("/preflight", "prod")
        [final] = h.final_messages(1)
        seen = [ack.text] + [json.dumps(v) for m in h.fake.messages() for v in m.history]
        seen += [r.body.decode() for r in h.fake.requests]
        for text in seen:
            assert secret not in text
            assert "example.com" not in text
        assert "[REDACTED:planted_secret]" in final.all_text()
        assert "[REDACTED:email]" in final.all_text()
        assert "evidence pending" in final.all_text()


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            UsageError("'canary' is not available yet (available: preflight)"),
            "did not run: 'canary' is not available yet",
        ),
        (ConfigError("unknown environment 'prod'; this map has: dev"), "did not run: unknown environment"),
        (RuntimeError("boom at /srv/app.py line 3"), "stopped with an internal error (RuntimeError)"),
    ],
)
def test_a_run_that_cannot_start_says_so_without_a_traceback(error, expected):
    with served_bot(ScriptedRunner(error=error)) as h:
        assert h.command("/preflight", "prod").status_code == 200
        [final] = h.final_messages(1)
        text = final.all_text()
        assert expected in text
        assert "Traceback" not in text
        assert "boom" not in text
        assert "/srv/app.py" not in text


def test_rate_limited_slack_calls_are_retried_after_retry_after():
    with served_bot() as h:
        h.fake.rate_limit("chat.postMessage", retry_after=0, times=1)
        h.command("/preflight", "prod")
        [final] = h.final_messages(1)
        assert "FAIL preflight prod" in final.all_text()
        assert len(h.fake.calls("chat.postMessage")) == 2  # the 429, then the post


def test_when_the_bot_cannot_post_in_the_channel_the_result_goes_to_response_url():
    with served_bot() as h:
        h.fake.inject(
            r"^/api/chat\.postMessage$", Fault("status", status=200, body={"ok": False, "error": "not_in_channel"})
        )
        h.command("/preflight", "prod")
        deadline = time.monotonic() + 5
        while not h.fake.responses() and time.monotonic() < deadline:
            time.sleep(0.02)
        [posted] = h.fake.responses()
        assert posted["response_type"] == "in_channel"
        assert "FAIL preflight prod" in posted["text"]
        assert h.fake.messages() == []


def test_cutover_help_and_status():
    with served_bot() as h:
        help_text = h.command("/cutover", "help").json()["text"]
        assert "`/preflight ENV [pr=N] [dry-run]`" in help_text
        assert f"prod: may run: <@{ALICE}>, <!subteam^{GROUP}>" in help_text
        assert "Nothing has run" in h.command("/cutover", "status").json()["text"]
        h.command("/preflight", "prod dry-run")
        h.final_messages(1)
        status = h.command("/cutover", "status", user=MALLORY).json()
        assert status["response_type"] == "ephemeral"
        assert f"`/preflight prod` by <@{ALICE}>: *FAIL*" in status["text"]
        assert h.runner.calls[0].dry_run is True
        assert "Unknown `/cutover deploy`" in h.command("/cutover", "deploy").json()["text"]


def test_a_full_queue_refuses_at_the_ack_but_rollback_still_runs():
    runner = ScriptedRunner(checks=checks_of(1), delay_s=0.5)
    with served_bot(runner, workers=1, bot_kwargs={"queue_capacity": 1}) as h:
        assert h.command("/preflight", "prod").json()["response_type"] == "in_channel"
        busy = h.command("/preflight", "dev").json()
        assert busy["response_type"] == "ephemeral"
        assert "The bot is busy" in busy["text"]
        assert h.command("/rollback", "prod").json()["text"] == "Rollback prod queued"
        finals = h.final_messages(2)
        assert sorted(c.command for c in runner.calls) == ["preflight", "rollback"]
        assert all(is_final(m) for m in finals)


def test_healthz():
    with served_bot() as h:
        response = h.http.get(f"{h.url}/healthz")
        assert (response.status_code, response.text) == (200, "ok")
        assert h.http.get(f"{h.url}/nope").status_code == 404


def test_commands_outside_the_cutover_channel_are_refused_with_where_to_go():
    from commands.config import SlackConfig

    config = make_config().model_copy(update={"slack": SlackConfig(channel="C0ELSEWHERE")})
    runner = ScriptedRunner()
    with served_bot(runner, config=config) as h:
        reply = h.command("/preflight", "prod").json()
    assert reply["response_type"] == "ephemeral"
    assert "<#C0ELSEWHERE>" in reply["text"]
    assert "Nothing was run" in reply["text"]
    assert runner.calls == []
