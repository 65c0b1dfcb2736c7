"""A durable outbox: evidence that could not reach GitHub waits here, on disk, until it can.

One JSON file per job in a folder. Writes are atomic (temporary file, fsync, rename), so a crash
leaves either the old job or the new one, never half of each. A job records which of its steps
already succeeded; whoever resends it skips those, so a retry never posts twice.

A job being sent is claimed with an advisory file lock (released by the OS if the process dies), so
a `drain()` at start-up and a live `publish()` in another worker never send the same job at once.
`lock(name)` is the blocking kind, for work that must be serialised across jobs (one PR's evidence).

A file that cannot be read as a job is moved aside to failed/ with a `.reason` note next to it; the
other jobs carry on. `OutboxDrainer` sends what waits here on a timer while the process runs.

Besides jobs, the folder keeps the bot's own records (`history/`): what it attached earlier, so
nothing is ever read back from a comment that someone else could have written.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from integrations.errors import UpstreamError

log = logging.getLogger(__name__)

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
        for sub in ("failed", "history", "locks"):
            (self.root / sub).mkdir(exist_ok=True)

    def _path(self, job_id: str, folder: Path | None = None) -> Path:
        if not _JOB_ID.match(job_id):
            raise ValueError(f"not a valid outbox job id: {job_id!r}")
        return (folder or self.root) / f"{job_id}.json"

    def save(self, job: Job) -> None:
        """Create or replace the job atomically."""
        _atomic_write(self._path(job["id"]), json.dumps(job, indent=1, sort_keys=True).encode())

    def load(self, job_id: str) -> Job | None:
        """The job, or None if there is none (an unreadable file is moved aside: None too)."""
        return self._read(self._path(job_id))

    def pending(self) -> list[Job]:
        """Every pending job, oldest first. An unreadable file is moved aside rather than blocking the rest."""
        jobs = [job for path in sorted(self.root.glob("*.json")) if (job := self._read(path)) is not None]
        return sorted(jobs, key=lambda j: (str(j.get("created_at", "")), j["id"]))

    def _read(self, path: Path) -> Job | None:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.quarantine(path, f"unreadable: {exc}")
            return None
        try:
            job = json.loads(raw.decode("utf-8"))
        except ValueError as exc:  # also UnicodeDecodeError
            self.quarantine(path, f"not JSON: {exc}")
            return None
        if not isinstance(job, dict) or job.get("id") != path.stem or not _JOB_ID.match(path.stem):
            self.quarantine(path, "not an outbox job: a JSON object whose 'id' is the file's name is expected")
            return None
        return job

    def quarantine(self, path: Path, reason: str) -> None:
        """Move a file that is not a job aside to failed/, with `<name>.reason` saying why; the rest carry on."""
        log.error("outbox: %s moved to failed/: %s", path.name, reason)
        with contextlib.suppress(OSError):
            path.replace(self.root / "failed" / path.name)
            (self.root / "failed" / f"{path.name}.reason").write_text(reason + "\n", encoding="utf-8")

    def remove(self, job_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(job_id).unlink()

    def fail(self, job: Job, reason: str) -> None:
        """Stop retrying: keep the job (and why) under failed/ for a person."""
        job = {**job, "failed_reason": reason}
        _atomic_write(self._path(job["id"], self.root / "failed"), json.dumps(job, indent=1, sort_keys=True).encode())
        self.remove(job["id"])

    def failed(self) -> list[Job]:
        """Jobs given up on (files moved aside as unreadable are skipped: their `.reason` says why)."""
        out = []
        for path in sorted((self.root / "failed").glob("*.json")):
            with contextlib.suppress(OSError, ValueError):
                job = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(job, dict):
                    out.append(job)
        return out

    # --- the bot's own records -----------------------------------------------------------
    def history(self, key: str) -> list[dict[str, Any]]:
        """The record kept under `key` (e.g. one PR's sticky comment), newest first; [] if none or unreadable."""
        path = self._path(key, self.root / "history")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError):
            log.error("outbox: history %s unreadable, starting it afresh", path.name)
            return []
        entries = data.get("entries") if isinstance(data, dict) else None
        return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []

    def save_history(self, key: str, entries: list[dict[str, Any]]) -> None:
        path = self._path(key, self.root / "history")
        _atomic_write(path, json.dumps({"entries": entries}, indent=1, sort_keys=True).encode())

    @contextlib.contextmanager
    def lock(self, name: str, *, timeout_s: float = 120.0, poll_s: float = 0.05) -> Iterator[None]:
        """Hold the lock `name`, across threads and processes sharing this folder; wait up to `timeout_s`.

        Raises `UpstreamError` (code "timeout", so retryable: the job stays queued) if it stays busy.
        The lock files stay (removing one while another process waits on it would break the lock).
        """
        path = self._path(name, self.root / "locks").with_suffix(".lock")
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        reason = f"another worker held {name} for over {timeout_s:g} s; queued for later"
                        raise UpstreamError("outbox", f"lock {name}", reason, code="timeout") from None
                    time.sleep(poll_s)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

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


# --- draining while the process runs ------------------------------------------------------
class Drains(Protocol):
    def drain(self) -> list[Any]: ...


CLAIMED_ELSEWHERE = "being sent by another worker"  # a job another process holds: look again soon
BUSY_RECHECK_S = 5.0  # its holder may be dying (a killed server's last moments): not a whole interval


class OutboxDrainer:
    """Calls `publisher.drain()` at start and then every `interval_s` seconds, on a daemon thread.

    `start()` and `stop()` are idempotent; `wake()` asks for a pass now. A failing pass is logged and
    the next one runs on time: the thread never dies of an error. `on_result` sees each job's result.
    """

    def __init__(
        self,
        publisher: Drains,
        *,
        interval_s: float = 60.0,
        on_result: Callable[[Any], None] | None = None,
        name: str = "outbox-drainer",
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.publisher = publisher
        self.interval_s = interval_s
        self.on_result = on_result
        self.name = name
        self.passes = 0  # completed passes, for a health check or a test
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> OutboxDrainer:
        with self._guard:
            if not self.running:
                self._stop.clear()
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the thread to finish (after the job it is sending, if any) and wait up to `timeout_s`."""
        with self._guard:
            thread, self._thread = self._thread, None
        self._stop.set()
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    def __enter__(self) -> OutboxDrainer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        while not self._stop.is_set():
            results = self.run_once()
            claimed = any(CLAIMED_ELSEWHERE in str(getattr(r, "detail", "")) for r in results)
            self._wake.wait(min(self.interval_s, BUSY_RECHECK_S) if claimed else self.interval_s)
            self._wake.clear()

    def run_once(self) -> list[Any]:
        """One pass: every pending job gets a try. Never raises."""
        results: list[Any] = []
        try:
            results = list(self.publisher.drain())
        except Exception:
            log.exception("outbox: a drain pass failed; the next one runs in %g s", self.interval_s)
        for result in results:
            if self.on_result is not None:
                try:
                    self.on_result(result)
                except Exception:
                    log.exception("outbox: on_result failed")
            else:
                log.info("outbox: %s", getattr(result, "detail", result))
        self.passes += 1
        return results
