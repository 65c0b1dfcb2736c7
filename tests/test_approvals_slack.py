"""Manager approvals through signed Slack requests on the sandbox: the real Bolt app over HTTP, the real
gate, store and execute, the GitHub fake for the PR head and the evidence. The command approved is a
test command that changes nothing (tests/approval_support.py), in the registry's `canary` slot."""

from __future__ import annotations

import contextlib
import json
import threading

import pytest

from bot.execution.evidence_publisher import publisher_for
from bot.slack.approvals import APPROVE_ACTION, REJECT_ACTION
from commands.config import CutoverConfig, Tokens, load_config
from commands.execute import RunRequest, execute, store_for
from commands.state import ApprovalStatus, RunStatus
from integrations.sandbox.env import ENGINEER, MANAGER, Sandbox, Scenario
from tests.approval_support import (
    approval_message,
    block_actions_payload,
    buttons,
    ephemerals_for,
    post_interaction,
    use_noop_commands,
    wait_for,
    with_env,
)
from tests.conftest import assert_nothing_planted
from tests.slack_support import CHANNEL, MALLORY, served_bot

ENV = "approvals"
PR = 71
BRANCH = "cutover/approvals"
MANAGER2 = "U0MANAGER2"


@pytest.fixture(scope="module")
def env_name(sandbox: Sandbox) -> str:
    if ENV not in sandbox.envs:
        sandbox.add_env(ENV, Scenario())
    if PR not in sandbox.github.pulls:
        sandbox.github.add_pr(PR, BRANCH)
    return ENV


@pytest.fixture
def cfg(sandbox, env_name, tmp_path, monkeypatch) -> CutoverConfig:
    use_noop_commands(monkeypatch, "canary", "enable-outbound")
    config = load_config(sandbox.write_config(tmp_path, evidence_dir=str(tmp_path / "evidence")))
    return with_env(config, ENV, approvers=[MANAGER, MANAGER2])


def seed_preflight(cfg: CutoverConfig, tmp_path) -> str:
    """A real PASS preflight in this test's store: what a canary's approval rests on."""
    outcome = execute(RunRequest("preflight", ENV), config=cfg, evidence_root=tmp_path / "preflight")
    assert outcome.report.passed, [c for c in outcome.report.checks if c.status != "PASS"]
    return outcome.report.run_id


def bot(sandbox, cfg):
    return served_bot(
        execute,
        config=cfg,
        fake=sandbox.slack,
        tokens=Tokens(),
        bot_kwargs={"publisher_factory": lambda: publisher_for(cfg)},
    )


def click(h, message, user, *, action=APPROVE_ACTION, value=None, ts=None):
    payload = block_actions_payload(
        user=user,
        channel=CHANNEL,
        message_ts=ts or message.ts,
        action_id=action,
        value=value if value is not None else _id(message),
        response_url=h.fake.response_url("click"),
    )
    response = post_interaction(h.http, h.url, payload, secret=h.secret)
    assert response.status_code == 200
    return response


def text_of(h, message) -> str:
    return next(m for m in h.fake.messages(CHANNEL) if m.ts == message.ts).all_text()


def wait_text(h, message, words: str) -> str:
    def probe():
        text = text_of(h, message)
        return text if words in text else None

    return wait_for(probe, what=f"{words!r} in the message")


def _at_least(items: list, count: int) -> list | None:
    return items if len(items) >= count else None


def run_message(h, command="canary"):
    def probe():
        return next((m for m in h.fake.messages(CHANNEL) if f"PASS {command} {ENV}" in m.all_text()), None)

    return wait_for(probe, what=f"the {command} run's verdict")


def audit(cfg, action=None):
    entries = store_for(cfg).audit_trail(ENV, limit=200)
    return [e for e in entries if action is None or e.action == action]


def test_approval_message_then_refusals_then_approved_run_with_the_approval_in_its_evidence(sandbox, cfg, tmp_path):
    preflight = seed_preflight(cfg, tmp_path)
    store = store_for(cfg)
    with bot(sandbox, cfg) as h:
        ack = h.command("/canary", f"{ENV} pr={PR}", user=ENGINEER).json()
        assert ack["response_type"] == "in_channel"
        assert "waiting for approval" in ack["text"]
        message = approval_message(h.fake, CHANNEL)
        approval_id = buttons(message)[0]["value"]
        assert [b["action_id"] for b in buttons(message)] == [APPROVE_ACTION, REJECT_ACTION]
        assert all(b["value"] == approval_id for b in buttons(message))  # the id only, nothing to forge
        text = message.all_text()
        head = sandbox.github.head_sha(BRANCH)
        for words in (
            "What will change",
            "internal test ticket",
            f"PASS preflight run {preflight}",
            f"PR #{PR} at `{head[:7]}`",
            f"<@{ENGINEER}>",
            "expires",
            approval_id,
        ):
            assert words in text, words
        record = wait_for(lambda: (a := store.get_approval(approval_id)) and a.message_ts and a, what="the ts")
        assert record.status == ApprovalStatus.PENDING and record.head_sha == head
        assert record.evidence_sha256 == store.get_run(ENV, preflight).evidence_sha256
        assert record.message_ts == message.ts and record.channel == CHANNEL
        assert store.lock_holder(ENV) is None  # waiting holds no lock
        assert store.runs(ENV, command="canary") == []

        click(h, message, ENGINEER)  # the requester
        [mine] = ephemerals_for(h.fake, ENGINEER)
        assert "someone else must approve" in mine["text"] and f"<@{MANAGER}>" in mine["text"]
        click(h, message, MALLORY)  # not an approver
        [theirs] = ephemerals_for(h.fake, MALLORY)
        assert "may not approve" in theirs["text"] and f"<@{MANAGER}>" in theirs["text"]
        refused = wait_for(lambda: _at_least(audit(cfg, "approval.refused"), 2), what="2 refused clicks audited")
        assert {e.actor for e in refused} == {ENGINEER, MALLORY}
        assert store.get_approval(approval_id).status == ApprovalStatus.PENDING  # refusals changed nothing

        click(h, message, MANAGER)
        approved = wait_text(h, message, "Approved by")
        assert f"<@{MANAGER}>" in approved and "cutover_approval_approve" not in approved  # buttons gone
        verdict = run_message(h).all_text()
        assert "`approval`" in verdict
        assert message.ts == approval_message(h.fake, CHANNEL).ts  # one approval message, edited in place
        assert len(approval_message(h.fake, CHANNEL).history) >= 2
        slack_texts = [json.dumps(v) for m in h.fake.messages(CHANNEL) for v in m.history]
        slack_texts += [json.dumps(e) for e in h.fake.ephemerals()]

    used = store.get_approval(approval_id)
    assert used.status == ApprovalStatus.APPROVED and used.decided_by == MANAGER and used.used_by_run
    [run] = store.runs(ENV, command="canary")
    assert run.run_id == used.used_by_run and run.status == RunStatus.PASS and run.requested_by == ENGINEER
    actions = [e.action for e in reversed(audit(cfg)) if e.action.startswith("approval.")]
    assert actions == ["approval.request", "approval.refused", "approval.refused", "approval.decide", "approval.use"]

    # The PR evidence: the sticky comment and the committed report show who approved, bound to which head.
    [sticky] = [c for c in sandbox.github.comments(PR) if f"cutover:{ENV}:canary" in c["body"]]
    assert f"approved by <@{MANAGER}>" in sticky["body"] and f"bound to head {head[:7]}" in sticky["body"]
    reports = [
        json.loads(body)
        for path, body in sandbox.github.files_at(BRANCH).items()
        if path.endswith("report.json") and f"-canary-{run.run_id}" in path
    ]
    [report] = reports
    first = report["checks"][0]
    assert first["name"] == "approval" and first["status"] == "PASS"
    assert first["data"]["approved_by"] == MANAGER and first["data"]["head_sha"] == head
    assert first["data"]["evidence_sha256"] == used.evidence_sha256
    assert_nothing_planted(sandbox, json.dumps(report), sticky["body"], *slack_texts)


def test_rejected_request_runs_nothing_and_a_later_click_hears_who_decided(sandbox, cfg, tmp_path):
    seed_preflight(cfg, tmp_path)
    with bot(sandbox, cfg) as h:
        h.command("/canary", ENV, user=ENGINEER)
        message = approval_message(h.fake, CHANNEL)
        click(h, message, MANAGER2, action=REJECT_ACTION)
        assert f"Rejected by <@{MANAGER2}>" in wait_text(h, message, "Rejected by")
        click(h, message, MANAGER)
        [late] = ephemerals_for(h.fake, MANAGER)
        assert f"already rejected by <@{MANAGER2}>" in late["text"]
    assert store_for(cfg).runs(ENV, command="canary") == []


@pytest.mark.parametrize("bots", [1, 2], ids=["one-bot", "two-bot-processes"])
def test_two_approvers_at_once_record_one_decision_and_one_run(sandbox, cfg, tmp_path, bots):
    """Both click at the same moment; with two bots sharing the store (as two processes would), nothing
    in-process serialises them: the store's conditional write decides."""
    seed_preflight(cfg, tmp_path)
    with bot(sandbox, cfg) as first, bot(sandbox, cfg) if bots == 2 else contextlib.nullcontext(first) as second:
        first.command("/canary", ENV, user=ENGINEER)
        message = approval_message(first.fake, CHANNEL)
        wait_for(lambda: store_for(cfg).get_approval(_id(message)).message_ts, what="the message recorded")
        start = threading.Barrier(2)

        def approve(h, user):
            start.wait()
            click(h, message, user)

        threads = [threading.Thread(target=approve, args=a) for a in ((first, MANAGER), (second, MANAGER2))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        run_message(first)
        loser = wait_for(lambda: [e for e in first.fake.ephemerals() if "already approved by" in e["text"]], what="1")
        assert len(loser) == 1
        winner = store_for(cfg).get_approval(_id(message)).decided_by
        assert {winner, loser[0]["user"]} == {MANAGER, MANAGER2}
        assert f"already approved by <@{winner}>" in loser[0]["text"]
    decisions = audit(cfg, "approval.decide")
    assert len(decisions) == 1 and decisions[0].actor == winner
    assert len(audit(cfg, "approval.refused")) == 1  # the losing click, audited too
    assert len(store_for(cfg).runs(ENV, command="canary")) == 1


def test_a_new_commit_on_the_pr_voids_the_request(sandbox, cfg, tmp_path):
    seed_preflight(cfg, tmp_path)
    with bot(sandbox, cfg) as h:
        h.command("/canary", f"{ENV} pr={PR}", user=ENGINEER)
        message = approval_message(h.fake, CHANNEL)
        approval_id = buttons(message)[0]["value"]
        before = store_for(cfg).get_approval(approval_id).head_sha
        after = sandbox.github.push(BRANCH, {"src/worker.py": b"changed\n"}, message="a change after the request")
        click(h, message, MANAGER)
        [told] = ephemerals_for(h.fake, MANAGER)
        assert f"PR #{PR} has a new head commit ({before[:7]} -> {after[:7]})" in told["text"]
        edited = wait_text(h, message, "Void because")
        assert "new head commit" in edited and "cutover_approval_approve" not in edited
    record = store_for(cfg).get_approval(approval_id)
    assert record.status == ApprovalStatus.VOID and record.used_by_run is None
    assert store_for(cfg).runs(ENV, command="canary") == []
    assert [e.actor for e in audit(cfg, "approval.refused")] == [MANAGER]


def test_an_expired_request_is_edited_in_place_and_refuses_a_late_click(sandbox, cfg, tmp_path):
    short = with_env(cfg, ENV, approval_ttl_minutes=0.02)  # 1.2 s
    seed_preflight(short, tmp_path)
    with bot(sandbox, short) as h:
        h.command("/canary", ENV, user=ENGINEER)
        message = approval_message(h.fake, CHANNEL)
        expired = wait_text(h, message, "Expired")  # the sweeper edits the same message
        assert "cutover_approval_approve" not in expired
        assert len([m for m in h.fake.messages(CHANNEL) if "Approval" in m.all_text()]) == 1  # no new post
        click(h, message, MANAGER)
        [late] = ephemerals_for(h.fake, MANAGER)
        assert "expired" in late["text"]
    record = store_for(short).get_approval(_id(message))
    assert record.status == ApprovalStatus.VOID and record.decided_by is None
    assert [e.actor for e in audit(short, "approval.refused")] == [MANAGER]
    assert store_for(short).runs(ENV, command="canary") == []


def _id(message) -> str:
    """The approval id its buttons carried (they are gone once it is decided)."""
    return next(
        e["value"] for v in message.history for b in v["blocks"] if b.get("type") == "actions" for e in b["elements"]
    )


def test_enable_outbound_says_what_changes_and_rests_on_the_canary(sandbox, cfg, tmp_path):
    seed_preflight(cfg, tmp_path)
    store = store_for(cfg)
    with bot(sandbox, cfg) as h:  # a real approved canary first: what enable-outbound rests on
        h.command("/canary", ENV, user=ENGINEER)
        click(h, approval_message(h.fake, CHANNEL), MANAGER)
        run_message(h)
        canary = store.last_run(ENV, "canary", RunStatus.PASS)
        h.command("/enable-outbound", ENV, user=ENGINEER)
        message = approval_message(h.fake, CHANNEL, index=1)
        text = message.all_text()
        assert "the outbound flag on approvals goes from false to true; customers will get replies" in text
        assert f"PASS canary run {canary.run_id}" in text
        click(h, message, MANAGER2)
        run_message(h, "enable-outbound")
    assert store.get_approval(_id(message)).used_by_run


def test_a_second_request_supersedes_the_first(sandbox, cfg, tmp_path):
    seed_preflight(cfg, tmp_path)
    with bot(sandbox, cfg) as h:
        h.command("/canary", ENV, user=ENGINEER)
        first = approval_message(h.fake, CHANNEL)
        h.command("/canary", ENV, user=ENGINEER)
        approval_message(h.fake, CHANNEL, index=1)
        assert "superseded" in wait_text(h, first, "Void because")
        click(h, first, MANAGER)
        [told] = ephemerals_for(h.fake, MANAGER)
        assert "void" in told["text"]
    assert store_for(cfg).runs(ENV, command="canary") == []


def test_bad_clicks_get_a_clear_ephemeral_error_and_change_nothing(sandbox, cfg, tmp_path):
    seed_preflight(cfg, tmp_path)
    store = store_for(cfg)
    with bot(sandbox, cfg) as h:
        h.command("/canary", ENV, user=ENGINEER)
        message = approval_message(h.fake, CHANNEL)
        approval_id = buttons(message)[0]["value"]
        audit_before = audit(cfg)

        click(h, message, MANAGER, value="'; DROP TABLE approvals; --")
        click(h, message, MANAGER, value="ap-0123456789abcdef")  # well formed, unknown
        click(h, message, MANAGER, ts="1700000000.000001")  # a real id on a message that is not its own
        click(h, message, MANAGER, value={"approval": approval_id})  # not a string
        told = [e["text"] for e in ephemerals_for(h.fake, MANAGER, count=4)]
        assert any("does not name a cutover approval" in t for t in told)
        assert any("no approval `ap-0123456789abcdef`" in t for t in told)
        assert any("not on the cutover bot's message" in t for t in told)
        assert any("did not carry a cutover approval" in t for t in told)
        assert all("nothing was changed" in t for t in told)

        # Not JSON at all, and an unsigned click: refused at the door.
        broken = post_interaction(h.http, h.url, "{not json", secret=h.secret)
        assert broken.status_code == 400 and "malformed Slack request body" in broken.text
        payload = block_actions_payload(
            user=MANAGER,
            channel=CHANNEL,
            message_ts=message.ts,
            action_id=APPROVE_ACTION,
            value=approval_id,
            response_url=h.fake.response_url("x"),
        )
        unsigned = post_interaction(h.http, h.url, payload, secret="not-the-signing-secret")
        assert unsigned.status_code == 401
        assert store.get_approval(approval_id).status == ApprovalStatus.PENDING
        assert audit(cfg) == audit_before
        assert "Waiting for a decision" in text_of(h, message)


def test_a_newer_failing_preflight_voids_the_request(sandbox, cfg, tmp_path):
    from integrations.sandbox.http import Fault

    seed_preflight(cfg, tmp_path)
    with bot(sandbox, cfg) as h:
        h.command("/canary", ENV, user=ENGINEER)
        message = approval_message(h.fake, CHANNEL)
        sandbox.envs[ENV].openai.inject("models", Fault("status", 500))  # the next preflight fails
        failed = execute(RunRequest("preflight", ENV), config=cfg, evidence_root=tmp_path / "failed")
        assert not failed.report.passed
        click(h, message, MANAGER)
        [told] = ephemerals_for(h.fake, MANAGER)
        assert f"a preflight for {ENV} failed" in told["text"] and failed.report.run_id in told["text"]
        assert "preflight" in wait_text(h, message, "Void because")
    assert store_for(cfg).get_approval(_id(message)).status == ApprovalStatus.VOID
    assert store_for(cfg).runs(ENV, command="canary") == []


def test_an_approved_run_refused_before_it_starts_voids_its_approval_and_the_message_says_why(sandbox, cfg, tmp_path):
    from commands.state import LockHolder

    seed_preflight(cfg, tmp_path)
    store = store_for(cfg)
    with bot(sandbox, cfg) as h:
        h.command("/canary", ENV, user=ENGINEER)
        message = approval_message(h.fake, CHANNEL)
        holder = LockHolder(run_id="someone-elses", command="rollback", requested_by=MANAGER2, surface="cli")
        lease = store.acquire(ENV, holder, 60)  # another run holds the env when the approved run comes to start
        try:
            click(h, message, MANAGER)
            said = wait_text(h, message, "Void because")
        finally:
            store.release(lease)
    assert "the run it approved did not start" in said and "someone-elses" in said
    assert "the run was queued" not in said
    approval = store.get_approval(_id(message))
    assert approval.status == ApprovalStatus.VOID and approval.used_by_run is None
    assert store.runs(ENV, command="canary") == []
    assert any(e.action == "approval.void" for e in audit(cfg))
