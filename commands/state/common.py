"""What both backends decide the same way: approval checks and the wording of audit entries.

A backend performs its atomic write; when that write's condition fails it reads the record again
and asks these functions why, so the refusal reads the same on SQLite and DynamoDB.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta

from commands.state.model import (
    AlreadyDecided,
    Approval,
    ApprovalError,
    ApprovalExpired,
    ApprovalNotApproved,
    ApprovalRequest,
    ApprovalStatus,
    ApprovalUsed,
    ApprovalVoided,
    LockInfo,
    SelfApproval,
    StateError,
    as_utc,
)

DECISIONS = ("approved", "rejected")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$")


def ts(value: datetime) -> str:
    """Fixed-width UTC text: sorts and compares (as a string) in time order."""
    return as_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def new_token() -> str:
    return secrets.token_hex(16)


def check_name(kind: str, value: str) -> str:
    """Env names, run ids, steps and approval ids become key parts: keep them to a safe alphabet."""
    if not isinstance(value, str) or not _NAME.match(value) or "#" in value:
        raise StateError(f"invalid {kind} {value!r}: letters, digits and . _ : @ / - only (at most 128)")
    return value


def check_decision(decision: str) -> str:
    if decision not in DECISIONS:
        raise StateError(f"a decision is 'approved' or 'rejected', not {decision!r}")
    return decision


def why_not_decide(a: Approval, decided_by: str, decision: str, now: datetime) -> ApprovalError | None:
    if a.status == ApprovalStatus.VOID:
        return ApprovalVoided(a.approval_id, a.void_reason)
    if a.status != ApprovalStatus.PENDING:
        return AlreadyDecided(a.approval_id, a.decided_by or "?", a.status.value, a.decided_at)
    if a.expired(now):
        return ApprovalExpired(a.approval_id, a.expires_at)
    if decision == "approved" and decided_by == a.requested_by:
        return SelfApproval(a.approval_id, decided_by)
    return None


def why_not_consume(a: Approval, now: datetime, max_age_s: float | None) -> ApprovalError | None:
    if a.status == ApprovalStatus.VOID:
        return ApprovalVoided(a.approval_id, a.void_reason)
    if a.used_by_run is not None:
        return ApprovalUsed(a.approval_id, a.used_by_run, a.used_at)
    if a.status != ApprovalStatus.APPROVED:
        return ApprovalNotApproved(a.approval_id, a.status.value)
    if max_age_s is not None and a.decided_at is not None and now - a.decided_at > timedelta(seconds=max_age_s):
        return ApprovalExpired(a.approval_id, a.decided_at + timedelta(seconds=max_age_s))
    return None


def why_not_void(a: Approval) -> ApprovalError | None:
    if a.used_by_run is not None:
        return ApprovalUsed(a.approval_id, a.used_by_run, a.used_at)
    if a.status == ApprovalStatus.REJECTED:
        return AlreadyDecided(a.approval_id, a.decided_by or "?", a.status.value, a.decided_at)
    return None


def lock_taken_detail(previous: LockInfo | None, now: datetime) -> str:
    if previous is None:
        return "lock taken"
    return (
        f"lock taken over from an expired lease ({previous.holder.describe()}, "
        f"expired {previous.expires_at:%H:%M:%S} UTC)"
    )


def preempt_detail(previous: LockInfo | None, now: datetime) -> str:
    if previous is None:
        return "lock preempted: it was free"
    state = "live" if previous.expires_at > now else "expired"
    return f"lock preempted from the {previous.holder.describe()} ({state} lease since {previous.since:%H:%M:%S} UTC)"


def run_start_detail(command: str, dry_run: bool, summary: str) -> str:
    text = command + (" (dry-run)" if dry_run else "")
    return f"{text}: {summary}" if summary else text


def approval_request_detail(request: ApprovalRequest) -> str:
    return f"approval {request.approval_id} requested for {request.command} (expires {request.expires_at:%H:%M:%S} UTC)"
