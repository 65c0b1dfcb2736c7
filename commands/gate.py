"""The one gate every surface passes before a command runs (CLI, Slack, Actions, PR comments).

Each rule answers None (fine) or one reason a person reads, the same on every surface. Rules run
in order and the first refusal wins. Bad usage (unknown env or command) is a UsageError (exit 2);
a refusal by policy (who may, phase order, approval, lock) is `Refused` (exit 1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

from commands.access import Decision
from commands.approvals import HeadLookup, why_not_approved
from commands.config import CutoverConfig, EnvConfig
from commands.registry import CommandSpec, UsageError, not_built, spec
from commands.report import utc_now
from commands.request import RunRequest
from commands.state import StateError, StateStore
from commands.state.phases import why_not


class Refused(Exception):
    """A command may not run now; `rule` names the rule, the message says why and what to do."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(reason)
        self.rule = rule
        self.reason = reason


class Authorizer(Protocol):
    """Says whether the requester may run the command (the surface knows who the requester is)."""

    def may_run(self, user_id: str, env: str, command: str) -> Decision: ...


class LocalOperator:
    """The CLI: whoever holds the shell's AWS credentials is the authority; the OS user is recorded."""

    def may_run(self, user_id: str, env: str, command: str) -> Decision:
        return Decision(True)


class Vouched:
    """A run the parent process already admitted (the Slack app's worker processes): the decision
    travels with the run, never from a person's input."""

    def __init__(self, decision: Decision) -> None:
        self.decision = decision

    def may_run(self, user_id: str, env: str, command: str) -> Decision:
        return self.decision


@dataclass
class GateContext:
    request: RunRequest
    config: CutoverConfig
    spec: CommandSpec
    env: EnvConfig
    authorizer: Authorizer
    store: StateStore | None = None
    now: datetime = field(default_factory=utc_now)
    head_lookup: HeadLookup | None = None  # the PR's head commit, for the approval's binding
    approval_flow: bool = False  # the caller is Slack's approval flow: it asks for a missing approval


Rule = Callable[[GateContext], str | None]


def _requester_may_run(ctx: GateContext) -> str | None:
    decision = ctx.authorizer.may_run(ctx.request.requested_by, ctx.request.env, ctx.request.command)
    return None if decision.allowed else decision.message


def _phase_order(ctx: GateContext) -> str | None:
    if ctx.store is None:
        return None
    return why_not(ctx.store, ctx.request.env, ctx.request.command, ctx.now, ctx.env.max_age_minutes)


def _command_precondition(ctx: GateContext) -> str | None:
    check = ctx.spec.load_precondition()
    return check(ctx) if check is not None else None


def _approved(ctx: GateContext) -> str | None:
    return why_not_approved(
        ctx.request, ctx.config, ctx.store, ctx.head_lookup, ctx.now, approval_flow=ctx.approval_flow
    )


# Policy rules in order; the first refusal wins. (The lock is taken, not checked, in execute.)
# The approval comes last: a manager is asked only for a run every other rule lets through.
RULES: list[tuple[str, Rule]] = [
    ("access", _requester_may_run),
    ("phase", _phase_order),
    ("precondition", _command_precondition),
    ("approval", _approved),
]


def admit(
    request: RunRequest,
    config: CutoverConfig,
    *,
    authorizer: Authorizer,
    store: StateStore | None = None,
    now: datetime | None = None,
    require_built: bool = True,
    head_lookup: HeadLookup | None = None,
    approval_flow: bool = False,
) -> GateContext:
    """Every precondition, or raise: UsageError/ConfigError for bad input, Refused for policy.
    The context's request is the one to run (the map's `github.default_pr` filled in)."""
    command = spec(request.command)
    env = config.env(request.env)  # ConfigError naming the known environments
    if request.pr is None and config.github.default_pr is not None:
        request = replace(request, pr=config.github.default_pr)
    if require_built and not command.available:
        raise UsageError(not_built(command.name))
    ctx = GateContext(request, config, command, env, authorizer, store, now or utc_now(), head_lookup, approval_flow)
    for rule, check in RULES:
        try:
            reason = check(ctx)
        except StateError as exc:  # the phase or approval cannot be read: unknown is not allowed
            raise Refused(
                rule,
                f"the state store is unavailable ({exc}): cannot check the {rule} rule, so nothing was run. "
                f"Try again when it answers; /rollback {request.env} works without it",
            ) from None
        if reason:
            raise Refused(rule, reason)
    return ctx
