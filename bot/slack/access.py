"""Group membership from Slack for the access policy (commands/access.py): usergroups.users.list
behind a TTL cache. A command is acked in milliseconds, so the lookup must not happen on every
request, and a person removed from a group loses access within the TTL. A failed lookup raises
LookupFailed, and the policy refuses rather than guesses.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from commands.access import LookupFailed

log = logging.getLogger(__name__)

GroupLookup = Callable[[str], Iterable[str]]  # user-group id -> member user ids; raises when it cannot tell
DEFAULT_TTL_S = 300.0


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


def _reason(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error") or exc.response.status_code)
    return exc.__class__.__name__
