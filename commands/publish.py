"""Evidence on the pull request: proof files in one commit, a commit status, one sticky comment per env and command.

The domain talks to GitHub only through `EvidenceSink` (integrations/github.py's `GitHubEvidence`
satisfies it; the bot wires it in). Every string handed to the sink passes through the redactor
right before the call, so the sink only ever sees redacted text.

Order per run: commit the files (so the links resolve), then the status, then the comment. When
GitHub fails with something worth retrying, the job waits in the `Outbox` with the steps already
done, and `drain()` (or an `OutboxDrainer` on a timer) finishes it later without repeating any of them.

Evidence you can trust:
- Proof files go only to the head branch of an open PR, in this repository, that is neither the
  default branch nor the PR's base (`refusal()`); otherwise the bundle stays local and the result
  says why. The PR is read afresh before every commit: a PR closed while GitHub was down is seen.
- The sticky comment is the bot's own (the sink matches the marker *and* the token's identity),
  and its history comes from the bot's own record in the outbox folder, never from comment text.
- One PR's evidence is sent under a lock shared by every thread and process using the outbox
  folder: several runs at once each get their commit (built on the head read under the lock), their
  status on that commit, and a line in the one sticky comment.

After the comment, the same job finishes the run's GitHub Deployment (commands/deployments.py:
`success`/`failure` with the evidence folder as `log_url`; a rollback ends the outbound deployment)
and edits the env's timeline comment (commands/timeline.py, marker `<!-- cutover:ENV:timeline -->`),
built from the state store. A retryable failure there keeps the job queued like any other step; a
refusal is logged on the job and never turns attached evidence into "not attached".
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote

from commands import render, timeline
from commands.chart import CHART_FILE
from commands.deployments import DEPLOYED, Deployments, DeploymentSink, automatic_rollback
from commands.evidence import MANIFEST, Bundle
from commands.execute import EvidenceResult
from commands.outbox import CLAIMED_ELSEWHERE, Job, Outbox, is_retryable, retrying
from commands.redaction import REDACTOR, Redactor
from commands.report import Report, Status
from commands.state import StateError, StateStore
from integrations.errors import UpstreamError

log = logging.getLogger(__name__)

COMMENT_LIMIT = 65_536  # GitHub refuses a longer comment body
HISTORY_LIMIT = 20  # runs listed in a sticky comment, newest first
HISTORY_LINE_LIMIT = 300
STATUS_DESCRIPTION_LIMIT = 140
HISTORY_START = "<!-- cutover:history -->"
HISTORY_END = "<!-- /cutover:history -->"
PENDING_DETAIL = "GitHub unavailable: evidence queued, will retry"
QUEUED_DETAIL = "evidence queued without waiting on GitHub (sent in the background)"
JOB_VERSION = 1
PR_LOCK_TIMEOUT_S = 120.0  # how long a run waits for another run's evidence on the same PR


# --- what the domain needs from GitHub --------------------------------------------------
class PullHeadInfo(Protocol):
    @property
    def number(self) -> int: ...
    @property
    def sha(self) -> str: ...
    @property
    def branch(self) -> str: ...
    @property
    def html_url(self) -> str: ...
    @property
    def read_only(self) -> bool: ...  # a fork's branch, or a token that cannot push
    @property
    def reason(self) -> str: ...  # why it is read-only
    @property
    def state(self) -> str: ...  # "open" | "closed"
    @property
    def merged(self) -> bool: ...
    @property
    def base(self) -> str: ...  # the branch the PR merges into
    @property
    def default_branch(self) -> str: ...  # the repository's


class CommitInfo(Protocol):
    @property
    def sha(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def parent(self) -> str | None: ...  # the head the commit was made on


class EvidenceSink(Protocol):
    """A place to leave evidence. Raises `integrations.errors.UpstreamError` on any failure.

    `find_comment`/`upsert_comment` see only comments written by the sink's own identity.
    """

    def pr_head(self, pr: int) -> PullHeadInfo: ...
    def find_comment(self, pr: int, marker: str) -> tuple[int, str] | None: ...
    def upsert_comment(self, pr: int, marker: str, body: str) -> str: ...
    def set_status(self, sha: str, context: str, state: str, description: str, target_url: str | None) -> None: ...
    def commit_files(self, branch: str, files: dict[str, bytes], message: str) -> CommitInfo: ...


@runtime_checkable
class StatusReader(Protocol):
    """Optional: lets the publisher carry the other cutover statuses onto the evidence commit."""

    def statuses(self, sha: str) -> dict[str, tuple[str, str, str | None]]: ...


def marker(env: str, command: str) -> str:
    return f"<!-- cutover:{env}:{command} -->"


def status_context(env: str, command: str) -> str:
    return f"cutover/{env}/{command}"


def history_key(pr: int, marker_text: str) -> str:
    """The outbox record of one sticky comment (a PR's env and command): a safe file name."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", marker_text.removeprefix("<!-- cutover:").removesuffix(" -->"))
    digest = hashlib.sha256(marker_text.encode()).hexdigest()[:10]
    return f"pr{int(pr)}-{slug[:80]}-{digest}"


def refusal(pr: int, head: PullHeadInfo) -> str | None:
    """Why proof files must not be committed for this PR (None: the head branch may take them)."""
    if head.merged:
        return f"PR #{pr} is merged"
    if head.state != "open":
        return f"PR #{pr} is closed"
    if head.read_only:
        return f"PR #{pr} is read-only for the bot ({head.reason or 'a fork or a branch the bot cannot write'})"
    if head.default_branch and head.branch == head.default_branch:
        return f"PR #{pr}'s head branch `{head.branch}` is the repository's default branch"
    if head.base and head.branch == head.base:
        return f"PR #{pr}'s head branch `{head.branch}` is its own base branch"
    return None


# --- the publisher ----------------------------------------------------------------------
class GitHubPublisher:
    """The `Publisher` of commands/execute.py over an `EvidenceSink`, with a durable outbox behind it."""

    def __init__(
        self,
        sink: EvidenceSink,
        outbox: Outbox,
        *,
        evidence_dir: str,
        redactor: Redactor = REDACTOR,
        attempts: int = 3,
        wait_s: float = 1.0,
        max_wait_s: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        lock_timeout_s: float = PR_LOCK_TIMEOUT_S,
        store_factory: Callable[[], StateStore | None] | None = None,
    ) -> None:
        """`store_factory`: the state store the env's timeline comment is built from (opened when first
        needed, so building a publisher touches nothing); None: no timeline comment."""
        self.sink = sink
        self.outbox = outbox
        self.store_factory = store_factory
        # Each cutover phase is also a GitHub Deployment, when the sink can make them.
        self.deployments = Deployments(sink, outbox, redactor=redactor) if isinstance(sink, DeploymentSink) else None
        self.evidence_dir = evidence_dir.strip("/") or "evidence"
        self.redactor = redactor
        self.lock_timeout_s = lock_timeout_s
        self._retry = {"attempts": attempts, "wait_s": wait_s, "max_wait_s": max_wait_s, "sleep": sleep}

    def publish(self, report: Report, bundle: Bundle, *, pr: int | None, keep_account_ids: bool) -> EvidenceResult:
        if pr is None:
            return EvidenceResult(
                "local", f"no PR given: evidence kept locally at {bundle.path}, nothing written to GitHub"
            )
        job = new_job(
            report,
            bundle,
            pr=pr,
            keep_account_ids=keep_account_ids,
            evidence_dir=self.evidence_dir,
            redactor=self.redactor,
        )
        # Claimed before it is saved, so a drainer that sees the new file leaves it to this call.
        return self._run(job["id"], new=job)

    def enqueue(self, report: Report, bundle: Bundle, *, pr: int | None, keep_account_ids: bool) -> EvidenceResult:
        """Save the job to the outbox without sending anything: an urgent command (rollback) never
        waits on GitHub. `retry()`, the running `OutboxDrainer` or the Slack app's follow-up sends it."""
        if pr is None:
            return EvidenceResult(
                "local", f"no PR given: evidence kept locally at {bundle.path}, nothing written to GitHub"
            )
        job = new_job(
            report,
            bundle,
            pr=pr,
            keep_account_ids=keep_account_ids,
            evidence_dir=self.evidence_dir,
            redactor=self.redactor,
        )
        self.outbox.save(job)
        return EvidenceResult("pending", f"{QUEUED_DETAIL} for PR #{int(pr)}")

    def retry(self, report: Report) -> EvidenceResult:
        """One more try for this run's queued evidence (the Slack app follows a pending run with it)."""
        jid = job_id(report)
        if self.outbox.load(jid) is not None:
            return self._run(jid)
        ended = next((j for j in self.outbox.failed() if j.get("id") == jid), None)
        if ended is not None and ended.get("kept_local"):
            return EvidenceResult("local", str(ended.get("failed_reason")))
        if ended is not None:
            return EvidenceResult("local", f"GitHub refused the evidence: {ended.get('failed_reason')}")
        return EvidenceResult("attached", f"attached to PR #{report.pr} (delivered by an earlier retry)")

    def drain(self) -> list[EvidenceResult]:
        """Send every pending job (at start-up, or on a timer). Jobs another process is sending are skipped.

        One job that cannot be handled at all (a malformed file) is moved to failed/; the others still go.
        """
        results = []
        for job in self.outbox.pending():
            try:
                results.append(self._run(job["id"]))
            except Exception as exc:  # a bug or a broken job: set it aside, carry on with the rest
                reason = self.redactor.redact(f"{type(exc).__name__}: {exc}")
                log.exception("outbox: job %s set aside: %s", job["id"], reason)
                with contextlib.suppress(Exception):
                    self.outbox.fail(job, f"could not be sent: {reason}")
                results.append(EvidenceResult("local", f"evidence job {job['id']} set aside: {reason}"))
        return results

    # --- one job -------------------------------------------------------------------------
    def _run(self, job_id: str, *, new: Job | None = None) -> EvidenceResult:
        with self.outbox.claim(job_id) as mine:
            if mine and new is not None:
                self.outbox.save(new)  # on disk before the first call: a crash mid-way loses nothing
            job = (new or self.outbox.load(job_id)) if mine else None
            if job is None:
                return EvidenceResult("pending", f"{PENDING_DETAIL} ({CLAIMED_ELSEWHERE})")
            pr = job.get("pr")
            try:
                result = retrying(**self._retry)(self._send_locked, job)
            except Exception as exc:
                job["attempts"] = job.get("attempts", 0) + 1
                upstream = isinstance(exc, UpstreamError)
                job["last_error"] = self.redactor.redact(str(exc) if upstream else f"{type(exc).__name__}: {exc}")
                if is_retryable(exc):
                    log.warning("evidence for PR #%s queued: %s", pr, job["last_error"])
                    self.outbox.save(job)
                    return EvidenceResult("pending", PENDING_DETAIL)
                log.error("evidence for PR #%s not attached: %s", pr, job["last_error"])
                self.outbox.fail(job, job["last_error"])
                if not upstream:  # a malformed job or a bug: say so, not "GitHub refused"
                    detail = f"evidence job {job_id} could not be sent ({job['last_error']}); set aside in failed/"
                    return EvidenceResult("local", detail)
                detail = (
                    f"GitHub refused the evidence for PR #{pr}: {job['last_error']}; "
                    f"bundle kept at {job.get('local_path')}"
                )
                return EvidenceResult("local", detail)
            if result.state == "local":  # the PR cannot take it: kept for `retry()` to answer the same
                self.outbox.fail({**job, "kept_local": True}, result.detail)
            else:
                self.outbox.remove(job_id)
            return result

    def _send_locked(self, job: Job) -> EvidenceResult:
        """One PR at a time, across threads and processes: commits, statuses and the comment never race."""
        with self.outbox.lock(f"pr-{int(job['pr'])}", timeout_s=self.lock_timeout_s):
            return self._send(job)

    def _send(self, job: Job) -> EvidenceResult:
        """Do the steps not yet done, saving the job after each one. Called with the PR's lock held."""
        steps = job["steps"]
        pr = job["pr"]
        if steps["commit"] is None:
            head = self.sink.pr_head(pr)  # fresh under the lock: state, branch and head as they are now
            why = refusal(pr, head)
            if why is not None:
                self._abandon_deployment(job, why)
                detail = f"{why}: evidence kept locally at {job['local_path']}, nothing written to GitHub"
                return EvidenceResult("local", detail)
            job["head"] = {"sha": head.sha, "branch": head.branch, "html_url": head.html_url}
            self.outbox.save(job)
        head = job["head"]
        repo_url = head["html_url"].rsplit("/pull/", 1)[0]
        files = _redact_files(_decode_files(job["files"]), self._redact(job))

        if steps["commit"] is None:
            paths = {f"{job['bundle_dir']}/{name}": body for name, body in files.items()}
            ref = self.sink.commit_files(head["branch"], paths, self._redact(job)(job["commit_message"]))
            steps["commit"] = {"sha": ref.sha, "url": ref.url, "parent": getattr(ref, "parent", None)}
            self.outbox.save(job)
        commit = steps["commit"]
        links = EvidenceLinks(repo_url, commit["sha"], job["bundle_dir"])

        if not steps["carried"]:
            self._carry_statuses(job, commit)
            steps["carried"] = True
            self.outbox.save(job)

        if not steps["status"]:
            redact = self._redact(job)
            state = "success" if job["overall_status"] == "PASS" else "failure"
            description = _clip(redact(job["summary"]), STATUS_DESCRIPTION_LIMIT)
            self.sink.set_status(commit["sha"], job["context"], state, description, redact(links.folder))
            steps["status"] = True
            self.outbox.save(job)

        if steps["comment"] is None:
            # The history is the bot's own record, never the text of a comment (anyone can write one).
            key = history_key(pr, job["marker"])
            redact = self._redact(job)
            entries = add_history(self.outbox.history(key), job, links, redact=redact)
            lines = [e["line"] for e in entries]
            body = redact(compose_comment(job, links, history=lines))
            if len(body) > COMMENT_LIMIT:  # redaction lengthened it (a newly registered secret): leave room
                limit = 2 * COMMENT_LIMIT - len(body) - 1024
                body = redact(compose_comment(job, links, history=lines, limit=limit))
            steps["comment"] = self.sink.upsert_comment(pr, job["marker"], body)
            self.outbox.save_history(key, entries)
            self.outbox.save(job)

        if steps.get("deployment") is None and self.deployments is not None and job["command"] in DEPLOYED:
            self._extra_step(job, "deployment", lambda: self._finish_deployment(job, links))

        if steps.get("timeline") is None and self.store_factory is not None:
            self._extra_step(job, "timeline", lambda: self._update_timeline(job, links))

        detail = (
            f"attached to PR #{pr}: {len(files)} files in commit {commit['sha'][:7]}, "
            f"status {job['context']}, sticky comment"
        )
        return EvidenceResult("attached", detail, url=steps["comment"])

    def _carry_statuses(self, job: Job, commit: dict[str, Any]) -> None:
        """The evidence commit becomes the PR head; re-post the other cutover statuses so the PR keeps showing them.

        They come from the commit's parent (the head it was built on, read under the PR's lock), not
        from a head remembered earlier: another run may have moved the branch since.
        """
        new_sha = commit["sha"]
        old_sha = commit.get("parent") or (job.get("head") or {}).get("sha")
        if not old_sha or new_sha == old_sha or not isinstance(self.sink, StatusReader):
            return
        redact = self._redact(job)
        for context, (state, description, target) in sorted(self.sink.statuses(old_sha).items()):
            if context.startswith("cutover/") and context != job["context"]:
                self.sink.set_status(new_sha, context, state, redact(description), redact(target) if target else None)

    # --- the deployment and the timeline (after the evidence landed) ------------------------------
    def _extra_step(self, job: Job, name: str, step: Callable[[], Any]) -> None:
        """Run one follow-up step once: retryable failures keep the job queued (raised); anything else
        is noted on the job and logged, and the evidence stays attached."""
        try:
            job["steps"][name] = step() or "done"
        except Exception as exc:
            if is_retryable(exc):
                raise
            reason = self._redact(job)(str(exc) if isinstance(exc, (UpstreamError, StateError)) else repr(exc))
            log.warning("run %s: %s step not done: %s", job["run_id"], name, reason)
            job["steps"][name] = f"failed: {reason}"[:500]
        self.outbox.save(job)

    def _deployment_args(self, job: Job) -> dict[str, Any]:
        return {
            "env": job["env"],
            "command": job["command"],
            "run_id": job["run_id"],
            "pr": int(job["pr"]),
            "requested_by": job.get("requested_by") or "unknown",
            "passed": job["overall_status"] == "PASS",
            "summary": job["summary"],
            "head_sha": (job.get("head") or {}).get("sha") or "",
            "ends_outbound": bool(job.get("ends_outbound")),
        }

    def _finish_deployment(self, job: Job, links: EvidenceLinks) -> str:
        assert self.deployments is not None
        log_url = self._redact(job)(links.folder)
        self.deployments.finish(**self._deployment_args(job), log_url=log_url)
        auto = job.get("auto_rollback")
        if isinstance(auto, dict) and auto.get("run_id"):  # its own Deployment, with the same evidence
            summary = f"automatic rollback in {job['command']} run {job['run_id']}: {auto.get('reason', '')}"
            args = {**self._deployment_args(job), "command": "rollback", "run_id": str(auto["run_id"])}
            args.update(requested_by="cutover-bot", passed=bool(auto.get("passed")), summary=summary,
                        ends_outbound=bool(auto.get("off")))  # fmt: skip
            self.deployments.finish(**args, log_url=log_url)
        return "done"

    def _abandon_deployment(self, job: Job, why: str) -> None:
        """The PR cannot take the evidence: a deployment the run started ends as `error`, saying why."""
        if self.deployments is None or job["command"] not in DEPLOYED:
            return
        args = {**self._deployment_args(job), "summary": f"evidence kept locally: {why}"}
        try:
            self.deployments.finish(**args, log_url=None, state="error", create=False)
        except Exception as exc:
            log.warning("run %s: deployment not ended: %s", job["run_id"], self._redact(job)(str(exc)))

    def _update_timeline(self, job: Job, links: EvidenceLinks) -> str:
        """The env's timeline comment, from the store, with the links the bot committed itself."""
        assert self.store_factory is not None
        store = self.store_factory()
        if store is None:
            return "skipped: no state store"
        key = timeline.links_key(job["env"])
        chart = links.file(CHART_FILE) if CHART_FILE in job["files"] else None
        own = timeline.add_links(self.outbox.history(key), job["run_id"], links.folder, chart, job.get("watch"))
        auto = job.get("auto_rollback")
        if isinstance(auto, dict) and auto.get("run_id"):  # its steps are in this run's evidence
            own = timeline.add_links(own, str(auto["run_id"]), links.folder, chart)
        body = timeline.comment(
            store,
            job["env"],
            links={e["run_id"]: e for e in own},
            repo_url=links.repo_url,
            redactor=self.redactor,
            keep_account_ids=bool(job["keep_account_ids"]),
        )
        if len(body) > COMMENT_LIMIT:
            body = (
                body[: COMMENT_LIMIT - 200].rsplit("\n", 1)[0]
                + "\n\n_…cut: `python -m bot status --env ENV --md` has it all._\n"
            )
        url = self.sink.upsert_comment(int(job["pr"]), timeline.marker(job["env"]), body)
        self.outbox.save_history(key, own)
        return url

    def _redact(self, job: Job) -> Callable[[str], str]:
        keep = bool(job["keep_account_ids"])
        return lambda text: self.redactor.redact(text, keep_account_ids=keep)


# --- a job ----------------------------------------------------------------------------------
def job_id(report: Report) -> str:
    return f"{report.env}-{report.command}-{report.run_id}"


def new_job(
    report: Report, bundle: Bundle, *, pr: int, keep_account_ids: bool, evidence_dir: str, redactor: Redactor = REDACTOR
) -> Job:
    """Everything a later send needs, already redacted: the outbox never holds a raw secret."""

    def redact(text: str) -> str:
        return redactor.redact(text, keep_account_ids=keep_account_ids)

    files = _redact_files(dict(bundle.files), redact)
    passing = report.by_status(Status.PASS)
    not_passing = [c for c in report.failing_first() if c.status != Status.PASS]
    icon = render.STATUS_ICON[Status(report.overall_status)]
    head_line = f"### {icon} `{report.command}` on `{report.env}`: {report.overall_status}"
    summary = redact(render.summary_line(report))
    started = report.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return {
        "version": JOB_VERSION,
        "id": job_id(report),
        "created_at": datetime.now(UTC).isoformat(),
        "pr": pr,
        "env": report.env,
        "command": report.command,
        "run_id": report.run_id,
        "overall_status": report.overall_status,
        "keep_account_ids": keep_account_ids,
        "marker": marker(report.env, report.command),
        "context": status_context(report.env, report.command),
        "summary": summary,
        "started": started,
        "commit_message": redact(
            f"cutover evidence: {report.command} {report.env} {report.overall_status} (run {report.run_id})\n\n"
            f"{render.summary_line(report)}\n"
        ),
        "section_full": redact(f"{head_line}\n\n{summary}\n\n{render.markdown_table(report)}"),
        "section_short": redact(
            f"{head_line}\n\n{summary}\n\n"
            + (render.markdown_table(report, checks=not_passing) if not_passing else "_every check passed_")
        ),
        "passing_omitted": len(passing),
        "bundle_dir": redact(f"{evidence_dir}/{report.env}/{bundle.name}"),
        "local_path": str(bundle.path),
        "files": {name: base64.b64encode(body).decode("ascii") for name, body in files.items()},
        "head": None,
        "steps": {
            "commit": None,
            "carried": False,
            "status": False,
            "comment": None,
            "deployment": None,
            "timeline": None,
        },
        "requested_by": redact(report.requested_by or "unknown"),
        "ends_outbound": ends_outbound(report),
        "auto_rollback": automatic_rollback(report.checks),
        "watch": timeline.watch_fact(report, redact=redact),
        "attempts": 0,
        "last_error": None,
    }


def ends_outbound(report: Report) -> bool:
    """A rollback whose `outbound_flag` step turned (or found) the lever off: outbound is over."""
    return report.command == "rollback" and any(
        c.name == "outbound_flag" and c.status in (Status.PASS, Status.WARN) for c in report.checks
    )


# --- the comment ------------------------------------------------------------------------
class EvidenceLinks:
    """Links pinned to the evidence commit, so they keep working after the branch moves or is deleted."""

    def __init__(self, repo_url: str, sha: str, folder: str) -> None:
        self.repo_url, self.sha, self._folder = repo_url, sha, folder

    @property
    def folder(self) -> str:
        return f"{self.repo_url}/tree/{self.sha}/{quote(self._folder)}"

    def file(self, name: str) -> str:
        return f"{self.repo_url}/blob/{self.sha}/{quote(self._folder)}/{quote(name)}"

    @property
    def commit(self) -> str:
        return f"{self.repo_url}/commit/{self.sha}"


def parse_history(body: str | None) -> list[str]:
    """The history lines shown in a sticky comment body, newest first ('' or a foreign body -> []).

    For reading a comment in tests and by people: the publisher never builds on it (see `add_history`).
    """
    if not body or HISTORY_START not in body:
        return []
    section = body.split(HISTORY_START, 1)[1].split(HISTORY_END, 1)[0]
    return [line[:HISTORY_LINE_LIMIT] for line in section.splitlines() if line.startswith("- ")]


def history_line(job: Job, links: EvidenceLinks) -> str:
    icon = "✅" if job["overall_status"] == "PASS" else "❌"
    return f"- {job['started']} {icon} {job['summary']} · [evidence]({links.folder})"


def add_history(
    entries: list[dict[str, Any]],
    job: Job,
    links: EvidenceLinks,
    *,
    redact: Callable[[str], str] = lambda text: text,
) -> list[dict[str, Any]]:
    """The bot's record of one sticky comment with this run on top: newest first, one entry per run, bounded.

    Entries are `{"run_id", "line"}`, written by the bot only (kept in the outbox folder).
    """
    line = redact(history_line(job, links))[:HISTORY_LINE_LIMIT]
    older = [e for e in entries if e.get("run_id") != job["run_id"] and isinstance(e.get("line"), str) and e["line"]]
    return [{"run_id": job["run_id"], "line": line}, *older][:HISTORY_LIMIT]


def compose_comment(
    job: Job,
    links: EvidenceLinks,
    *,
    history: list[str] | None = None,
    limit: int = COMMENT_LIMIT,
    previous: str | None = None,
) -> str:
    """The sticky comment; shortened (failing checks kept, passing ones counted) if it would pass `limit`.

    `history`: the lines to list, newest first, from the bot's own record (`add_history`); by
    default only this run's. `previous` (an earlier comment's text) is accepted for older callers
    and ignored: nothing is ever read back from a comment.
    """
    del previous
    lines = [line[:HISTORY_LINE_LIMIT] for line in (history or [history_line(job, links)])][:HISTORY_LIMIT]
    names = sorted(_decode_files(job["files"]))
    proof = " · ".join(f"[{n}]({links.file(n)})" for n in names)
    tail = "\n".join(
        [
            "",
            f"**Proof files** (commit [`{links.sha[:7]}`]({links.commit})): {proof} · [folder]({links.folder})",
            "",
            "**History** (newest first)",
            HISTORY_START,
            *lines,
            HISTORY_END,
            "",
        ]
    )
    title = f"{job['marker']}\n## Cutover evidence: `{job['command']}` on `{job['env']}`\n\n"
    body = title + job["section_full"] + "\n" + tail
    if len(body) <= limit:
        return body
    report_md = links.file("report.md")
    note = (
        f"\n\n_Shortened to fit GitHub's comment limit: {job['passing_omitted']} passing checks counted, "
        f"not listed. Full table: [report.md]({report_md})._\n"
    )
    section = job["section_short"]
    budget = limit - len(title) - len(note) - len(tail) - 1
    if len(section) > budget:
        cut = "\n\n_…cut here: the rest of the failing checks are in report.md._"
        section = section[: max(0, budget - len(cut))].rsplit("\n", 1)[0] + cut
    return title + section + note + tail


# --- files --------------------------------------------------------------------------------
def _decode_files(files: dict[str, str]) -> dict[str, bytes]:
    return {name: base64.b64decode(body) for name, body in files.items()}


def _redact_files(files: dict[str, bytes], redact: Callable[[str], str]) -> dict[str, bytes]:
    """Redact every text file; if that changes one, re-hash it in the manifest so the bundle still verifies."""
    out: dict[str, bytes] = {}
    changed = False
    for name, body in files.items():
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            out[name] = body  # binary proof: nothing a text pattern could find
            continue
        clean = redact(text).encode("utf-8")
        changed |= clean != body and name != MANIFEST
        out[name] = clean
    if changed and MANIFEST in out:
        manifest: dict[str, Any] = json.loads(out[MANIFEST])
        for name, meta in manifest.get("files", {}).items():
            if name in out:
                meta.update(sha256=hashlib.sha256(out[name]).hexdigest(), size=len(out[name]))
        out[MANIFEST] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    return out


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
