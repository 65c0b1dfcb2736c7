"""A durable outbox: evidence that could not reach GitHub waits here, on disk, until it can.

One JSON file per job in a folder. Writes are atomic (temporary file, fsync, rename), so a crash
leaves either the old job or the new one, never half of each. A job records which of its steps
already succeeded; whoever resends it skips those, so a retry never posts twice.

A job being sent is claimed with an advisory file lock (released by the OS if the process dies), so
a `drain()` at start-up and a live `publish()` in another worker never send the same job at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from integrations.errors import UpstreamError

Job = dict[str, Any]

_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# UpstreamError.code values that mean "the upstream may answer later" (integrations/github.py sets them).
RETRYABLE_CODES = frozenset({"timeout", "connection", "rate_limited", "malformed", "server_error"})


def is_retryable(exc: BaseException) -> bool:
    """5xx, 429/rate limits, timeouts, dropped connections and unreadable answers: worth another try later."""
    if not isinstance(exc, UpstreamError):
        return False
    if exc.code in RETRYABLE_CODES:
        return True
    return exc.status_code is not None and (exc.status_code >= 500 or exc.status_code == 429)


def retrying(*, attempts: int, wait_s: float, max_wait_s: float, sleep: Callable[[float], None]) -> Retrying:
    """The in-process retry: exponential backoff, only for retryable upstream errors, the last error re-raised."""
    return Retrying(
        retry=retry_if_exception(is_retryable),
        stop=stop_after_attempt(max(1, attempts)),
        wait=wait_exponential(multiplier=wait_s, max=max_wait_s),
        sleep=sleep,
        reraise=True,
    )


class Outbox:
    """`root/<job id>.json` pending, `root/failed/<job id>.json` given up on (kept for a person to read)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "failed").mkdir(exist_ok=True)

    def _path(self, job_id: str, folder: Path | None = None) -> Path:
        if not _JOB_ID.match(job_id):
            raise ValueError(f"not a valid outbox job id: {job_id!r}")
        return (folder or self.root) / f"{job_id}.json"

    def save(self, job: Job) -> None:
        """Create or replace the job atomically."""
        _atomic_write(self._path(job["id"]), json.dumps(job, indent=1, sort_keys=True).encode())

    def load(self, job_id: str) -> Job | None:
        try:
            return json.loads(self._path(job_id).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    def pending(self) -> list[Job]:
        """Every pending job, oldest first. An unreadable file is moved aside rather than blocking the rest."""
        jobs = []
        for path in sorted(self.root.glob("*.json")):
            try:
                jobs.append(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                with contextlib.suppress(OSError):
                    path.replace(self.root / "failed" / path.name)
        return sorted(jobs, key=lambda j: (j.get("created_at", ""), j.get("id", "")))

    def remove(self, job_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(job_id).unlink()

    def fail(self, job: Job, reason: str) -> None:
        """Stop retrying: keep the job (and why) under failed/ for a person."""
        job = {**job, "failed_reason": reason}
        _atomic_write(self._path(job["id"], self.root / "failed"), json.dumps(job, indent=1, sort_keys=True).encode())
        self.remove(job["id"])

    def failed(self) -> list[Job]:
        return [json.loads(p.read_text(encoding="utf-8")) for p in sorted((self.root / "failed").glob("*.json"))]

    @contextlib.contextmanager
    def claim(self, job_id: str) -> Iterator[bool]:
        """Yields True if this process now holds the job, False if someone else is sending it."""
        lock_path = self.root / f".{self._path(job_id).stem}.lock"
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
            if self.load(job_id) is None:  # finished: the lock file has nothing left to guard
                with contextlib.suppress(FileNotFoundError):
                    lock_path.unlink()


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
