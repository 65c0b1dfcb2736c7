"""The state store's records, its errors and its interface (`StateStore`), shared by every backend.

Every time is timezone-aware UTC: naive datetimes are refused, other zones are converted. Records are
frozen pydantic models; a store returns new records, never mutates the ones it was given.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

Surface = Literal["slack", "cli", "actions", "pr-comment", "bot"]  # "bot": the bot on its own (watch, expiry)
Decision = Literal["approved", "rejected"]


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


def utc_now() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime:
    """`now` arguments: None is the wall clock; a naive datetime is refused (it is ambiguous)."""
    if value is None:
        return utc_now()
    if value.tzinfo is None:
        raise ValueError("naive datetime: pass a timezone-aware time (UTC)")
    return value.astimezone(UTC)


def ago(delta: timedelta) -> str:
    """'45 s ago', '5 min ago', '3 h ago', '2 d ago' (a future time reads 'just now')."""
    seconds = delta.total_seconds()
    if seconds < 1:
        return "just now"
    if seconds < 90:
        return f"{int(seconds)} s ago"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min ago"
    if seconds < 36 * 3600:
        return f"{round(seconds / 3600)} h ago"
    return f"{round(seconds / 86400)} d ago"


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- runs -------------------------------------------------------------------------------------


class RunStatus(StrEnum):
    RUNNING = "RUNNING"
    PASS = "PASS"
    FAIL = "FAIL"
    INTERRUPTED = "INTERRUPTED"  # the process died or was preempted before it could finish
    REFUSED = "REFUSED"  # never started: wrong phase, no approval, lock held, not allowed


FINISHED = frozenset({RunStatus.PASS, RunStatus.FAIL, RunStatus.INTERRUPTED, RunStatus.REFUSED})


class RunRecord(_Record):
    run_id: str = Field(min_length=1, max_length=128)
    env: str = Field(min_length=1)
    command: str = Field(min_length=1)
    status: RunStatus = RunStatus.RUNNING
    started_at: UtcDatetime
    finished_at: UtcDatetime | None = None
    requested_by: str
    surface: Surface = "cli"
    pr: int | None = None
    head_sha: str | None = None
    evidence_url: str | None = None
    evidence_sha256: str | None = None  # SHA-256 of the report JSON
    summary: str = ""
    dry_run: bool = False


# --- audit ------------------------------------------------------------------------------------


class AuditEntry(_Record):
    at: UtcDatetime
    env: str
    actor: str
    action: str  # "run.start", "run.finish", "lock.take", "lock.preempt", "approval.decide", ...
    surface: str
    run_id: str | None = None
    detail: str = ""
    evidence_url: str | None = None


# --- the lock ---------------------------------------------------------------------------------


class LockHolder(_Record):
    run_id: str
    command: str
    requested_by: str
    surface: Surface = "cli"

    def describe(self) -> str:
        return f"{self.command} run {self.run_id} requested by {self.requested_by} ({self.surface})"


class LockInfo(_Record):
    """Who holds an environment's lock (no token: knowing the holder does not let anyone act as it)."""

    env: str
    holder: LockHolder
    since: UtcDatetime
    expires_at: UtcDatetime


class Lease(_Record):
    """Proof of holding an environment's lock: only the token's owner may renew or release it."""

    env: str
    token: str
    holder: LockHolder
    since: UtcDatetime
    expires_at: UtcDatetime
    preempted: LockInfo | None = None  # set by `preempt` when it took the lock from a live holder

    def info(self) -> LockInfo:
        return LockInfo(env=self.env, holder=self.holder, since=self.since, expires_at=self.expires_at)


# --- approvals --------------------------------------------------------------------------------


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    VOID = "void"


class ApprovalRequest(_Record):
    """What a manager approves: bound to the env, the command, its parameters, the PR head and the evidence."""

    approval_id: str = Field(min_length=1, max_length=128)
    env: str
    command: str
    params: dict[str, Any] = Field(default_factory=dict)  # JSON values only
    head_sha: str | None = None
    evidence_sha256: str | None = None
    requested_by: str
    expires_at: UtcDatetime
    channel: str | None = None
    message_ts: str | None = None


class Approval(ApprovalRequest):
    created_at: UtcDatetime
    status: ApprovalStatus = ApprovalStatus.PENDING
    decided_by: str | None = None
    decided_at: UtcDatetime | None = None
    used_by_run: str | None = None
    used_at: UtcDatetime | None = None
    void_reason: str | None = None

    def expired(self, now: datetime | None = None) -> bool:
        return as_utc(now) >= self.expires_at

    def mismatch(
        self,
        *,
        env: str,
        command: str,
        params: dict[str, Any] | None = None,
        head_sha: str | None = None,
        evidence_sha256: str | None = None,
    ) -> str | None:
        """None when this approval is for exactly this run; else what differs (for the refusal)."""
        wanted = {
            "env": env,
            "command": command,
            "params": canonical_params(params or {}),
            "head_sha": head_sha,
            "evidence_sha256": evidence_sha256,
        }
        have = {
            "env": self.env,
            "command": self.command,
            "params": canonical_params(self.params),
            "head_sha": self.head_sha,
            "evidence_sha256": self.evidence_sha256,
        }
        differ = [k for k in wanted if wanted[k] != have[k]]
        if not differ:
            return None
        return f"approval {self.approval_id} was given for a different {', '.join(differ)}: request a new approval"


def canonical_params(params: dict[str, Any]) -> str:
    """One spelling of a parameter dict, so stored and requested parameters compare exactly."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# --- watches and confirmations ------------------------------------------------------------------


class WatchState(_Record):
    """An enable-outbound watch in progress: enough to resume it after a restart."""

    env: str
    run_id: str
    started_at: UtcDatetime
    ends_at: UtcDatetime
    poll_seconds: float = Field(gt=0)
    requested_by: str
    channel: str | None = None
    message_ts: str | None = None
    pr: int | None = None
    last_poll_at: UtcDatetime | None = None


class Confirmation(_Record):
    """A person confirmed a step done in a UI the bot cannot drive (rule-enabled, rule-paused)."""

    env: str
    run_id: str
    step: str
    confirmed_by: str
    surface: str
    at: UtcDatetime


# --- errors -----------------------------------------------------------------------------------


class StateError(Exception):
    """Anything the store refuses or cannot do; `str()` is a sentence a person can act on."""


class StoreConfigError(StateError, ValueError):
    """The `state` setting is not a store this bot can open."""


class StoreUnavailable(StateError):
    """The store cannot be reached or written (check_reachable, or an upstream failure)."""


class LockHeld(StateError):
    def __init__(self, env: str, holder: LockHolder, since: datetime, expires_at: datetime) -> None:
        self.env = env
        self.holder = holder
        self.since = since
        self.expires_at = expires_at
        super().__init__(
            f"{env} is locked by the {holder.describe()} since {since:%H:%M:%S} UTC "
            f"(lease until {expires_at:%H:%M:%S} UTC): wait for it to finish, or run /rollback {env} "
            "(rollback always preempts)"
        )


class LockLost(StateError):
    def __init__(self, lease: Lease, now_held_by: LockInfo | None) -> None:
        self.lease = lease
        self.now_held_by = now_held_by
        by = f" by the {now_held_by.holder.describe()}" if now_held_by else ""
        super().__init__(f"the lock on {lease.env} for run {lease.holder.run_id} was lost (preempted or expired){by}")


class RunNotFound(StateError):
    pass


class RunAlreadyFinished(StateError):
    pass


class ApprovalError(StateError):
    """An approval cannot be created, decided or used; the message says why."""


class ApprovalNotFound(ApprovalError):
    def __init__(self, approval_id: str) -> None:
        self.approval_id = approval_id
        super().__init__(f"no approval {approval_id} in the store: request a new approval")


class AlreadyDecided(ApprovalError):
    def __init__(self, approval_id: str, by: str, decision: str, at: datetime | None) -> None:
        self.approval_id = approval_id
        self.by = by
        self.decision = decision
        self.at = at
        when = f" at {at:%H:%M:%S} UTC" if at else ""
        super().__init__(f"approval {approval_id} was already {decision} by {by}{when}")


class ApprovalExpired(ApprovalError):
    def __init__(self, approval_id: str, expires_at: datetime) -> None:
        self.approval_id = approval_id
        self.expires_at = expires_at
        super().__init__(
            f"approval {approval_id} expired at {expires_at:%H:%M:%S} UTC: run the command again to request a new one"
        )


class ApprovalNotApproved(ApprovalError):
    def __init__(self, approval_id: str, status: str) -> None:
        self.approval_id = approval_id
        self.status = status
        super().__init__(f"approval {approval_id} is {status}, not approved: it cannot be used")


class ApprovalUsed(ApprovalError):
    def __init__(self, approval_id: str, run_id: str | None, at: datetime | None) -> None:
        self.approval_id = approval_id
        self.run_id = run_id
        self.at = at
        super().__init__(f"approval {approval_id} was already used by run {run_id}: an approval is used once")


class ApprovalVoided(ApprovalError):
    def __init__(self, approval_id: str, reason: str | None) -> None:
        self.approval_id = approval_id
        self.reason = reason
        super().__init__(f"approval {approval_id} was voided ({reason or 'no reason given'}): request a new one")


class SelfApproval(ApprovalError):
    def __init__(self, approval_id: str, who: str) -> None:
        self.approval_id = approval_id
        self.who = who
        super().__init__(f"{who} requested approval {approval_id} and cannot approve it: another approver must")


# --- the interface ----------------------------------------------------------------------------


@runtime_checkable
class StateStore(Protocol):
    """The cutover's state: runs, audit trail, per-env lock, approvals, watches, confirmations.

    Every transition writes its audit entry in the same atomic write (a SQLite transaction, a
    DynamoDB TransactWriteItems). `now=None` means the wall clock; tests pass a fixed time.
    """

    url: str

    def check_reachable(self) -> None:
        """None when the store answers and accepts writes; else raises StoreUnavailable with the reason."""
        ...

    # runs
    def record_run_start(self, run: RunRecord) -> RunRecord: ...
    def record_run_finish(
        self,
        env: str,
        run_id: str,
        status: RunStatus | str,
        *,
        finished_at: datetime | None = None,
        evidence_url: str | None = None,
        evidence_sha256: str | None = None,
        summary: str | None = None,
    ) -> RunRecord: ...
    def set_run_evidence(self, env: str, run_id: str, evidence_url: str, *, now: datetime | None = None) -> None: ...
    def get_run(self, env: str, run_id: str) -> RunRecord | None: ...
    def last_run(
        self, env: str, command: str, status: RunStatus | str | None = None, *, include_dry_run: bool = False
    ) -> RunRecord | None: ...
    def runs(self, env: str, limit: int = 20, *, command: str | None = None) -> list[RunRecord]: ...

    # audit
    def audit(
        self,
        env: str,
        actor: str,
        action: str,
        surface: str,
        run_id: str | None = None,
        detail: str = "",
        evidence_url: str | None = None,
        *,
        now: datetime | None = None,
    ) -> AuditEntry: ...
    def audit_trail(self, env: str, limit: int = 50) -> list[AuditEntry]: ...

    # the lock
    def acquire(self, env: str, holder: LockHolder, lease_s: float, *, now: datetime | None = None) -> Lease: ...
    def renew(self, lease: Lease, lease_s: float | None = None, *, now: datetime | None = None) -> Lease: ...
    def release(self, lease: Lease, *, now: datetime | None = None) -> bool: ...
    def preempt(self, env: str, holder: LockHolder, lease_s: float, *, now: datetime | None = None) -> Lease: ...
    def is_current(self, lease: Lease, *, now: datetime | None = None) -> bool: ...
    def lock_holder(self, env: str, *, now: datetime | None = None) -> LockInfo | None: ...

    # approvals
    def create_approval(self, request: ApprovalRequest, *, now: datetime | None = None) -> Approval: ...
    def get_approval(self, approval_id: str) -> Approval | None: ...
    def decide(
        self,
        approval_id: str,
        decided_by: str,
        decision: Decision,
        now: datetime | None = None,
        *,
        surface: str = "slack",
    ) -> Approval: ...
    def consume(
        self,
        approval_id: str,
        run_id: str,
        *,
        actor: str | None = None,
        surface: str = "cli",
        now: datetime | None = None,
        max_age_s: float | None = None,
    ) -> Approval: ...
    def void(
        self, approval_id: str, reason: str, *, actor: str = "cutover-bot", now: datetime | None = None
    ) -> Approval: ...
    def pending_approvals(self, env: str, *, now: datetime | None = None) -> list[Approval]: ...
    def set_approval_message(self, approval_id: str, channel: str, ts: str) -> None: ...

    # watches
    def save_watch(self, watch: WatchState) -> None: ...
    def active_watches(self) -> list[WatchState]: ...
    def clear_watch(self, env: str, run_id: str) -> bool: ...

    # confirmations
    def record_confirmation(
        self, env: str, run_id: str, step: str, confirmed_by: str, surface: str, *, now: datetime | None = None
    ) -> Confirmation: ...
    def confirmation(self, run_id: str, step: str) -> Confirmation | None: ...

    def close(self) -> None: ...
