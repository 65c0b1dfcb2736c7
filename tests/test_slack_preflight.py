"""End to end on the sandbox: a signed /preflight over HTTP runs the real preflight (moto and the
Shopify/Richpanel/OpenAI fakes), publishes the evidence to the PR on the GitHub fake, and the verdict
lands in the channel of the sandbox's Slack fake, with nothing planted leaking anywhere Slack sees."""

from __future__ import annotations

import json
import time

import pytest

from bot.execution.evidence_publisher import publisher_for
from commands.config import CutoverConfig, Tokens, load_config
from commands.execute import execute
from integrations.sandbox.env import ENGINEER, PR_NUMBER, Sandbox
from tests.conftest import assert_nothing_planted
from tests.slack_support import CHANNEL, served_bot


@pytest.fixture
def slack_config(sandbox: Sandbox, tmp_path) -> CutoverConfig:
    # Evidence (and the publisher's outbox) under tmp_path, not the working directory.
    return load_config(sandbox.write_config(tmp_path, evidence_dir=str(tmp_path / "evidence")))


def test_slash_preflight_runs_the_real_checks_posts_the_verdict_and_attaches_evidence(sandbox, slack_config, tmp_path):
    with served_bot(
        execute,
        config=slack_config,
        fake=sandbox.slack,
        tokens=Tokens(),
        bot_kwargs={"publisher_factory": lambda: publisher_for(slack_config)},
    ) as h:
        healthy = h.command("/preflight", f"prod pr={PR_NUMBER}", user=ENGINEER)  # ENGINEER: via the user group
        failing = h.command("/preflight", "firing-alarm", user=ENGINEER)
        assert healthy.json()["text"] == "Preflight prod queued"
        assert failing.json()["text"] == "Preflight firing-alarm queued"
        finals = h.final_messages(2, timeout_s=30)
        by_env = {("prod" if "preflight prod" in m.all_text() else "firing-alarm"): m for m in finals}
        prod = by_env["prod"].all_text()
        assert "PASS preflight prod" in prod
        assert "evidence attached" in prod
        assert "next: `/canary prod`" in prod
        text = by_env["firing-alarm"].all_text()
        assert "FAIL preflight firing-alarm" in text
        assert "rp-mw-firing-alarm-worker-error-rate" in text
        assert text.index("`alarms`") < text.index("`aws_identity`")  # the failing check comes first
        assert h.fake.calls("usergroups.users.list")
        everything = [json.dumps(v) for m in h.fake.messages(CHANNEL) for v in m.history]
        everything += [r.body.decode() for r in h.fake.requests] + [healthy.text, failing.text]
        assert_nothing_planted(sandbox, *everything)
        assert len(list((tmp_path / "evidence").rglob("manifest.json"))) == 2  # each run left its bundle


def test_a_command_out_of_phase_is_refused_at_the_ack_before_any_manager_is_asked(sandbox, slack_config):
    with served_bot(execute, config=slack_config, fake=sandbox.slack, tokens=Tokens()) as h:
        reply = h.command("/canary", "prod", user=ENGINEER).json()
        assert reply["response_type"] == "ephemeral"
        assert "no PASS preflight for prod in the last 60 min: run /preflight prod first" in reply["text"]
        assert "Nothing was run" in reply["text"]
        assert h.fake.messages() == [], "no approval request, no run message"


def test_pending_evidence_is_attached_later_and_the_same_message_says_so(sandbox, slack_config, tmp_path):
    from commands.outbox import Outbox
    from commands.publish import GitHubPublisher
    from integrations.github import GitHubEvidence
    from integrations.sandbox.env import REPO
    from integrations.sandbox.http import Fault

    def quick_publisher():  # one in-process try, so the follow-up retries do the work
        sink = GitHubEvidence(repo=REPO, token=sandbox.github_token, base_url=sandbox.github.url)
        return GitHubPublisher(sink, Outbox(tmp_path / "outbox"), evidence_dir="evidence", attempts=1, wait_s=0.01)

    sandbox.github.inject("/repos/", Fault("status", 500))  # GitHub is down
    kwargs = {"publisher_factory": quick_publisher, "evidence_retry_delays_s": (0.3, 0.3, 0.3)}
    with served_bot(execute, config=slack_config, fake=sandbox.slack, tokens=Tokens(), bot_kwargs=kwargs) as h:
        h.command("/preflight", f"prod pr={PR_NUMBER}", user=ENGINEER)
        [message] = h.final_messages(1, timeout_s=30)
        assert "evidence pending" in message.all_text()
        assert "PASS preflight prod" in message.all_text()  # the verdict does not wait for GitHub
        sandbox.github.clear_faults()  # GitHub is back
        deadline = time.monotonic() + 10
        while "evidence attached" not in h.fake.messages(CHANNEL)[0].all_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        final = h.fake.messages(CHANNEL)[0]
        assert final.ts == message.ts  # the same message, edited
        assert "evidence attached" in final.all_text()
    stickies = [c for c in sandbox.github.comments(PR_NUMBER) if "cutover:prod:preflight" in c["body"]]
    assert len(stickies) == 1  # edited in place, never duplicated
    assert not list((tmp_path / "outbox").glob("*.json"))  # nothing left pending


def test_slack_and_cli_produce_the_same_report(sandbox, slack_config, config_path, tmp_path):
    from bot.terminal.cli import main

    cli_json = tmp_path / "cli.json"
    argv = ["preflight", "--env", "firing-alarm", "--config", str(config_path), "--evidence-dir", str(tmp_path / "cli")]
    assert main([*argv, "--out-json", str(cli_json)]) == 1
    with served_bot(execute, config=slack_config, fake=sandbox.slack, tokens=Tokens()) as h:
        h.command("/preflight", "firing-alarm", user=ENGINEER)
        h.final_messages(1, timeout_s=30)
    [slack_json] = (tmp_path / "evidence" / "firing-alarm").rglob("report.json")

    def shape(path):
        report = json.loads(path.read_text())
        checks = [(c["name"], c["status"], c["detail"]) for c in report["checks"]]
        return report["command"], report["env"], report["overall_status"], checks

    assert shape(slack_json) == shape(cli_json)
    assert json.loads(slack_json.read_text())["requested_by"] == ENGINEER
