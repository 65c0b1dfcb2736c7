"""Text renderings of a report shared by every exit: a one-line summary and a reviewer's Markdown table.

Renderers start from `redacted(report)` and callers redact the final text again (see `evidence`,
`publish`): the data pass hides values before escaping can disguise them, the text pass catches
anything a renderer adds.
"""

from __future__ import annotations

from commands.redaction import REDACTOR, Redactor
from commands.report import CheckResult, Report, Status

STATUS_ICON = {Status.PASS: "✅", Status.FAIL: "❌", Status.WARN: "⚠️", Status.SKIP: "⏭️"}


def redacted(report: Report, *, keep_account_ids: bool = False, redactor: Redactor = REDACTOR) -> Report:
    """The same report with every string redacted: what renderers for people start from."""
    data = redactor.redact_obj(report.model_dump(mode="json"), keep_account_ids=keep_account_ids)
    return Report.model_validate(data)


def redacted_check(check: CheckResult, *, keep_account_ids: bool = False, redactor: Redactor = REDACTOR) -> CheckResult:
    """One check with every string redacted: what a progress display or a process boundary passes on."""
    data = redactor.redact_obj(check.model_dump(mode="json"), keep_account_ids=keep_account_ids)
    return CheckResult.model_validate(data)


def summary_line(report: Report) -> str:
    """E.g. `FAIL preflight prod: 2 failed, 1 skipped, 11 passed in 1.4 s (run 3f2a9c1b0d)`."""
    if report.dry_run:
        verdict = "would run" if report.passed else "would be refused"
        return (
            f"DRY RUN {report.command} {report.env}: {verdict}, {len(report.checks)} steps, "
            f"nothing called (run {report.run_id})"
        )
    counts = []
    for status, word in ((Status.FAIL, "failed"), (Status.SKIP, "skipped"), (Status.WARN, "warned")):
        n = len(report.by_status(status))
        if n:
            counts.append(f"{n} {word}")
    counts.append(f"{len(report.by_status(Status.PASS))} passed")
    return (
        f"{report.overall_status} {report.command} {report.env}: {', '.join(counts)} "
        f"in {report.duration_s:.1f} s (run {report.run_id})"
    )


def _cell(text: str) -> str:
    # Table cells are one line; a literal pipe would end the cell early.
    return " ".join(text.split()).replace("|", "\\|")


def markdown_table(report: Report, *, checks: list | None = None) -> str:
    rows = ["| check | status | detail | ms |", "|---|---|---|---:|"]
    for c in checks if checks is not None else report.failing_first():
        rows.append(f"| `{c.name}` | {STATUS_ICON[c.status]} {c.status} | {_cell(c.detail)} | {c.duration_ms} |")
    return "\n".join(rows)


def markdown(report: Report) -> str:
    """The full reviewer-facing Markdown of one run (report.md in the evidence bundle)."""
    head = (
        f"## {STATUS_ICON[Status(report.overall_status)]} `{report.command}` on `{report.env}`: {report.overall_status}"
    )
    meta = [
        f"- run id: `{report.run_id}`",
        f"- started: {report.started_at.isoformat()}",
        f"- finished: {report.finished_at.isoformat()} ({report.duration_s:.1f} s)",
    ]
    if report.requested_by:
        meta.append(f"- requested by: {report.requested_by}")
    return "\n".join([head, "", summary_line(report), "", *meta, "", markdown_table(report), ""])
