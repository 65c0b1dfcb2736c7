"""Who may do what: per environment, `runners` may run commands and `approvers` may approve.

Both lists hold Slack user ids (U.../W...) and user-group ids (S...). Group membership comes from
usergroups.users.list and is cached for a while (a TTL): a command is acked in milliseconds, so the
lookup must not happen on every request, and a person removed from a group loses access within the TTL.
Any doubt (lookup failed, nobody configured) refuses: fail closed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from commands.config import CutoverConfig

log = logging.getLogger(__name__)

GroupLookup = Callable[[str], Iterable[str]]  # user-group id -> member user ids; raises when it cannot tell
DEFAULT_TTL_S = 300.0


class LookupFailed(Exception):
    """Group membership could not be read; the caller refuses rather than guesses."""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    message: str = ""  # for a refusal: what was refused and who may (mrkdwn)


def mention(slack_id: str) -> str:
    """`<@U..>` for a person, `<!subteam^S..>` for a user group: Slack renders both as names."""
    return f"<!subteam^{slack_id}>" if slack_id.startswith("S") else f"<@{slack_id}>"


def slack_group_lookup(client: WebClient) -> GroupLookup:
    def lookup(group_id: str) -> list[str]:
        try:
            response = client.usergroups_users_list(usergroup=group_id)
        except (SlackApiError, SlackClientError, OSError) as exc:
            raise LookupFailed(f"usergroups.users.list failed for {group_id}: {_reason(exc)}") from None
        return list(response.get("users") or [])

    return lookup


class GroupCache:
    """Thread-safe TTL cache of group members. One lookup per group at a time (a burst of commands
    from the same group makes one API call); failures are not cached, so the next request retries."""

    def __init__(
        self, lookup: GroupLookup, *, ttl_s: float = DEFAULT_TTL_S, clock: Callable[[], float] = time.monotonic
    ):
        self._lookup = lookup
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, frozenset[str]]] = {}
        self._group_locks: dict[str, threading.Lock] = {}

    def members(self, group_id: str) -> frozenset[str]:
        cached = self._fresh(group_id)
        if cached is not None:
            return cached
        with self._lock:
            group_lock = self._group_locks.setdefault(group_id, threading.Lock())
        with group_lock:
            cached = self._fresh(group_id)  # another thread may have fetched it while we waited
            if cached is not None:
                return cached
            users = frozenset(self._lookup(group_id))
            with self._lock:
                self._entries[group_id] = (self._clock() + self._ttl_s, users)
            return users

    def invalidate(self, group_id: str | None = None) -> None:
        with self._lock:
            if group_id is None:
                self._entries.clear()
            else:
                self._entries.pop(group_id, None)

    def _fresh(self, group_id: str) -> frozenset[str] | None:
        with self._lock:
            entry = self._entries.get(group_id)
        if entry is not None and entry[0] > self._clock():
            return entry[1]
        return None


class Access:
    def __init__(self, config: CutoverConfig, groups: GroupCache):
        self._config = config
        self._groups = groups

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
                if user_id in self._groups.members(group):
                    return Decision(True)
            except LookupFailed as exc:
                log.warning("%s", exc)
                failures.append(group)
        who = ", ".join(mention(x) for x in allowed)
        message = f"<@{user_id}> may not {what}. Who may: {who}."
        if failures:
            groups = ", ".join(mention(g) for g in failures)
            message += f" (Membership of {groups} could not be checked just now; try again in a minute.)"
        return Decision(False, message)


def _reason(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error") or exc.response.status_code)
    return exc.__class__.__name__
