"""Commands typed as pull request comments, on the sandbox's GitHub (PyGithub over HTTP) and Slack: the
workflow's issue_comment steps run as a runner runs them (GITHUB_EVENT_PATH, GITHUB_OUTPUT), or the CLI's
`pr-comment` in-process. Only a member or collaborator with write access whom the map names (mapped to a
runner) gets a run: a reaction at once, the run through the gate, the result in the bot's sticky comment.
Everyone else gets a reply saying who may, and nothing runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.terminal.cli import main
from commands.execute import store_for
from integrations.sandbox.env import ENGINEER, REPO, Sandbox, Scenario
from tests.actions_support import load, run_step, write_map
from tests.slack_support import CHANNEL

ENV = "comments"
PR = 72
BRANCH = "cutover/comments"
MEMBER = "octocat"  # mapped to ENGINEER, a runner through the runners' user group


@pytest.fixture(scope="module")
def env_name(sandbox: Sandbox) -> str:
    if ENV not in sandbox.envs:
        sandbox.add_env(ENV, Scenario())
    if PR not in sandbox.github.pulls:
        sandbox.github.add_pr(PR, BRANCH)
    return ENV


@pytest.fixture
def world(sandbox, env_name, tmp_path):
    path = write_map(sandbox, tmp_path, logins={ENV: {MEMBER: ENGINEER, "reader": "U0READER"}})
    sandbox.github.set_role(MEMBER, "write")
    sandbox.github.set_role("reader", "read")
    sandbox.github.set_role("unlisted", "maintain")
    return {"path": path, "config": load(path), "tmp": tmp_path}


def comment(sandbox: Sandbox, tmp_path: Path, body: str, *, author: str, association: str, action: str = "created"):
    """A comment on the PR and the issue_comment event GitHub would write for it: (comment id, event path)."""
    cid = sandbox.github.add_comment(PR, body, author=author)
    event = {
        "action": action,
        "comment": {**sandbox.github.comment_json(cid), "author_association": association},
        "issue": {"number": PR, "pull_request": {"url": f"{sandbox.github.api}/pulls/{PR}"}},
        "repository": {"full_name": REPO},
    }
    path = tmp_path / f"event-{cid}.json"
    path.write_text(json.dumps(event), encoding="utf-8")
    return cid, path


def replies_after(sandbox: Sandbox, cid: int) -> list[str]:
    """What the bot wrote on the PR after comment `cid`, sticky comments aside."""
    return [
        c["body"]
        for c in sandbox.github.comments(PR)
        if c["id"] > cid and c["author"] == sandbox.github.login and not c["body"].startswith("<!--")
    ]


def reactions(sandbox: Sandbox, cid: int) -> list[str]:
    return [r["content"] for r in sandbox.github.reactions(cid)]


def sticky(sandbox: Sandbox, command: str) -> list[dict]:
    return [c for c in sandbox.github.comments(PR) if c["body"].startswith(f"<!-- cutover:{ENV}:{command}")]


def in_process(world, event: Path, monkeypatch) -> int:
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(event))
    monkeypatch.delenv("GITHUB_OUTPUT", raising=False)
    return main(["pr-comment", "--config", str(world["path"]), "--evidence-dir", str(world["tmp"] / "evidence")])


@pytest.mark.parametrize(
    ("author", "association", "why"),
    [
        ("stranger", "NONE", "not a member or collaborator (none)"),
        ("contributor", "CONTRIBUTOR", "not a member or collaborator (contributor)"),
        ("reader", "COLLABORATOR", "their role is read, not write access"),
        ("unlisted", "MEMBER", f"`envs.{ENV}.github_logins` does not name them"),
    ],
)
def test_a_comment_from_someone_who_may_not_runs_nothing_and_gets_a_reply(
    sandbox, world, tmp_path, monkeypatch, author, association, why
):
    before = len(sticky(sandbox, "preflight"))
    cid, event = comment(sandbox, tmp_path, f"/preflight {ENV}", author=author, association=association)
    assert in_process(world, event, monkeypatch) == 0
    [reply] = replies_after(sandbox, cid)
    assert reply.startswith(f"@{author} nothing ran.") and why in reply
    assert f"Who may: members or collaborators with write access whose login `envs.{ENV}.github_logins`" in reply
    assert f"`{MEMBER}`" in reply  # who may, by name
    assert reactions(sandbox, cid) == []  # no acknowledgement: nothing was accepted
    assert store_for(world["config"]).runs(ENV) == []
    assert len(sticky(sandbox, "preflight")) == before


def test_a_member_with_write_access_gets_a_reaction_a_run_through_the_gate_and_the_sticky_comment(
    sandbox, world, tmp_path
):
    cid, event = comment(sandbox, tmp_path, f"/preflight {ENV}\nplease", author=MEMBER, association="MEMBER")
    output = tmp_path / "github_output"
    output.write_text("", encoding="utf-8")
    env = {"GITHUB_EVENT_PATH": str(event), "GITHUB_OUTPUT": str(output)}

    # the first job: the author checked, the comment acknowledged at once, the run handed to the next job
    accept = run_step("comment-accept", "Check the author, react or answer who may", sandbox=sandbox,
                      config_path=world["path"], extra_env=env)  # fmt: skip
    assert accept.returncode == 0, accept.stderr
    assert output.read_text().splitlines() == ["accepted=true", "command=preflight", f"env={ENV}"]
    assert reactions(sandbox, cid) == ["eyes"]
    assert store_for(world["config"]).runs(ENV) == []  # accepting runs nothing

    # the second job (AWS credentials): checked again, run through the gate, the result on the PR
    sandbox.slack.reset()
    run = run_step("comment-run", "Run the command (checked again through the gate)", sandbox=sandbox,
                   config_path=world["path"], extra_env=env)  # fmt: skip
    assert run.returncode == 0, run.stderr
    [record] = store_for(world["config"]).runs(ENV)
    assert (record.command, record.status, record.surface) == ("preflight", "PASS", "pr-comment")
    assert record.requested_by == f"github:{MEMBER}" and record.pr == PR
    [own] = sticky(sandbox, "preflight")
    assert record.run_id in own["body"] and own["author"] == sandbox.github.login
    assert reactions(sandbox, cid) == ["eyes", "rocket"]
    assert replies_after(sandbox, cid) == []  # the result is the sticky comment, not a reply
    [message] = sandbox.slack.messages(CHANNEL)  # the team sees it in the channel too
    assert f"PASS preflight {ENV}" in message.all_text() and f"<@{ENGINEER}>" in message.all_text()


def test_a_refusal_by_the_gate_is_answered_on_the_pr(sandbox, world, tmp_path, monkeypatch):
    cid, event = comment(sandbox, tmp_path, f"/canary {ENV}", author=MEMBER, association="OWNER")
    assert in_process(world, event, monkeypatch) == 1  # no PASS preflight in this map's store
    [reply] = replies_after(sandbox, cid)
    assert reply.startswith(f"@{MEMBER} nothing ran: no PASS preflight for {ENV}")
    assert reactions(sandbox, cid) == ["eyes", "confused"]
    assert store_for(world["config"]).runs(ENV) == []


@pytest.mark.parametrize(
    ("body", "action"),
    [
        ("LGTM, thanks!", "created"),
        (f"> /preflight {ENV}\nquoting the bot's docs", "created"),
        (f"the bot runs `/preflight {ENV}` for us", "created"),
        (f"/preflight {ENV}", "edited"),  # only new comments run anything
        (f"/deploy {ENV}", "created"),  # not one of the bot's commands
    ],
)
def test_a_comment_that_is_not_a_command_for_the_bot_gets_no_answer(
    sandbox, world, tmp_path, monkeypatch, body, action
):
    cid, event = comment(sandbox, tmp_path, body, author=MEMBER, association="MEMBER", action=action)
    assert in_process(world, event, monkeypatch) == 0
    assert replies_after(sandbox, cid) == [] and reactions(sandbox, cid) == []
    assert store_for(world["config"]).runs(ENV) == []


def test_a_command_written_wrong_is_answered_with_the_usage(sandbox, world, tmp_path, monkeypatch):
    cid, event = comment(sandbox, tmp_path, "/preflight prood pr=3", author=MEMBER, association="MEMBER")
    assert in_process(world, event, monkeypatch) == 0
    [reply] = replies_after(sandbox, cid)
    assert "missing or unknown environment" in reply and "`prood`" in reply and "Usage:" in reply
    assert "the PR is the one commented on" in reply
    assert store_for(world["config"]).runs(ENV) == []


def test_pr_comment_outside_the_workflow_is_a_usage_error(world, monkeypatch, capsys):
    monkeypatch.delenv("GITHUB_EVENT_PATH", raising=False)
    assert main(["pr-comment", "--config", str(world["path"])]) == 2
    assert "GITHUB_EVENT_PATH is not set" in capsys.readouterr().err


def test_the_map_maps_github_logins_to_people_and_refuses_a_typo(tmp_path):
    from commands.config import ConfigError

    example = (Path(__file__).parent.parent / "cutover.example.toml").read_text(encoding="utf-8")
    assert load_config_text(tmp_path, example).envs["prod"].github_logins == {"octocat": "U0ENGINEER1"}
    group = example.replace('{ octocat = "U0ENGINEER1" }', '{ octocat = "S0CUTOVER" }')
    with pytest.raises(ConfigError, match=r"envs\.prod\.github_logins"):
        load_config_text(tmp_path, group)  # a login maps to a person, never a group
    typo = example.replace("github_logins = {", "github_login = {")
    with pytest.raises(ConfigError, match=r"envs\.prod\.github_login: unknown key"):
        load_config_text(tmp_path, typo)


def load_config_text(tmp_path: Path, text: str):
    from commands.config import load_config

    path = tmp_path / "cutover.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)
