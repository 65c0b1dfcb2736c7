"""Shared httpx plumbing for the HTTP clients: one timeout policy, one 429 policy, one error type.

Every client (Shopify, Richpanel, OpenAI) builds its `httpx.Client` with `new_client` and sends
through `send`, so a timeout, a dropped connection or a rate limit reads the same everywhere.
"""

from __future__ import annotations

import email.utils
import functools
import ssl
import time
from datetime import UTC, datetime
from typing import Any, Self

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from integrations.errors import DEFAULT_CONNECT_TIMEOUT_S, UpstreamError

RATE_LIMIT_RETRIES = 2  # a 429 is retried at most twice, then reported
DEFAULT_RETRY_AFTER_S = 1.0  # when a 429 carries no usable Retry-After

_DISPLAY = {"shopify": "Shopify", "richpanel": "Richpanel", "openai": "OpenAI", "github": "GitHub", "slack": "Slack"}


def display_name(system: str) -> str:
    return _DISPLAY.get(system, system)


def new_client(
    base_url: str,
    *,
    headers: dict[str, str],
    timeout_s: float,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
) -> httpx.Client:
    """A client with an explicit timeout and no redirects (a redirect could carry a key to another host)."""
    return httpx.Client(
        base_url=base_url,
        headers=headers,
        timeout=httpx.Timeout(timeout_s, connect=min(connect_timeout_s, timeout_s)),
        follow_redirects=False,
        verify=_tls_context(),
    )


def preload() -> None:
    """Build the shared TLS context now (e.g. before forking workers, so each inherits it)."""
    _tls_context()


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Building one loads the CA bundle (~20 ms of CPU): a run makes several clients, and CPU spent
    # here is taken from the Slack app's acks. Contexts are safe to share between clients.
    return httpx.create_ssl_context()


class _RateLimited(Exception):
    """Internal: a 429 that may be retried after `retry_after_s`."""

    def __init__(self, response: httpx.Response, retry_after_s: float) -> None:
        super().__init__(f"429, retry after {retry_after_s:g} s")
        self.response = response
        self.retry_after_s = retry_after_s


def retry_after_seconds(response: httpx.Response, default: float = DEFAULT_RETRY_AFTER_S) -> float:
    """`Retry-After` as seconds: delta-seconds or an HTTP date; `default` when absent or unreadable."""
    raw = (response.headers.get("Retry-After") or "").strip()
    if not raw:
        return default
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return default
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _wait_retry_after(state: RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome else None
    return exc.retry_after_s if isinstance(exc, _RateLimited) else DEFAULT_RETRY_AFTER_S


def _read_timeout(client: httpx.Client, kwargs: dict[str, Any]) -> float | None:
    timeout = kwargs.get("timeout", client.timeout)
    if isinstance(timeout, httpx.Timeout):
        return timeout.read
    return float(timeout) if isinstance(timeout, int | float) else None


def send(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    system: str,
    action: str,
    max_retry_after_s: float,
    **kwargs: Any,
) -> httpx.Response:
    """Send one request; retry a 429 at most twice after its Retry-After; return any other status.

    Raises UpstreamError for transport failures, for a Retry-After longer than `max_retry_after_s`
    (waiting that long would stall the command) and for a 429 that outlasts the retries.
    """
    kwargs.setdefault("timeout", client.timeout)  # explicit on every request, never httpx's implicit default
    name = display_name(system)

    def attempt() -> httpx.Response:
        response = _transport(client, method, url, system=system, action=action, **kwargs)
        if response.status_code != 429:
            return response
        wait_s = retry_after_seconds(response)
        if wait_s > max_retry_after_s:
            raise UpstreamError(
                system,
                action,
                f"rate limited; {name} asks to retry after {wait_s:g} s (more than the {max_retry_after_s:g} s "
                "this call may wait): try again later",
                status_code=429,
                retry_after_s=wait_s,
            )
        raise _RateLimited(response, wait_s)

    retrying = Retrying(
        retry=retry_if_exception_type(_RateLimited),
        stop=stop_after_attempt(RATE_LIMIT_RETRIES + 1),
        wait=_wait_retry_after,
        sleep=time.sleep,
        reraise=True,
    )
    try:
        return retrying(attempt)
    except _RateLimited as exc:
        raise UpstreamError(
            system,
            action,
            f"rate limited; still HTTP 429 after {RATE_LIMIT_RETRIES} retries: {name} is throttling this key, "
            "try again later",
            status_code=429,
            retry_after_s=exc.retry_after_s,
        ) from None


def _transport(
    client: httpx.Client, method: str, url: str, *, system: str, action: str, **kwargs: Any
) -> httpx.Response:
    """One round trip; transport failures become an UpstreamError that says what happened."""
    try:
        return client.request(method, url, **kwargs)
    except httpx.ConnectTimeout:
        reason = f"could not connect to {_host(client, url)} in time: check the endpoint and the network path"
    except httpx.TimeoutException:
        limit = _read_timeout(client, kwargs)
        within = f" within {limit:g} s" if limit is not None else " in time"
        reason = f"no answer{within}: {display_name(system)} is slow or unreachable; try again"
    except httpx.ConnectError as exc:
        refused = "refused" in str(exc).lower()
        what = "connection refused by" if refused else "could not connect to"
        reason = f"{what} {_host(client, url)}: check the endpoint URL and that the service is up"
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
        reason = "connection closed before a response: the upstream or a proxy dropped it; try again"
    except httpx.TransportError as exc:  # anything else on the wire; the class name says enough, the text may not
        reason = f"transport error ({type(exc).__name__})"
    raise UpstreamError(system, action, reason)


def _host(client: httpx.Client, url: str) -> str:
    try:
        target = client.base_url.join(url) if client.base_url else httpx.URL(url)
        return f"{target.host}:{target.port}" if target.port else target.host
    except Exception:
        return "the upstream"


def json_body(response: httpx.Response, *, system: str, action: str) -> Any:
    """The parsed JSON body; a body that is not JSON is an UpstreamError, never a crash."""
    try:
        return response.json()
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        raise UpstreamError(
            system, action, "malformed JSON in the response", status_code=response.status_code
        ) from None


class PooledClient:
    """Base of the HTTP clients: one pooled httpx client each, closed when done (or by `with`)."""

    _http: httpx.Client

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
