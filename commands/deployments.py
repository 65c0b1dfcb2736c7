"""Each cutover phase that changes an environment is also a GitHub Deployment of the PR's head commit.

Reviewers see the cutover where GitHub shows deployments (the PR's timeline, the repository's
environments): one deployment per canary, enable-outbound and rollback run with a PR, the command
as its `task`, the env as its `environment`, `{run_id, pr}` as its payload, created with
`auto_merge=False` and `required_contexts=[]` (GitHub would otherwise merge the default branch into
the ref, or refuse the deployment because a commit status such as a failed preflight is not green).

Its statuses: `in_progress` when the run starts (a background thread: the run never waits for
GitHub), then `success` or `failure` with `log_url` pointing at the committed evidence, posted by the
publisher's outbox job after the evidence lands (so it survives a GitHub outage). A rollback that
turned the outbound lever off marks the bot's successful enable-outbound deployments of the env
`inactive` and records its own. `auto_inactive` is never relied on: GitHub applies it only to
non-production, non-transient environments.

What was done is the bot's own record in the outbox folder (`deploy-...`), so a retry in another
process never creates a second deployment; a per-run lock keeps the start and the finish in order.
Only the bot's own deployments and statuses are ever read back.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from commands.outbox import Outbox
from commands.redaction import REDACTOR, Redactor
from commands.registry import title
from commands.request import RunRequest

log = logging.getLogger(__name__)

DEPLOYED = frozenset({"canary", "enable-outbound", "rollback"})  # the phases that change the environment
# An enable-outbound that rolled back by itself marks its first rollback step's data with this key:
# {run_id, passed, off, reason}. That rollback is a run of its own, so it is a Deployment of its own too.
AUTO_ROLLBACK_KEY = "automatic_rollback"
OUTBOUND = "enable-outbound"
START_WAIT_S = 15.0  # how long publishing waits for a start still talking to GitHub
LOCK_TIMEOUT_S = 30.0
DESCRIPTION_LIMIT = 140


class _Head(Protocol):
    @property
    def sha(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def merged(self) -> bool: ...


class _Made(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def sha(self) -> str: ...


class _Listed(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def state(self) -> str | None: ...


@runtime_checkable
class DeploymentSink(Protocol):
    """What integrations/github.py's GitHubEvidence offers; every failure is an UpstreamError."""

    def pr_head(self, pr: int) -> _Head: ...
    def create_deployment(
        self, *, ref: str, task: str, environment: str, description: str, payload: dict[str, Any] | None = None
    ) -> _Made: ...
    def create_deployment_status(
        self,
        deployment_id: int,
        state: str,
        *,
        description: str = "",
        log_url: str | None = None,
        auto_inactive: bool = False,
    ) -> None: ...
    def deployments(self, *, environment: str, task: str | None = None, limit: int = 10) -> Sequence[_Listed]: ...


def record_key(env: str, command: str, run_id: str) -> str:
    """The outbox record of one run's deployment: a safe file name."""
    raw = f"{env}-{command}-{run_id}"
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", raw)[:80]
    return f"deploy-{slug}-{hashlib.sha256(raw.encode()).hexdigest()[:10]}"


def _clip(text: str) -> str:
    return text if len(text) <= DESCRIPTION_LIMIT else text[: DESCRIPTION_LIMIT - 1] + "…"


class Deployments:
    """One repository's deployments of the cutover, with the bot's record of each run's in the outbox."""

    def __init__(self, sink: DeploymentSink, outbox: Outbox, *, redactor: Redactor = REDACTOR) -> None:
        self.sink = sink
        self.outbox = outbox
        self.redactor = redactor

    # --- the record ------------------------------------------------------------------------
    def record(self, env: str, command: str, run_id: str) -> dict[str, Any]:
        found = self.outbox.history(record_key(env, command, run_id))
        return dict(found[0]) if found else {}

    def _save(self, key: str, record: dict[str, Any]) -> None:
        self.outbox.save_history(key, [record])

    # --- at the start of a run ---------------------------------------------------------------
    def start(self, *, env: str, command: str, run_id: str, pr: int, requested_by: str) -> int | None:
        """Create the run's deployment of the PR head and mark it `in_progress`; its id (None: skipped)."""
        key = record_key(env, command, run_id)
        with self.outbox.lock(key, timeout_s=LOCK_TIMEOUT_S):
            record = self.record(env, command, run_id)
            if record.get("skipped") or record.get("final"):
                return record.get("id")
            if not record.get("id"):
                head = self.sink.pr_head(pr)
                if head.merged or head.state != "open":
                    self._save(key, {"skipped": f"PR #{pr} is not open"})
                    return None
                record = self._create(key, env=env, command=command, run_id=run_id, pr=pr, ref=head.sha,
                                      requested_by=requested_by)  # fmt: skip
            if not record.get("in_progress"):
                text = f"{title(command)} on {env} running, requested by {requested_by} (run {run_id})"
                self.sink.create_deployment_status(record["id"], "in_progress", description=self._text(text))
                record["in_progress"] = True
                self._save(key, record)
            return int(record["id"])

    def start_quietly(self, **kwargs: Any) -> None:
        """`start`, logging instead of raising: the finish creates what a failed start could not."""
        try:
            self.start(**kwargs)
        except Exception as exc:
            log.warning("deployment start for run %s not recorded yet: %s", kwargs.get("run_id"), self._text(str(exc)))

    def _create(
        self, key: str, *, env: str, command: str, run_id: str, pr: int, ref: str, requested_by: str
    ) -> dict[str, Any]:
        text = f"{title(command)} on {env} requested by {requested_by} (run {run_id})"
        made = self.sink.create_deployment(
            ref=ref, task=command, environment=env, description=self._text(text), payload={"run_id": run_id, "pr": pr}
        )
        record = {"id": int(made.id), "sha": made.sha}
        self._save(key, record)  # before anything else: a retry never creates a second one
        return record

    # --- once the evidence landed ---------------------------------------------------------------
    def finish(
        self,
        *,
        env: str,
        command: str,
        run_id: str,
        pr: int,
        requested_by: str,
        passed: bool,
        summary: str,
        head_sha: str,
        log_url: str | None,
        ends_outbound: bool = False,
        state: str | None = None,
        create: bool = True,
    ) -> None:
        """`success`/`failure` (or `state`) with the evidence link; a rollback that turned outbound off
        then marks the bot's successful enable-outbound deployments `inactive`. Each step once.
        `create=False`: end a deployment the start made, never make one."""
        key = record_key(env, command, run_id)
        with self.outbox.lock(key, timeout_s=LOCK_TIMEOUT_S):
            record = self.record(env, command, run_id)
            if record.get("skipped") or (not record.get("id") and not create):
                return
            if not record.get("id"):  # the start never reached GitHub: deploy the head the evidence was built on
                record = self._create(key, env=env, command=command, run_id=run_id, pr=pr, ref=head_sha,
                                      requested_by=requested_by)  # fmt: skip
            if not record.get("final"):
                final = state or ("success" if passed else "failure")
                self.sink.create_deployment_status(
                    record["id"], final, description=self._text(summary), log_url=log_url, auto_inactive=False
                )
                record["final"] = final
                self._save(key, record)
            if ends_outbound and not record.get("ended_outbound"):
                self._end_outbound(env, run_id, exclude=int(record["id"]))
                record["ended_outbound"] = True
                self._save(key, record)

    def _end_outbound(self, env: str, run_id: str, *, exclude: int) -> None:
        for d in self.sink.deployments(environment=env, task=OUTBOUND, limit=10):
            if d.id != exclude and d.state == "success":
                text = f"outbound turned off by rollback run {run_id}"
                self.sink.create_deployment_status(d.id, "inactive", description=self._text(text))

    def _text(self, text: str) -> str:
        return _clip(self.redactor.redact(text))


# --- from execute: the start runs beside the run ---------------------------------------------------
@runtime_checkable
class Deploys(Protocol):
    """A publisher that records deployments (commands/publish.py's GitHubPublisher with a capable sink)."""

    deployments: Deployments | None


def start_in_background(publisher: object, request: RunRequest, run_id: str) -> threading.Thread | None:
    """Start the run's deployment on a daemon thread, or None when there is none to record."""
    tracker = publisher.deployments if isinstance(publisher, Deploys) else None
    if tracker is None or request.pr is None or request.dry_run or request.command not in DEPLOYED:
        return None
    thread = threading.Thread(
        target=tracker.start_quietly,
        kwargs={
            "env": request.env,
            "command": request.command,
            "run_id": run_id,
            "pr": request.pr,
            "requested_by": request.requested_by,
        },
        name=f"deploy-start-{run_id}",
        daemon=True,
    )
    thread.start()
    return thread


def automatic_rollback(checks: Sequence[Any]) -> dict[str, Any] | None:
    """The automatic rollback a report's steps carry (see AUTO_ROLLBACK_KEY), or None."""
    for check in checks:
        found = (getattr(check, "data", None) or {}).get(AUTO_ROLLBACK_KEY)
        if isinstance(found, dict) and found.get("run_id"):
            return dict(found)
    return None


def end_interrupted(publisher: object, *, env: str, command: str, run_id: str, pr: int | None, why: str) -> None:
    """A run that died mid-way: the deployment it started ends as `error` saying why, so GitHub does not
    show it in progress for ever. Only a deployment this machine's outbox recorded (never one created now)."""
    tracker = publisher.deployments if isinstance(publisher, Deploys) else None
    if tracker is None or pr is None or command not in DEPLOYED:
        return
    try:
        tracker.finish(env=env, command=command, run_id=run_id, pr=pr, requested_by="cutover-bot", passed=False,
                       summary=why, head_sha="", log_url=None, state="error", create=False)  # fmt: skip
    except Exception as exc:
        log.warning("the deployment of interrupted run %s was not ended: %s", run_id, REDACTOR.redact(str(exc)))


def settle(started: threading.Thread | None, timeout_s: float = START_WAIT_S) -> None:
    """Before publishing: give a start still in flight a moment (the finish takes its lock anyway)."""
    if started is not None:
        started.join(timeout_s)
