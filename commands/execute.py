"""The one entry point every delivery path (CLI, Slack, Actions, PR comments) calls to run a command.

execute() = pass the gate, run the command's runner (or its planner for a dry run), write the
redacted evidence bundle, publish it to the PR when there is one. Callers render the `Outcome`;
they never run checks themselves.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from commands.config import ConfigError, CutoverConfig
from commands.evidence import Bundle, write_bundle
from commands.gate import Authorizer, LocalOperator, Refused, admit
from commands.registry import CommandSpec, UsageError
from commands.render import summary_line
from commands.report import Report, new_run_id
from commands.request import ProgressFn, RunRequest
from commands.run_context import LEASE_S, LeaseKeeper, RunContext
from commands.state import (
    LockHeld,
    LockHolder,
    RunRecord,
    RunStatus,
    StateError,
    StateStore,
    StoreConfigError,
    open_store,
)

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
    store: StateStore | None = None,
) -> Outcome:
    """Raises UsageError/ConfigError (bad input: exit 2) or Refused (a rule says no: exit 1)."""
    store = store or store_for(config)
    gate = admit(request, config, authorizer=authorizer or LocalOperator(), store=store)
    request = gate.request
    if request.dry_run:
        return Outcome(gate.spec.load_planner()(request, config), None, DRY_RUN_EVIDENCE)
    run = RunContext(request, config, gate.env, store, request.run_id or new_run_id(), progress)
    with _holding_the_lock(run, gate.spec):
        store.record_run_start(
            RunRecord(
                run_id=run.run_id,
                env=request.env,
                command=request.command,
                started_at=run.started_at,
                requested_by=request.requested_by,
                surface=request.surface,
                pr=request.pr,
            )
        )
        for step in request.confirmations:  # the CLI's --confirm: recorded as the OS user, before the run asks
            store.record_confirmation(request.env, run.run_id, step, request.requested_by, request.surface)
        try:
            report = gate.spec.load_runner()(run)
        except BaseException:
            _finish(store, run, RunStatus.INTERRUPTED, summary="stopped by an internal error")
            raise
    bundle = write_bundle(report, evidence_root or config.evidence_dir, keep_account_ids=request.include_aws_account_id)
    status = RunStatus.PASS if report.passed else RunStatus.FAIL
    _finish(
        store, run, status, summary=summary_line(report), sha256=hashlib.sha256(bundle.files["report.json"]).hexdigest()
    )
    evidence = _publish(report, bundle, request, publisher)
    if evidence.url:
        _finish_evidence(store, run, evidence.url)
    return Outcome(report, bundle, evidence)


@contextmanager
def _holding_the_lock(run: RunContext, spec: CommandSpec) -> Iterator[None]:
    """A mutating command holds its env's lock for the whole run; an urgent one (rollback) takes it
    over, never waiting. A read-only command takes none."""
    if not spec.mutating:
        yield
        return
    holder = LockHolder(
        run_id=run.run_id, command=spec.name, requested_by=run.request.requested_by, surface=run.request.surface
    )
    try:
        if spec.urgent:
            lease = run.store.preempt(run.request.env, holder, LEASE_S)
        else:
            lease = run.store.acquire(run.request.env, holder, LEASE_S)
    except LockHeld as exc:
        raise Refused("lock", f"{exc} Try again when it finishes, or /rollback {run.request.env} to stop it.") from None
    run.lease = lease
    with LeaseKeeper(run.store, lease):
        yield


def _finish(store: StateStore, run: RunContext, status: RunStatus, *, summary: str, sha256: str | None = None) -> None:
    try:
        store.record_run_finish(run.request.env, run.run_id, status, evidence_sha256=sha256, summary=summary)
    except StateError:  # the bundle on disk is the record; a store that cannot write must not lose it
        log.exception("recording the end of run %s failed", run.run_id)


def _finish_evidence(store: StateStore, run: RunContext, url: str) -> None:
    try:
        store.set_run_evidence(run.request.env, run.run_id, url)
    except StateError:
        log.exception("recording the evidence link of run %s failed", run.run_id)


def _publish(report: Report, bundle: Bundle, request: RunRequest, publisher: Publisher | None) -> EvidenceResult:
    if request.pr is None:
        return EvidenceResult("local", "no PR given: evidence kept locally, nothing written to GitHub")
    if publisher is None:
        return EvidenceResult(
            "local",
            f"PR #{request.pr} named, but GitHub is not configured (GITHUB_TOKEN and github.repo or "
            "GITHUB_REPOSITORY): evidence kept locally",
        )
    try:
        return publisher.publish(report, bundle, pr=request.pr, keep_account_ids=request.include_aws_account_id)
    except Exception as exc:  # the run's result stands even if publishing breaks; the bundle is on disk
        log.exception("publishing evidence failed")
        return EvidenceResult("local", f"publishing failed ({exc.__class__.__name__}); bundle kept at {bundle.path}")


_stores: dict[tuple[str, str], StateStore] = {}
_stores_lock = threading.Lock()


def store_for(config: CutoverConfig) -> StateStore:
    """One store per `state` URL (and working directory, for relative SQLite paths) per process."""
    key = (config.state, os.getcwd())
    with _stores_lock:
        if key not in _stores:
            try:
                _stores[key] = open_store(config.state)
            except StoreConfigError as exc:
                raise ConfigError(f"state: {exc}") from None
        return _stores[key]
