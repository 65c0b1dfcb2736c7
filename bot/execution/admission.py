"""The bot's own bounded executor for runs: a full queue is said at the ack, never a lost run."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor

log = logging.getLogger(__name__)


class RunQueue:
    """The bot's executor with a bound on runs queued or running: a flood is refused at the ack
    with a clear reply instead of piling up work nobody is waiting for any more."""

    def __init__(self, executor: Executor, capacity: int):
        self._executor = executor
        self._slots = threading.BoundedSemaphore(capacity)
        self.capacity = capacity

    def submit(self, work: Callable[[], None]) -> bool:
        if not self._slots.acquire(blocking=False):
            return False

        def run() -> None:
            try:
                guarded(work)
            finally:
                self._slots.release()

        try:
            self._executor.submit(run)
        except RuntimeError:  # shut down
            self._slots.release()
            return False
        return True


def guarded(work: Callable[[], None]) -> None:
    """An executor would keep an exception in a Future nobody reads: log it instead."""
    try:
        work()
    except Exception:
        log.exception("a run failed outside its own error handling")
