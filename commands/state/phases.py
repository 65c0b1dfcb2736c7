"""The phase rules of DESIGN's "Rules" table, as pure functions over the store's run records.

- preflight, rollback: always allowed.
- canary: the newest finished preflight is a PASS younger than `max_age_minutes.preflight`.
- enable-outbound: the newest finished canary is a PASS younger than `max_age_minutes.canary`, and
  no rollback and no failed preflight started after it.

Dry runs and refused runs are no phase: they never satisfy a rule and never undo one. A run's age is
counted from when it finished (its result), order between runs by when they started. Live facts
(the outbound lever now, approvals, the lock) are checked by the command, not here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from commands.state.model import RunRecord, RunStatus, StateStore, ago, as_utc

COMMANDS = ("preflight", "canary", "enable-outbound", "rollback")
_FINISHED = (RunStatus.PASS, RunStatus.FAIL, RunStatus.INTERRUPTED)
_PHASE_STATUSES = (*_FINISHED, RunStatus.RUNNING)


def max_age(max_age_minutes: Any, command: str) -> float:
    """Minutes from the config's `max_age_minutes` (a MaxAges model or a mapping); defaults to 60."""
    if isinstance(max_age_minutes, Mapping):
        value = max_age_minutes.get(command, 60)
    else:
        value = getattr(max_age_minutes, command, 60)
    return float(value)


def _at(run: RunRecord) -> datetime:
    return run.finished_at or run.started_at


def _minutes(value: float) -> str:
    return f"{value:g} min"


def newest(store: StateStore, env: str, command: str, statuses: tuple[RunStatus, ...] = _FINISHED) -> RunRecord | None:
    """The newest (by start) non-dry-run run of `command` whose status is one of `statuses`."""
    top = store.last_run(env, command)
    if top is None or top.status in statuses:
        return top  # the usual case: one query
    found = [r for s in statuses if (r := store.last_run(env, command, s)) is not None]
    return max(found, key=lambda r: r.started_at, default=None)


def _age(now: datetime, run: RunRecord) -> timedelta:
    return max(timedelta(0), now - _at(run))


def why_not(store: StateStore, env: str, command: str, now: datetime | None, max_age_minutes: Any) -> str | None:
    """None when the phase allows `command` in `env` now; else the refusal: the rule and what to do."""
    now = as_utc(now)
    if command in ("preflight", "rollback"):
        return None
    if command == "canary":
        return _needs_fresh_pass(store, env, "preflight", now, max_age(max_age_minutes, "preflight"))
    if command == "enable-outbound":
        reason = _needs_fresh_pass(store, env, "canary", now, max_age(max_age_minutes, "canary"))
        if reason:
            return reason
        canary = store.last_run(env, "canary", RunStatus.PASS)
        assert canary is not None
        rollback = newest(store, env, "rollback", _PHASE_STATUSES)
        if rollback is not None and rollback.started_at > canary.started_at:
            return (
                f"{env} was rolled back {ago(now - rollback.started_at)} (run {rollback.run_id}), after the last "
                f"PASS canary (run {canary.run_id}): run /preflight {env} and /canary {env} again"
            )
        failed = newest(store, env, "preflight", (RunStatus.FAIL,))
        if failed is not None and failed.started_at > canary.started_at:
            return (
                f"a preflight for {env} failed {ago(_age(now, failed))} (run {failed.run_id}), after the last PASS "
                f"canary (run {canary.run_id}): fix what it reports, then run /preflight {env} and /canary {env} again"
            )
        return None
    return None  # preflight, rollback and any command without a phase rule may run at any time


def _needs_fresh_pass(store: StateStore, env: str, needed: str, now: datetime, minutes: float) -> str | None:
    passed = store.last_run(env, needed, RunStatus.PASS)
    if passed is None or _age(now, passed) >= timedelta(minutes=minutes):
        last = f" (the last one passed {ago(_age(now, passed))})" if passed else ""
        return f"no PASS {needed} for {env} in the last {_minutes(minutes)}{last}: run /{needed} {env} first"
    later = newest(store, env, needed, (RunStatus.FAIL, RunStatus.INTERRUPTED))
    if later is not None and later.started_at > passed.started_at:
        verb = "failed" if later.status == RunStatus.FAIL else "was interrupted"
        return (
            f"the last {needed} for {env} {verb} {ago(_age(now, later))} (run {later.run_id}), after the last PASS: "
            f"fix what it reports and run /{needed} {env} again"
        )
    return None


@dataclass(frozen=True)
class Phase:
    """Where an environment stands, for `/cutover status`."""

    name: str  # none | preflight-passed | preflight-failed | canary-passed | canary-failed | outbound-on |
    #            enable-outbound-failed | rolled-back | rollback-failed | <command>-running | ...-interrupted
    text: str  # "canary passed 5 min ago", "outbound on (enabled 3 min ago)", "rolled back 2 min ago"
    since: datetime | None
    age: timedelta | None
    run: RunRecord | None  # the run that set the phase
    running: RunRecord | None = None  # a run in progress, if any


_PHRASES = {
    ("preflight", RunStatus.PASS): ("preflight-passed", "preflight passed {ago}"),
    ("preflight", RunStatus.FAIL): ("preflight-failed", "preflight failed {ago}"),
    ("preflight", RunStatus.INTERRUPTED): ("preflight-interrupted", "preflight interrupted {ago}"),
    ("canary", RunStatus.PASS): ("canary-passed", "canary passed {ago}"),
    ("canary", RunStatus.FAIL): ("canary-failed", "canary failed {ago}"),
    ("canary", RunStatus.INTERRUPTED): ("canary-interrupted", "canary interrupted {ago}"),
    ("enable-outbound", RunStatus.PASS): ("outbound-on", "outbound on (enabled {ago})"),
    ("enable-outbound", RunStatus.FAIL): (
        "enable-outbound-failed",
        "enable-outbound failed {ago}: check the outbound flag",
    ),
    ("enable-outbound", RunStatus.INTERRUPTED): (
        "enable-outbound-interrupted",
        "enable-outbound interrupted {ago}: the outbound flag may be on; check it or run /rollback {env}",
    ),
    ("rollback", RunStatus.PASS): ("rolled-back", "rolled back {ago}"),
    ("rollback", RunStatus.FAIL): ("rollback-failed", "rollback FAILED {ago}: run /rollback {env} again"),
    ("rollback", RunStatus.INTERRUPTED): (
        "rollback-interrupted",
        "rollback interrupted {ago}: run /rollback {env} again",
    ),
}


def phase(store: StateStore, env: str, now: datetime | None = None) -> Phase:
    """The env's phase from its newest runs: the newest mutating run (canary, enable-outbound,
    rollback) sets it; a preflight sets it only when none ran, and is mentioned when it is newer."""
    now = as_utc(now)
    latest = {c: newest(store, env, c, _PHASE_STATUSES) for c in COMMANDS}
    running = max(
        (r for r in latest.values() if r is not None and r.status == RunStatus.RUNNING),
        key=lambda r: r.started_at,
        default=None,
    )
    finished = {c: newest(store, env, c) for c in COMMANDS}
    mutating = max(
        (r for c, r in finished.items() if c != "preflight" and r is not None),
        key=lambda r: r.started_at,
        default=None,
    )
    preflight = finished["preflight"]
    base = mutating or preflight
    if base is None:
        result = Phase(name="none", text="no runs yet", since=None, age=None, run=None)
    else:
        name, template = _PHRASES[(base.command, base.status)]
        text = template.format(ago=ago(_age(now, base)), env=env)
        if mutating is not None and preflight is not None and preflight.started_at > mutating.started_at:
            verb = "passed" if preflight.status == RunStatus.PASS else "failed"
            text += f"; preflight {verb} {ago(_age(now, preflight))}"
        result = Phase(name=name, text=text, since=_at(base), age=_age(now, base), run=base)
    if running is None:
        return result
    started = ago(max(timedelta(0), now - running.started_at))
    holder = store.lock_holder(env, now=now)
    if running.command != "preflight" and (holder is None or holder.holder.run_id != running.run_id):
        # A mutating run holds the lock while it runs: without it, its process died before it finished.
        return Phase(
            name=result.name,
            text=f"{result.text}; {running.command} run {running.run_id} started {started} never finished",
            since=result.since,
            age=result.age,
            run=result.run,
            running=None,
        )
    return Phase(
        name=f"{running.command}-running",
        text=f"{running.command} running (started {started}); before it: {result.text}",
        since=running.started_at,
        age=max(timedelta(0), now - running.started_at),
        run=result.run,
        running=running,
    )
