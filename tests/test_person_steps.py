"""The "Done" button of a person-step: signed clicks to the real app, recorded in the store, the
finished run's message edited in place; the wrong person or a forged payload changes nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from bot.slack.blocks import CONFIRM_ACTION, person_step_buttons
from commands.execute import store_for
from commands.report import CheckResult, Status
from commands.state import RunRecord, RunStatus
from integrations.sandbox.slack_requests import block_action_body
from tests.slack_support import ALICE, BOB, CHANNEL, MALLORY, served_bot


def _finished_run(h, run_id: str = "r0rollback") -> tuple[str, list[dict]]:
    """A finished rollback whose rule-paused step still waits for a person, and its message."""
    store = store_for(h.bot.config)
    now = datetime.now(UTC)
    store.record_run_start(
        RunRecord(run_id=run_id, env="prod", command="rollback", started_at=now, requested_by=ALICE, surface="slack")
    )
    store.record_run_finish("prod", run_id, RunStatus.FAIL, summary="rule not yet paused")
    waiting = CheckResult(
        name="rule_paused",
        status=Status.WARN,
        detail="not yet confirmed",
        data={"awaiting": "rule-paused", "run_id": run_id, "env": "prod"},
    )
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "rollback prod"}}, *person_step_buttons([waiting])]
    posted = h.bot.client.chat_postMessage(channel=CHANNEL, text="rollback prod", blocks=blocks)
    return posted["ts"], blocks


def _click(h, value: str, *, user: str, ts: str, blocks: list[dict]):
    body = block_action_body(
        CONFIRM_ACTION, value, user=user, channel=CHANNEL, message_ts=ts,
        response_url=h.fake.response_url("click"), blocks=blocks,
    )  # fmt: skip
    return h.post(body, _signed(h, body))


def _signed(h, body: str) -> dict[str, str]:
    from tests.slack_support import signed_headers

    return signed_headers(body, secret=h.secret)


def test_a_click_by_the_requester_is_recorded_and_the_finished_message_edited():
    with served_bot() as h:
        ts, blocks = _finished_run(h)
        value = blocks[-1]["elements"][0]["value"]
        assert _click(h, value, user=ALICE, ts=ts, blocks=blocks).status_code == 200
        store = store_for(h.bot.config)
        confirmation = _wait(lambda: store.confirmation("r0rollback", "rule-paused"))
        assert confirmation.confirmed_by == ALICE and confirmation.surface == "slack"
        message = _wait(lambda: next((m for m in h.fake.messages() if "confirmed by" in m.all_text()), None))
        assert f"`rule-paused` confirmed by <@{ALICE}>" in message.all_text()
        assert not any(b.get("type") == "actions" for b in message.blocks), "the button is gone"


def test_a_runner_may_confirm_but_a_stranger_may_not_and_is_audited():
    with served_bot() as h:
        ts, blocks = _finished_run(h)
        value = blocks[-1]["elements"][0]["value"]
        _click(h, value, user=MALLORY, ts=ts, blocks=blocks)
        refusal = _wait(lambda: next((e for e in h.fake.ephemerals() if e["user"] == MALLORY), None))
        assert "Only the requester or a runner of prod may confirm this" in refusal["text"]
        store = store_for(h.bot.config)
        assert store.confirmation("r0rollback", "rule-paused") is None
        assert any(e.action == "confirmation.refused" and e.actor == MALLORY for e in store.audit_trail("prod"))
        _click(h, value, user=BOB, ts=ts, blocks=blocks)  # BOB is in the runners' group
        assert _wait(lambda: store.confirmation("r0rollback", "rule-paused")).confirmed_by == BOB


def test_a_forged_or_unknown_payload_records_nothing():
    with served_bot() as h:
        ts, blocks = _finished_run(h)
        for value in ("not json", json.dumps({"run": "nope", "env": "prod", "step": "rule-paused"})):
            _click(h, value, user=ALICE, ts=ts, blocks=blocks)
        _wait(lambda: len([e for e in h.fake.ephemerals() if e["user"] == ALICE]) >= 2 or None)
        texts = [e["text"] for e in h.fake.ephemerals() if e["user"] == ALICE]
        assert any("not one this bot made" in t for t in texts)
        assert any("No run `nope`" in t for t in texts)
        assert store_for(h.bot.config).confirmation("r0rollback", "rule-paused") is None


def _wait(probe, timeout_s: float = 5.0):
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError("nothing happened in time")
