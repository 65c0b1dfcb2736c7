"""A simulated Richpanel account: users, tickets with their comments, the key check and the rate limit."""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
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

    def reset(self) -> None:
        """Faults, recorded requests, tickets and the rate window back to the start (reuse without a restart)."""
        super().reset()
        with self._state:
            self.rate_limit, self.rate_window_s = self._initial_limits
            self.tickets.clear()
            self._calls.clear()

    # --- helpers for tests and the demo --------------------------------------------------------
    def add_reply(self, ticket_id: str, body: str, *, sender_type: str = "operator", public: bool = True) -> None:
        """What the worker would do: a reply on the ticket (public = sent to the customer)."""
        with self._state:
            self.tickets[ticket_id]["comments"].append(_comment(body, sender_type, public))

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
        return Response(200, {"ticket": ticket})

    def _get_ticket(self, request: Request) -> Response:
        if (denied := self._gate(request)) is not None:
            return denied
        with self._state:
            ticket = self.tickets.get(request.match["id"])
            if ticket is None:
                return Response(404, {"error": "Not Found", "message": "ticket not found"})
            return Response(200, {"ticket": ticket})


def _comment(body: str, sender_type: str, public: bool) -> dict[str, Any]:
    return {"body": body, "sender_type": sender_type, "is_public": public, "created_at": _now()}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
