"""The report model: what every command produces and every rendering (terminal, Slack, Markdown, JSON) reads."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field


class Status(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    WARN = "WARN"  # passed, with a caveat a person must read (e.g. an alarm with INSUFFICIENT_DATA)
    SKIP = "SKIP"  # not run because a prerequisite failed; never counts as passing


# WARN passes with its caveat shown; SKIP and FAIL do not. Unknown is never PASS.
PASSING = frozenset({Status.PASS, Status.WARN})


class CheckResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    status: Status
    detail: str
    duration_ms: int = 0
    data: dict[str, Any] = Field(default_factory=dict)


class Report(BaseModel):
    """One run of one command in one environment. Field names are part of the outside interface."""

    command: str
    env: str
    run_id: str
    started_at: datetime
    finished_at: datetime
    checks: list[CheckResult]
    requested_by: str | None = None
    pr: int | None = None
    dry_run: bool = False  # a plan: nothing was called; its checks say what each step would do

    @computed_field  # derived, never stored: a report cannot disagree with its own checks
    @property
    def overall_status(self) -> Literal["PASS", "FAIL"]:
        """Fail closed: PASS only when there are checks and every one passed. A dry run's steps are
        SKIP (nothing ran): its verdict says whether the command would be let through."""
        allowed = PASSING | {Status.SKIP} if self.dry_run else PASSING
        return "PASS" if self.checks and all(c.status in allowed for c in self.checks) else "FAIL"

    @property
    def passed(self) -> bool:
        return self.overall_status == "PASS"

    @property
    def duration_s(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    def by_status(self, status: Status) -> list[CheckResult]:
        return [c for c in self.checks if c.status == status]

    def failing_first(self) -> list[CheckResult]:
        return failing_first(self.checks)


_READING_ORDER = {Status.FAIL: 0, Status.SKIP: 1, Status.WARN: 2, Status.PASS: 3}


def failing_first(checks: Iterable[CheckResult]) -> list[CheckResult]:
    """Checks ordered for a reader: FAIL, SKIP, WARN, then PASS (stable within each)."""
    return sorted(checks, key=lambda c: _READING_ORDER[c.status])


def new_run_id() -> str:
    # 10 hex chars: short enough for a Slack line, and never 12 digits (an AWS account id shape).
    return secrets.token_hex(5)


def utc_now() -> datetime:
    return datetime.now(UTC)


def overall_status(expected: Iterable[str], checks: Iterable[CheckResult]) -> Literal["PASS", "FAIL"]:
    """Fail closed: PASS only when every expected check is present and passing, and nothing failed."""
    checks = list(checks)
    seen = {c.name: c for c in checks}
    if any(name not in seen for name in expected):
        return "FAIL"
    if not checks or any(c.status not in PASSING for c in checks):
        return "FAIL"
    return "PASS"


def missing_checks(expected: Iterable[str], checks: Iterable[CheckResult]) -> list[CheckResult]:
    """A FAIL result for each expected check that produced nothing, so the report says what is missing."""
    seen = {c.name for c in checks}
    return [
        CheckResult(name=n, status=Status.FAIL, detail="no result: the check did not report")
        for n in expected
        if n not in seen
    ]
