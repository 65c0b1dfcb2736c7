"""Commands typed on GitHub: a pull request comment `/preflight prod`, or a manual dispatch of the workflow.

A comment is parsed into the same `RunRequest` as a slash command (surface "pr-comment", the PR it
was written on, requested by `github:<login>`) and runs through the same gate. Who may is decided here
(`GitHubAuthorizer`, the gate's Authorizer for GitHub people), fail closed, from three facts:

1. GitHub's `author_association` of the comment is OWNER, MEMBER or COLLABORATOR;
2. the person's role on the repository, read from GitHub's API (never from the comment), may push:
   admin, maintain or write;
3. the env's map names the login (`github_logins = { login = "U..." }`) and the Slack person it maps to
   passes the env's `runners` (ids or user groups): the same list Slack uses.

Nothing here calls GitHub: the surface (bot/pr_comments/) reads the facts and hands them in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from commands.access import Decision
from commands.config import CutoverConfig, EnvConfig
from commands.gate import Authorizer
from commands.redaction import redact_and_clip
from commands.registry import COMMANDS
from commands.request import RunRequest

SURFACE = "pr-comment"
MEMBER_ASSOCIATIONS = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})
WRITE_ROLES = frozenset({"admin", "maintain", "write"})
_DRY_RUN = frozenset({"dry-run", "--dry-run", "dry_run", "dryrun"})
_COMMAND = re.compile(r"^/(?P<name>[a-z][a-z-]*)(?:\s+(?P<rest>.*))?$")
_ECHO_MAX = 40


class CommentError(ValueError):
    """A command for the bot that cannot run as written; the message says what was wrong and how to write it."""


@dataclass(frozen=True)
class GitHubPerson:
    """What GitHub says about the author of a comment (read from the event and the API, never from its body)."""

    login: str
    association: str  # the comment's author_association: OWNER, MEMBER, COLLABORATOR, CONTRIBUTOR, NONE, ...
    role: str  # the role on the repository from the collaborators API: admin, maintain, write, triage, read, none


def requester(login: str) -> str:
    return f"github:{login}"


def login_of(requested_by: str) -> str | None:
    return requested_by.removeprefix("github:") if requested_by.startswith("github:") else None


def usage(envs: Iterable[str]) -> str:
    commands = "|".join(COMMANDS)
    return (
        f"Usage: a comment whose first line is `/{{{commands}}} ENV [dry-run]`, ENV one of: {', '.join(sorted(envs))}"
    )


def parse_comment(body: str | None, *, envs: Iterable[str], login: str, pr: int) -> RunRequest | None:
    """The run a comment asks for; None when the comment is not a command for the bot (ignored, no reply).

    Only the first non-empty line counts, and it must start with `/<command>`: a quote (`> /preflight`),
    a code block or a mention in prose never runs anything. The PR is the one commented on.
    """
    known = sorted(envs)
    first = next((line.strip() for line in (body or "").splitlines() if line.strip()), "")
    m = _COMMAND.match(first)
    if m is None or m.group("name") not in COMMANDS:
        return None
    command = m.group("name")
    problems: list[str] = []
    env: str | None = None
    dry_run = False
    unknown: list[str] = []
    for word in (m.group("rest") or "").split():
        lowered = word.lower()
        if lowered in _DRY_RUN:
            dry_run = True
        elif lowered in known:
            if env is not None and env != lowered:
                problems.append(f"more than one environment (`{env}` and `{lowered}`)")
            env = env or lowered
        else:
            unknown.append(word)
    if env is None:
        problems.insert(0, f"missing or unknown environment (one of: {', '.join(known)})")
    if unknown:
        named = ", ".join(f"`{_echo(w)}`" for w in unknown[:5])
        problems.append(f"unknown {'words' if len(unknown) > 1 else 'word'}: {named} (the PR is the one commented on)")
    if problems:
        raise CommentError("; ".join(problems) + ". " + usage(known))
    assert env is not None
    return RunRequest(command=command, env=env, requested_by=requester(login), pr=pr, dry_run=dry_run, surface=SURFACE)


def slack_id_for(env: EnvConfig, login: str) -> str | None:
    """The Slack person the map names for a GitHub login (logins compare case-insensitively, as on GitHub)."""
    wanted = login.lower()
    return next((slack for name, slack in env.github_logins.items() if name.lower() == wanted), None)


def who_may(env_name: str, env: EnvConfig) -> str:
    """Who may run a command in `env_name` from GitHub, for a refusal."""
    logins = ", ".join(f"`{login}`" for login in sorted(env.github_logins, key=str.lower))
    listed = logins or f"nobody yet (`envs.{env_name}.github_logins` is empty)"
    return (
        f"members or collaborators with write access whose login `envs.{env_name}.github_logins` maps to a "
        f"runner of {env_name}: {listed}"
    )


class GitHubAuthorizer:
    """The gate's Authorizer for GitHub people (`github:<login>`): the facts GitHub gave about the person
    (association and role, when the request came from a comment), then the map's login -> Slack id, then
    the env's runners through `slack_policy` (commands/access.py's AccessPolicy). Slack ids pass straight
    to `slack_policy`: a dispatch from the Slack app names the Slack requester."""

    def __init__(self, config: CutoverConfig, slack_policy: Authorizer, person: GitHubPerson | None = None) -> None:
        self.config = config
        self.slack_policy = slack_policy
        self.person = person

    def may_run(self, user_id: str, env: str, command: str) -> Decision:
        login = login_of(user_id)
        if login is None:
            return self.slack_policy.may_run(user_id, env, command)
        env_config = self.config.env(env)
        refused = f"`{login}` may not run `/{command} {env}` from GitHub"
        who = who_may(env, env_config)
        if self.person is not None:
            if self.person.login.lower() != login.lower():
                return Decision(False, f"{refused}: the request is not the comment author's. Who may: {who}.")
            if self.person.association.upper() not in MEMBER_ASSOCIATIONS:
                association = self.person.association.lower() or "unknown"
                return Decision(False, f"{refused}: not a member or collaborator ({association}). Who may: {who}.")
            if self.person.role.lower() not in WRITE_ROLES:
                role = self.person.role.lower() or "none"
                return Decision(False, f"{refused}: their role is {role}, not write access. Who may: {who}.")
        slack = slack_id_for(env_config, login)
        if slack is None:
            return Decision(False, f"{refused}: `envs.{env}.github_logins` does not name them. Who may: {who}.")
        decision = self.slack_policy.may_run(slack, env, command)
        if decision.allowed:
            return decision
        return Decision(False, f"{refused}: they map to <@{slack}>, who is not a runner of {env}. Who may: {who}.")


def _echo(word: str) -> str:
    """A person's word, safe to quote in Markdown: short, redacted, no backticks."""
    return redact_and_clip(word, _ECHO_MAX).replace("`", "'")
