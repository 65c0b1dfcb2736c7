"""/enable-outbound: turn the outbound lever on, then watch the alarms and roll back alone.

Needs (the gate): a PASS canary younger than `max_age_minutes.canary`, not followed by a rollback; the
approval where required; the env's lock (execute takes it: another mutating run means a refusal naming
it); and, before anything changes, every required alarm exists with its actions enabled
(`alarms_can_act`, the command's precondition).

Steps, each a check in the report:

1. `alarms`: the required alarms read again under the lock: each exists, can act and is not in ALARM
   (INSUFFICIENT_DATA follows `watch.insufficient_data`). Otherwise nothing is changed.
2. `outbound_flag`: the lever set to true and read back; the previous value reported.
3. `propagation`: wait `outbound_flag.propagation_seconds` (the worker may cache the old value), or less
   once the worker's own log shows it read true (its outbound line, or the lever's key logged as true).
4. `watch`: commands/watch.py, for `watch.minutes` every `watch.poll_seconds`.

Any reason the watch gives to roll back (or a flag that may be on without a watch) runs /rollback's own
steps at once (`commands.rollback.roll_back`), recorded as a rollback run so the phase rules see it.

A bot that dies mid-watch leaves the watch in the store: at start-up it finds it
(`interrupted_watches`), tells the channel (`resume_notice`) and resumes it for the time left, or rolls
back when the window passed unwatched (`resume_watch`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

from commands.checks import Verdict, failed, passed, warned
from commands.config import CutoverConfig, EnvConfig, LambdaEnvFlag
from commands.deployments import AUTO_ROLLBACK_KEY
from commands.evidence import write_bundle
from commands.execute import EvidenceResult, Outcome, Publisher
from commands.gate import GateContext
from commands.lever import aws_for, describe_lever, lever_api, propagation_seconds, read_lever, reading_data, set_lever
from commands.render import summary_line
from commands.report import PASSING, CheckResult, Report, Status, new_run_id, utc_now
from commands.request import ProgressFn, RunRequest
from commands.rollback import STEPS as ROLLBACK_STEPS
from commands.rollback import roll_back
from commands.run_context import LEASE_S, LeaseKeeper, RunContext, Steps
from commands.state import (
    LockHeld,
    LockHolder,
    RunAlreadyFinished,
    RunNotFound,
    RunRecord,
    RunStatus,
    StateError,
    StateStore,
    WatchState,
    store_for,
)
from commands.watch import PROGRESS_EVERY_S, Watch, WatchResult, time_left, watch_client
from integrations.aws import Aws, FlagReading
from integrations.errors import UpstreamError
from integrations.worker_log import worker_event

log = logging.getLogger(__name__)

COMMAND = "enable-outbound"
STEPS = ("alarms", "outbound_flag", "propagation", "watch")
BOT = "cutover-bot"  # who the bot's own runs (a resumed watch, an automatic rollback) are recorded as
_PRECONDITION_TIMEOUT_S = 1.5  # the gate may run at the Slack ack (3 s budget): one quick read
_LOG_POLL_MAX_S = 5.0


# --- the gate's precondition ------------------------------------------------------------------------


def alarms_can_act(ctx: GateContext) -> str | None:
    """Before anything changes: every required alarm exists and has its actions enabled (an alarm with
    actions off never rolls anything back). None, or the refusal naming the alarm and what to do."""
    env, name = ctx.env, ctx.request.env
    aws = Aws(
        region=ctx.request.aws_region or env.aws_region,
        connect_timeout_s=1.0,
        read_timeout_s=min(env.http_timeout_s, _PRECONDITION_TIMEOUT_S),
        max_attempts=1,
    )
    try:
        found = aws.alarm_details(env.alarms)
    except UpstreamError as exc:
        return f"cannot confirm the required alarms for {name} can act ({exc}): nothing was changed; try again"
    missing = [a for a in env.alarms if a not in found]
    if missing:
        return (
            f"required alarm {', '.join(missing)} does not exist in {env.aws_region}: the watch after "
            f"/enable-outbound {name} could not roll back on it. Create it (or fix `alarms` in the map) first"
        )
    inert = [a for a in env.alarms if not found[a].actions_enabled]
    if inert:
        return (
            f"required alarm {', '.join(inert)} has its actions disabled: it would act on nothing. Enable them "
            f"(aws cloudwatch enable-alarm-actions --alarm-names {' '.join(inert)}) before /enable-outbound {name}"
        )
    return None


# --- the run ----------------------------------------------------------------------------------------


@dataclass
class _EnableOutbound:
    run: RunContext
    aws: Aws
    flipped_at: datetime | None = None
    lever_on: bool | None = None  # True: read back true; False: surely not on; None: unknown
    watch_result: WatchResult | None = None
    state: WatchState | None = None

    @property
    def env(self) -> EnvConfig:
        return self.run.env

    @property
    def name(self) -> str:
        return self.run.request.env

    # 1. alarms, under the lock, before anything changes
    def alarms(self) -> Verdict:
        env = self.env
        found = self.aws.alarm_details(env.alarms)
        missing = [a for a in env.alarms if a not in found]
        inert = [a for a in env.alarms if a in found and not found[a].actions_enabled]
        firing = [a for a in env.alarms if a in found and found[a].state == "ALARM"]
        no_data = [a for a in env.alarms if a in found and found[a].state == "INSUFFICIENT_DATA"]
        data = {"states": {a: found[a].state for a in env.alarms if a in found}, "missing": missing}
        problems = [f"missing: {', '.join(missing)}"] if missing else []
        problems += [f"actions disabled: {', '.join(inert)}"] if inert else []
        problems += [f"in ALARM now: {', '.join(firing)}"] if firing else []
        if no_data and env.watch.insufficient_data == "fail":
            problems.append(f"INSUFFICIENT_DATA: {', '.join(no_data)} (watch.insufficient_data = fail)")
        if problems:
            return failed(
                f"not changed: {'; '.join(problems)}: fix the alarms, then run /enable-outbound again", **data
            )
        if no_data:
            return warned(
                f"INSUFFICIENT_DATA: {', '.join(no_data)} (no datapoints yet; watch.insufficient_data = warn: "
                "the watch goes on and says so)",
                **data,
            )
        return passed(f"{len(env.alarms)} required alarms exist, are OK and have actions enabled", **data)

    # 2. outbound_flag
    def outbound_flag(self) -> Verdict:
        where = describe_lever(self.env)
        try:
            previous, reading = set_lever(self.aws, self.env, True)
        except UpstreamError as exc:
            self.lever_on = None
            return failed(f"could not set {where} to true: {exc}", lever=where, code=exc.code)
        self.flipped_at = utc_now()
        data = {"lever": where, "previous": _value(previous), **reading_data(reading)}
        if reading.value is not True:
            self.lever_on = False if reading.value is False else None
            return failed(f"{where} reads {_value(reading)} after writing true (version {reading.version})", **data)
        self.lever_on = True
        self.run.audit("enable_outbound.on", f"{where} true (version {reading.version}), was {_value(previous)}")
        self._save_watch(ends_at=self.flipped_at + timedelta(seconds=self._propagation_s() + self._watch_s()))
        head = f"{where} set to true (was {_value(previous)}), read back true (version {reading.version})"
        if reading.update_status == "Failed":
            return failed(f"{head}, but the function update Failed: the worker may run the old configuration", **data)
        if reading.update_status == "InProgress":
            return warned(f"{head}; the function update is still InProgress", **data)
        return passed(head, **data)

    # 3. propagation
    def propagation(self) -> Verdict:
        wait_s = self._propagation_s()
        assert self.flipped_at is not None
        flipped = self.flipped_at
        deadline = time.monotonic() + wait_s
        last_progress: float | None = None
        # Each pass also marks the watch alive in the store (a restarting bot must not take a live one over).
        pause = min(_LOG_POLL_MAX_S, float(self.env.watch.poll_seconds), max(0.25, wait_s / 20))
        terms = self._log_terms()
        checked = 0
        while True:
            left = deadline - time.monotonic()
            seen = self._worker_read_true(flipped, terms)
            checked += 1
            if seen is not None:
                at, event = seen
                after = max(0.0, (at - flipped).total_seconds())
                self._start_watch()
                return passed(
                    f"the worker's log shows it read true at {at:%H:%M:%S} UTC ({after:.1f} s after the write): "
                    f"not waiting the full {wait_s:g} s (outbound_flag.propagation_seconds)",
                    waited_s=round(after, 1),
                    propagation_seconds=wait_s,
                    log_event=event,  # the event's name only: the line itself carries ticket identifiers
                )
            if left <= 0:
                self._start_watch()
                return passed(
                    f"waited the full {wait_s:g} s (outbound_flag.propagation_seconds): any value the worker cached "
                    "has expired (its log showed no read of the new value)",
                    waited_s=wait_s,
                    propagation_seconds=wait_s,
                    log_checks=checked,
                )
            lost = self.run.preempted()
            if lost:
                return Verdict(Status.SKIP, f"stopped: this run was {lost}")
            self._touch()
            tick = time.monotonic()
            if last_progress is None or tick - last_progress >= PROGRESS_EVERY_S:
                last_progress = tick
                self._progress(
                    "propagation",
                    f"waiting for the worker to see the new value: {time_left(left)} left of {wait_s:g} s "
                    "(it may cache the old one), less once its log shows it read true",
                )
            time.sleep(max(0.0, min(pause, deadline - time.monotonic())))

    # 4. watch
    def watch(self) -> Verdict:
        assert self.state is not None
        self.watch_result = Watch(
            self.run, watch_client(self.env, region=self.run.request.aws_region), self.state
        ).run()
        return self.watch_result.verdict

    # --- helpers -----------------------------------------------------------------------------------
    def _propagation_s(self) -> float:
        return propagation_seconds(self.env)

    def _watch_s(self) -> float:
        return float(self.env.watch.minutes) * 60

    def _save_watch(self, *, ends_at: datetime) -> None:
        assert self.flipped_at is not None
        request = self.run.request
        self.state = WatchState(
            env=request.env,
            run_id=self.run.run_id,
            started_at=self.flipped_at,
            ends_at=ends_at,
            poll_seconds=self.env.watch.poll_seconds,
            requested_by=request.requested_by,
            channel=self.run.config.slack.channel,
            pr=request.pr,
            last_poll_at=utc_now(),
        )
        try:
            self.run.store.save_watch(self.state)
        except StateError:
            log.warning("saving the %s watch failed", request.env, exc_info=True)

    def _touch(self) -> None:
        if self.state is None:
            return
        self.state = self.state.model_copy(update={"last_poll_at": utc_now()})
        try:
            self.run.store.save_watch(self.state)
        except StateError:
            log.warning("saving the %s watch failed", self.name, exc_info=True)

    def _start_watch(self) -> None:
        """The watch window starts now (the propagation may have ended early)."""
        self._save_watch(ends_at=utc_now() + timedelta(seconds=self._watch_s()))

    def _log_terms(self) -> tuple[str, ...]:
        flag = self.env.outbound_flag
        key = flag.lambda_env if isinstance(flag, LambdaEnvFlag) else "RICHPANEL_OUTBOUND_ENABLED"
        return tuple(dict.fromkeys((self.env.canary.outbound_marker, key)))

    def _worker_read_true(self, since: datetime, terms: tuple[str, ...]) -> tuple[datetime, str] | None:
        """The first sign in the worker's log that it acts on true (its outbound line, or the key logged as
        true): when, and the event's name."""
        marker, keys = self.env.canary.outbound_marker, terms[1:]
        for term in terms:
            try:
                found = self.aws.newest_log_event(
                    self.env.worker_log_group,
                    term,
                    since=since,
                    until=utc_now() + timedelta(seconds=1),
                    max_calls=3,
                    accept=lambda message: _shows_true(message, marker, keys),
                )
            except (UpstreamError, ValueError):
                continue  # the wait decides; a log read is only a shortcut
            if found.timestamp is not None and found.timestamp >= since - timedelta(seconds=1):
                event = worker_event(found.message or "")
                return found.timestamp, event[0] if event else term
        return None

    def _progress(self, name: str, detail: str) -> None:
        try:
            self.run.progress(CheckResult(name=name, status=Status.PASS, detail=detail, data={"in_progress": True}))
        except Exception:  # a broken display must not stop the run
            log.exception("progress failed")

    def lever_maybe_on(self) -> bool:
        if self.lever_on is not None:
            return self.lever_on
        try:
            return read_lever(self.aws, self.env).value is not False
        except UpstreamError:
            return True  # unknown is not off


def run_enable_outbound(run: RunContext) -> Report:
    cmd = _EnableOutbound(run, aws_for(run.env, region=run.request.aws_region))
    steps = Steps(run)
    alarms = steps.run("alarms", cmd.alarms)
    if alarms.status not in PASSING:
        for name in STEPS[1:]:
            steps.skip(name, "not run: the alarms must be able to act before outbound goes on; nothing was changed")
        return steps.report()
    flag = steps.run("outbound_flag", cmd.outbound_flag)
    if flag.status not in PASSING:
        for name in STEPS[2:]:
            steps.skip(name, "not run: the outbound flag is not confirmed on")
        if flag.status != Status.SKIP and cmd.lever_maybe_on():
            auto_rollback(run, steps, reason=f"enable-outbound could not confirm the outbound flag ({flag.detail})")
        _clear_watch(run)
        return steps.report()
    steps.run("propagation", cmd.propagation)
    steps.run("watch", cmd.watch)
    _after_watch(run, steps, cmd.watch_result)
    return steps.report()


def _after_watch(run: RunContext, steps: Steps, result: WatchResult | None) -> None:
    """Roll back when the watch says so, when it never ran to its end, or when it stopped with nobody in charge."""
    if result is not None and result.rollback_reason:
        auto_rollback(run, steps, reason=f"the watch after enable-outbound: {result.rollback_reason}")
    elif result is None or result.stopped:
        holder = _holder(run)
        if holder is not None and holder.command == "rollback":
            run.audit("enable_outbound.watch_stopped", f"{holder.describe()} took over")
        else:
            why = result.stopped if result is not None else "the watch did not run to its end"
            auto_rollback(run, steps, reason=f"outbound is on without a watch ({why})")
    _clear_watch(run)


def _holder(run: RunContext) -> LockHolder | None:
    try:
        info = run.store.lock_holder(run.request.env)
    except StateError:
        return None
    return info.holder if info is not None else None


def _clear_watch(run: RunContext) -> None:
    try:
        run.store.clear_watch(run.request.env, run.run_id)
    except StateError:
        log.warning("clearing the %s watch failed", run.request.env, exc_info=True)


def auto_rollback(run: RunContext, steps: Steps, *, reason: str) -> bool:
    """/rollback's own steps, appended to this run's report, and recorded as a rollback run (so the phase
    rules see it: a new /enable-outbound needs a new preflight and canary). True when the lever reads false."""
    rollback_id = new_run_id()
    recorded = _record_start(
        run.store,
        RunRecord(
            run_id=rollback_id,
            env=run.request.env,
            command="rollback",
            started_at=utc_now(),
            requested_by=BOT,
            surface="bot",
            pr=run.request.pr,
        ),
    )
    first = len(steps.results)
    off = roll_back(run, steps, reason=reason)
    done = steps.results[first:]
    ok = off and all(r.status in PASSING for r in done)
    if done:  # the evidence names the rollback's own run: the publisher records its Deployment from it
        mark = {AUTO_ROLLBACK_KEY: {"run_id": rollback_id, "passed": ok, "off": off, "reason": reason[:300]}}
        steps.results[first] = done[0].model_copy(update={"data": {**(done[0].data or {}), **mark}})
    if recorded:
        try:
            run.store.record_run_finish(
                run.request.env,
                rollback_id,
                RunStatus.PASS if ok else RunStatus.FAIL,
                summary=f"automatic rollback in {COMMAND} run {run.run_id}: {reason}"[:500],
            )
        except StateError:
            log.exception("recording the automatic rollback %s failed", rollback_id)
    return off


def _record_start(store: StateStore, record: RunRecord) -> bool:
    try:
        store.record_run_start(record)
        return True
    except StateError:
        log.exception("recording run %s failed", record.run_id)
        return False


# --- dry run ------------------------------------------------------------------------------------------


def plan_enable_outbound(request: RunRequest, config: CutoverConfig) -> Report:
    """Every step and the exact change it would make, calling nothing."""
    env = config.env(request.env)
    watch = env.watch
    insufficient = (
        "INSUFFICIENT_DATA warns and the watch goes on"
        if watch.insufficient_data == "warn"
        else "INSUFFICIENT_DATA rolls back"
    )
    plan = [
        (
            "alarms",
            f"would read the {len(env.alarms)} required alarms (AWS CloudWatch DescribeAlarms: "
            f"{', '.join(env.alarms)}) and change nothing unless each exists, has actions enabled and is not in ALARM",
        ),
        ("outbound_flag", f"would set {describe_lever(env)} to true ({lever_api(env, True)}) and read it back"),
        (
            "propagation",
            f"would wait up to {propagation_seconds(env):g} s (outbound_flag.propagation_seconds) for the worker to "
            f"see the new value, less once its log ({env.worker_log_group}) shows it read true",
        ),
        (
            "watch",
            f"would watch the alarms and AWS/Lambda Errors of {env.worker_function} for {watch.minutes:g} min, every "
            f"{watch.poll_seconds:g} s: an alarm in ALARM, Errors above {watch.max_errors}, reads unknown past the "
            f"window, or a missing/disabled alarm roll back at once ({insufficient}); the rollback is /rollback's "
            f"own steps ({', '.join(ROLLBACK_STEPS)}): {lever_api(env, False)}",
        ),
    ]
    now = utc_now()
    return Report(
        command=COMMAND,
        env=request.env,
        run_id=request.run_id or new_run_id(),
        started_at=now,
        finished_at=now,
        checks=[CheckResult(name=n, status=Status.SKIP, detail=f"dry run: {what}") for n, what in plan],
        requested_by=request.requested_by,
        pr=request.pr,
        dry_run=True,
    )


# --- after a restart: resume the watch ----------------------------------------------------------------


def interrupted_watches(config: CutoverConfig, store: StateStore | None = None) -> list[WatchState]:
    """Watches an earlier bot process left in the store (it stopped mid-watch), for this map's envs."""
    store = store or store_for(config)
    return [w for w in store.active_watches() if w.env in config.envs]


def resume_notice(state: WatchState, *, now: datetime | None = None) -> str:
    """What the channel reads first: the watch was interrupted, and what happens now."""
    now = now or utc_now()
    last = state.last_poll_at or state.started_at
    unwatched = max(0.0, (now - last).total_seconds())
    left = (state.ends_at - now).total_seconds()
    head = (
        f"The enable-outbound watch on {state.env} (run {state.run_id}, requested by {_mention(state.requested_by)}) "
        f"was interrupted: the bot stopped at {last:%H:%M:%S} UTC and nobody watched for {unwatched:.0f} s."
    )
    if _window_lost(state, now):
        return f"{head} Its window ended at {state.ends_at:%H:%M:%S} UTC while unwatched: rolling back."
    if left > 0:
        return f"{head} Resuming it for the {time_left(left)} left."
    return f"{head} Its window has just ended: one last look at the alarms before the verdict."


def _window_lost(state: WatchState, now: datetime) -> bool:
    """The window ended while nobody watched for more than one poll interval: it cannot pass any more."""
    last = state.last_poll_at or state.started_at
    return now >= state.ends_at and (now - last).total_seconds() > state.poll_seconds


def _mention(user: str) -> str:
    return f"<@{user}>" if user[:1] in ("U", "W") and user.isalnum() else user


def resume_watch(
    state: WatchState,
    *,
    config: CutoverConfig,
    store: StateStore | None = None,
    progress: ProgressFn = lambda _: None,
    publisher: Publisher | None = None,
    evidence_root: Path | str | None = None,
) -> Outcome | str:
    """Resume an interrupted watch as a new run (recorded in the store, holding the env's lock), or roll
    back when its window cannot be resumed safely. A string: why nothing was run (another process
    watches, or another run holds the lock and is in charge)."""
    store = store or store_for(config)
    env = config.env(state.env)
    if _still_watched(store, state):
        return (
            f"the {state.env} watch of run {state.run_id} is still kept by a live process (or its run has just "
            "finished): left to it"
        )
    request = RunRequest(
        command=COMMAND,
        env=state.env,
        requested_by=state.requested_by,
        surface=cast(Any, "bot"),
        pr=state.pr,
    )
    run = RunContext(request, config, env, store, new_run_id(), progress)
    holder = LockHolder(run_id=run.run_id, command=COMMAND, requested_by=BOT, surface="bot")
    try:
        info = store.lock_holder(state.env)
        if info is not None and info.holder.run_id == state.run_id:
            lease = store.preempt(state.env, holder, LEASE_S)  # the dead run's own lock
        else:
            lease = store.acquire(state.env, holder, LEASE_S)
    except LockHeld as exc:
        _forget(store, state, f"not resumed after a restart: {exc.holder.describe()} held the lock")
        return f"not resumed: {exc.holder.describe()} holds the {state.env} lock and is in charge"
    run.lease = lease
    with LeaseKeeper(store, lease):
        _record_start(
            store,
            RunRecord(
                run_id=run.run_id,
                env=state.env,
                command=COMMAND,
                started_at=run.started_at,
                requested_by=state.requested_by,
                surface="bot",
                pr=state.pr,
            ),
        )
        _forget(store, state, f"the bot stopped during its watch; resumed as run {run.run_id}")
        try:
            report = _resume(run, state)
        except BaseException:
            _finish(store, state.env, run.run_id, RunStatus.INTERRUPTED, "stopped by an internal error")
            raise
    bundle = write_bundle(report, evidence_root or config.evidence_dir)
    sha = hashlib.sha256(bundle.files["report.json"]).hexdigest()
    _finish(
        store, state.env, run.run_id, RunStatus.PASS if report.passed else RunStatus.FAIL, summary_line(report), sha
    )
    evidence = EvidenceResult("local", "no PR given: evidence kept locally, nothing written to GitHub")
    if state.pr is not None and publisher is not None:
        try:
            evidence = publisher.publish(report, bundle, pr=state.pr, keep_account_ids=False)
        except Exception as exc:
            log.exception("publishing the resumed watch's evidence failed")
            evidence = EvidenceResult("local", f"publishing failed ({exc.__class__.__name__}); bundle kept")
    return Outcome(report, bundle, evidence)


def _resume(run: RunContext, old: WatchState) -> Report:
    now = utc_now()
    last = old.last_poll_at or old.started_at
    gap = f"unwatched for {(now - last).total_seconds():.0f} s ({last:%H:%M:%S}-{now:%H:%M:%S} UTC, a bot restart)"
    steps = Steps(run)
    aws = aws_for(run.env)
    try:
        lever = read_lever(aws, run.env)
    except UpstreamError as exc:
        lever = None
        lever_problem = str(exc)
    else:
        lever_problem = ""
    if lever is not None and lever.value is False:
        steps.run(
            "resumed",
            lambda: passed(
                f"the watch of run {old.run_id} was interrupted ({gap}); outbound already reads false "
                f"({lever.source}, version {lever.version}): nothing left to watch"
            ),
        )
        return steps.report()
    if _window_lost(old, now):
        reason = (
            f"the watch of run {old.run_id} cannot be resumed safely: its window ended at {old.ends_at:%H:%M:%S} "
            f"UTC while it was {gap}, longer than one poll interval ({old.poll_seconds:g} s)"
        )
        steps.run("resumed", lambda: failed(f"{reason}: rolling back", previous_run=old.run_id))
        auto_rollback(run, steps, reason=reason)
        return steps.report()
    left = max(0.0, (old.ends_at - now).total_seconds())
    note = f"resumed the watch of run {old.run_id} after an interruption: {gap}; {time_left(left)} left"
    if lever_problem:
        note += f"; the lever could not be read ({lever_problem})"
    steps.run("resumed", lambda: warned(note, previous_run=old.run_id, unwatched_s=round((now - last).total_seconds())))
    state = old.model_copy(update={"run_id": run.run_id})
    try:
        run.store.save_watch(state)
    except StateError:
        log.warning("saving the resumed %s watch failed", old.env, exc_info=True)
    holder: dict[str, WatchResult] = {}

    def watch() -> Verdict:
        result = Watch(run, watch_client(run.env), state, caveats=(f"resumed after a restart: {gap}",)).run()
        holder["result"] = result
        return result.verdict

    steps.run("watch", watch)
    _after_watch(run, steps, holder.get("result"))
    return steps.report()


def _still_watched(store: StateStore, state: WatchState) -> bool:
    """Whether another live process still saves this watch: its last poll moves within two poll intervals."""
    stale_after = 2 * state.poll_seconds + 1.0
    deadline = time.monotonic() + stale_after
    seen = state.last_poll_at
    while True:
        current = next((w for w in _watches(store) if w.env == state.env and w.run_id == state.run_id), None)
        if current is None:
            return True  # cleared meanwhile: its run finished by itself
        if current.last_poll_at != seen:
            return True
        last = current.last_poll_at or current.started_at
        if (utc_now() - last).total_seconds() > stale_after or time.monotonic() >= deadline:
            return False
        time.sleep(min(0.25, state.poll_seconds / 2))


def _watches(store: StateStore) -> list[WatchState]:
    try:
        return store.active_watches()
    except StateError:
        return []


def _forget(store: StateStore, state: WatchState, summary: str) -> None:
    """The dead run is INTERRUPTED, its watch no longer active."""
    _finish(store, state.env, state.run_id, RunStatus.INTERRUPTED, summary)
    try:
        store.clear_watch(state.env, state.run_id)
    except StateError:
        log.warning("clearing the %s watch of run %s failed", state.env, state.run_id, exc_info=True)


def _finish(store: StateStore, env: str, run_id: str, status: RunStatus, summary: str, sha: str | None = None) -> None:
    try:
        store.record_run_finish(env, run_id, status, summary=summary[:500], evidence_sha256=sha)
    except (RunAlreadyFinished, RunNotFound):
        pass
    except StateError:
        log.exception("recording the end of run %s failed", run_id)


def _value(reading: FlagReading | None) -> str:
    if reading is None:
        return "unreadable"
    return "absent" if reading.value is None else str(reading.value).lower()


def _shows_true(message: str, marker: str, keys: tuple[str, ...]) -> bool:
    """A worker line that proves it acts on outbound true: its outbound event, or the lever's key logged true."""
    found = worker_event(message)
    if found is None:
        return False
    event, fields = found
    if event == marker:
        return True
    return any(str(fields.get(key, "")).strip("\"'").lower() == "true" for key in keys)


__all__ = [
    "COMMAND",
    "STEPS",
    "alarms_can_act",
    "auto_rollback",
    "interrupted_watches",
    "plan_enable_outbound",
    "resume_notice",
    "resume_watch",
    "run_enable_outbound",
]
