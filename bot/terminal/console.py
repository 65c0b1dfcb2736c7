"""Terminal rendering of a run for a person: checks as they finish, then the verdict and the evidence."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console, Group
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from commands import render
from commands.execute import Outcome
from commands.redaction import REDACTOR
from commands.report import CheckResult, Report, Status

STYLE = {Status.PASS: "green", Status.FAIL: "bold red", Status.WARN: "yellow", Status.SKIP: "magenta"}


def checks_table(checks: list[CheckResult], *, title: str | None = None) -> Table:
    table = Table(title=title, show_lines=False, expand=False)
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("detail", overflow="fold")
    table.add_column("ms", justify="right")
    for c in checks:
        # Upstream text is never markup: a detail like "[/admin]" is shown as typed.
        table.add_row(Text(c.name), Text(c.status.value, style=STYLE[c.status]), Text(c.detail), str(c.duration_ms))
    return table


class LiveChecks:
    """A progress line and a growing table; `add` is called from worker threads as checks finish."""

    def __init__(self, console: Console, *, label: str, keep_account_ids: bool) -> None:
        self.console = console
        self.label = label
        self.keep_account_ids = keep_account_ids
        self.done: list[CheckResult] = []
        self._lock = threading.Lock()
        self._live: Live | None = None

    def add(self, result: CheckResult) -> None:
        clean = render.redacted_check(result, keep_account_ids=self.keep_account_ids)
        with self._lock:
            # A step reports more than once (a wait's progress, then its verdict): the newest line replaces
            # the earlier one in place, as in Slack.
            same = next((i for i, c in enumerate(self.done) if c.name == clean.name), None)
            if same is None:
                self.done.append(clean)
            else:
                self.done[same] = clean
            if self._live is not None:
                self._live.update(self._renderable())

    def _renderable(self) -> Group:
        line = Spinner("dots", text=Text(f"{self.label}: {len(self.done)} checks finished, running…"))
        return Group(checks_table(self.done), line)

    @contextmanager
    def shown(self) -> Iterator[LiveChecks]:
        if not self.console.is_terminal:  # logs and CI get the final table only
            yield self
            return
        with Live(self._renderable(), console=self.console, refresh_per_second=8, transient=True) as live:
            self._live = live
            try:
                yield self
            finally:
                self._live = None


def print_outcome(console: Console, outcome: Outcome, *, keep_account_ids: bool) -> None:
    report: Report = render.redacted(outcome.report, keep_account_ids=keep_account_ids)
    console.print(checks_table(report.failing_first(), title=f"{report.command} {report.env}"))
    style = "bold green" if report.passed else "bold red"
    console.print(Text(REDACTOR.redact(render.summary_line(report), keep_account_ids=keep_account_ids), style=style))
    if report.dry_run:
        console.print(Text("DRY RUN: nothing was called, changed or written; the steps above say what would be."))
    else:
        console.print(Text(f"evidence: {outcome.bundle.path if outcome.bundle else '(none)'}"), soft_wrap=True)
    console.print(Text(f"pull request: {REDACTOR.redact(outcome.evidence.detail)}"))
