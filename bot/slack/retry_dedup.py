"""Slack retries: a request already being handled is answered 200 and not run twice."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable

from slack_bolt import BoltResponse
from slack_bolt.middleware import Middleware
from slack_bolt.request import BoltRequest

log = logging.getLogger(__name__)


class RetryDedup(Middleware):
    """Answers 200 to a request already seen, without running it again.

    Slack retries (X-Slack-Retry-Num) when an answer is slow or lost; Bolt does not deduplicate.
    A signed request can also be replayed for up to 5 minutes (the signature's time window), so
    any repeat of a key is dropped, retry header or not. The key is Slack's own id for the
    invocation (trigger_id, event_id), else a hash of the body.

    The set is in memory, so it holds per process only: with several worker processes a retry
    may land on another one. Hence one worker (`gunicorn --workers 1 --threads N`) in the Procfile.
    """

    def __init__(self, *, ttl_s: float = 600.0, clock: Callable[[], float] = time.monotonic):
        self._ttl_s = ttl_s  # longer than the signature window and Slack's retry schedule
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, float] = {}  # key -> expiry; dicts keep insertion order, so oldest first

    @staticmethod
    def key(req: BoltRequest) -> str:
        body = req.body if isinstance(req.body, dict) else {}
        for field in ("trigger_id", "event_id"):
            if isinstance(body.get(field), str) and body[field]:
                return f"{field}:{body[field]}"
        raw = req.raw_body if isinstance(req.raw_body, str) else repr(req.body)
        return "body:" + hashlib.sha256(raw.encode()).hexdigest()

    def first_time(self, key: str) -> bool:
        now = self._clock()
        with self._lock:
            while self._seen:
                oldest = next(iter(self._seen))
                if self._seen[oldest] > now:
                    break
                del self._seen[oldest]
            if key in self._seen:
                return False
            self._seen[key] = now + self._ttl_s
            return True

    def process(self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]) -> BoltResponse:
        if self.first_time(self.key(req)):
            return next()
        retry = (req.headers.get("x-slack-retry-num") or ["-"])[0]
        log.info("dropped a repeated Slack request (retry %s): already handled in this process", retry)
        return BoltResponse(status=200, body="")
