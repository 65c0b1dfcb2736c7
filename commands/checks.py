"""Run named checks concurrently with a bound and a per-check timeout, fail closed.

A check is a function returning a `Verdict`. It may raise `Skip` (prerequisite missing),
`UpstreamError` (an outside call failed: FAIL with its reason) or anything else (FAIL, named).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from commands.report import CheckResult, Status
from integrations.errors import UpstreamError

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Verdict:
    status: Status
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


def passed(detail: str, **data: Any) -> Verdict:
    return Verdict(Status.PASS, detail, data)


def failed(detail: str, **data: Any) -> Verdict:
    return Verdict(Status.FAIL, detail, data)


def warned(detail: str, **data: Any) -> Verdict:
    return Verdict(Status.WARN, detail, data)


class Skip(Exception):
    """Raised inside a check whose prerequisite failed: the check is SKIP with this reason."""


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[], Verdict]


class Shared(Generic[T]):
    """A value several checks need (a secret, the caller identity): computed once, on first use.

    Computed in the caller's thread under a lock, so no extra pool is needed and nobody deadlocks;
    a failure is remembered and re-raised to every caller (each check reports it in its own words).
    """

    def __init__(self, compute: Callable[[], T]) -> None:
        self._compute = compute
        self._lock = threading.Lock()
        self._done = False
        self._value: T | None = None
        self._error: BaseException | None = None

    def get(self) -> T:
        with self._lock:
            if not self._done:
                try:
                    self._value = self._compute()
                except BaseException as exc:
                    self._error = exc
                self._done = True
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


def run_checks(
    checks: Sequence[Check],
    *,
    max_workers: int,
    timeout_s: float,
    on_result: Callable[[CheckResult], None] = lambda _: None,
) -> list[CheckResult]:
    """Every check yields exactly one result, in the order given; `on_result` sees them as they finish."""
    results: dict[str, CheckResult] = {}
    started: dict[str, float] = {}
    pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="check")

    def timed(check: Check) -> CheckResult:
        started[check.name] = t0 = time.monotonic()
        verdict = _verdict_of(check)
        return CheckResult(
            name=check.name,
            status=verdict.status,
            detail=verdict.detail,
            duration_ms=round((time.monotonic() - t0) * 1000),
            data=verdict.data,
        )

    def record(result: CheckResult) -> None:
        results[result.name] = result
        try:
            on_result(result)
        except Exception:  # a broken progress display must not lose a result
            log.exception("progress callback failed for %s", result.name)

    pending: dict[Future[CheckResult], Check] = {pool.submit(timed, c): c for c in checks}
    try:
        while pending:
            done, _ = wait(pending, timeout=0.05, return_when=FIRST_COMPLETED)
            for future in done:
                record(future.result())
                del pending[future]
            now = time.monotonic()
            for future, check in list(pending.items()):
                t0 = started.get(check.name)
                if t0 is not None and now - t0 > timeout_s:
                    # The thread cannot be killed, but its answer no longer counts: fail closed now.
                    del pending[future]
                    record(
                        CheckResult(
                            name=check.name,
                            status=Status.FAIL,
                            detail=f"timed out after {timeout_s:g} s",
                            duration_ms=round((now - t0) * 1000),
                        )
                    )
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return [results[c.name] for c in checks]


def _verdict_of(check: Check) -> Verdict:
    try:
        return check.run()
    except Skip as exc:
        return Verdict(Status.SKIP, str(exc))
    except UpstreamError as exc:
        return Verdict(
            Status.FAIL, str(exc), {"upstream": exc.system, "status_code": exc.status_code, "code": exc.code}
        )
    except Exception as exc:
        log.warning("check %s raised %s", check.name, exc.__class__.__name__, exc_info=True)
        return Verdict(Status.FAIL, f"unexpected error: {exc.__class__.__name__}: {exc}")
