"""The one entry point every delivery path (CLI, Slack, Actions, PR comments) calls to run a command.

execute() = pass the gate, run the command's runner (or its planner for a dry run), write the
redacted evidence bundle, publish it to the PR when there is one. Callers render the `Outcome`;
they never run checks themselves.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from commands.approvals import HeadLookup, approval_check, head_lookup_from
from commands.chart import chart_files
from commands.config import CutoverConfig
from commands.deployments import settle, start_in_background
from commands.evidence import Bundle, write_bundle
from commands.gate import Authorizer, LocalOperator, Refused, admit
from commands.registry import CommandSpec, UsageError
from commands.render import summary_line
from commands.report import CheckResult, Report, Status, new_run_id
from commands.request import ProgressFn, RunRequest
from commands.run_context import LEASE_S, LeaseKeeper, RunContext
from commands.state import (
    LockHeld,
    LockHolder,
    RunRecord,
    RunStatus,
    StateError,
    StateStore,
    store_for,  # lives with the stores (preflight's rollback_ready opens the same one); kept importable here
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
    head_lookup: HeadLookup | None = None,
) -> Outcome:
    """Raises UsageError/ConfigError (bad input: exit 2) or Refused (a rule says no: exit 1).
    `head_lookup` reads a PR's head commit for an approval's binding (default: the publisher's GitHub)."""
    store = store or store_for(config)
    head_lookup = head_lookup or head_lookup_from(publisher)
    gate = admit(request, config, authorizer=authorizer or LocalOperator(), store=store, head_lookup=head_lookup)
    request = gate.request
    if request.dry_run:
        return Outcome(gate.spec.load_planner()(request, config), None, DRY_RUN_EVIDENCE)
    run = RunContext(request, config, gate.env, store, request.run_id or new_run_id(), progress)
    log.info("%s %s: run %s requested by %s (%s)", request.command, request.env, run.run_id, request.requested_by,
             request.surface)  # fmt: skip
    unrecorded: str | None = None  # why the store could not record this (urgent) run
    with _holding_the_lock(run, gate.spec):
        approved = _use_approval(run)  # once, atomically, holding the lock: a second use is refused
        try:
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
        except StateError as exc:
            if not gate.spec.urgent:
                raise Refused("state", _store_down(exc, request.env)) from None
            log.warning("the state store is unavailable (%s): the rollback runs unrecorded", exc)
            unrecorded = str(exc)
        deploying = start_in_background(publisher, request, run.run_id)  # `in_progress` on GitHub, never waited on
        for step in request.confirmations:  # the CLI's --confirm: recorded as the OS user, before the run asks
            try:
                store.record_confirmation(request.env, run.run_id, step, request.requested_by, request.surface)
            except StateError as exc:
                if not gate.spec.urgent:
                    raise Refused("state", _store_down(exc, request.env)) from None
                log.warning("the state store is unavailable (%s): --confirm %s not recorded", exc, step)
        try:
            report = gate.spec.load_runner()(run)
        except BaseException:
            _finish(store, run, RunStatus.INTERRUPTED, summary="stopped by an internal error")
            raise
    if approved is not None:  # the evidence shows who approved what, bound to which head and evidence
        report = report.model_copy(update={"checks": [approved, *report.checks]})
    if unrecorded is not None:  # the phase rules cannot see this run: say so in its evidence
        note = CheckResult(
            name="state_store",
            status=Status.WARN,
            detail=f"not recorded: the state store was unavailable ({unrecorded}); the phase rules do not know of "
            f"this {request.command}: record it by running /{request.command} {request.env} again when the store "
            "answers",
        )
        report = report.model_copy(update={"checks": [*report.checks, note]})
    bundle = write_bundle(
        report,
        evidence_root or config.evidence_dir,
        keep_account_ids=request.include_aws_account_id,
        extra_files=chart_files(run, report),  # chart.png for the cutover phases (never preflight)
    )
    status = RunStatus.PASS if report.passed else RunStatus.FAIL
    _finish(
        store, run, status, summary=summary_line(report), sha256=hashlib.sha256(bundle.files["report.json"]).hexdigest()
    )
    log.info("%s", summary_line(report))
    if not gate.spec.urgent:  # a rollback never waits on GitHub: its deployment is finished by the outbox job
        settle(deploying)
    evidence = _publish(report, bundle, request, publisher, urgent=gate.spec.urgent, store=store)
    log.debug("run %s evidence: %s", run.run_id, evidence.detail)
    if evidence.url:
        _finish_evidence(store, run, evidence.url)
    return Outcome(report, bundle, evidence)


def _use_approval(run: RunContext) -> CheckResult | None:
    """Consume the approval the gate checked (a conditional write: used once) and report it live."""
    request = run.request
    if request.approval_id is None:
        return None
    try:
        approval = run.store.consume(
            request.approval_id,
            run.run_id,
            actor=request.requested_by,
            surface=request.surface,
            max_age_s=run.env.approval_ttl_minutes * 60,
        )
    except StateError as exc:
        raise Refused("approval", f"{exc}") from None
    check = approval_check(approval)
    run.progress(check)
    return check


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
    except StateError as exc:
        if not spec.urgent:
            raise Refused("state", _store_down(exc, run.request.env)) from None
        # A rollback never waits on the store: it acts without the lock (nothing else can take it either).
        log.warning("the state store is unavailable (%s): the rollback acts without the env's lock", exc)
        yield
        return
    run.lease = lease
    with LeaseKeeper(run.store, lease):
        yield


def _store_down(exc: StateError, env: str) -> str:
    return (
        f"the state store is unavailable ({exc}): nothing was changed. Try again when it answers; "
        f"/rollback {env} works without it"
    )


def _finish(store: StateStore, run: RunContext, status: RunStatus, *, summary: str, sha256: str | None = None) -> None:
    try:
        store.record_run_finish(run.request.env, run.run_id, status, evidence_sha256=sha256, summary=summary)
    except StateError as exc:  # the bundle on disk is the record; a store that cannot write must not lose it
        log.warning("recording the end of run %s failed: %s", run.run_id, exc)


def _finish_evidence(store: StateStore, run: RunContext, url: str) -> None:
    try:
        store.set_run_evidence(run.request.env, run.run_id, url)
    except StateError as exc:
        log.warning("recording the evidence link of run %s failed: %s", run.run_id, exc)


def _publish(
    report: Report,
    bundle: Bundle,
    request: RunRequest,
    publisher: Publisher | None,
    *,
    urgent: bool = False,
    store: StateStore | None = None,
) -> EvidenceResult:
    if request.pr is None:
        return EvidenceResult("local", "no PR given: evidence kept locally, nothing written to GitHub")
    if publisher is None:
        return EvidenceResult(
            "local",
            f"PR #{request.pr} named, but GitHub is not configured (GITHUB_TOKEN and github.repo or "
            "GITHUB_REPOSITORY): evidence kept locally",
        )
    enqueue = getattr(publisher, "enqueue", None)  # an urgent run (rollback) never waits on GitHub
    try:
        if urgent and enqueue is not None:
            keep = request.include_aws_account_id
            queued: EvidenceResult = enqueue(report, bundle, pr=request.pr, keep_account_ids=keep)
            if queued.state == "pending":
                _send_in_background(publisher, report, store)
            return queued
        return publisher.publish(report, bundle, pr=request.pr, keep_account_ids=request.include_aws_account_id)
    except Exception as exc:  # the run's result stands even if publishing breaks; the bundle is on disk
        log.exception("publishing evidence failed")
        return EvidenceResult("local", f"publishing failed ({exc.__class__.__name__}); bundle kept at {bundle.path}")


def _send_in_background(publisher: Publisher, report: Report, store: StateStore | None) -> threading.Thread:
    """Deliver queued evidence now, off the run's path (a daemon thread: it never delays the result).
    If this process ends first, the outbox keeps the job for the drainer and the Slack app's follow-up."""

    def send() -> None:
        try:
            result = publisher.retry(report)
        except Exception:
            log.exception("sending the queued evidence of run %s failed; it stays in the outbox", report.run_id)
            return
        if result.url and store is not None:
            try:
                store.set_run_evidence(report.env, report.run_id, result.url)
            except StateError:
                log.exception("recording the evidence link of run %s failed", report.run_id)

    thread = threading.Thread(target=send, name=f"evidence-{report.run_id}", daemon=True)
    thread.start()
    return thread
