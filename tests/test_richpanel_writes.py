"""The Richpanel client's one write (the canary's ticket, from the internal address only) and the outbound check.

Real httpx against the loopback Richpanel fake: a refused call must leave no request in the fake's record.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from integrations.errors import UpstreamError
from integrations.richpanel import RichpanelClient, WriteRefused
from integrations.sandbox.richpanel import RichpanelFake

KEY = "rp_writes_test_key"
INTERNAL = "cutover-canary@example.com"
BOT = "agent-bot-7f3a"
CUSTOMER = "jane.customer@example.org"


@pytest.fixture
def fake() -> Iterator[RichpanelFake]:
    with RichpanelFake(KEY) as rp:
        yield rp


def client(fake: RichpanelFake, internal: str | None = INTERNAL) -> RichpanelClient:
    return RichpanelClient(base_url=fake.url, api_key=KEY, timeout_s=2.0, internal_test_address=internal)


# --- create_ticket: the only write, from the internal address only ------------------------------


def test_create_ticket_from_the_internal_address_is_sent(fake: RichpanelFake) -> None:
    with client(fake) as rp:
        ticket_id = rp.create_ticket(from_email=INTERNAL, subject="canary", body="Where is order #1001?")
    assert ticket_id in fake.tickets
    sent = fake.received("POST", "/v1/tickets")
    assert len(sent) == 1
    assert sent[0].json()["ticket"]["via"]["source"]["from"]["address"] == INTERNAL


def test_create_ticket_address_compare_ignores_case_and_spaces(fake: RichpanelFake) -> None:
    with client(fake, internal=" Cutover-Canary@Example.com ") as rp:
        rp.create_ticket(from_email=INTERNAL, subject="canary", body="hi")
    assert len(fake.received("POST")) == 1


def test_create_ticket_from_a_customer_address_is_refused_before_sending(fake: RichpanelFake) -> None:
    with client(fake) as rp, pytest.raises(WriteRefused) as info:
        rp.create_ticket(from_email=CUSTOMER, subject="canary", body="hi")
    assert fake.requests == []
    assert fake.tickets == {}
    err = info.value
    assert isinstance(err, UpstreamError)  # callers that turn any upstream failure into FAIL still do
    assert "internal test address" in str(err)
    assert CUSTOMER not in str(err)  # the refused address could be a customer's: never echoed


@pytest.mark.parametrize("internal", [None, ""])
def test_create_ticket_without_a_configured_internal_address_is_refused(fake: RichpanelFake, internal) -> None:
    with client(fake, internal=internal) as rp, pytest.raises(WriteRefused, match="no internal test address"):
        rp.create_ticket(from_email=INTERNAL, subject="canary", body="hi")
    assert fake.requests == []


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_any_other_write_is_refused_before_sending(fake: RichpanelFake, method: str) -> None:
    with client(fake) as rp:
        ticket_id = rp.create_ticket(from_email=INTERNAL, subject="canary", body="hi")
        fake.reset()
        fake.tickets[ticket_id] = {"id": ticket_id, "comments": []}
        for path in ("/v1/tickets", f"/v1/tickets/{ticket_id}", "/v1/tags"):
            with pytest.raises(WriteRefused, match="create_ticket is the only write"):
                rp.request(method, path, json={"ticket": {"comment": {"body": "hello customer"}}})
    assert fake.requests == []
    assert fake.tickets[ticket_id]["comments"] == []


def test_a_get_with_a_body_and_odd_paths_are_refused(fake: RichpanelFake) -> None:
    with client(fake) as rp:
        with pytest.raises(WriteRefused):
            rp.request("GET", "/v1/tickets", json={"ticket": {}})
        for path in ("/v1/../admin", "/v1/tickets?delete=1", "https://evil.example/v1/users", "/v2/users"):
            with pytest.raises(WriteRefused, match="plain /v1/ paths"):
                rp.request("GET", path)
    assert fake.requests == []


def test_reads_still_work(fake: RichpanelFake) -> None:
    with client(fake) as rp:
        assert rp.request("GET", "/v1/users", params={"per_page": 1}).data["users"]
        assert rp.health().status_code == 200
    assert [r.method for r in fake.requests] == ["GET", "GET"]


def test_the_fake_would_have_accepted_the_refused_write() -> None:
    """Control: the refusals above are the client's, not the fake's (a raw PUT lands)."""
    with RichpanelFake(KEY) as fake:
        with client(fake) as rp:
            ticket_id = rp.create_ticket(from_email=INTERNAL, subject="canary", body="hi")
        answer = httpx.put(
            f"{fake.url}/v1/tickets/{ticket_id}",
            headers={"x-richpanel-key": KEY},
            json={"ticket": {"comment": {"body": "reply", "sender_type": "operator", "author_id": BOT}}},
            timeout=2.0,
        )
        assert answer.status_code == 200
        assert fake.received("PUT")
        assert fake.tickets[ticket_id]["comments"][-1]["author_id"] == BOT


# --- the outbound check: did the bot agent reply publicly? ---------------------------------------


def test_outbound_replies_counts_the_bot_agents_public_replies(fake: RichpanelFake) -> None:
    with client(fake) as rp:
        ticket_id = rp.create_ticket(from_email=INTERNAL, subject="canary", body="Where is my order?")
        quiet = rp.outbound_replies(ticket_id, BOT)
        assert (quiet.messages, quiet.customer_messages, quiet.bot_public_replies) == (1, 1, 0)
        assert quiet.contacted_customer is False

        fake.add_reply(ticket_id, "internal note", author_id=BOT, public=False)
        fake.add_reply(ticket_id, "a person answered", author_id="agent-human-1")
        fake.add_reply(ticket_id, "who wrote this?")
        noted = rp.outbound_replies(ticket_id, BOT)
        assert noted.bot_public_replies == 0
        assert noted.bot_private_notes == 1
        assert noted.other_public_replies == 1
        assert noted.unknown_author_public_replies == 1
        assert noted.contacted_customer is False

        fake.add_reply(ticket_id, "Your order shipped", author_id=BOT, public=True)
        sent = rp.outbound_replies(ticket_id, BOT)
        assert sent.bot_public_replies == 1
        assert sent.contacted_customer is True
        assert sent.messages == 5
    assert {r.method for r in fake.requests} <= {"GET", "POST"}
    assert len(fake.received("POST")) == 1


def test_outbound_replies_needs_the_bot_agent_id(fake: RichpanelFake) -> None:
    with client(fake) as rp, pytest.raises(ValueError, match="bot_agent_id"):
        rp.outbound_replies("1001", "")


def test_outbound_replies_on_a_missing_ticket_is_an_error(fake: RichpanelFake) -> None:
    with client(fake) as rp, pytest.raises(UpstreamError) as info:
        rp.outbound_replies("999999", BOT)
    assert info.value.status_code == 404


# --- the fake's automation rule -------------------------------------------------------------------


def test_rule_hands_new_tickets_to_listeners_only_while_enabled(fake: RichpanelFake) -> None:
    seen: list[str] = []
    fake.on_rule_ticket(lambda ticket: seen.append(ticket["id"]))
    with client(fake) as rp:
        paused = rp.create_ticket(from_email=INTERNAL, subject="a", body="a")
        fake.set_rule(enabled=True, by="U0ENGINEER")
        enabled = rp.create_ticket(from_email=INTERNAL, subject="b", body="b")
        fake.set_rule(enabled=False, by="U0ENGINEER")
        rp.create_ticket(from_email=INTERNAL, subject="c", body="c")
    assert seen == [enabled]
    assert paused not in seen
    assert [(on, by) for on, by, _ in fake.rule_changes] == [(True, "U0ENGINEER"), (False, "U0ENGINEER")]
