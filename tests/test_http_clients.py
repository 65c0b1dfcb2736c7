"""The HTTP clients against their sandboxes over real loopback HTTP: every fault kind for every client.

Given an upstream answer (or silence), the client returns a result or raises an UpstreamError whose
one-line reason says what happened and what to do, and never carries a secret value.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from commands.preflight import SHOP_QUERY
from integrations.errors import UpstreamError
from integrations.http import json_body, new_client, retry_after_seconds, send
from integrations.openai import OpenAIClient
from integrations.richpanel import RichpanelClient
from integrations.sandbox.http import FakeUpstream, Fault
from integrations.sandbox.openai import MODELS, OpenAIFake
from integrations.sandbox.richpanel import RichpanelFake
from integrations.sandbox.shopify import ShopifyFake
from integrations.shopify import (
    ShopifyClient,
    StaticCredential,
    TokenGrant,
    WriteRefused,
    exchange_token,
    graphql_write_reason,
)

TIMEOUT_S = 1.5
SHOP = "cutover-test.myshopify.com"
SHOP_TOKEN = "shpat_good_0123456789abcdef"
STALE_TOKEN = "shpat_stale_0123456789abcdef"
SOURCE = "secret rp-mw/test/shopify/admin_api_token"
RP_KEY = "rp_key_0123456789abcdef"
RP_SOURCE = "secret rp-mw/test/richpanel/api_key"
OPENAI_KEY = "sk-test-0123456789abcdef"
SECRETS = (SHOP_TOKEN, STALE_TOKEN, RP_KEY, OPENAI_KEY, "sandbox-client-secret")


def assert_no_secret(err: BaseException) -> None:
    text = f"{err} {err!r}"
    for value in SECRETS:
        assert value not in text, f"secret value leaked into the error: {text}"


# --- one table row per client call ------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    sandbox: str  # which shared fake answers
    call: Callable[[FakeUpstream, dict[str, Any]], Any]  # (fake, client options) -> result
    path: str  # where faults are injected
    auth_attempts: int  # requests a persistent 401/403 costs (Shopify refreshes once)
    says_401: str
    says_403: str


def _shopify_client(fake: FakeUpstream, **opts: Any) -> ShopifyClient:
    credential = opts.pop("credential", None) or StaticCredential(SOURCE, SHOP_TOKEN)
    return ShopifyClient(base_url=fake.url, shop_domain=SHOP, credential=credential, timeout_s=TIMEOUT_S, **opts)


def _shopify_rest(fake: FakeUpstream, opts: dict[str, Any]) -> Any:
    with _shopify_client(fake, **opts) as client:
        result = client.shop()
    assert result.data["shop"]["myshopify_domain"] == SHOP
    assert result.call_limit is not None
    assert result.call_limit.endswith("/40")
    return result


def _shopify_graphql(fake: FakeUpstream, opts: dict[str, Any]) -> Any:
    with _shopify_client(fake, **opts) as client:
        result = client.graphql("{ shop { name } }")
    assert result.data["shop"]["name"] == "Cutover Test"
    assert result.throttle is not None
    assert "currentlyAvailable" in result.throttle
    return result


def _richpanel(fake: FakeUpstream, opts: dict[str, Any]) -> Any:
    with RichpanelClient(
        base_url=fake.url, api_key=RP_KEY, key_source=RP_SOURCE, timeout_s=TIMEOUT_S, **opts
    ) as client:
        result = client.health()
    assert result.status_code == 200
    assert len(result.data["users"]) == 1
    return result


def _openai(fake: FakeUpstream, opts: dict[str, Any]) -> Any:
    with OpenAIClient(base_url=fake.url + "/v1", api_key=OPENAI_KEY, timeout_s=TIMEOUT_S, **opts) as client:
        result = client.list_models()
    assert result.model_count == len(MODELS)
    return result


TARGETS = [
    Target("shopify_rest", "shopify", _shopify_rest, r"/shop\.json", 2, "token rejected", "lacks a scope"),
    Target("shopify_graphql", "shopify", _shopify_graphql, r"/graphql\.json", 2, "token rejected", "lacks a scope"),
    Target("richpanel", "richpanel", _richpanel, r"/v1/users", 1, "Richpanel rejected", "403"),
    Target("openai", "openai", _openai, r"/v1/models", 1, "key rejected", "unsupported region"),
]


@pytest.fixture(scope="module")
def sandboxes() -> Iterator[dict[str, FakeUpstream]]:
    """One running fake per system for the module; each test resets it (a restart costs 0.5 s)."""
    fakes: dict[str, FakeUpstream] = {
        "shopify": ShopifyFake(SHOP, "Cutover Test", {SHOP_TOKEN}),
        "richpanel": RichpanelFake(RP_KEY),
        "openai": OpenAIFake(OPENAI_KEY),
    }
    for fake in fakes.values():
        fake.start()
    yield fakes
    for fake in fakes.values():
        fake.stop()


def _fresh(sandboxes: dict[str, FakeUpstream], name: str) -> Any:
    fake = sandboxes[name]
    fake.reset()
    return fake


@pytest.fixture(params=TARGETS, ids=lambda t: t.name)
def target(request: pytest.FixtureRequest, sandboxes: dict[str, FakeUpstream]) -> tuple[Target, FakeUpstream]:
    t: Target = request.param
    return t, _fresh(sandboxes, t.sandbox)


@pytest.fixture
def shop(sandboxes: dict[str, FakeUpstream]) -> ShopifyFake:
    return _fresh(sandboxes, "shopify")


@pytest.fixture
def richpanel(sandboxes: dict[str, FakeUpstream]) -> RichpanelFake:
    return _fresh(sandboxes, "richpanel")


@pytest.fixture
def openai(sandboxes: dict[str, FakeUpstream]) -> OpenAIFake:
    return _fresh(sandboxes, "openai")


def fails(t: Target, fake: FakeUpstream, **opts: Any) -> UpstreamError:
    with pytest.raises(UpstreamError) as info:
        t.call(fake, opts)
    assert_no_secret(info.value)
    return info.value


# --- the fault matrix ---------------------------------------------------------------------------


def test_healthy_call_succeeds_with_one_request(target: tuple[Target, FakeUpstream]) -> None:
    t, fake = target
    t.call(fake, {})
    assert len(fake.received(path_pattern=t.path)) == 1


def test_latency_under_the_timeout_still_succeeds(target: tuple[Target, FakeUpstream]) -> None:
    t, fake = target
    fake.inject(t.path, Fault("latency", seconds=0.15))
    started = time.monotonic()
    t.call(fake, {})
    assert time.monotonic() - started >= 0.15


def test_401_is_actionable(target: tuple[Target, FakeUpstream]) -> None:
    t, fake = target
    fake.inject(t.path, Fault("status", status=401))
    err = fails(t, fake)
    assert err.status_code == 401
    assert t.says_401 in str(err)
    assert len(fake.received(path_pattern=t.path)) == t.auth_attempts


def test_403_is_actionable(target: tuple[Target, FakeUpstream]) -> None:
    t, fake = target
    fake.inject(t.path, Fault("status", status=403))
    err = fails(t, fake)
    assert err.status_code == 403
    assert t.says_403 in str(err)
    assert len(fake.received(path_pattern=t.path)) == t.auth_attempts


def test_429_with_retry_after_succeeds_after_the_wait(target: tuple[Target, FakeUpstream]) -> None:
    t, fake = target
    fake.inject(t.path, Fault("status", status=429, retry_after=0.2, times=1))
    started = time.monotonic()
    t.call(fake, {})
    assert time.monotonic() - started >= 0.2
    assert len(fake.received(path_pattern=t.path)) == 2


def test_429_with_a_retry_after_too_long_fails_at_once(target: tuple[Target, FakeUpstream]) -> None:
    t, fake = target
    fake.inject(t.path, Fault("status", status=429, retry_after=30))
    err = fails(t, fake)
    assert len(fake.requests) == 1, "no retry when Retry-After is past the bound"
    assert err.status_code == 429
    assert err.retry_after_s == 30
    assert "retry after 30 s" in str(err)
    assert len(fake.received(path_pattern=t.path)) == 1


def test_429_that_persists_is_retried_twice_then_fails(target: tuple[Target, FakeUpstream]) -> None:
    t, fake = target
    fake.inject(t.path, Fault("status", status=429, retry_after=0.05))
    err = fails(t, fake)
    assert err.status_code == 429
    assert "after 2 retries" in str(err)
    assert len(fake.received(path_pattern=t.path)) == 3


def test_500_is_an_upstream_error(target: tuple[Target, FakeUpstream]) -> None:
    t, fake = target
    fake.inject(t.path, Fault("status", status=500))
    err = fails(t, fake)
    assert err.status_code == 500
    assert "server error" in str(err)
    assert len(fake.received(path_pattern=t.path)) == 1


def test_malformed_json_is_named(target: tuple[Target, FakeUpstream]) -> None:
    t, fake = target
    fake.inject(t.path, Fault("malformed"))
    assert "malformed JSON in the response" in str(fails(t, fake))


def test_dropped_connection_is_named(target: tuple[Target, FakeUpstream]) -> None:
    t, fake = target
    fake.inject(t.path, Fault("drop"))
    assert "connection closed before a response" in str(fails(t, fake))


def test_hang_past_the_timeout_fails_within_the_timeout(target: tuple[Target, FakeUpstream]) -> None:
    t, fake = target
    fake.inject(t.path, Fault("hang", seconds=5))
    err = fails(t, fake)  # the fake answers after 2 s: an error at all means the client gave up first
    assert f"no answer within {TIMEOUT_S:g} s" in str(err)


def test_connection_refused_is_named(target: tuple[Target, FakeUpstream]) -> None:
    t, _ = target
    err = fails(t, _Closed())  # type: ignore[arg-type]
    assert "connection refused" in str(err)


class _Closed:
    """Stands for an upstream that is down: a loopback port nobody listens on."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"


# --- the shared helpers ---------------------------------------------------------------------------


def test_429_without_retry_after_waits_one_second(richpanel: RichpanelFake) -> None:
    richpanel.inject("/v1/users", Fault("status", status=429, times=1))
    started = time.monotonic()
    _richpanel(richpanel, {})
    assert time.monotonic() - started >= 0.9
    assert len(richpanel.received("GET", "/v1/users")) == 2


def test_retry_after_as_an_http_date() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    seconds = retry_after_seconds(httpx.Response(429, headers={"Retry-After": when}))
    assert 25 <= seconds <= 31
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "soon"})) == 1.0


def test_send_returns_other_statuses_and_json_body_names_malformed(richpanel: RichpanelFake) -> None:
    with new_client(richpanel.url, headers={}, timeout_s=TIMEOUT_S) as client:
        response = send(client, "GET", "/v1/users", system="richpanel", action="GET users", max_retry_after_s=1)
        assert response.status_code == 401  # no key: returned to the caller, not raised
        assert client.timeout.read == TIMEOUT_S
        assert not client.follow_redirects
        bad = httpx.Response(200, content=b"{nope")
        with pytest.raises(UpstreamError, match="malformed JSON"):
            json_body(bad, system="richpanel", action="GET users")


# --- Shopify: refresh once ------------------------------------------------------------------------


def test_shopify_refresh_once_succeeds_with_the_new_token(shop: ShopifyFake) -> None:
    credential = StaticCredential(SOURCE, STALE_TOKEN, refresher=lambda: SHOP_TOKEN)
    with _shopify_client(shop, credential=credential) as client:
        result = client.shop()
        assert result.refreshed is True
        assert result.status_code == 200
        sent = [r.header("X-Shopify-Access-Token") for r in shop.received("GET", "shop.json")]
        assert sent == [STALE_TOKEN, SHOP_TOKEN]
        again = client.graphql("{ shop { name } }")  # the refreshed token is kept
        assert again.refreshed is False
        assert len(shop.requests) == 3


def test_shopify_refresh_rereads_a_rotated_token(shop: ShopifyFake) -> None:
    store = {"value": SHOP_TOKEN}
    credential = StaticCredential(SOURCE, SHOP_TOKEN, refresher=lambda: store["value"])
    with _shopify_client(shop, credential=credential) as client:
        assert client.shop().refreshed is False
        store["value"] = shop.rotate()  # another process rotated it and stored the new one
        result = client.shop()
        assert result.refreshed is True
    assert len(shop.requests) == 3


def test_shopify_second_401_fails_naming_the_source_and_shop(shop: ShopifyFake) -> None:
    credential = StaticCredential(SOURCE, STALE_TOKEN, refresher=lambda: "shpat_still_stale_0000")
    with _shopify_client(shop, credential=credential) as client, pytest.raises(UpstreamError) as info:
        client.shop()
    err = info.value
    assert err.status_code == 401
    assert SOURCE in str(err)
    assert SHOP in str(err)
    assert "rotate" in str(err)
    assert "shpat_still_stale_0000" not in str(err)
    assert_no_secret(err)
    assert len(shop.requests) == 2


def test_shopify_403_refreshes_once_then_names_the_scope(shop: ShopifyFake) -> None:
    body = {"errors": "[API] This action requires merchant approval for read_orders scope."}
    shop.inject("shop.json", Fault("status", status=403, body=body))
    refreshes: list[int] = []
    credential = StaticCredential(SOURCE, SHOP_TOKEN, refresher=lambda: refreshes.append(1) or SHOP_TOKEN)
    with _shopify_client(shop, credential=credential) as client, pytest.raises(UpstreamError) as info:
        client.shop()
    assert refreshes == [1]
    assert "lacks a scope" in str(info.value)
    assert "read_orders" in str(info.value)
    assert SOURCE in str(info.value)
    assert len(shop.requests) == 2


def test_shopify_403_once_then_success_is_marked_refreshed(shop: ShopifyFake) -> None:
    shop.inject("graphql.json", Fault("status", status=403, times=1))
    with _shopify_client(shop) as client:
        assert client.graphql("{ shop { name } }").refreshed is True


def test_shopify_a_failing_refresh_names_the_source_not_the_error_text(shop: ShopifyFake) -> None:
    def broken() -> str:
        raise RuntimeError(f"boom {SHOP_TOKEN}")

    credential = StaticCredential(SOURCE, STALE_TOKEN, refresher=broken)
    with _shopify_client(shop, credential=credential) as client, pytest.raises(UpstreamError) as info:
        client.shop()
    assert SOURCE in str(info.value)
    assert "RuntimeError" in str(info.value)
    assert_no_secret(info.value)


@pytest.mark.parametrize(("status", "says"), [(402, "frozen"), (423, "locked"), (404, "not found")])
def test_shopify_other_statuses(shop: ShopifyFake, status: int, says: str) -> None:
    shop.inject("shop.json", Fault("status", status=status))
    with _shopify_client(shop) as client, pytest.raises(UpstreamError) as info:
        client.shop()
    assert info.value.status_code == status
    assert says in str(info.value)
    assert SHOP in str(info.value)


def test_shopify_rest_bucket_overflow_is_a_429(shop: ShopifyFake) -> None:
    shop.rest_bucket_size = 1
    shop.rest_leak_per_s = 0.01
    with _shopify_client(shop, max_retry_after_s=0.5) as client:
        assert client.shop().call_limit == "1/1"
        with pytest.raises(UpstreamError, match="Shopify asks to retry after 2 s") as info:
            client.shop()
    assert info.value.retry_after_s == 2.0


# --- Shopify: GraphQL throttling and errors ---------------------------------------------------------


def test_shopify_graphql_throttled_waits_for_the_bucket_then_succeeds(shop: ShopifyFake) -> None:
    shop.drain_graphql(0.0, restore_per_s=20.0)  # "{ shop { name } }" costs 3 here: ~0.15 s to restore
    started = time.monotonic()
    with _shopify_client(shop) as client:
        result = client.graphql("{ shop { name } }")
    assert time.monotonic() - started >= 0.1
    assert result.data["shop"]["name"] == "Cutover Test"
    assert len(shop.received("POST", "graphql.json")) == 2


def test_shopify_graphql_throttled_too_long_fails_at_once(shop: ShopifyFake) -> None:
    shop.drain_graphql(0.0, restore_per_s=0.1)  # 30 s to restore 3 points
    with _shopify_client(shop) as client, pytest.raises(UpstreamError) as info:
        client.graphql("{ shop { name } }")
    assert info.value.code == "THROTTLED"
    assert info.value.retry_after_s == pytest.approx(30, rel=0.05)
    assert len(shop.requests) == 1


def test_shopify_graphql_throttled_persistently_is_retried_twice(shop: ShopifyFake) -> None:
    body = {
        "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
        "extensions": {
            "cost": {
                "requestedQueryCost": 3,
                "throttleStatus": {"maximumAvailable": 2000, "currentlyAvailable": 2, "restoreRate": 100},
            }
        },
    }
    shop.inject("graphql.json", Fault("status", status=200, body=body))
    with _shopify_client(shop) as client, pytest.raises(UpstreamError, match="still throttled after 2") as info:
        client.graphql("{ shop { name } }")
    assert info.value.code == "THROTTLED"
    assert len(shop.requests) == 3


def test_shopify_graphql_other_error_names_the_first_message(shop: ShopifyFake) -> None:
    body = {
        "errors": [{"message": "Field 'nope' doesn't exist on type 'Shop'", "extensions": {"code": "undefinedField"}}]
    }
    shop.inject("graphql.json", Fault("status", status=200, body=body))
    with _shopify_client(shop) as client, pytest.raises(UpstreamError) as info:
        client.graphql("{ shop { nope } }")
    assert "Field 'nope' doesn't exist" in str(info.value)
    assert info.value.code == "undefinedField"
    assert len(shop.requests) == 1


# --- Shopify: read-only by construction -------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "post"])
def test_shopify_refuses_rest_writes_before_sending(shop: ShopifyFake, method: str) -> None:
    with _shopify_client(shop) as client, pytest.raises(WriteRefused) as info:
        client.request(method, "products/1.json", json={"product": {"title": "x"}})
    assert "read-only" in str(info.value)
    assert shop.requests == []


@pytest.mark.parametrize(
    "path", ["/admin/oauth/access_token", "/admin/api/2026-10/graphql.json/../products.json", "shop.json?x=1"]
)
def test_shopify_refuses_paths_outside_the_admin_api(shop: ShopifyFake, path: str) -> None:
    with _shopify_client(shop) as client, pytest.raises(WriteRefused):
        client.get(path)
    assert shop.requests == []


MUTATIONS = [
    'mutation { productDelete(input: {id: "gid://shopify/Product/1"}) { deletedProductId } }',
    "mutation DeleteIt($id: ID!) { productDelete(input: {id: $id}) { deletedProductId } }",
    '# harmless, isn\'t it?\n  MUTATION { tagsAdd(id: 1, tags: ["x"]) { userErrors { message } } }',
    "Mutation{shopUpdate{userErrors{message}}}",
    "query A { shop { name } }\nmutation B { tagsAdd(id: 1, tags: []) { node { id } } }",
    '{ shop { name } } mutation { tagsRemove(id: "1", tags: ["a"]) { node { id } } }',
    "fragment F on Shop { name } mutation M { shopUpdate { shop { ...F } } }",
    "query Q($v: In = {a: {b: 1}}) { shop { name } } mutation { x }",
    'query Q @dir(note: "}") { shop { name } } mutation { x }',
]
UNCHECKABLE = [
    'query { shop { name "unterminated } }',
    "{ shop { name }",
    "subscription { orders { id } }",
    "",
    "fragment F on Shop { name }",
]


@pytest.mark.parametrize(
    ("document", "says"),
    [(d, "contains a mutation") for d in MUTATIONS]
    + [(d, "cannot be checked|no query|only queries are allowed") for d in UNCHECKABLE],
)
def test_shopify_refuses_mutations_and_unreadable_documents_before_sending(
    shop: ShopifyFake, document: str, says: str
) -> None:
    with _shopify_client(shop) as client:
        with pytest.raises(WriteRefused, match=says):
            client.graphql(document)
        with pytest.raises(WriteRefused, match=says):
            client.request("POST", "graphql.json", json={"query": document})
        with pytest.raises(WriteRefused, match=says):
            client.request("GET", "graphql.json", params={"query": document})
    assert shop.requests == []


def test_shopify_refuses_graphql_without_a_document(shop: ShopifyFake) -> None:
    with _shopify_client(shop) as client:
        for body in [None, {"documentId": "persisted-1"}, [{"query": "{ shop { name } }"}]]:
            with pytest.raises(WriteRefused):
                client.request("POST", "graphql.json", json=body)
        with pytest.raises(WriteRefused):
            client.request("PUT", "graphql.json", json={"query": "{ shop { name } }"})
    assert shop.requests == []


READS = [
    "{ shop { name } }",
    "query { shop { mutationCount: name } }",
    "# mutation { shopUpdate { x } }\n{ shop { name } }",
    "query Mutation { shop { name } }",
    'query ($note: String = "mutation { x }") { shop { name } }',
    'query { shop { name description: name } } # """mutation"""',
    "fragment F on Shop { name } query { shop { ...F } }",
]


@pytest.mark.parametrize("document", READS)
def test_shopify_sends_read_only_documents(shop: ShopifyFake, document: str) -> None:
    assert graphql_write_reason(document) is None
    with _shopify_client(shop) as client:
        result = client.graphql(document)
    assert result.data["shop"]["name"] == "Cutover Test"
    assert len(shop.requests) == 1


# --- Shopify: OAuth token endpoint ---------------------------------------------------------------


def test_exchange_token_client_credentials(shop: ShopifyFake) -> None:
    grant = exchange_token(
        base_url=shop.url, client_id=shop.client_id, client_secret=shop.client_secret, refresh_token=None
    )
    assert grant.refresh_token is None
    assert grant.expires_in == 86399
    assert grant.access_token in shop.tokens
    assert grant.access_token not in repr(grant)
    form = shop.received("POST", "/admin/oauth/access_token")[0].form()
    assert form["grant_type"] == "client_credentials"
    assert "refresh_token" not in form
    with _shopify_client(shop, credential=StaticCredential("the client-credentials grant", grant.access_token)) as c:
        assert c.shop().refreshed is False


def test_exchange_token_refresh_token_rotates_the_refresh_token(shop: ShopifyFake) -> None:
    shop.refresh_tokens = {"shprt_first"}
    grant = exchange_token(
        base_url=shop.url, client_id=shop.client_id, client_secret=shop.client_secret, refresh_token="shprt_first"
    )
    assert isinstance(grant, TokenGrant)
    assert grant.expires_in == 3600
    assert grant.access_token in shop.tokens
    assert grant.refresh_token in shop.refresh_tokens
    assert shop.received("POST", "access_token")[0].form()["grant_type"] == "refresh_token"
    with pytest.raises(UpstreamError, match="refresh token was rejected") as info:  # used once, now invalid
        exchange_token(
            base_url=shop.url, client_id=shop.client_id, client_secret=shop.client_secret, refresh_token="shprt_first"
        )
    assert info.value.code == "invalid_grant"
    assert "shprt_first" not in str(info.value)


def test_exchange_token_bad_client_secret_keeps_the_secret_out(shop: ShopifyFake) -> None:
    with pytest.raises(UpstreamError, match="client id or secret was rejected") as info:
        exchange_token(base_url=shop.url, client_id=shop.client_id, client_secret="wrong-secret", refresh_token=None)
    assert "wrong-secret" not in str(info.value)
    assert shop.tokens == {SHOP_TOKEN}


def test_a_credential_can_refresh_by_token_exchange(shop: ShopifyFake) -> None:
    shop.accept_only("shpat_expired_elsewhere")  # our stored token is stale now

    def grant() -> str:
        return exchange_token(
            base_url=shop.url, client_id=shop.client_id, client_secret=shop.client_secret, refresh_token=None
        ).access_token

    with _shopify_client(shop, credential=StaticCredential(SOURCE, SHOP_TOKEN, refresher=grant)) as client:
        assert client.shop().refreshed is True
    assert [r.path for r in shop.requests] == [
        "/admin/api/2026-10/shop.json",
        "/admin/oauth/access_token",
        "/admin/api/2026-10/shop.json",
    ]


# --- Richpanel ----------------------------------------------------------------------------------------


def test_richpanel_ticket_round_trip_and_auth_header(richpanel: RichpanelFake) -> None:
    fake = richpanel
    with RichpanelClient(
        base_url=fake.url, api_key=RP_KEY, timeout_s=TIMEOUT_S, internal_test_address="cutover-canary@example.com"
    ) as rp:
        ticket_id = rp.create_ticket(from_email="cutover-canary@example.com", subject="canary", body="Where is #1001?")
        assert rp.ticket(ticket_id)["subject"] == "canary"
        assert [m["body"] for m in rp.ticket_messages(ticket_id)] == ["Where is #1001?"]
        fake.add_reply(ticket_id, "Your order shipped", public=True)
        assert len(rp.ticket_messages(ticket_id)) == 2
        assert rp.http_target() is None
        assert {r.header("x-richpanel-key") for r in fake.requests} == {RP_KEY}
        sent = fake.received("POST", "/v1/tickets")[0].json()
        assert sent["ticket"]["via"]["source"]["from"]["address"] == "cutover-canary@example.com"
        with pytest.raises(UpstreamError) as info:
            rp.ticket("999999")
        assert info.value.status_code == 404


def test_richpanel_wrong_key_is_rejected_by_the_fake(richpanel: RichpanelFake) -> None:
    with (
        RichpanelClient(
            base_url=richpanel.url, api_key="rp_wrong_key_000", key_source=RP_SOURCE, timeout_s=TIMEOUT_S
        ) as rp,
        pytest.raises(UpstreamError) as info,
    ):
        rp.health()
    assert info.value.status_code == 401
    assert f"Richpanel rejected {RP_SOURCE} (401)" in str(info.value)
    assert f"update {RP_SOURCE}" in str(info.value)
    assert "rp_wrong_key_000" not in str(info.value)


def test_richpanel_own_rate_limit_answers_429_with_retry_after(richpanel: RichpanelFake) -> None:
    fake = richpanel
    fake.rate_limit = 1
    with RichpanelClient(base_url=fake.url, api_key=RP_KEY, timeout_s=TIMEOUT_S, max_retry_after_s=0.5) as rp:
        rp.health()
        with pytest.raises(UpstreamError, match="Richpanel asks to retry after 30 s"):
            rp.health()
        assert fake.requests[-1].path == "/v1/users"


# --- OpenAI -------------------------------------------------------------------------------------------


def test_openai_wrong_key_is_rejected_without_echoing_it(openai: OpenAIFake) -> None:
    fake = openai
    with (
        OpenAIClient(base_url=fake.base_url, api_key="sk-wrong-key-1234567", timeout_s=TIMEOUT_S) as client,
        pytest.raises(UpstreamError) as info,
    ):
        client.list_models()
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"
    assert "key rejected" in str(info.value)
    assert "4567" not in str(info.value)
    assert fake.requests[0].header("Authorization") == "Bearer sk-wrong-key-1234567"


def test_openai_persistent_429_mentions_quota(openai: OpenAIFake) -> None:
    with OpenAIClient(base_url=openai.base_url, api_key=OPENAI_KEY, timeout_s=TIMEOUT_S) as client:
        openai.inject("/v1/models", Fault("status", status=429, retry_after=0.01))
        with pytest.raises(UpstreamError, match="out of quota"):
            client.list_models()


def test_openai_a_key_that_sees_no_models_is_a_result_not_an_error(openai: OpenAIFake) -> None:
    """An empty list is an answer (the preflight check decides it is a WARN); reset brings the models back."""
    openai.models = []
    with OpenAIClient(base_url=openai.base_url, api_key=OPENAI_KEY, timeout_s=TIMEOUT_S) as client:
        result = client.list_models()
    assert (result.status_code, result.model_count) == (200, 0)
    openai.reset()
    assert openai.models == list(MODELS)
    assert OpenAIFake(OPENAI_KEY, models=()).models == []


# --- Shopify: which shop answered ------------------------------------------------------------------


def test_shopify_the_preflight_query_is_a_read_that_names_the_shop(shop: ShopifyFake) -> None:
    assert graphql_write_reason(SHOP_QUERY) is None
    with _shopify_client(shop) as client:
        graphql = client.graphql(SHOP_QUERY)
        rest = client.shop()
    assert graphql.data["shop"]["myshopifyDomain"] == SHOP
    assert graphql.data["shop"]["name"] == "Cutover Test"
    assert rest.data["shop"]["myshopify_domain"] == SHOP
