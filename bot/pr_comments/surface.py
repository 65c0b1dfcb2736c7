"""Commands from pull request comments: `/preflight prod` on the PR runs the same command, through the same
gate, on the `issue_comment` jobs of `.github/workflows/cutover.yml`.

What GitHub wrote (the event at GITHUB_EVENT_PATH) is read here; the comment's body is parsed, never
executed or interpolated anywhere. A comment is for the bot only when its first line is `/<command> ...`;
anything else is ignored without a word. For a command:

1. the author is checked (commands/pr_comment.py): a member or collaborator (the event's
   author_association), with write access (the collaborators API, asked now), named by the env's
   `github_logins` and mapped to one of its runners;
2. allowed: an "eyes" reaction acknowledges the comment at once; the run goes through the gate like any
   other (it reads approval and phase from the store) and its result lands in the bot's sticky comment
   for (env, command); a final reaction says PASS (rocket) or not (confused), and a refusal is answered;
3. not allowed: a reply says who may; nothing runs.

The workflow's map and code come from the default branch (the issue_comment event's ref), never from the
pull request's branch: a PR cannot change who may.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from commands.access import AccessPolicy, LookupFailed
from commands.config import ConfigError, CutoverConfig, Tokens
from commands.pr_comment import CommentError, GitHubAuthorizer, GitHubPerson, parse_comment
from commands.redaction import REDACTOR
from commands.registry import UsageError
from commands.request import RunRequest
from integrations.errors import UpstreamError
from integrations.github import GitHubChatOps

log = logging.getLogger(__name__)

MAX_EVENT_BYTES = 5 * 1024 * 1024
ACK, PASSED, NOT_PASSED = "eyes", "rocket", "confused"


@dataclass(frozen=True)
class CommentEvent:
    """The parts of an `issue_comment` event the bot reads."""

    action: str
    comment_id: int
    body: str
    login: str
    association: str
    author_type: str  # "User", "Bot", ...
    pr: int | None  # None: a comment on an issue, not on a pull request
    repo: str | None

    @property
    def for_us(self) -> bool:
        """A new comment by a person on a pull request (edits, issues and bots are ignored)."""
        return self.action == "created" and self.pr is not None and self.author_type != "Bot"


def read_event(path: str | Path | None) -> CommentEvent:
    """The event GitHub wrote for this job; UsageError when it is missing or not an issue_comment event."""
    if not path:
        raise UsageError("GITHUB_EVENT_PATH is not set: `pr-comment` runs in the issue_comment job of the workflow")
    try:
        raw = Path(path).read_bytes()[: MAX_EVENT_BYTES + 1]
    except OSError as exc:
        raise UsageError(f"cannot read the event file {path}: {exc.strerror}") from None
    if len(raw) > MAX_EVENT_BYTES:
        raise UsageError(f"the event file {path} is larger than {MAX_EVENT_BYTES} bytes")
    try:
        data = json.loads(raw)
    except ValueError:
        raise UsageError(f"the event file {path} is not JSON") from None
    comment, issue = _obj(data, "comment"), _obj(data, "issue")
    user = _obj(comment, "user")
    comment_id, number = comment.get("id"), issue.get("number")
    if not isinstance(comment_id, int) or not isinstance(number, int) or not isinstance(user.get("login"), str):
        raise UsageError(f"the event file {path} is not an issue_comment event (no comment id, issue or author)")
    return CommentEvent(
        action=str(data.get("action") or ""),
        comment_id=comment_id,
        body=str(comment.get("body") or ""),
        login=user["login"],
        association=str(comment.get("author_association") or "NONE"),
        author_type=str(user.get("type") or "User"),
        pr=number if issue.get("pull_request") else None,
        repo=_obj(data, "repository").get("full_name"),
    )


def _obj(data: Any, key: str) -> dict[str, Any]:
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class Admitted:
    request: RunRequest
    person: GitHubPerson


class CommentSurface:
    """One comment, answered on its pull request through `github` (the token's identity)."""

    def __init__(self, config: CutoverConfig, github: GitHubChatOps, event: CommentEvent, members: Any) -> None:
        self.config = config
        self.github = github
        self.event = event
        self.members = members  # user-group id -> members, for the env's runners (LookupFailed: refuse)

    @classmethod
    def build(cls, config: CutoverConfig, tokens: Tokens, event: CommentEvent, members: Any) -> CommentSurface:
        repo = config.github.repository()
        if not tokens.github_token or not repo:
            raise ConfigError("pr-comment needs GITHUB_TOKEN and github.repo (or GITHUB_REPOSITORY)")
        if event.repo and event.repo.lower() != repo.lower():
            raise UsageError(f"the comment is on {event.repo}, but this map is for {repo}")
        return cls(
            config, GitHubChatOps(repo=repo, token=tokens.github_token, base_url=tokens.github_api_url), event, members
        )

    def authorizer(self, person: GitHubPerson) -> GitHubAuthorizer:
        return GitHubAuthorizer(self.config, AccessPolicy(self.config, self.members), person)

    def admit(self) -> Admitted | None:
        """The run the comment asks for, by someone who may; None when it is not for the bot or was refused
        (then the comment was answered). Reacts `eyes` to an admitted comment at once."""
        event = self.event
        if not event.for_us or event.pr is None:
            return None
        try:
            request = parse_comment(event.body, envs=self.config.envs, login=event.login, pr=event.pr)
        except CommentError as exc:
            self.reply(f"@{event.login} that command cannot run as written: {exc}")
            return None
        if request is None:
            return None
        try:
            role = self.github.role(event.login)
        except UpstreamError as exc:
            self.reply(f"@{event.login} your access could not be checked ({exc}); nothing ran. Try again later.")
            return None
        person = GitHubPerson(login=event.login, association=event.association, role=role)
        try:
            decision = self.authorizer(person).may_run(request.requested_by, request.env, request.command)
        except LookupFailed as exc:  # AccessPolicy reports these in its message; this is belt and braces
            self.reply(f"@{event.login} your access could not be checked ({exc}); nothing ran.")
            return None
        if not decision.allowed:
            self.reply(f"@{event.login} nothing ran. {decision.message}")
            return None
        self.react(ACK)
        return Admitted(request, person)

    def conclude(self, *, passed: bool, refused: str | None = None) -> None:
        """The final reaction, and the reason when the gate refused the run (a result is in the sticky comment)."""
        self.react(PASSED if passed else NOT_PASSED)
        if refused:
            self.reply(f"@{self.event.login} nothing ran: {refused}")

    def reply(self, text: str) -> None:
        assert self.event.pr is not None
        body = REDACTOR.redact(text)
        try:
            self.github.reply(self.event.pr, body)
        except UpstreamError as exc:
            log.warning("answering comment %s failed: %s", self.event.comment_id, exc)

    def react(self, content: str) -> None:
        try:
            self.github.react(self.event.comment_id, content)
        except UpstreamError as exc:
            log.warning("reacting to comment %s failed: %s", self.event.comment_id, exc)
