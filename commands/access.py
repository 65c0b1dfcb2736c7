"""Who may do what: per environment, `runners` may run commands and `approvers` may approve.

Both lists hold Slack user ids (U.../W...) and user-group ids (S...). Group membership is asked of
the surface (`Members`: Slack's usergroups.users.list behind a cache in bot/slack/access.py).
Any doubt (lookup failed, nobody configured) refuses: fail closed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from commands.config import CutoverConfig

log = logging.getLogger(__name__)

Members = Callable[[str], frozenset[str]]  # user-group id -> member ids; raises LookupFailed when it cannot tell


class LookupFailed(Exception):
    """Group membership could not be read; the caller refuses rather than guesses."""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    message: str = ""  # for a refusal: what was refused and who may (mrkdwn)


def mention(slack_id: str) -> str:
    """`<@U..>` for a person, `<!subteam^S..>` for a user group: Slack renders both as names."""
    return f"<!subteam^{slack_id}>" if slack_id.startswith("S") else f"<@{slack_id}>"


def who(ids: list[str]) -> str:
    return ", ".join(mention(x) for x in ids) or "nobody"


class AccessPolicy:
    """The map's `runners` and `approvers`, with group membership from the surface."""

    def __init__(self, config: CutoverConfig, members: Members):
        self._config = config
        self._members = members

    def may_run(self, user_id: str, env: str, command: str) -> Decision:
        allowed = self._config.env(env).runners
        return self._check(user_id, allowed, what=f"run `/{command}` in {env}", key=f"envs.{env}.runners")

    def may_approve(self, user_id: str, env: str, command: str, *, requester: str) -> Decision:
        if user_id == requester:
            return Decision(False, f"<@{user_id}> requested this `/{command}` in {env}: someone else must approve it.")
        allowed = self._config.env(env).approvers
        return self._check(user_id, allowed, what=f"approve `/{command}` in {env}", key=f"envs.{env}.approvers")

    def _check(self, user_id: str, allowed: list[str], *, what: str, key: str) -> Decision:
        if not allowed:
            return Decision(False, f"Nobody may {what}: `{key}` is empty in the cutover map.")
        if user_id in allowed:
            return Decision(True)
        failures: list[str] = []
        for group in (g for g in allowed if g.startswith("S")):
            try:
                if user_id in self._members(group):
                    return Decision(True)
            except LookupFailed as exc:
                log.warning("%s", exc)
                failures.append(group)
        message = f"<@{user_id}> may not {what}. Who may: {who(allowed)}."
        if failures:
            groups = ", ".join(mention(g) for g in failures)
            message += f" (Membership of {groups} could not be checked just now; try again in a minute.)"
        return Decision(False, message)
