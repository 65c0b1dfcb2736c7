"""The one entry point every delivery path (CLI, Slack, later Actions) calls to run a command.

execute() = look up the command's runner, run it, write the redacted evidence bundle, publish it
to the PR when there is one. Callers render the `Outcome`; they never run checks themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Protocol

from commands.config import CutoverConfig
from commands.evidence import Bundle, write_bundle
from commands.report import CheckResult, Report

log = logging.getLogger(__name__)

ProgressFn = Callable[[CheckResult], None]


@dataclass(frozen=True)
class RunRequest:
    """What a person asked for, from any surface. Validated by the runner against the config."""

    command: str
    env: str
    requested_by: str = "cli"
    pr: int | None = None
    dry_run: bool = False
    include_aws_account_id: bool = False
    aws_region: str | None = None  # overrides the map; a mismatch is a FAIL, never a silent switch
    shop_domain: str | None = None


class CommandRunner(Protocol):
    """One per command (commands/preflight.py, ...): runs it and returns the report, nothing else."""

    def __call__(self, request: RunRequest, config: CutoverConfig, progress: ProgressFn) -> Report: ...


@dataclass(frozen=True)
class EvidenceResult:
    state: Literal["attached", "pending", "local"]
    detail: str  # one line a person reads: "attached to PR #12", "GitHub unavailable: queued for retry"
    url: str | None = None


class Publisher(Protocol):
    """Attaches a bundle to a PR (commands/publish.py implements it over an EvidenceSink)."""

    def publish(self, report: Report, bundle: Bundle, *, pr: int | None, keep_account_ids: bool) -> EvidenceResult: ...

    def retry(self, report: Report) -> EvidenceResult:
        """Another try for a run whose evidence is pending; "attached" once it has landed."""
        ...


@dataclass(frozen=True)
class Outcome:
    report: Report
    bundle: Bundle
    evidence: EvidenceResult = field(
        default_factory=lambda: EvidenceResult("local", "no PR given: evidence kept locally")
    )


class UsageError(Exception):
    """Bad input from a person (unknown command, bad PR number...): exit 2 / an ephemeral reply."""


def runners() -> dict[str, CommandRunner]:
    # Imported here so a command module's import cost is paid only when commands run.
    from commands.preflight import run_preflight

    return {"preflight": run_preflight}


def execute(
    request: RunRequest,
    *,
    config: CutoverConfig,
    progress: ProgressFn = lambda _: None,
    publisher: Publisher | None = None,
    evidence_root: Path | str | None = None,
) -> Outcome:
    table = runners()
    runner = table.get(request.command)
    if runner is None:
        raise UsageError(f"{request.command!r} is not available yet (available: {', '.join(sorted(table))})")
    config.env(request.env)  # unknown env -> ConfigError before anything runs
    if request.pr is None and config.github.default_pr is not None:
        request = replace(request, pr=config.github.default_pr)
    report = runner(request, config, progress)
    bundle = write_bundle(report, evidence_root or config.evidence_dir, keep_account_ids=request.include_aws_account_id)
    if request.pr is None:
        evidence = EvidenceResult("local", "no PR given: evidence kept locally, nothing written to GitHub")
    elif publisher is None:
        evidence = EvidenceResult(
            "local",
            f"PR #{request.pr} named, but GitHub is not configured (GITHUB_TOKEN and github.repo or "
            "GITHUB_REPOSITORY): evidence kept locally",
        )
    else:
        try:
            evidence = publisher.publish(report, bundle, pr=request.pr, keep_account_ids=request.include_aws_account_id)
        except Exception as exc:  # the run's result stands even if publishing breaks; the bundle is on disk
            log.exception("publishing evidence failed")
            evidence = EvidenceResult(
                "local", f"publishing failed ({exc.__class__.__name__}); bundle kept at {bundle.path}"
            )
    return Outcome(report, bundle, evidence)
