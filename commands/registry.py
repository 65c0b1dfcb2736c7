"""Every command, declared once. Surfaces (CLI subcommands, Slack listeners, `/cutover help`,
the manifest, availability, the gate) read this table; adding a command is its module plus one entry.

Runners are named as "module:function" and imported when a command runs, so listing commands
(the Slack app's start-up, `--help`) never pays for a command module's imports.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from commands.report import Report
    from commands.request import RunRequest

# The map (commands/config.py) reads this table to validate `approval_required`, so what depends on
# the map is typed loosely here rather than imported back: a CutoverConfig, a RunContext.
CutoverConfig = Any
RunContext = Any


class CommandRunner(Protocol):
    """One per command (commands/preflight.py, ...): runs it and returns the report, nothing else.
    The context (commands/run_context.py) holds the request, the env, the store and the lock."""

    def __call__(self, run: RunContext) -> Report: ...


class Planner(Protocol):
    """A dry run: the report of what the command would do, calling nothing."""

    def __call__(self, request: RunRequest, config: CutoverConfig) -> Report: ...


class UsageError(Exception):
    """Bad input from a person (unknown command, bad PR number...): exit 2 / an ephemeral reply."""


@dataclass(frozen=True)
class CommandSpec:
    name: str
    title: str
    summary: str  # one line for help texts and the manifest
    runner: str | None  # "module:function"; None while the command is not built
    planner: str | None  # "module:function" for dry-run
    next_step: str  # after a PASS; `{env}` is filled in
    mutating: bool  # changes something outside: takes the env's lock, needs a phase
    urgent: bool = False  # never queued behind other runs, never refused for capacity, any channel
    approvable: bool = False  # may need a manager's approval (per env: `approval_required`)
    deadline_s: float = 15 * 60  # a run past this is stuck and is stopped
    # "module:function" taking the gate's context, answering None or a refusal: checks of the live
    # world this command needs before anything changes (canary: the outbound lever is off now).
    precondition: str | None = None

    @property
    def available(self) -> bool:
        return self.runner is not None

    def load_runner(self) -> CommandRunner:
        if self.runner is None:
            raise UsageError(not_built(self.name))
        return _load(self.runner)

    def load_precondition(self) -> Callable[[Any], str | None] | None:
        return _load(self.precondition) if self.precondition else None

    def load_planner(self) -> Planner:
        if self.planner is None:
            raise UsageError(f"/{self.name} has no dry run yet")
        return _load(self.planner)


COMMANDS: dict[str, CommandSpec] = {
    spec.name: spec
    for spec in (
        CommandSpec(
            name="preflight",
            title="Preflight",
            summary="read-only checks: AWS account, secrets, worker flags, Richpanel, Shopify, OpenAI, alarms",
            runner="commands.preflight:run_preflight",
            planner="commands.preflight:plan_preflight",
            next_step="next: `/canary {env}`",
            mutating=False,
            approvable=True,
        ),
        CommandSpec(
            name="canary",
            title="Canary",
            summary="outbound off: enable the rule, one internal test, proven processed with no customer contacted",
            runner="commands.canary:run_canary",
            planner="commands.canary:plan_canary",
            next_step="next: `/enable-outbound {env}`",
            mutating=True,
            approvable=True,
            # two person-steps (canary.confirm_timeout_minutes each) and the wait for the processed line
            deadline_s=60 * 60,
            precondition="commands.canary:lever_is_off",
        ),
        CommandSpec(
            name="enable-outbound",
            title="Enable outbound",
            summary="after a passing canary and an approval: flip the outbound flag, watch the alarms, roll back alone",
            runner="commands.enable_outbound:run_enable_outbound",
            planner="commands.enable_outbound:plan_enable_outbound",
            next_step="outbound is on and the watch passed; `/rollback {env}` if anything looks wrong",
            mutating=True,
            approvable=True,
            # the propagation wait (up to 1 h) and the watch (watch.minutes, up to 24 h) bound the run themselves
            deadline_s=26 * 60 * 60,
            precondition="commands.enable_outbound:alarms_can_act",
        ),
        CommandSpec(
            name="rollback",
            title="Rollback",
            summary="always allowed: outbound off, rule paused, no invocations",
            runner="commands.rollback:run_rollback",
            planner="commands.rollback:plan_rollback",
            next_step="outbound is off; investigate before the next `/preflight {env}`",
            mutating=True,
            urgent=True,
        ),
    )
}
APPROVABLE = tuple(name for name, spec in COMMANDS.items() if spec.approvable)


def spec(name: str) -> CommandSpec:
    found = COMMANDS.get(name)
    if found is None:
        raise UsageError(f"unknown command {name!r} (commands: {', '.join(COMMANDS)})")
    return found


def available() -> list[str]:
    return [name for name, s in COMMANDS.items() if s.available]


def not_built(name: str) -> str:
    built = ", ".join(f"`/{n}`" for n in available())
    return f"'{name}' is not built yet: `/{name}` is not available yet (available: {built})"


def title(name: str) -> str:
    found = COMMANDS.get(name)
    return found.title if found else name.capitalize()


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
