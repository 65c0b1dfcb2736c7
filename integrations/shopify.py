"""Shopify Admin API, read-only by construction.

`ShopifyClient.request` is the only way out and it refuses any non-GET REST call and any GraphQL
document with a mutation before a byte is sent (`WriteRefused`). A 401/403 refreshes the credential
once and retries once; then the error says which credential to fix and how.
`exchange_token` is the OAuth token endpoint (not the Admin API), the one POST this module sends.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from integrations.errors import DEFAULT_CONNECT_TIMEOUT_S, UPSTREAM_TEXT_MAX, UpstreamError
from integrations.http import PooledClient, json_body, new_client, send

SYSTEM = "shopify"
GRAPHQL_THROTTLE_RETRIES = 2
_ERROR_TEXT_MAX = UPSTREAM_TEXT_MAX


class Credential(Protocol):
    """Where the Admin API token comes from. `source` is a description, never the value."""

    source: str  # e.g. "secret rp-mw/prod/shopify/admin_api_token"

    def get(self) -> str: ...

    def refresh(self) -> str:
        """A fresh value: re-read the source (another process may have rotated it) or run a token grant."""
        ...


@dataclass
class StaticCredential:
    """A token held in memory; `refresher` (if any) fetches a new one, else refresh re-returns the same."""

    source: str
    value: str = field(repr=False)
    refresher: Callable[[], str] | None = field(default=None, repr=False)

    def get(self) -> str:
        return self.value

    def refresh(self) -> str:
        if self.refresher is not None:
            self.value = self.refresher()
        return self.value


@dataclass(frozen=True)
class ShopifyResult:
    status_code: int
    data: dict[str, Any]  # REST: the whole body; GraphQL: the `data` member
    refreshed: bool  # the success came after one credential refresh
    call_limit: str | None = None  # REST X-Shopify-Shop-Api-Call-Limit, e.g. "32/40"
    throttle: dict[str, Any] | None = None  # GraphQL extensions.cost.throttleStatus


@dataclass(frozen=True)
class TokenGrant:
    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_in: int | None = None


class WriteRefused(UpstreamError):
    """The client refused a call that could write to the shop; nothing was sent."""


# --- GraphQL: is there a mutation in this document? ------------------------------------------


class _Unreadable(ValueError):
    pass


_PUNCT = set("!$&():=@[]{}|")


def _tokens(document: str) -> list[str]:
    """GraphQL lexical tokens without ignored text: whitespace, commas, comments, string contents."""
    out: list[str] = []
    i, n = 0, len(document)
    while i < n:
        c = document[i]
        if c in " \t\r\n,\ufeff":
            i += 1
        elif c == "#":  # comment to the end of the line
            while i < n and document[i] not in "\r\n":
                i += 1
        elif document.startswith('"""', i):  # block string
            end = i + 3
            while True:
                end = document.find('"""', end)
                if end < 0:
                    raise _Unreadable("unterminated block string")
                if document[end - 1] == "\\":  # \""" is an escaped triple quote
                    end += 3
                    continue
                break
            out.append('""')
            i = end + 3
        elif c == '"':
            j = i + 1
            while j < n and document[j] != '"':
                if document[j] in "\r\n":
                    raise _Unreadable("line break in a string")
                j += 2 if document[j] == "\\" else 1
            if j >= n:
                raise _Unreadable("unterminated string")
            out.append('""')
            i = j + 1
        elif c.isalpha() or c == "_":
            j = i + 1
            while j < n and (document[j].isalnum() or document[j] == "_"):
                j += 1
            out.append(document[i:j])
            i = j
        elif c.isdigit() or c == "-":
            j = i + 1
            while j < n and (document[j].isalnum() or document[j] in ".+-"):
                j += 1
            out.append(document[i:j])
            i = j
        elif document.startswith("...", i):
            out.append("...")
            i += 3
        elif c in _PUNCT:
            out.append(c)
            i += 1
        else:
            raise _Unreadable(f"unexpected character {c!r}")
    return out


def operation_types(document: str) -> list[str]:
    """The operation type of each top-level definition ("query", "mutation", "fragment", ...), lower-cased.

    Only the first token of a definition counts, so a field, argument, variable or string that
    merely contains "mutation" does not. Raises ValueError when the document cannot be read.
    """
    tokens = _tokens(document)
    kinds: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "{":  # anonymous query shorthand
            kinds.append("query")
        elif tok[0].isalpha() or tok[0] == "_":
            kinds.append(tok.lower())  # keywords are case-sensitive in GraphQL; refusing "MUTATION" too is safer
            # skip name, variables, directives up to the selection set; () may hold {...} default values
            parens = 0
            i += 1
            while i < len(tokens) and not (tokens[i] == "{" and parens == 0):
                parens += {"(": 1, ")": -1}.get(tokens[i], 0)
                i += 1
            if i >= len(tokens):
                raise _Unreadable("definition without a selection set")
        else:
            raise _Unreadable(f"unexpected {tok!r} at the top level")
        depth = 0  # skip the selection set
        while i < len(tokens):
            depth += {"{": 1, "}": -1}.get(tokens[i], 0)
            i += 1
            if depth == 0:
                break
        if depth != 0:
            raise _Unreadable("unbalanced braces")
    return kinds


def graphql_write_reason(document: Any) -> str | None:
    """Why this document may not be sent (a mutation, or unreadable), or None when it is read-only."""
    if not isinstance(document, str) or not document.strip():
        return "the GraphQL request has no query document to check"
    try:
        kinds = operation_types(document)
    except ValueError as exc:
        return f"the GraphQL document cannot be checked for mutations ({exc})"
    if "mutation" in kinds:
        return "the GraphQL document contains a mutation"
    unknown = sorted(set(kinds) - {"query", "fragment"})
    if unknown:
        return f"the GraphQL document has a {unknown[0]!r} definition; only queries are allowed"
    if "query" not in kinds:
        return "the GraphQL document has no query"
    return None


# --- the client ------------------------------------------------------------------------------


class ShopifyClient(PooledClient):
    """Read-only Admin API client for one shop."""

    def __init__(
        self,
        *,
        base_url: str,
        shop_domain: str,
        credential: Credential,
        api_version: str = "2026-10",
        timeout_s: float = 10.0,
        max_retry_after_s: float = 5.0,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    ) -> None:
        self.shop_domain = shop_domain
        self.api_version = api_version
        self.max_retry_after_s = max_retry_after_s
        self._credential = credential
        self._token: str | None = None
        self._token_lock = threading.Lock()  # concurrent checks share one refresh (refresh tokens rotate on use)
        self._http = new_client(
            base_url,
            headers={"Accept": "application/json", "User-Agent": "cutover-bot"},
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
        )

    # --- public calls ------------------------------------------------------------------------
    def shop(self) -> ShopifyResult:
        return self.request("GET", "shop.json")

    def get(self, path: str, *, params: dict[str, Any] | None = None) -> ShopifyResult:
        return self.request("GET", path, params=params)

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> ShopifyResult:
        body: dict[str, Any] = {"query": query}
        if variables:
            body["variables"] = variables
        return self.request("POST", "graphql.json", json=body)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> ShopifyResult:
        """`path` is relative to /admin/api/{version}/ ("shop.json") or absolute under /admin/api/.

        GET for REST; POST only to graphql.json with a query document that has no mutation.
        Anything else raises WriteRefused before the request is built.
        """
        method = method.upper()
        url = self._url(path)
        is_graphql = url.rsplit("/", 1)[-1] == "graphql.json"
        action = f"{method} {url.removeprefix(f'/admin/api/{self.api_version}/')}"
        self._refuse_writes(method, url, action, is_graphql=is_graphql, params=params, json=json)

        refreshed = False
        throttled = 0
        while True:
            response, did_refresh = self._authorized(method, url, action, params=params, json=json)
            refreshed = refreshed or did_refresh
            body = self._checked_body(response, action)
            if not is_graphql:
                return ShopifyResult(
                    response.status_code,
                    body,
                    refreshed,
                    call_limit=response.headers.get("X-Shopify-Shop-Api-Call-Limit"),
                )
            throttle = _throttle_status(body)
            errors = _graphql_errors(body)
            if not errors:
                data = body.get("data")
                if not isinstance(data, dict):
                    raise UpstreamError(SYSTEM, action, "GraphQL response without data", response.status_code)
                return ShopifyResult(response.status_code, data, refreshed, throttle=throttle)
            if any(_error_code(e) == "THROTTLED" for e in errors):
                throttled += 1
                wait_s = _throttle_wait_s(body)
                if throttled > GRAPHQL_THROTTLE_RETRIES or wait_s > self.max_retry_after_s:
                    why = (
                        f"still throttled after {GRAPHQL_THROTTLE_RETRIES} retries"
                        if throttled > GRAPHQL_THROTTLE_RETRIES
                        else f"Shopify needs {wait_s:.3g} s to restore the query cost (more than the "
                        f"{self.max_retry_after_s:g} s this call may wait)"
                    )
                    raise UpstreamError(
                        SYSTEM,
                        action,
                        f"GraphQL rate limited (cost points): {why}; try again later",
                        status_code=response.status_code,
                        code="THROTTLED",
                        retry_after_s=wait_s,
                    )
                time.sleep(wait_s)
                continue
            first = errors[0]
            message = first.get("message") if isinstance(first, dict) else first
            raise UpstreamError(
                SYSTEM,
                action,
                f"GraphQL error: {self._scrub(str(message))}",
                status_code=response.status_code,
                code=_error_code(first),
            )

    # --- internals ---------------------------------------------------------------------------
    def _url(self, path: str) -> str:
        prefix = f"/admin/api/{self.api_version}/"
        url = path if path.startswith("/") else prefix + path
        if not url.startswith("/admin/api/") or any(c in url for c in "?#\\") or ".." in url or "%" in url:
            # keeps every call on the Admin API path we reason about (no traversal, no smuggled query)
            raise WriteRefused(SYSTEM, f"request {path!r}", "only plain paths under /admin/api/ are allowed")
        return url

    def _refuse_writes(self, method: str, url: str, action: str, *, is_graphql: bool, params: Any, json: Any) -> None:
        if is_graphql:
            if method not in ("GET", "POST"):
                raise WriteRefused(SYSTEM, action, f"{method} is not a GraphQL read; this client is read-only")
            documents = []
            if isinstance(params, dict) and "query" in params:
                documents.append(params["query"])
            if method == "POST" or json is not None:
                documents.append(json.get("query") if isinstance(json, dict) else None)
            for document in documents or [None]:
                reason = graphql_write_reason(document)
                if reason:
                    raise WriteRefused(SYSTEM, action, f"refused: {reason}; this client is read-only")
            return
        if method != "GET" or json is not None:
            raise WriteRefused(SYSTEM, action, f"refused: {method} could write to the shop; this client is read-only")

    def _current_token(self) -> str:
        with self._token_lock:
            if self._token is None:
                self._token = self._credential.get()
            return self._token

    def _refreshed_token(self, stale: str) -> str:
        with self._token_lock:
            if self._token is not None and self._token != stale:  # another call refreshed meanwhile
                return self._token
            try:
                self._token = self._credential.refresh()
            except UpstreamError:
                raise
            except Exception as exc:  # the message of a foreign exception may carry a value: name the type only
                raise UpstreamError(
                    SYSTEM,
                    "refresh the Admin API token",
                    f"could not refresh the token from {self._credential.source} ({type(exc).__name__}): "
                    f"check that {self._credential.source} exists and is readable",
                ) from None
            return self._token

    def _send(self, method: str, url: str, action: str, token: str, **kwargs: Any) -> httpx.Response:
        return send(
            self._http,
            method,
            url,
            system=SYSTEM,
            action=action,
            max_retry_after_s=self.max_retry_after_s,
            headers={"X-Shopify-Access-Token": token},
            **kwargs,
        )

    def _authorized(self, method: str, url: str, action: str, **kwargs: Any) -> tuple[httpx.Response, bool]:
        """Send; on 401/403 refresh the credential once and retry once."""
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        token = self._current_token()
        response = self._send(method, url, action, token, **kwargs)
        if response.status_code not in (401, 403):
            return response, False
        token = self._refreshed_token(token)
        response = self._send(method, url, action, token, **kwargs)
        if response.status_code in (401, 403):
            raise self._auth_error(response, action)
        return response, True

    def _auth_error(self, response: httpx.Response, action: str) -> UpstreamError:
        source, shop = self._credential.source, self.shop_domain
        detail = self._upstream_text(response)
        if response.status_code == 401:
            reason = (
                f"token rejected for {shop} even after one refresh: rotate the Admin API token "
                f"(or re-install the app on {shop}) and update {source}"
            )
        else:
            reason = (
                f"token lacks a scope for this call on {shop} (still 403 after one refresh): grant the "
                f"missing access scope to the app, re-approve it on {shop}, and update {source}"
            )
        if detail:
            reason += f" (Shopify said: {detail})"
        return UpstreamError(SYSTEM, action, reason, status_code=response.status_code)

    def _checked_body(self, response: httpx.Response, action: str) -> dict[str, Any]:
        status = response.status_code
        if 200 <= status < 300:
            body = json_body(response, system=SYSTEM, action=action)
            if not isinstance(body, dict):
                raise UpstreamError(SYSTEM, action, "unexpected JSON (not an object) in the response", status)
            return body
        shop = self.shop_domain
        if status == 402:
            reason = (
                f"shop {shop} is frozen (402 Payment Required): the shop's bill is unpaid; the owner must settle it"
            )
        elif status == 423:
            reason = f"shop {shop} is locked (423): Shopify has locked the shop; its owner must contact Shopify support"
        elif status == 404:
            reason = f"not found on {shop}: check the shop domain, the endpoint URL and API version {self.api_version}"
        elif status >= 500:
            reason = "Shopify server error; try again later (https://www.shopifystatus.com)"
        elif 300 <= status < 400:
            reason = f"unexpected redirect to {response.headers.get('Location', '?')}: check the endpoint URL"
        else:
            reason = "unexpected answer"
        detail = self._upstream_text(response)
        if detail and status not in (402, 423):
            reason += f" (Shopify said: {detail})"
        raise UpstreamError(SYSTEM, action, reason, status_code=status)

    def _upstream_text(self, response: httpx.Response) -> str:
        """Shopify's own `errors` text, short and scrubbed of our token."""
        try:
            body = response.json()
        except ValueError:
            return ""
        errors = body.get("errors") if isinstance(body, dict) else None
        if isinstance(errors, list) and errors:
            errors = errors[0].get("message", errors[0]) if isinstance(errors[0], dict) else errors[0]
        if isinstance(errors, dict):
            errors = "; ".join(f"{k}: {v}" for k, v in errors.items())
        if not errors:
            return ""
        return self._scrub(str(errors))[:_ERROR_TEXT_MAX]

    def _scrub(self, text: str) -> str:
        token = self._token
        return text.replace(token, "[redacted]") if token else text


def _graphql_errors(body: dict[str, Any]) -> list[Any]:
    errors = body.get("errors")
    if not errors:
        return []
    return errors if isinstance(errors, list) else [errors]


def _error_code(error: Any) -> str | None:
    if isinstance(error, dict):
        extensions = error.get("extensions")
        if isinstance(extensions, dict) and isinstance(extensions.get("code"), str):
            return extensions["code"]
    return None


def _throttle_status(body: dict[str, Any]) -> dict[str, Any] | None:
    cost = (body.get("extensions") or {}).get("cost") if isinstance(body.get("extensions"), dict) else None
    status = cost.get("throttleStatus") if isinstance(cost, dict) else None
    return status if isinstance(status, dict) else None


def _throttle_wait_s(body: dict[str, Any]) -> float:
    """Seconds until the bucket holds the requested cost: (requested - available) / restoreRate, else 1 s."""
    cost = body.get("extensions", {}).get("cost") if isinstance(body.get("extensions"), dict) else None
    status = _throttle_status(body)
    try:
        requested = float(cost["requestedQueryCost"])  # type: ignore[index]
        available = float(status["currentlyAvailable"])  # type: ignore[index]
        rate = float(status["restoreRate"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        return 1.0
    if rate <= 0:
        return math.inf
    return max(0.0, (requested - available) / rate)


# --- OAuth token endpoint ----------------------------------------------------------------------


def exchange_token(
    *,
    base_url: str,
    client_id: str,
    client_secret: str,
    refresh_token: str | None,
    timeout_s: float = 10.0,
    max_retry_after_s: float = 5.0,
) -> TokenGrant:
    """A new access token: grant_type=refresh_token when a refresh token is given, else client_credentials.

    Expiring offline tokens rotate the refresh token at every use: store the returned one.
    """
    form = {"client_id": client_id, "client_secret": client_secret}
    if refresh_token:
        form |= {"grant_type": "refresh_token", "refresh_token": refresh_token}
    else:
        form["grant_type"] = "client_credentials"
    action = f"POST /admin/oauth/access_token ({form['grant_type']})"
    with new_client(base_url, headers={"Accept": "application/json"}, timeout_s=timeout_s) as http:
        response = send(
            http,
            "POST",
            "/admin/oauth/access_token",
            system=SYSTEM,
            action=action,
            max_retry_after_s=max_retry_after_s,
            data=form,
        )
        if response.status_code != 200:
            code = None
            try:
                body = response.json()
                code = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), str) else None
            except ValueError:
                pass
            if response.status_code in (400, 401) and code in ("invalid_grant", None) and refresh_token:
                reason = "the refresh token was rejected (expired, revoked or already used): re-authorize the app"
            elif response.status_code in (400, 401):
                reason = "the app's client id or secret was rejected, or the grant is not allowed for this app"
            elif response.status_code >= 500:
                reason = "Shopify server error; try again later"
            else:
                reason = "unexpected answer from the token endpoint"
            raise UpstreamError(SYSTEM, action, reason, status_code=response.status_code, code=code)
        body = json_body(response, system=SYSTEM, action=action)
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        raise UpstreamError(SYSTEM, action, "token response without an access_token", status_code=200)
    expires = body.get("expires_in")
    return TokenGrant(
        access_token=body["access_token"],
        refresh_token=body.get("refresh_token") if isinstance(body.get("refresh_token"), str) else None,
        expires_in=int(expires) if isinstance(expires, int | float) else None,
    )
