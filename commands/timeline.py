"""An environment's whole cutover at a glance, built from the state store (never from comment text).

Preflight, approvals (who decided, bound to which PR head and evidence), canary, outbound on, the
watch, rollback: one row each with its verdict, time and evidence link, newest first. The same rows
make the bot's per-environment timeline comment on the PR (marker `<!-- cutover:ENV:timeline -->`,
edited in place by commands/publish.py after each run's evidence lands) and the Markdown summary of
`python -m bot status --env ENV --md`, fit to paste into a change record.

What a row says comes from the store's own records: runs (status, summary, requester, PR, evidence
link), approvals (decided_by, head_sha, evidence_sha256, used_by_run), the active watch and the
audit trail (approval and watch entries). Evidence links the store does not hold yet (the run being
published) and a finished watch's verdict (the enable-outbound run's `watch` step) come from the bot's
own record of what it committed (`links`, kept in the outbox folder), never from a comment.
Every rendered text is redacted by the caller at its exit (the PR comment, the terminal).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from commands.redaction import REDACTOR, Redactor
from commands.report import Report
from commands.state import ApprovalStatus, AuditEntry, RunRecord, RunStatus, StateError, StateStore
from commands.state.model import as_utc
from commands.state.phases import phase

TIMELINE_LIMIT = 40  # rows shown, newest first
RUNS_READ = 100
AUDIT_READ = 500
CELL_LIMIT = 300
STATUS_AUDIT = 200  # audit entries in `status --md`
LINKS_LIMIT = 200  # runs whose evidence links (and watch verdict) the bot remembers per env
_WATCH_AUDIT = ("enable_outbound.watch_stopped",)  # audit actions that are the watch's own news
_APPROVAL_ID = re.compile(r"^approval (\S+)")
_PHASE_NAMES = {"preflight": "Preflight", "canary": "Canary", "enable-outbound": "Outbound on", "rollback": "Rollback"}
_ICONS = {
    "PASS": "✅",
    "FAIL": "❌",
    "RUNNING": "⏳",
    "INTERRUPTED": "⚠️",
    "approved": "✅",
    "rejected": "❌",
    "pending": "⏳",
    "void": "⏭️",
    "expired": "⏭️",
    "watching": "👀",
}


def marker(env: str) -> str:
    return f"<!-- cutover:{env}:timeline -->"


@dataclass(frozen=True)
class Entry:
    at: datetime  # when this state was reached (a run's end, a decision), UTC
    phase: str  # Preflight | Approval | Canary | Outbound on | Watch | Rollback
    verdict: (
        str  # PASS | FAIL | RUNNING | INTERRUPTED | approved | rejected | pending | void | expired | watching | ...
    )
    what: str  # one line: who, what
    run_id: str | None = None
    evidence: str | None = None  # a link to the proof (the evidence folder, or the approved head commit)
    chart: str | None = None


def entries(
    store: StateStore,
    env: str,
    *,
    links: Mapping[str, Mapping[str, Any]] | None = None,
    repo_url: str | None = None,
    now: datetime | None = None,
    limit: int = TIMELINE_LIMIT,
) -> list[Entry]:
    """The env's timeline, newest first. `links`: run id -> {"folder", "chart"} the bot committed itself."""
    now = as_utc(now)
    links = links or {}
    rows = [_run_entry(run, links.get(run.run_id) or {}) for run in store.runs(env, limit=RUNS_READ)
            if not run.dry_run and run.status != RunStatus.REFUSED]  # fmt: skip
    trail = store.audit_trail(env, limit=AUDIT_READ)
    rows += _approval_entries(store, env, trail, repo_url=repo_url, now=now)
    rows += _watch_entries(store, env, trail, links)
    rows.sort(key=lambda e: e.at, reverse=True)
    return rows[:limit]


def _run_entry(run: RunRecord, link: Mapping[str, Any]) -> Entry:
    name = _PHASE_NAMES.get(run.command, run.command)
    if run.command == "enable-outbound" and run.status != RunStatus.PASS:
        name = "Enable outbound"
    who = f"requested by {run.requested_by} ({run.surface})"
    pr = f" · PR #{run.pr}" if run.pr else ""
    summary = f" · {run.summary}" if run.summary else ""
    return Entry(
        at=run.finished_at or run.started_at,
        phase=name,
        verdict=run.status.value,
        what=f"{who}{pr}{summary}",
        run_id=run.run_id,
        evidence=link.get("folder") or run.evidence_url,
        chart=link.get("chart"),
    )


def _approval_entries(
    store: StateStore, env: str, trail: list[AuditEntry], *, repo_url: str | None, now: datetime
) -> list[Entry]:
    ids: list[str] = []
    for entry in trail:
        m = _APPROVAL_ID.match(entry.detail or "") if entry.action.startswith("approval.") else None
        if m and m.group(1) not in ids:
            ids.append(m.group(1))
    rows = []
    for approval_id in ids:
        try:
            a = store.get_approval(approval_id)
        except StateError:
            continue
        if a is None or a.env != env:
            continue
        verdict = a.status.value
        if a.status == ApprovalStatus.PENDING and a.expired(now):
            verdict = "expired"
        parts = [f"`{a.command}`"]
        if a.decided_by:
            parts.append(f"{verdict} by {a.decided_by}")
        parts.append(f"requested by {a.requested_by}")
        parts.append(f"head `{a.head_sha[:7]}`" if a.head_sha else "no PR head")
        if a.evidence_sha256:
            parts.append(f"evidence sha256 `{a.evidence_sha256[:12]}`")
        if a.used_by_run:
            parts.append(f"used by run {a.used_by_run}")
        if a.void_reason:
            parts.append(f"voided: {a.void_reason}")
        link = f"{repo_url}/commit/{a.head_sha}" if repo_url and a.head_sha else None
        rows.append(Entry(a.decided_at or a.created_at, "Approval", verdict, " · ".join(parts), a.used_by_run, link))
    return rows


def _watch_entries(
    store: StateStore, env: str, trail: list[AuditEntry], links: Mapping[str, Mapping[str, Any]]
) -> list[Entry]:
    """A finished watch's verdict (from the bot's record of the enable-outbound run it published), a
    watch still running (the store's WatchState), and the audit trail's watch news."""
    rows = []
    for run_id, link in links.items():
        fact = link.get("watch")
        at = _parse(fact.get("at")) if isinstance(fact, Mapping) else None
        if isinstance(fact, Mapping) and at is not None:
            rows.append(Entry(at, "Watch", str(fact.get("status")), str(fact.get("detail") or ""), run_id,
                              link.get("folder"), link.get("chart")))  # fmt: skip
    done = {r.run_id for r in rows}
    rows += [
        Entry(w.started_at, "Watch", "watching", f"alarms watched until {w.ends_at:%H:%M:%S} UTC", w.run_id)
        for w in store.active_watches()
        if w.env == env and w.run_id not in done
    ]
    for entry in trail:
        news = entry.action.startswith("watch.") and not entry.action.endswith(("poll", "tick"))
        if news or entry.action in _WATCH_AUDIT:
            verdict = entry.action.rsplit(".", 1)[1].removeprefix("watch_")
            rows.append(Entry(entry.at, "Watch", verdict, entry.detail or entry.action, entry.run_id))
    return rows


def _parse(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return None


# --- the bot's own record of what it committed --------------------------------------------------
def watch_fact(report: Report, *, redact: Callable[[str], str] = lambda text: text) -> dict[str, str] | None:
    """An enable-outbound run's watch verdict for the timeline: its status, what it said, when it ended."""
    watch = next((c for c in report.checks if c.name == "watch"), None)
    if watch is None:
        return None
    ended = _parse((watch.data or {}).get("window_end")) or report.finished_at
    detail = redact(" ".join(watch.detail.split()))
    return {
        "status": watch.status.value,
        "detail": detail[:CELL_LIMIT],
        "at": as_utc(min(ended, report.finished_at)).isoformat(),
    }


def links_key(env: str) -> str:
    """The outbox record (a safe file name) of the evidence links the bot committed for an env's runs."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", env)[:60]
    return f"timeline-{slug}-{hashlib.sha256(env.encode()).hexdigest()[:10]}"


def add_links(
    entries: list[dict[str, Any]], run_id: str, folder: str, chart: str | None, watch: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """This run's evidence folder (chart, watch verdict) on top of the record: one entry per run, bounded."""
    mine: dict[str, Any] = {"run_id": run_id, "folder": folder, "chart": chart}
    if watch:
        mine["watch"] = dict(watch)
    older = [e for e in entries if e.get("run_id") != run_id and isinstance(e.get("run_id"), str)]
    return [mine, *older][:LINKS_LIMIT]


def read_links(outbox_dir: Path | str, env: str) -> dict[str, dict[str, Any]]:
    """The record as `entries` wants it (run id -> links), read from an outbox folder without creating it."""
    path = Path(outbox_dir) / "history" / f"{links_key(env)}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    found = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(found, list):
        return {}
    return {e["run_id"]: e for e in found if isinstance(e, dict) and isinstance(e.get("run_id"), str)}


# --- Markdown --------------------------------------------------------------------------------
def _cell(text: str) -> str:
    one = " ".join(str(text).split()).replace("|", "\\|")
    return one if len(one) <= CELL_LIMIT else one[: CELL_LIMIT - 1] + "…"


def table(rows: list[Entry]) -> str:
    lines = ["| when (UTC) | phase | verdict | what | evidence |", "|---|---|---|---|---|"]
    for e in rows:
        proof = [f"[evidence]({e.evidence})"] if e.evidence else []
        proof += [f"[chart]({e.chart})"] if e.chart else []
        run = f" (run {e.run_id})" if e.run_id and e.phase != "Approval" and e.run_id not in e.what else ""
        lines.append(
            f"| {e.at:%Y-%m-%d %H:%M:%S} | {e.phase} | {_ICONS.get(e.verdict, '•')} {e.verdict} "
            f"| {_cell(e.what + run)} | {' · '.join(proof) or '—'} |"
        )
    if not rows:
        lines.append("| — | — | — | nothing recorded yet | — |")
    return "\n".join(lines)


def markdown(env: str, rows: list[Entry], *, now_text: str, as_of: datetime, heading: str = "##") -> str:
    return "\n".join(
        [
            f"{heading} Cutover timeline: `{env}`",
            "",
            f"**Now:** {now_text} (as of {as_utc(as_of):%Y-%m-%d %H:%M:%S} UTC)",
            "",
            table(rows),
            "",
            "_Newest first. Built by the bot from its state store (runs, approvals, audit trail); "
            "nothing here is read back from a comment._",
            "",
        ]
    )


def comment(
    store: StateStore,
    env: str,
    *,
    links: Mapping[str, Mapping[str, Any]] | None = None,
    repo_url: str | None = None,
    now: datetime | None = None,
    redactor: Redactor = REDACTOR,
    keep_account_ids: bool = False,
) -> str:
    """The PR comment: the marker first (the sink finds the bot's own comment by it), redacted."""
    now = as_utc(now)
    rows = entries(store, env, links=links, repo_url=repo_url, now=now)
    body = markdown(env, rows, now_text=phase(store, env, now).text, as_of=now)
    return redactor.redact(f"{marker(env)}\n{body}", keep_account_ids=keep_account_ids)


def status_markdown(
    store: StateStore,
    env: str,
    *,
    now: datetime | None = None,
    redactor: Redactor = REDACTOR,
    keep_account_ids: bool = False,
    audit: int = STATUS_AUDIT,
    links: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """`python -m bot status --env ENV --md`: the whole cutover of ENV, for a change record: the
    timeline (newest first), who holds the lock, and the audit trail behind it (oldest first)."""
    now = as_utc(now)
    rows = entries(store, env, now=now, links=links)
    body = markdown(env, rows, now_text=phase(store, env, now).text, as_of=now, heading="#")
    holder = store.lock_holder(env, now=now)
    lock = f"held by the {holder.holder.describe()} since {holder.since:%H:%M:%S} UTC" if holder is not None else "free"
    lines = [body, f"**Lock:** {_cell(lock)}", "", "## Audit trail (oldest first)", ""]
    trail = list(reversed(store.audit_trail(env, limit=audit)))
    lines += [
        f"- {e.at:%Y-%m-%d %H:%M:%S} `{e.action}` by {_cell(e.actor)} ({e.surface})"
        + (f" run {e.run_id}" if e.run_id else "")
        + (f": {_cell(e.detail)}" if e.detail else "")
        for e in trail
    ] or ["Empty."]
    return redactor.redact("\n".join(lines) + "\n", keep_account_ids=keep_account_ids)
