"""What a command's runner is handed: the request, the env, the store, the lock it holds, and a
step runner that reports each step live and stops at the next step once the run was preempted."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from commands.checks import Skip, Verdict
from commands.config import CutoverConfig, EnvConfig
from commands.report import CheckResult, Report, Status, utc_now
from commands.request import ProgressFn, RunRequest
from commands.state import Confirmation, Lease, LockLost, StateError, StateStore
from integrations.errors import UpstreamError

log = logging.getLogger(__name__)

LEASE_S = 60.0  # a crashed holder frees the env's lock after this; a live one renews every third of it


class Preempted(Exception):
    """The env's lock was taken over (by a rollback): the run stops at its next step."""


@dataclass
class RunContext:
    request: RunRequest
    config: CutoverConfig
    env: EnvConfig
    store: StateStore
    run_id: str
    progress: ProgressFn = lambda _: None
    lease: Lease | None = None
    started_at: datetime = field(default_factory=utc_now)
    _lost: str | None = None

    @property
    def requester(self) -> str:
        return self.request.requested_by

    def preempted(self) -> str | None:
        """Why this run no longer holds its env's lock, or None while it does (or holds none)."""
        if self.lease is None or self._lost:
            return self._lost
        try:
            if self.store.is_current(self.lease):
                return None
        except StateError as exc:  # unknown is not "still ours": stop rather than act without the lock
            self._lost = f"the lock could not be confirmed ({exc})"
            return self._lost
        holder = self.store.lock_holder(self.request.env)
        self._lost = f"preempted by {holder.holder.describe()}" if holder else "its lock expired"
        return self._lost

    # --- person-steps: things a person does in a UI the bot cannot drive (Richpanel's rules) ---------
    def request_confirmation(self, step: str, prompt: str, *, check: str | None = None) -> None:
        """Ask the requester to do `step` and confirm it: surfaces show a button (Slack) or the
        `--confirm` flag to use (CLI). The progress line carries `awaiting` so a surface knows.
        `check`: the report line it stands for (`rule_enabled`), so the verdict replaces it in place."""
        self.progress(
            CheckResult(
                name=check or step,
                status=Status.WARN,
                detail=f"waiting for a person: {prompt}",
                data={"awaiting": step, "run_id": self.run_id, "env": self.request.env, "prompt": prompt},
            )
        )

    def confirmation(self, step: str) -> Confirmation | None:
        try:
            return self.store.confirmation(self.run_id, step)
        except StateError:
            log.exception("reading the %s confirmation failed", step)
            return None

    def wait_for_confirmation(
        self, step: str, prompt: str, timeout_s: float, *, poll_s: float = 0.2, check: str | None = None
    ) -> Confirmation | None:
        """The confirmation, or None when none came within `timeout_s` (or the run was preempted)."""
        found = self.confirmation(step)
        if found is not None:
            return found
        self.request_confirmation(step, prompt, check=check)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
            found = self.confirmation(step)
            if found is not None or self.preempted():
                return found
        return None

    def audit(self, action: str, detail: str = "", *, actor: str | None = None) -> None:
        try:
            self.store.audit(
                self.request.env, actor or self.requester, action, self.request.surface, self.run_id, detail
            )
        except StateError as exc:  # the audit trail is evidence, but a store hiccup must not stop a rollback
            log.warning("audit %s failed: %s", action, exc)


class LeaseKeeper:
    """Renews a live run's lease so only a crashed holder loses the lock."""

    def __init__(self, store: StateStore, lease: Lease, *, lease_s: float = LEASE_S) -> None:
        self.store = store
        self.lease = lease
        self.lease_s = lease_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{lease.env}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.store.release(self.lease)
        except StateError:
            log.exception("releasing the %s lock failed; it frees when its lease runs out", self.lease.env)

    def _run(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                self.lease = self.store.renew(self.lease, self.lease_s)
            except LockLost:
                return  # preempted: the run sees it at its next step
            except StateError:
                log.warning("renewing the %s lock failed; retrying", self.lease.env)


class Steps:
    """A cutover command's steps, in order: each one check in the report, reported as it ends.

    A step raising UpstreamError is FAIL with its reason; Skip is SKIP; anything else is FAIL named
    by its type (never a traceback in the report). Before each step the lock is checked: once the
    run is preempted, every remaining step is SKIP with who took over.
    """

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.results: list[CheckResult] = []

    def run(self, name: str, step: Callable[[], Verdict], *, always: bool = False) -> CheckResult:
        """`always`: run even after preemption (a rollback's own steps never stop)."""
        started = time.monotonic()
        lost = None if always else self.ctx.preempted()
        if lost:
            result = CheckResult(name=name, status=Status.SKIP, detail=f"not run: this run was {lost}")
        else:
            try:
                verdict = step()
                result = CheckResult(name=name, status=verdict.status, detail=verdict.detail, data=verdict.data)
            except Skip as exc:
                result = CheckResult(name=name, status=Status.SKIP, detail=str(exc))
            except UpstreamError as exc:
                result = CheckResult(name=name, status=Status.FAIL, detail=str(exc))
            except Exception as exc:
                log.exception("step %s failed", name)
                result = CheckResult(name=name, status=Status.FAIL, detail=f"internal error ({exc.__class__.__name__})")
        result = result.model_copy(update={"duration_ms": int((time.monotonic() - started) * 1000)})
        self.results.append(result)
        self.ctx.progress(result)
        return result

    def skip(self, name: str, reason: str) -> CheckResult:
        result = CheckResult(name=name, status=Status.SKIP, detail=reason)
        self.results.append(result)
        self.ctx.progress(result)
        return result

    def failed(self) -> bool:
        return any(r.status not in (Status.PASS, Status.WARN) for r in self.results)

    def report(self) -> Report:
        ctx = self.ctx
        return Report(
            command=ctx.request.command,
            env=ctx.request.env,
            run_id=ctx.run_id,
            started_at=ctx.started_at,
            finished_at=utc_now(),
            checks=self.results,
            requested_by=ctx.request.requested_by,
            pr=ctx.request.pr,
        )
