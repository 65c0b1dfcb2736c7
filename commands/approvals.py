"""Manager approvals: what an approval binds, the evidence it rests on, the words for what will change,
and the gate's `approval` rule.

An approval is bound to exactly what the approver was shown: the env, the command, its parameters
(the PR, dry-run), the PR's head commit and the SHA-256 of the evidence it rests on (the newest PASS
preflight for a canary, the newest PASS canary for enable-outbound). It expires (`approval_ttl_minutes`),
it is void as soon as any of those change (a new commit on the PR, newer evidence, a newer failing
preflight), and it is used once (`store.consume`, a conditional write, at the start of the run).

No surface trusts its own input: the CLI's and an Actions runner's `--approval ID` is looked up in the
store and checked here against the binding of the run about to start. Approvals are given in Slack
(bot/slack/approvals.py); the Slack app asks `needs_approval` and starts its flow instead of refusing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from commands.access import who
from commands.config import ConfigError, CutoverConfig
from commands.registry import COMMANDS
from commands.report import CheckResult, Status
from commands.request import RunRequest
from commands.state import Approval, ApprovalStatus, RunRecord, RunStatus, StateError, StateStore
from commands.state.model import as_utc
from commands.state.phases import newest
from integrations.errors import UpstreamError

log = logging.getLogger(__name__)

HeadLookup = Callable[[int], str]  # PR number -> its head commit SHA; raises UpstreamError when it cannot tell
BASIS = {"canary": "preflight", "enable-outbound": "canary"}  # the PASS run an approval rests on
EXPIRED = "expired"  # the start of a void reason that means "nobody decided in time"
APPROVAL_CHECK = "approval"  # the report's first check when a run used an approval


class BindingUnknown(Exception):
    """What an approval would be bound to cannot be read (the PR's head): refuse rather than guess."""


@dataclass(frozen=True)
class Binding:
    """What a run would be approved for, read from the world now."""

    env: str
    command: str
    params: dict[str, Any]
    head_sha: str | None
    basis: RunRecord | None  # the PASS run the approval rests on (None: the command rests on none)

    @property
    def evidence_sha256(self) -> str | None:
        return self.basis.evidence_sha256 if self.basis is not None else None

    def mismatch(self, approval: Approval) -> str | None:
        return approval.mismatch(
            env=self.env,
            command=self.command,
            params=self.params,
            head_sha=self.head_sha,
            evidence_sha256=self.evidence_sha256,
        )


def needs_approval(config: CutoverConfig, env: str, command: str) -> bool:
    """Whether `command` in `env` needs a manager's approval (the env's `approval_required`)."""
    try:
        env_config = config.env(env)
    except ConfigError:
        return False
    found = COMMANDS.get(command)
    return found is not None and found.approvable and command in env_config.approval_required


def params_of(request: RunRequest) -> dict[str, Any]:
    """The parameters an approval binds (JSON values only)."""
    return {"pr": request.pr, "dry_run": request.dry_run}


def head_lookup_from(publisher: object | None) -> HeadLookup | None:
    """The PR head lookup behind an evidence publisher (commands/publish.py's GitHubPublisher keeps its
    sink, whose `pr_head` reads the pull request), or None when there is no GitHub."""
    sink = getattr(publisher, "sink", None)
    pr_head = getattr(sink, "pr_head", None)
    if not callable(pr_head):
        return None

    def lookup(pr: int) -> str:
        return str(pr_head(pr).sha)

    return lookup


def head_of(pr: int | None, head_lookup: HeadLookup | None) -> str | None:
    """The PR's head commit now, None without a PR; BindingUnknown when it cannot be read."""
    if pr is None:
        return None
    if head_lookup is None:
        raise BindingUnknown(
            f"PR #{pr} is named but GitHub is not configured (GITHUB_TOKEN and github.repo): an approval "
            "cannot be bound to its head commit"
        )
    try:
        sha = head_lookup(pr)
    except UpstreamError as exc:
        raise BindingUnknown(f"the head commit of PR #{pr} cannot be read ({exc}): try again in a minute") from None
    if not isinstance(sha, str) or not sha:
        raise BindingUnknown(f"GitHub named no head commit for PR #{pr}")
    return sha


def basis_of(store: StateStore, env: str, command: str) -> RunRecord | None:
    """The newest PASS run an approval of `command` rests on (preflight for canary, canary for
    enable-outbound), or None for a command that rests on none."""
    needed = BASIS.get(command)
    return store.last_run(env, needed, RunStatus.PASS) if needed else None


def current_binding(
    *,
    env: str,
    command: str,
    params: dict[str, Any],
    store: StateStore,
    head_lookup: HeadLookup | None,
) -> Binding:
    """Raises BindingUnknown (the PR head cannot be read) or StateError (the store)."""
    head = head_of(params.get("pr"), head_lookup)
    return Binding(env=env, command=command, params=dict(params), head_sha=head, basis=basis_of(store, env, command))


def binding_for(request: RunRequest, store: StateStore, head_lookup: HeadLookup | None) -> Binding:
    return current_binding(
        env=request.env, command=request.command, params=params_of(request), store=store, head_lookup=head_lookup
    )


def usable_until(approval: Approval, ttl_minutes: float) -> datetime:
    """A pending approval can be decided until `expires_at`; an approved one used until `ttl` after the decision."""
    if approval.status == ApprovalStatus.APPROVED and approval.decided_at is not None:
        return approval.decided_at + timedelta(minutes=ttl_minutes)
    return approval.expires_at


def why_void(store: StateStore, approval: Approval, binding: Binding | None) -> str | None:
    """Why an open approval (pending, or approved and unused) no longer holds: the world it was bound to
    changed. None while it holds. `binding` None: check only what the store alone can tell."""
    failed = newest(store, approval.env, "preflight", (RunStatus.FAIL,))
    if failed is not None and failed.started_at > approval.created_at:
        return (
            f"a preflight for {approval.env} failed at {failed.started_at:%H:%M:%S} UTC (run {failed.run_id}), "
            "after the approval was requested"
        )
    if binding is None:
        return None
    if (approval.env, approval.command) != (binding.env, binding.command):
        return None  # another run's approval: refused, but nothing about it changed
    if approval.head_sha != binding.head_sha and approval.params.get("pr") == binding.params.get("pr"):
        return (
            f"PR #{binding.params.get('pr')} has a new head commit ({short(approval.head_sha)} -> "
            f"{short(binding.head_sha)}) since the approval was requested"
        )
    if approval.evidence_sha256 != binding.evidence_sha256:
        basis = BASIS.get(approval.command, "evidence")
        now = f"run {binding.basis.run_id}" if binding.basis is not None else "none"
        return f"the {basis} evidence it rests on changed (newest PASS {basis} is now {now})"
    return None


def short(sha: str | None) -> str:
    return sha[:7] if sha else "none"


def why_not_approved(
    request: RunRequest,
    config: CutoverConfig,
    store: StateStore | None,
    head_lookup: HeadLookup | None,
    now: datetime,
    *,
    approval_flow: bool = False,
) -> str | None:
    """The gate's `approval` rule: None when the run may go ahead, else the refusal a person reads.

    Applies to a real run (not a dry run: it changes nothing) of a command the env's `approval_required`
    names, or to any run that names an approval (a named approval is always checked, never ignored).
    `approval_flow`: the caller is the Slack approval flow, which asks for the approval a request lacks.
    """
    if request.dry_run:
        return None
    required = needs_approval(config, request.env, request.command)
    if request.approval_id is None:
        if not required or approval_flow:
            return None
        approvers = who(config.env(request.env).approvers)
        return (
            f"/{request.command} in {request.env} needs a manager's approval in Slack (approvers: {approvers}): "
            f"run `/{request.command} {request.env}` in the cutover channel; once approved it runs there, "
            "or pass that approval's id with `--approval ID`"
        )
    if store is None:
        return f"approval {_shown(request.approval_id)} cannot be checked: no state store"
    reason = _why_not_named(request, config, store, head_lookup, now)
    if reason:
        try:  # a refused use of a named approval is part of the trail, like a refused click
            store.audit(request.env, request.requested_by, "approval.refused", request.surface, detail=reason[:500])
        except StateError:
            log.exception("auditing a refused approval failed")
    return reason


def _why_not_named(
    request: RunRequest, config: CutoverConfig, store: StateStore, head_lookup: HeadLookup | None, now: datetime
) -> str | None:
    aid = request.approval_id
    assert aid is not None
    try:
        approval = store.get_approval(aid)
        if approval is None:
            return f"no approval {_shown(aid)} in the store: request a new approval in Slack"
        problem = why_not_usable(approval, config, now)
        if problem:
            return problem
        binding = binding_for(request, store, head_lookup)
        void = why_void(store, approval, binding)
        if void:
            _void(store, approval, void, actor=request.requested_by)
            return f"approval {aid} is void: {void}; request a new approval"
        return binding.mismatch(approval)
    except BindingUnknown as exc:
        return str(exc)
    except StateError as exc:
        return f"approval {_shown(aid)} cannot be checked: {exc}"


def _shown(approval_id: str) -> str:
    """An id from a person's input, as a refusal quotes it: bounded."""
    return approval_id if len(approval_id) <= 64 else approval_id[:61] + "..."


def why_not_usable(approval: Approval, config: CutoverConfig, now: datetime) -> str | None:
    """What in the approval's own record stops it being used now (status, use, expiry)."""
    aid = approval.approval_id
    if approval.status == ApprovalStatus.VOID:
        if (approval.void_reason or "").startswith(EXPIRED):
            return f"approval {aid} {approval.void_reason}: run the command again to request a new one"
        return f"approval {aid} is void ({approval.void_reason or 'no reason given'}): request a new approval"
    if approval.used_by_run is not None:
        return f"approval {aid} was already used by run {approval.used_by_run}: an approval is used once"
    if approval.status == ApprovalStatus.REJECTED:
        return f"approval {aid} was rejected by {approval.decided_by}: it cannot be used"
    try:
        ttl = config.env(approval.env).approval_ttl_minutes
    except ConfigError:
        return f"approval {aid} is for {approval.env}, an environment this map does not have"
    until = usable_until(approval, ttl)
    if approval.status == ApprovalStatus.PENDING:
        if as_utc(now) >= until:
            return f"approval {aid} expired at {until:%H:%M:%S} UTC before anyone decided: request a new one"
        return f"approval {aid} is not approved yet (waiting for an approver until {until:%H:%M:%S} UTC)"
    if as_utc(now) >= until:
        return (
            f"approval {aid} expired at {until:%H:%M:%S} UTC (approved at {approval.decided_at:%H:%M:%S} UTC, "
            f"usable for {ttl:g} min): request a new one"
        )
    return None


def _void(store: StateStore, approval: Approval, reason: str, *, actor: str) -> None:
    try:
        store.void(approval.approval_id, reason, actor=actor)
    except StateError:
        log.exception("voiding approval %s failed", approval.approval_id)


def check_detail(approval: Approval) -> str:
    """The `approval` check of a run's report: who approved what, bound to which head and evidence."""
    decided = f"{approval.decided_at:%Y-%m-%d %H:%M:%S} UTC" if approval.decided_at else "?"
    head = f"head {short(approval.head_sha)}" if approval.head_sha else "no PR head"
    pr = approval.params.get("pr")
    bound = f"bound to {head}" + (f" of PR #{pr}" if pr else "")
    evidence = f"evidence sha256 {approval.evidence_sha256}" if approval.evidence_sha256 else "no evidence"
    return (
        f"approved by <@{approval.decided_by}> at {decided}, {bound}, {evidence} "
        f"(approval {approval.approval_id}, requested by {approval.requested_by})"
    )


def check_data(approval: Approval) -> dict[str, Any]:
    return {
        "approval_id": approval.approval_id,
        "approved_by": approval.decided_by,
        "approved_at": approval.decided_at.isoformat() if approval.decided_at else None,
        "requested_by": approval.requested_by,
        "head_sha": approval.head_sha,
        "evidence_sha256": approval.evidence_sha256,
        "params": dict(approval.params),
    }


def approval_check(approval: Approval) -> CheckResult:
    """The first check of a run that used an approval: PASS, naming the approver, the head and the evidence."""
    return CheckResult(
        name=APPROVAL_CHECK, status=Status.PASS, detail=check_detail(approval), data=check_data(approval)
    )


def what_changes(config: CutoverConfig, env: str, command: str) -> str:
    """What running `command` in `env` changes, in words an approver reads before deciding."""
    env_config = config.env(env)
    if command == "enable-outbound":
        return (
            f"the outbound flag on {env} goes from false to true; customers will get replies. "
            f"The alarms are then watched for {env_config.watch.minutes:g} min, with an automatic rollback on an alarm."
        )
    if command == "canary":
        return (
            f"the Richpanel automation rule on {env} gets enabled (by the requester, confirmed in Slack) and one "
            f"internal test ticket is sent to the internal test address only; the outbound flag on {env} stays "
            "false, so no customer gets a reply."
        )
    if command == "preflight":
        return f"nothing changes on {env}: read-only checks."
    return f"/{command} runs on {env}."


def evidence_words(basis: RunRecord | None, command: str) -> str:
    """One line naming the evidence an approval rests on (plain text; the surface adds links)."""
    needed = BASIS.get(command)
    if needed is None:
        return "rests on no earlier run"
    if basis is None:
        return f"no PASS {needed} found"
    at = basis.finished_at or basis.started_at
    sha = f", sha256 {basis.evidence_sha256[:12]}…" if basis.evidence_sha256 else ""
    return f"PASS {needed} run {basis.run_id} (finished {at:%H:%M:%S} UTC{sha})"


def find_basis(store: StateStore, approval: Approval, *, limit: int = 50) -> RunRecord | None:
    """The run whose evidence an approval was bound to (by its SHA-256), for showing its link."""
    needed = BASIS.get(approval.command)
    if needed is None or approval.evidence_sha256 is None:
        return None
    for run in store.runs(approval.env, limit, command=needed):
        if run.evidence_sha256 == approval.evidence_sha256:
            return run
    return None
