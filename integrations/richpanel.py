"""Richpanel REST API (https://api.richpanel.com/v1, header `x-richpanel-key`).

Reads for the preflight, and the one ticket the canary creates from an internal address.
Richpanel has no public API for automation rules or HTTP targets: those are confirmed by a person.

`create_ticket` is the only write this client ever makes, and only from the configured internal test
address: any other non-GET request, and a ticket from any other address, raise `WriteRefused` before a
byte is sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx

from integrations.errors import DEFAULT_CONNECT_TIMEOUT_S, UpstreamError
from integrations.http import PooledClient, json_body, new_client, send

SYSTEM = "richpanel"
DEFAULT_BASE_URL = "https://api.richpanel.com"


@dataclass(frozen=True)
class RichpanelResult:
    status_code: int
    data: dict[str, Any]


class WriteRefused(UpstreamError):
    """The client refused a call that could write to Richpanel or reach a customer; nothing was sent."""


@dataclass(frozen=True)
class OutboundCheck:
    """Who said what on a ticket, without the words: did the bot agent reply to the customer?"""

    ticket_id: str
    messages: int  # messages read: the ticket's own first message is the positive control (>= 1)
    customer_messages: int
    bot_public_replies: int  # public messages authored by the bot agent: an outbound customer contact
    bot_private_notes: int
    other_public_replies: int  # public non-customer messages by anyone else (a person, another automation)
    unknown_author_public_replies: int  # public non-customer messages with no author id: cannot be ruled out

    @property
    def contacted_customer(self) -> bool:
        return self.bot_public_replies > 0


_PLAIN_PATH = re.compile(r"/v1/[A-Za-z0-9_\-/]+")
_AUTHOR_FIELDS = ("author_id", "agent_id", "sender_id", "user_id")


class RichpanelClient(PooledClient):
    def __init__(
        self,
        *,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str,
        key_source: str = "the Richpanel API key",
        timeout_s: float = 10.0,
        max_retry_after_s: float = 5.0,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        internal_test_address: str | None = None,
    ) -> None:
        self.key_source = key_source
        # the only sender create_ticket accepts; None refuses every ticket (fail closed)
        self.internal_test_address = internal_test_address
        self.max_retry_after_s = max_retry_after_s
        self._http = new_client(
            base_url,
            headers={"x-richpanel-key": api_key, "Accept": "application/json", "User-Agent": "cutover-bot"},
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
        )

    def health(self) -> RichpanelResult:
        """A cheap authenticated read: one user."""
        response, body = self._call("GET", "/v1/users", "GET /v1/users", params={"per_page": 1})
        return RichpanelResult(response.status_code, body)

    def create_ticket(self, *, from_email: str, subject: str, body: str) -> str:
        """Open a ticket as if `from_email` wrote in (the canary: an internal address only). Returns its id.

        Refused (WriteRefused, nothing sent) unless `from_email` is the configured internal test address.
        """
        self._refuse_foreign_sender(from_email)
        payload = {
            "ticket": {
                "status": "OPEN",
                "subject": subject,
                "comment": {"sender_type": "customer", "body": body},
                "via": {"channel": "email", "source": {"from": {"address": from_email}}},
            }
        }
        _, data = self._call("POST", "/v1/tickets", "POST /v1/tickets", json=payload, _create_ticket=True)
        ticket = data.get("ticket", data)
        ticket_id = ticket.get("id") if isinstance(ticket, dict) else None
        if not ticket_id:
            raise UpstreamError(SYSTEM, "POST /v1/tickets", "ticket created but the response has no id")
        return str(ticket_id)

    def ticket(self, ticket_id: str) -> dict[str, Any]:
        _, data = self._call("GET", f"/v1/tickets/{ticket_id}", f"GET /v1/tickets/{ticket_id}")
        ticket = data.get("ticket", data)
        if not isinstance(ticket, dict):
            raise UpstreamError(SYSTEM, f"GET /v1/tickets/{ticket_id}", "unexpected ticket shape in the response")
        return ticket

    def ticket_messages(self, ticket_id: str) -> list[dict[str, Any]]:
        """The conversation's messages (the ticket's `comments`), oldest first as Richpanel returns them."""
        comments = self.ticket(ticket_id).get("comments")
        if comments is None:
            return []
        if not isinstance(comments, list):
            raise UpstreamError(SYSTEM, f"GET /v1/tickets/{ticket_id}", "ticket comments are not a list")
        return [c for c in comments if isinstance(c, dict)]

    def http_target(self) -> None:
        """Richpanel has no public API to read HTTP targets: a person must confirm the URL and auth header."""
        return None

    def request(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None
    ) -> RichpanelResult:
        """A read of any plain /v1/ path. Anything that could write is refused before it is sent."""
        response, body = self._call(method.upper(), path, f"{method.upper()} {path}", params=params, json=json)
        return RichpanelResult(response.status_code, body)

    def outbound_replies(self, ticket_id: str, bot_agent_id: str) -> OutboundCheck:
        """Read the ticket and count public replies by the bot agent (`richpanel_bot_agent_id`).

        A public non-customer message without any author id counts as `unknown_author_public_replies`:
        the caller cannot rule it out. Visibility missing counts as public (fail closed).
        """
        if not bot_agent_id:
            raise ValueError("bot_agent_id is required to tell the bot's replies from others")
        messages = self.ticket_messages(ticket_id)
        counts = {"customer": 0, "bot_public": 0, "bot_private": 0, "other_public": 0, "unknown_public": 0}
        for message in messages:
            sender_type = str(message.get("sender_type") or "").lower()
            public = message.get("is_public", message.get("public", True)) is not False
            authors = {str(message[f]) for f in _AUTHOR_FIELDS if message.get(f) not in (None, "")}
            if bot_agent_id in authors:
                counts["bot_public" if public else "bot_private"] += 1
            elif sender_type == "customer":
                counts["customer"] += 1
            elif public:
                counts["other_public" if authors else "unknown_public"] += 1
        return OutboundCheck(
            ticket_id=ticket_id,
            messages=len(messages),
            customer_messages=counts["customer"],
            bot_public_replies=counts["bot_public"],
            bot_private_notes=counts["bot_private"],
            other_public_replies=counts["other_public"],
            unknown_author_public_replies=counts["unknown_public"],
        )

    def _refuse_foreign_sender(self, from_email: str) -> None:
        action = "POST /v1/tickets"
        if not self.internal_test_address:
            raise WriteRefused(
                SYSTEM, action, "refused: no internal test address is configured; set internal_test_address"
            )
        if from_email.strip().lower() != self.internal_test_address.strip().lower():
            # the address is not echoed: it could be a customer's
            raise WriteRefused(
                SYSTEM,
                action,
                "refused: a test ticket may only come from the configured internal test address, never a customer",
            )

    def _refuse_writes(self, method: str, path: str, action: str, *, create_ticket: bool, json: Any) -> None:
        if not _PLAIN_PATH.fullmatch(path) or ".." in path:
            raise WriteRefused(SYSTEM, action, "refused: only plain /v1/ paths are allowed")
        if create_ticket and method == "POST" and path == "/v1/tickets":
            return
        if method != "GET" or json is not None:
            raise WriteRefused(
                SYSTEM, action, f"refused: {method} could write to Richpanel; create_ticket is the only write"
            )

    def _call(
        self, method: str, path: str, action: str, *, _create_ticket: bool = False, **kwargs: Any
    ) -> tuple[httpx.Response, dict[str, Any]]:
        self._refuse_writes(method, path, action, create_ticket=_create_ticket, json=kwargs.get("json"))
        response = send(
            self._http, method, path, system=SYSTEM, action=action, max_retry_after_s=self.max_retry_after_s, **kwargs
        )
        status = response.status_code
        if 200 <= status < 300:
            body = json_body(response, system=SYSTEM, action=action)
            if not isinstance(body, dict):
                raise UpstreamError(SYSTEM, action, "unexpected JSON (not an object) in the response", status)
            return response, body
        if status == 401:
            reason = (
                f"Richpanel rejected {self.key_source} (401): missing, invalid or expired key; "
                f"update {self.key_source} with a valid key from Richpanel Settings > API"
            )
        elif status == 403:
            reason = f"Richpanel refused this call with {self.key_source} (403): the key's account may not do this"
        elif status == 404:
            reason = "not found: check the Richpanel endpoint URL and the id"
        elif status >= 500:
            reason = "Richpanel server error; try again later"
        else:
            reason = "unexpected answer"
        raise UpstreamError(SYSTEM, action, reason, status_code=status)
