"""`/cutover status ENV` and `python -m bot status --env ENV`: where an environment stands, from the store.

The timeline a manager reads: the phase and its age, who holds the lock, the last runs with their
verdicts and evidence links, pending approvals, and the audit trail. One model (`EnvStatus`), two
renderings: Slack mrkdwn and the terminal (`--md`'s change-record timeline is commands/timeline.py).
Every rendering is redacted here, at the exit, like every other output of the bot.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from commands.redaction import REDACTOR
from commands.state import Approval, AuditEntry, LockInfo, RunRecord, RunStatus, StateStore
from commands.state.model import ago, as_utc
from commands.state.phases import Phase, phase

RUNS = 10  # the last runs shown
AUDIT = 15  # audit entries shown
TIMELINE_AUDIT = 200  # audit entries read for `status --md` (commands/timeline.py)
LINE_LIMIT = 300  # one line of a rendering, at most (a summary may be long)

_VERDICT_ICON = {
    RunStatus.PASS: "✅",
    RunStatus.FAIL: "❌",
    RunStatus.RUNNING: "⏳",
    RunStatus.INTERRUPTED: "⚠️",
    RunStatus.REFUSED: "🚫",
}


@dataclass(frozen=True)
class EnvStatus:
    env: str
    now: datetime
    phase: Phase
    lock: LockInfo | None
    runs: list[RunRecord]  # newest first
    approvals: list[Approval]  # pending, oldest first
    audit: list[AuditEntry]  # newest first


def env_status(
    store: StateStore, env: str, *, now: datetime | None = None, runs: int = RUNS, audit: int = AUDIT
) -> EnvStatus:
    """Everything the status shows, read from the store now. Raises StateError when it cannot be read."""
    now = as_utc(now)
    return EnvStatus(
        env=env,
        now=now,
        phase=phase(store, env, now),
        lock=store.lock_holder(env, now=now),
        runs=store.runs(env, runs),
        approvals=store.pending_approvals(env, now=now),
        audit=store.audit_trail(env, audit),
    )


# --- pieces shared by the renderings --------------------------------------------------------------


def _age(status: EnvStatus, at: datetime | None) -> str:
    return ago(max(timedelta(0), status.now - at)) if at else "never"


def _clip(text: str, limit: int = LINE_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def phase_line(status: EnvStatus) -> str:
    return f"{status.env}: {status.phase.text}"


def lock_text(status: EnvStatus) -> str:
    lock = status.lock
    if lock is None:
        return "free"
    return (
        f"held by the {lock.holder.describe()} since {lock.since:%H:%M:%S} UTC "
        f"(lease until {lock.expires_at:%H:%M:%S} UTC)"
    )


def run_line(status: EnvStatus, run: RunRecord, *, link: str | None = None) -> str:
    """'14:02:11 UTC rollback FAIL (run 3f2a…) by U0ENG (slack), 5 min ago, PR #7: summary'."""
    verdict = run.status.value + (" (dry run)" if run.dry_run else "")
    pr = f", PR #{run.pr}" if run.pr else ""
    summary = f": {_clip(run.summary, 160)}" if run.summary else ""
    evidence = f" [{link}]" if link else ""
    return (
        f"{run.started_at:%Y-%m-%d %H:%M:%S} UTC {run.command} {verdict} (run {run.run_id}) by {run.requested_by} "
        f"({run.surface}), {_age(status, run.finished_at or run.started_at)}{pr}{summary}{evidence}"
    )


def approval_line(status: EnvStatus, approval: Approval) -> str:
    left = max(timedelta(0), approval.expires_at - status.now)
    return (
        f"{approval.command} approval {approval.approval_id} requested by {approval.requested_by} "
        f"{_age(status, approval.created_at)}, expires in {int(left.total_seconds() // 60)} min "
        f"{int(left.total_seconds() % 60)} s"
    )


def audit_line(entry: AuditEntry) -> str:
    run = f" run {entry.run_id}" if entry.run_id else ""
    detail = f": {_clip(entry.detail, 200)}" if entry.detail else ""
    return f"{entry.at:%Y-%m-%d %H:%M:%S} UTC {entry.action} by {entry.actor} ({entry.surface}){run}{detail}"


# --- renderings -------------------------------------------------------------------------------------


def _escape(text: str) -> str:
    """Slack mrkdwn's three control characters (no mention or link can be smuggled in)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_slack(status: EnvStatus, *, keep_account_ids: bool = False) -> str:
    """Slack mrkdwn, already redacted and escaped."""
    e = _escape
    lines = [
        f"*Cutover status: {e(status.env)}*",
        f"*Phase:* {e(status.phase.text)}",
        f"*Lock:* {e(lock_text(status))}",
    ]
    lines.append(f"*Last runs* ({len(status.runs)}, newest first):" if status.runs else "*Last runs:* none yet")
    for run in status.runs:
        link = f" <{run.evidence_url}|evidence>" if run.evidence_url and _safe_url(run.evidence_url) else ""
        lines.append(f"{_VERDICT_ICON.get(run.status, '•')} {e(run_line(status, run))}{link}")
    if status.approvals:
        lines.append("*Pending approvals:*")
        lines += [f"• {e(approval_line(status, a))}" for a in status.approvals]
    else:
        lines.append("*Pending approvals:* none")
    lines.append("*Audit trail* (newest first):" if status.audit else "*Audit trail:* empty")
    lines += [f"• {e(audit_line(a))}" for a in status.audit]
    return REDACTOR.redact("\n".join(lines), keep_account_ids=keep_account_ids)


def render_text(status: EnvStatus, *, keep_account_ids: bool = False) -> str:
    """The terminal's plain text, redacted."""
    lines = [f"cutover status: {status.env} (at {status.now:%Y-%m-%d %H:%M:%S} UTC)", f"phase: {status.phase.text}"]
    lines.append(f"lock: {lock_text(status)}")
    lines.append(f"last runs ({len(status.runs)}, newest first):" if status.runs else "last runs: none yet")
    lines += [f"  {run_line(status, r, link=r.evidence_url)}" for r in status.runs]
    lines.append("pending approvals:" if status.approvals else "pending approvals: none")
    lines += [f"  {approval_line(status, a)}" for a in status.approvals]
    lines.append("audit trail (newest first):" if status.audit else "audit trail: empty")
    lines += [f"  {audit_line(a)}" for a in status.audit]
    return REDACTOR.redact("\n".join(lines), keep_account_ids=keep_account_ids)


def _safe_url(url: str) -> bool:
    return url.startswith(("https://", "http://")) and not any(c in url for c in "<>| \n")
