"""A simulated Shopify shop: Admin REST and GraphQL with their rate limits, and the OAuth token endpoint.

State: the set of accepted access tokens, refresh tokens (rotated at every use, like expiring offline
tokens), the REST leaky bucket (40, draining 2/s) and the GraphQL cost bucket.
"""

from __future__ import annotations

import math
import re
import secrets
import threading
import time
from typing import Any, Self

from integrations.sandbox.http import FakeUpstream, Request, Response

_API = r"/admin/api/(?P<version>\d{4}-\d{2}|unstable)"
_INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"


class ShopifyFake(FakeUpstream):
    name = "shopify"

    def start(self) -> Self:  # the base returns FakeUpstream; callers want the subclass
        super().start()
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __init__(
        self,
        shop_domain: str = "example.myshopify.com",
        shop_name: str = "Example Shop",
        tokens: set[str] | None = None,
        *,
        client_id: str = "sandbox-client-id",
        client_secret: str = "sandbox-client-secret",
        refresh_tokens: set[str] | None = None,
        rest_bucket_size: int = 40,
        rest_leak_per_s: float = 2.0,
        graphql_max: float = 2000.0,
        graphql_restore_per_s: float = 100.0,
    ) -> None:
        super().__init__()
        self.shop_domain = shop_domain
        self.shop_name = shop_name
        self.client_id = client_id
        self.client_secret = client_secret
        self._state = threading.Lock()
        self._initial: dict[str, Any] = {
            "tokens": frozenset(tokens or {"shpat_sandbox"}),
            "refresh_tokens": frozenset(refresh_tokens or ()),
            "rest_bucket_size": rest_bucket_size,
            "rest_leak_per_s": rest_leak_per_s,
            "graphql_max": graphql_max,
            "graphql_restore_per_s": graphql_restore_per_s,
        }
        self._restore()
        self.route("GET", _API + r"/shop\.json", self._shop)
        self.route("POST", _API + r"/graphql\.json", self._graphql)
        # write endpoints exist so that a write that slipped through would be visible in `requests`
        for method in ("POST", "PUT", "DELETE"):
            self.route(method, _API + r"/.+\.json", self._write)
        self.route("POST", r"/admin/oauth/access_token", self._access_token)

    def _restore(self) -> None:
        init = self._initial
        with self._state:
            self.tokens: set[str] = set(init["tokens"])
            self.refresh_tokens: set[str] = set(init["refresh_tokens"])
            self.rest_bucket_size: int = init["rest_bucket_size"]
            self.rest_leak_per_s: float = init["rest_leak_per_s"]
            self.graphql_max: float = init["graphql_max"]
            self.graphql_restore_per_s: float = init["graphql_restore_per_s"]
            self._rest_used = 0.0
            self._rest_at = time.monotonic()
            self._gql_available = self.graphql_max
            self._gql_at = time.monotonic()
            self.issued: list[str] = []  # access tokens issued by the token endpoint, in order

    def reset(self) -> None:
        """Faults, recorded requests and the shop's state back to how it was built (reuse without a restart)."""
        super().reset()
        self._restore()

    # --- helpers for tests and the demo -----------------------------------------------------------
    def accept_only(self, token: str) -> None:
        """Only `token` is valid from now on (makes every other token stale)."""
        with self._state:
            self.tokens = {token}

    def rotate(self, new_token: str | None = None) -> str:
        """Revoke every access token and accept a new one (given or generated); returns it."""
        token = new_token or _new_token("shpat")
        self.accept_only(token)
        return token

    def drain_graphql(self, available: float = 0.0, restore_per_s: float | None = None) -> None:
        """Empty the GraphQL cost bucket so the next query is THROTTLED until it restores."""
        with self._state:
            self._gql_available = available
            self._gql_at = time.monotonic()
            if restore_per_s is not None:
                self.graphql_restore_per_s = restore_per_s

    # --- handlers ----------------------------------------------------------------------------------
    def _authorized(self, request: Request) -> bool:
        token = request.header("X-Shopify-Access-Token")
        with self._state:
            return token is not None and token in self.tokens

    def _rest_limit(self) -> tuple[bool, str]:
        """Leaky bucket: each call adds one, the bucket leaks `rest_leak_per_s`; full means 429."""
        with self._state:
            now = time.monotonic()
            self._rest_used = max(0.0, self._rest_used - (now - self._rest_at) * self.rest_leak_per_s)
            self._rest_at = now
            if self._rest_used + 1 > self.rest_bucket_size:
                return False, f"{self.rest_bucket_size}/{self.rest_bucket_size}"
            self._rest_used += 1
            return True, f"{math.ceil(self._rest_used)}/{self.rest_bucket_size}"

    def _shop(self, request: Request) -> Response:
        if not self._authorized(request):
            return Response(401, {"errors": _INVALID_TOKEN})
        ok, limit = self._rest_limit()
        if not ok:
            headers = {"Retry-After": "2.0", "X-Shopify-Shop-Api-Call-Limit": limit}
            return Response(
                429, {"errors": "Exceeded 2 calls per second for api client. Reduce request rates."}, headers
            )
        shop = {
            "id": 548380009,
            "name": self.shop_name,
            "myshopify_domain": self.shop_domain,
            "domain": self.shop_domain,
            "plan_name": "shopify_plus",
            "currency": "USD",
            "iana_timezone": "America/New_York",
        }
        return Response(200, {"shop": shop}, {"X-Shopify-Shop-Api-Call-Limit": limit})

    def _write(self, request: Request) -> Response:
        if not self._authorized(request):
            return Response(401, {"errors": _INVALID_TOKEN})
        return Response(201 if request.method == "POST" else 200, {"written": request.path})

    def _graphql(self, request: Request) -> Response:
        if not self._authorized(request):
            return Response(401, {"errors": _INVALID_TOKEN})
        try:
            payload = request.json()
            query = payload["query"]
        except (ValueError, KeyError, TypeError):
            return Response(400, {"errors": {"query": "Required parameter missing or invalid"}})
        requested = 1.0 + query.count("{")  # a rough stand-in for Shopify's cost calculation
        with self._state:
            now = time.monotonic()
            self._gql_available = min(
                self.graphql_max, self._gql_available + (now - self._gql_at) * self.graphql_restore_per_s
            )
            self._gql_at = now
            throttled = requested > self._gql_available
            if not throttled:
                self._gql_available -= requested
            status = {
                "maximumAvailable": self.graphql_max,
                "currentlyAvailable": round(self._gql_available, 3),
                "restoreRate": self.graphql_restore_per_s,
            }
        cost: dict[str, Any] = {
            "requestedQueryCost": requested,
            "actualQueryCost": None if throttled else requested,
            "throttleStatus": status,
        }
        if throttled:
            error = {
                "message": "Throttled",
                "extensions": {"code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/limits"},
            }
            return Response(200, {"errors": [error], "extensions": {"cost": cost}})
        data: dict[str, Any] = {}
        if re.search(r"\bshop\b", query):
            data["shop"] = {
                "id": "gid://shopify/Shop/548380009",
                "name": self.shop_name,
                "myshopifyDomain": self.shop_domain,
            }
        return Response(200, {"data": data, "extensions": {"cost": cost}})

    def _access_token(self, request: Request) -> Response:
        ctype = request.header("Content-Type") or ""
        try:
            form = request.json() if "json" in ctype else request.form()
        except ValueError:
            form = {}
        if not isinstance(form, dict):
            form = {}
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return Response(401, {"error": "invalid_client", "error_description": "Client authentication failed"})
        grant = form.get("grant_type")
        token = _new_token("shpat")
        if grant == "refresh_token":
            old = form.get("refresh_token")
            with self._state:
                if old not in self.refresh_tokens:
                    return Response(400, {"error": "invalid_grant", "error_description": "refresh token is invalid"})
                self.refresh_tokens.discard(old)  # rotated at every use
                new_refresh = _new_token("shprt")
                self.refresh_tokens.add(new_refresh)
                self.tokens.add(token)
                self.issued.append(token)
            body = {
                "access_token": token,
                "expires_in": 3600,
                "refresh_token": new_refresh,
                "refresh_token_expires_in": 7776000,
                "scope": "read_orders,read_products",
            }
            return Response(200, body)
        if grant == "client_credentials":
            with self._state:
                self.tokens.add(token)
                self.issued.append(token)
            return Response(200, {"access_token": token, "expires_in": 86399, "scope": "read_orders,read_products"})
        return Response(400, {"error": "unsupported_grant_type", "error_description": f"grant_type {grant!r}"})


def _new_token(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"
