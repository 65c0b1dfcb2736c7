"""Richpanel REST API (https://api.richpanel.com/v1, header `x-richpanel-key`).

Reads for the preflight, and the one ticket the canary creates from an internal address.
Richpanel has no public API for automation rules or HTTP targets: those are confirmed by a person.
"""

from __future__ import annotations

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
    ) -> None:
        self.key_source = key_source
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
        """Open a ticket as if `from_email` wrote in (the canary: an internal address only). Returns its id."""
        payload = {
            "ticket": {
                "status": "OPEN",
                "subject": subject,
                "comment": {"sender_type": "customer", "body": body},
                "via": {"channel": "email", "source": {"from": {"address": from_email}}},
            }
        }
        _, data = self._call("POST", "/v1/tickets", "POST /v1/tickets", json=payload)
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

    def _call(self, method: str, path: str, action: str, **kwargs: Any) -> tuple[httpx.Response, dict[str, Any]]:
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
