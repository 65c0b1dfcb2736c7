"""The one entry point every delivery path (CLI, Slack, Actions, PR comments) calls to run a command.

execute() = pass the gate, run the command's runner (or its planner for a dry run), write the
redacted evidence bundle, publish it to the PR when there is one. Callers render the `Outcome`;
they never run checks themselves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from commands.config import CutoverConfig
from commands.evidence import Bundle, write_bundle
from commands.gate import Authorizer, LocalOperator, Refused, admit
from commands.registry import UsageError
from commands.report import Report
from commands.request import ProgressFn, RunRequest

log = logging.getLogger(__name__)

__all__ = [
    "EvidenceResult",
    "Outcome",
    "ProgressFn",
    "Publisher",
    "Refused",
    "RunRequest",
    "UsageError",
    "execute",
]


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
    bundle: Bundle | None  # None for a dry run: it writes nothing, not even locally
    evidence: EvidenceResult = field(
        default_factory=lambda: EvidenceResult("local", "no PR given: evidence kept locally")
    )


DRY_RUN_EVIDENCE = EvidenceResult("local", "dry run: nothing was changed or written anywhere (no upstream, no GitHub)")


def execute(
    request: RunRequest,
    *,
    config: CutoverConfig,
    progress: ProgressFn = lambda _: None,
    publisher: Publisher | None = None,
    evidence_root: Path | str | None = None,
    authorizer: Authorizer | None = None,
) -> Outcome:
    """Raises UsageError/ConfigError (bad input: exit 2) or Refused (a rule says no: exit 1)."""
    gate = admit(request, config, authorizer=authorizer or LocalOperator())
    request = gate.request
    if request.dry_run:
        return Outcome(gate.spec.load_planner()(request, config), None, DRY_RUN_EVIDENCE)
    report = gate.spec.load_runner()(request, config, progress)
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
