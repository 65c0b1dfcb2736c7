"""One run's channel message: posted once, edited as checks finish, always ending with the result."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.webhook import WebhookClient

from bot.slack.blocks import Rendered

log = logging.getLogger(__name__)

SLACK_CALL_TIMEOUT_S = 10


class LiveMessage:
    """The one channel message of a run: posted once, edited at most once per interval while checks
    finish, and always edited a last time with the result (which no late progress edit can overwrite)."""

    def __init__(
        self,
        client: WebClient,
        *,
        progress_client: WebClient,
        channel: str,
        response_url: str | None,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._client = client
        self._progress_client = progress_client  # no rate-limit sleeps: a skipped progress edit is harmless
        self.channel = channel
        self._response_url = response_url
        self._interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()  # held during an edit, so the final edit waits for one in flight
        self._closed = False
        self._last = 0.0
        self.ts: str | None = None
        # An edit skipped for the interval is sent when it ends (the newest one only): a line that
        # waits for a person, and its button, must not be lost because it came right after another.
        self._deferred: Callable[[], Rendered] | None = None
        self._timer: threading.Timer | None = None
        self._defer_lock = threading.Lock()

    def post(self, rendered: Rendered) -> None:
        try:
            response = self._client.chat_postMessage(channel=self.channel, **rendered.as_kwargs())
            self.ts, self.channel = response["ts"], response.get("channel") or self.channel
        except (SlackApiError, SlackClientError, OSError, ValueError) as exc:  # ValueError: a body not JSON
            # e.g. not_in_channel: the result still reaches the person through response_url.
            log.warning("chat.postMessage failed in %s: %s", self.channel, slack_error(exc))
        self._last = self._clock()

    def maybe_update(self, render: Callable[[], Rendered]) -> None:
        if self.ts is None or self._closed:
            return
        wait = self._interval_s - (self._clock() - self._last)
        if wait > 0 or not self._lock.acquire(blocking=False):
            self._defer(render, wait)  # too soon, or an edit is in flight: send the newest one after it
            return
        try:
            if self._closed or self._clock() - self._last < self._interval_s:
                return
            self._last = self._clock()
            self._progress_client.chat_update(channel=self.channel, ts=self.ts, **render().as_kwargs())
        except (SlackApiError, SlackClientError, OSError, ValueError) as exc:
            log.info("progress update skipped: %s", slack_error(exc))
        finally:
            self._lock.release()

    def _defer(self, render: Callable[[], Rendered], wait: float) -> None:
        with self._defer_lock:
            self._deferred = render
            if self._timer is None and not self._closed:
                self._timer = threading.Timer(min(max(wait, 0.05), self._interval_s), self._flush)
                self._timer.daemon = True
                self._timer.start()

    def _flush(self) -> None:
        with self._defer_lock:
            render, self._deferred, self._timer = self._deferred, None, None
        if render is not None:
            self.maybe_update(render)

    def finish(self, rendered: Rendered) -> bool:
        """Edit the message to its final form; fall back to a new message, then to response_url."""
        self._closed = True
        with self._defer_lock:
            if self._timer is not None:
                self._timer.cancel()
            self._deferred, self._timer = None, None
        with self._lock:
            attempts: list[tuple[str, Callable[[], Any]]] = []
            if self.ts is not None:
                ts = self.ts
                attempts.append(
                    (
                        "chat.update",
                        lambda: self._client.chat_update(channel=self.channel, ts=ts, **rendered.as_kwargs()),
                    )
                )
            attempts.append(
                (
                    "chat.postMessage",
                    lambda: self._client.chat_postMessage(channel=self.channel, **rendered.as_kwargs()),
                )
            )
            if self._response_url:
                attempts.append(("response_url", self._respond(rendered)))
            for name, attempt in attempts:
                try:
                    attempt()
                    return True
                except (SlackApiError, SlackClientError, OSError, RuntimeError, ValueError) as exc:
                    log.warning("final message via %s failed: %s", name, slack_error(exc))
        log.error("the result of a run could not be delivered to Slack (channel %s)", self.channel)
        return False

    def _respond(self, rendered: Rendered) -> Callable[[], None]:
        def send() -> None:
            assert self._response_url is not None
            webhook = WebhookClient(self._response_url, timeout=SLACK_CALL_TIMEOUT_S)
            response = webhook.send(text=rendered.text, blocks=rendered.blocks, response_type="in_channel")
            if response.status_code != 200:
                raise RuntimeError(f"response_url answered {response.status_code}")

        return send


def slack_error(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error") or exc.response.status_code)
    return f"{exc.__class__.__name__}: {exc}"
