"""What `/cutover status` shows: the latest runs of this bot process."""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

log = logging.getLogger(__name__)

RECENT_RUNS = 20


@dataclass(frozen=True)
class RunRecord:
    command: str
    env: str
    user: str
    received_at: datetime
    state: str = "queued"  # queued, running, PASS, FAIL, did not run, error
    summary: str = ""


class RecentRuns:
    def __init__(self, size: int = RECENT_RUNS):
        self._lock = threading.Lock()
        self._runs: deque[RunRecord] = deque(maxlen=size)
        self._ids = 0
        self._index: dict[int, RunRecord] = {}

    def add(self, record: RunRecord) -> int:
        with self._lock:
            self._ids += 1
            self._runs.append(record)
            self._index = {k: v for k, v in self._index.items() if v in self._runs}
            self._index[self._ids] = record
            return self._ids

    def update(self, run: int, **changes: Any) -> None:
        with self._lock:
            old = self._index.get(run)
            if old is None:
                return
            new = replace(old, **changes)
            self._index[run] = new
            for i, r in enumerate(self._runs):
                if r is old:
                    self._runs[i] = new

    def latest_first(self) -> list[RunRecord]:
        with self._lock:
            return list(reversed(self._runs))
