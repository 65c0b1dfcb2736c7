"""A simulated Richpanel account: users, tickets with their comments, the key check and the rate limit.

It also plays the automation rule that sends new tickets to the Order Status worker: Richpanel has no
API for it, so a person flips it in the UI; here a test or the demo does, with `set_rule(enabled=...)`.
While the rule is enabled, every new ticket is handed to the registered listeners (the simulated worker).
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Self

from integrations.sandbox.http import FakeUpstream, Request, Response


class RichpanelFake(FakeUpstream):
    name = "richpanel"

    def start(self) -> Self:  # the base returns FakeUpstream; callers want the subclass
        super().start()
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __init__(self, api_key: str = "rp_sandbox_key", *, rate_limit: int = 50, rate_window_s: float = 30.0) -> None:
        super().__init__()
        self.api_key = api_key
        self._initial_limits = (rate_limit, rate_window_s)
        self.rate_limit = rate_limit
        self.rate_window_s = rate_window_s
        self.users: list[dict[str, Any]] = [
            {"id": "u-1", "name": "Order Status Bot", "email": "bot@example.com", "role": "agent"},
            {"id": "u-2", "name": "Support Lead", "email": "lead@example.com", "role": "admin"},
        ]
        self.tickets: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1001)
        self._state = threading.Lock()
        self._calls: deque[float] = deque()
        self.route("GET", r"/v1/users", self._list_users)
        self.route("POST", r"/v1/tickets", self._create_ticket)
        self.route("GET", r"/v1/tickets/(?P<id>[\w-]+)", self._get_ticket)
        self.route("PUT", r"/v1/tickets/(?P<id>[\w-]+)", self._update_ticket)
        # the automation rule (paused until a person enables it) and who receives the tickets it fires on
        self.rule_enabled = False
        self.rule_changes: list[tuple[bool, str | None, datetime]] = []  # (enabled, by, when)
        self._rule_listeners: list[Callable[[dict[str, Any]], None]] = []

    def reset(self) -> None:
        """Faults, recorded requests, tickets and the rate window back to the start (reuse without a restart)."""
        super().reset()
        with self._state:
            self.rate_limit, self.rate_window_s = self._initial_limits
            self.tickets.clear()
            self._calls.clear()
            self.rule_enabled = False
            self.rule_changes.clear()

    # --- helpers for tests and the demo --------------------------------------------------------
    def add_reply(
        self,
        ticket_id: str,
        body: str,
        *,
        sender_type: str = "operator",
        public: bool = True,
        author_id: str | None = None,
    ) -> None:
        """What the worker would do: a reply on the ticket (public = sent to the customer)."""
        with self._state:
            self.tickets[ticket_id]["comments"].append(_comment(body, sender_type, public, author_id))

    def set_rule(self, *, enabled: bool, by: str | None = None) -> None:
        """A person enables or pauses the automation rule in Richpanel's UI."""
        with self._state:
            self.rule_enabled = enabled
            self.rule_changes.append((enabled, by, datetime.now(UTC)))

    def on_rule_ticket(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Call `listener(ticket)` (a copy) for every ticket created while the rule is enabled."""
        with self._state:
            self._rule_listeners.append(listener)

    # --- handlers --------------------------------------------------------------------------------
    def _gate(self, request: Request) -> Response | None:
        if request.header("x-richpanel-key") != self.api_key:
            return Response(401, {"error": "Unauthorized", "message": "Invalid or missing API key"})
        with self._state:
            now = time.monotonic()
            while self._calls and now - self._calls[0] > self.rate_window_s:
                self._calls.popleft()
            remaining = self.rate_limit - len(self._calls)
            if remaining <= 0:
                retry = self.rate_window_s - (now - self._calls[0])
                headers = {
                    "Retry-After": f"{max(1, round(retry))}",
                    "X-RateLimit-Limit": str(self.rate_limit),
                    "X-RateLimit-Remaining": "0",
                }
                return Response(429, {"error": "Too Many Requests"}, headers)
            self._calls.append(now)
        return None

    def _list_users(self, request: Request) -> Response:
        if (denied := self._gate(request)) is not None:
            return denied
        page = int(request.query.get("page", ["1"])[0])
        per_page = min(100, int(request.query.get("per_page", ["30"])[0]))
        start = (page - 1) * per_page
        return Response(
            200,
            {
                "users": self.users[start : start + per_page],
                "page": page,
                "per_page": per_page,
                "total": len(self.users),
            },
        )

    def _create_ticket(self, request: Request) -> Response:
        if (denied := self._gate(request)) is not None:
            return denied
        payload = request.json()
        ticket_in = payload.get("ticket") if isinstance(payload, dict) else None
        comment = (ticket_in or {}).get("comment") or {}
        if not isinstance(ticket_in, dict) or not comment.get("body"):
            return Response(400, {"error": "Bad Request", "message": "ticket.comment.body is required"})
        with self._state:
            ticket_id = str(next(self._ids))
            ticket = {
                "id": ticket_id,
                "status": ticket_in.get("status", "OPEN"),
                "subject": ticket_in.get("subject", ""),
                "via": ticket_in.get("via", {}),
                "created_at": _now(),
                "tags": list(ticket_in.get("tags", [])),
                "comments": [_comment(comment["body"], comment.get("sender_type", "customer"), True)],
            }
            self.tickets[ticket_id] = ticket
            fire = list(self._rule_listeners) if self.rule_enabled else []
            snapshot = copy.deepcopy(ticket)
        for listener in fire:  # outside the lock: a listener may read the fake
            listener(copy.deepcopy(snapshot))
        return Response(200, {"ticket": snapshot})

    def _update_ticket(self, request: Request) -> Response:
        """Update a conversation: add a comment (what a worker's reply does)."""
        if (denied := self._gate(request)) is not None:
            return denied
        payload = request.json()
        comment = ((payload or {}).get("ticket") or {}).get("comment") if isinstance(payload, dict) else None
        if not isinstance(comment, dict) or not comment.get("body"):
            return Response(400, {"error": "Bad Request", "message": "ticket.comment.body is required"})
        with self._state:
            ticket = self.tickets.get(request.match["id"])
            if ticket is None:
                return Response(404, {"error": "Not Found", "message": "ticket not found"})
            ticket["comments"].append(
                _comment(
                    comment["body"],
                    comment.get("sender_type", "operator"),
                    comment.get("is_public", True) is not False,
                    comment.get("author_id"),
                )
            )
            return Response(200, {"ticket": copy.deepcopy(ticket)})

    def _get_ticket(self, request: Request) -> Response:
        if (denied := self._gate(request)) is not None:
            return denied
        with self._state:
            ticket = self.tickets.get(request.match["id"])
            if ticket is None:
                return Response(404, {"error": "Not Found", "message": "ticket not found"})
            return Response(200, {"ticket": copy.deepcopy(ticket)})  # the worker may reply while we answer


def _comment(body: str, sender_type: str, public: bool, author_id: str | None = None) -> dict[str, Any]:
    comment: dict[str, Any] = {"body": body, "sender_type": sender_type, "is_public": public, "created_at": _now()}
    if author_id is not None:
        comment["author_id"] = author_id
    return comment


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
