"""A command run in the terminal: live checks, the verdict, the evidence, the exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from rich.console import Console

from bot.execution.evidence_publisher import publisher_for, start_drainer
from bot.terminal.console import LiveChecks, print_outcome
from commands.config import CutoverConfig
from commands.evidence import render_files
from commands.execute import Outcome, RunRequest, execute
from commands.gate import Authorizer
from commands.report import CheckResult

EXIT_PASS, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class RunObserver(Protocol):
    """Somewhere else a terminal run is shown as it goes (an Actions runner edits the Slack message)."""

    def progress(self, check: CheckResult) -> None: ...

    def finish(self, outcome: Outcome) -> None: ...


@dataclass(frozen=True)
class Outputs:
    out_json: Path | None = None
    out_md: Path | None = None
    evidence_dir: Path | None = None
    runs: int = 1


def make_console() -> Console:
    # Piped output (CI logs, files) gets a readable width instead of rich's 80-column fallback.
    return Console() if sys.stdout.isatty() else Console(width=120)


def run_in_terminal(
    request: RunRequest,
    config: CutoverConfig,
    *,
    outputs: Outputs = Outputs(),
    console: Console | None = None,
    authorizer: Authorizer | None = None,
    observer: RunObserver | None = None,
) -> int:
    """Run `request` (outputs.runs times), show each as it goes; the exit code of the whole.
    `authorizer`: who may (default: the shell's operator); `observer`: also shown there (Slack)."""
    console = console or make_console()
    publisher = None if request.dry_run else publisher_for(config)
    if publisher is not None:
        start_drainer(publisher)
    keep = request.include_aws_account_id
    outcomes: list[Outcome] = []
    for i in range(outputs.runs):
        label = f"{request.command} {request.env}" + (f" (run {i + 1}/{outputs.runs})" if outputs.runs > 1 else "")
        live = LiveChecks(console, label=label, keep_account_ids=keep)
        progress = live.add if observer is None else _both(live.add, observer.progress)
        with live.shown():
            outcome = execute(
                replace(request, run_id=request.run_id if outputs.runs == 1 else None),
                config=config,
                progress=progress,
                publisher=publisher,
                evidence_root=outputs.evidence_dir,
                authorizer=authorizer,
            )
        print_outcome(console, outcome, keep_account_ids=keep)
        if observer is not None:
            observer.finish(outcome)
        outcomes.append(outcome)
    _write_outputs(outcomes[-1], outputs, keep_account_ids=keep)
    if outputs.runs > 1:
        verdicts = ", ".join(f"{o.report.run_id} {o.report.overall_status}" for o in outcomes)
        passed = sum(o.report.passed for o in outcomes)
        console.print(f"{outputs.runs} runs: {passed} PASS, {outputs.runs - passed} FAIL ({verdicts})", markup=False)
    return EXIT_PASS if all(o.report.passed for o in outcomes) else EXIT_FAIL


def _both(first: Callable[[CheckResult], None], second: Callable[[CheckResult], None]) -> Callable[[CheckResult], None]:
    def progress(check: CheckResult) -> None:
        first(check)
        second(check)

    return progress


def _write_outputs(outcome: Outcome, outputs: Outputs, *, keep_account_ids: bool) -> None:
    if outcome.bundle is not None:
        files = outcome.bundle.files
    else:  # a dry run writes no bundle; its plan still goes where the person asked
        files = render_files(outcome.report, keep_account_ids=keep_account_ids)
    if outputs.out_json:
        outputs.out_json.write_bytes(files["report.json"])
    if outputs.out_md:
        outputs.out_md.write_bytes(files["report.md"])
