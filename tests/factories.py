"""Small builders for reports in tests."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from commands.report import CheckResult, Report, Status, new_run_id, overall_status, utc_now


def check(name: str = "c", status: Status = Status.PASS, detail: str = "ok", **data: Any) -> CheckResult:
    return CheckResult(name=name, status=status, detail=detail, duration_ms=5, data=data)


def report(
    *checks: CheckResult, command: str = "preflight", env: str = "prod", expected: list[str] | None = None
) -> Report:
    started = utc_now()
    checks_ = list(checks) or [check()]
    return Report(
        command=command,
        env=env,
        run_id=new_run_id(),
        started_at=started,
        finished_at=started + timedelta(milliseconds=1234),
        overall_status=overall_status(expected or [c.name for c in checks_], checks_),
        checks=checks_,
        requested_by="U0ENGINEER",
    )
