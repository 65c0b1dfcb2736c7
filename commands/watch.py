"""The watch after /enable-outbound: the required alarms and the worker's Errors, polled for a window.

Every `watch.poll_seconds` for `watch.minutes` the watch reads each required alarm (DescribeAlarms) and
the worker's AWS/Lambda Errors summed since the lever went on (GetMetricData). Its outcome rules:

- a required alarm in ALARM: roll back at once, naming the alarm and the value in its state reason;
- the Errors sum above `watch.max_errors`: roll back at once, naming the sum and the bound;
- a required alarm that disappears or has its actions turned off: the watch can no longer trust it:
  roll back;
- INSUFFICIENT_DATA follows `watch.insufficient_data`: `warn` keeps watching and says so (the result
  is WARN naming the alarm), `fail` rolls back;
- a read that fails is retried within the poll; a poll whose reads still fail is unknown (the progress
  line says since when and why); unknown at the end of the window is FAIL and rolls back, never PASS.
  Reads that failed for a while and came back leave a WARN naming how long the watch was blind.

At the end, no Errors datapoint is only proof of no errors when the same query sees the function:
the worker's Invocations over the window are the positive control (none either: WARN).

The watch's state is saved in the store at every poll (`save_watch`), so a bot that restarts finds it
and resumes it for the time left (commands/enable_outbound.py). Progress goes out as one check named
`watch`, at most every few seconds, with the time left. A run that loses its lock (a rollback
preempted it) stops watching at once: whoever took the lock is in charge.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from commands.checks import Verdict, failed, passed, warned
from commands.config import EnvConfig
from commands.report import CheckResult, Status, utc_now
from commands.run_context import RunContext
from commands.state import StateError, WatchState
from integrations.aws import AlarmDetail, Aws, MetricSeries
from integrations.errors import UpstreamError

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 5.0  # a progress line at most this often (the Slack message is edited in place)
ERRORS = "Errors"
INVOCATIONS = "Invocations"
_VALUE = re.compile(r"\[\s*([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)")  # "... datapoints [5.0 (30/11/25 ...)] ..."
_REASON_CHARS = 240


def watch_client(env: EnvConfig, *, region: str | None = None) -> Aws:
    """AWS for the watch: one try per call (the watch itself retries within its poll), each bounded by the
    map's `http_timeout_s` (a slow answer delays the next poll; it does not count as a failed read)."""
    return Aws(
        region=region or env.aws_region,
        connect_timeout_s=min(3.0, env.http_timeout_s),
        read_timeout_s=env.http_timeout_s,
        max_attempts=1,
    )


def time_left(seconds: float) -> str:
    """'4.5 s', '42 s', '3 min 05 s'."""
    if seconds < 10:
        return f"{max(0.0, seconds):.1f} s"
    seconds = math.ceil(seconds)
    if seconds < 90:
        return f"{seconds} s"
    return f"{seconds // 60} min {seconds % 60:02d} s"


def alarm_value(reason: str) -> str | None:
    """The datapoint value in an alarm's state reason ("... [5.0 (30/11/25 03:00:00)] was greater ..."), if any."""
    m = _VALUE.search(reason or "")
    return m.group(1) if m else None


@dataclass(frozen=True)
class WatchResult:
    """The `watch` check, and what the command must do next."""

    verdict: Verdict
    rollback_reason: str | None = None  # set: roll back now, because of this
    stopped: str | None = None  # set: the run lost its lock (preempted); whoever holds it is in charge


@dataclass
class _Reading:
    alarms: dict[str, AlarmDetail] | None = None
    errors: MetricSeries | None = None
    problems: dict[str, str] = field(default_factory=dict)  # what failed to read, and why

    @property
    def complete(self) -> bool:
        return self.alarms is not None and self.errors is not None

    def problem_text(self) -> str:
        return "; ".join(f"{what}: {why}" for what, why in self.problems.items()) or "no answer"


class Watch:
    """One watch (fresh, or resumed after a restart) over `state`'s window, for `run`'s env.

    `run()` returns when the window ends, on the first reason to roll back, or when the run is preempted.
    """

    def __init__(
        self,
        run: RunContext,
        aws: Aws,
        state: WatchState,
        *,
        progress_every_s: float | None = None,
        caveats: tuple[str, ...] = (),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.run_ctx = run
        self.aws = aws
        self.state = state
        self.env = run.env
        self.settings = run.env.watch
        self.alarms = list(dict.fromkeys(run.env.alarms))
        self.function = run.env.worker_function
        # Every few seconds; a short window (tests, the demo) gets a few lines too.
        window_s = (state.ends_at - state.started_at).total_seconds()
        self.progress_every_s = progress_every_s or min(PROGRESS_EVERY_S, max(1.0, window_s / 4))
        self.caveats = list(caveats)  # known before the watch starts (a restart's unwatched gap)
        self._sleep = sleep
        self._last_progress: float | None = None
        self._insufficient: dict[str, str] = {}  # alarm -> when first seen INSUFFICIENT_DATA (warn mode)
        self._blind_s = 0.0
        self._unknown_since: datetime | None = None
        self._polls = 0
        self._errors_total = 0.0
        self._errors_points = 0
        self._last_states: dict[str, str] = {}  # alarm -> the state the previous poll read
        self._transitions: list[dict[str, str]] = []  # for the chart and the evidence: when an alarm changed state

    # --- the loop -------------------------------------------------------------------------------
    def run(self) -> WatchResult:
        poll_s = float(self.settings.poll_seconds)
        ends_at = self.state.ends_at
        while True:
            lost = self.run_ctx.preempted()
            if lost:
                return self._stopped(lost)
            started = time.monotonic()
            reading = self._read(deadline=started + poll_s)
            self._polls += 1
            now = utc_now()
            self._note_transitions(reading, now)
            reason = self._rollback_reason(reading)
            if reason is not None:
                return self._roll_back(reason, reading)
            if reading.complete:
                if self._unknown_since is not None:
                    self._blind_s += (now - self._unknown_since).total_seconds()
                    self._unknown_since = None
                self._save(now)
            elif self._unknown_since is None:
                self._unknown_since = self.state.last_poll_at or self.state.started_at
            if now >= ends_at:
                return self._conclude(reading, now)
            self._progress(reading, now)
            wait = min(started + poll_s - time.monotonic(), (ends_at - utc_now()).total_seconds())
            if wait > 0:
                self._sleep(wait)

    # --- reads, retried within the poll ---------------------------------------------------------------
    def _read(self, *, deadline: float) -> _Reading:
        reading = _Reading()
        pause = max(0.05, min(1.0, float(self.settings.poll_seconds) / 4))
        while True:
            if reading.alarms is None:
                try:
                    reading.alarms = self.aws.alarm_details(self.alarms)
                    reading.problems.pop("alarms", None)
                except UpstreamError as exc:
                    reading.problems["alarms"] = str(exc)
            if reading.errors is None:
                try:
                    series = self._errors_series()
                except UpstreamError as exc:
                    reading.problems["errors"] = str(exc)
                else:
                    if series.complete:
                        reading.errors = series
                        reading.problems.pop("errors", None)
                    else:
                        reading.problems["errors"] = f"the Errors query is not complete ({_incomplete(series)})"
            if reading.complete or time.monotonic() + pause >= deadline:
                return reading
            if reading.alarms is not None and _firing(reading.alarms):
                return reading  # an alarm already says roll back: do not wait for the metric
            self._sleep(pause)

    def _window(self, end: datetime | None = None) -> tuple[datetime, datetime]:
        """[the lever went on, now], whole seconds, at least one second long (CloudWatch refuses start == end)."""
        start = _floor_s(self.state.started_at)
        end = max(_ceil_s(end or utc_now()), start + timedelta(seconds=1))
        return start, end

    def _errors_series(self) -> MetricSeries:
        start, end = self._window()
        return self.aws.metric_datapoints(self.function, ERRORS, start, end, 60)

    def _note_transitions(self, reading: _Reading, now: datetime) -> None:
        """An alarm's change of state between polls (and a first read that is not OK), stamped with the
        time CloudWatch says it changed when it says one inside the watch, else the poll's time."""
        for name, alarm in (reading.alarms or {}).items():
            before = self._last_states.get(name, "OK")
            self._last_states[name] = alarm.state
            if alarm.state == before:
                continue
            at = alarm.state_updated_at
            if at is None or at.tzinfo is None or not (self.state.started_at <= at <= now):
                at = now
            self._transitions.append({"at": at.isoformat(), "alarm": name, "state": alarm.state})

    # --- the rules ------------------------------------------------------------------------------------
    def _rollback_reason(self, reading: _Reading) -> str | None:
        alarms = reading.alarms
        if alarms is not None:
            firing = _firing(alarms)
            if firing:
                return "; ".join(_alarm_says(a) for a in firing)
        if reading.errors is not None:
            total = reading.errors.total
            self._errors_total, self._errors_points = total, len(reading.errors.points)
            if total > self.settings.max_errors:
                return (
                    f"the worker's Errors reached {total:g} since outbound went on "
                    f"(above watch.max_errors = {self.settings.max_errors}) on {self.function}"
                )
        if alarms is not None:
            missing = [n for n in self.alarms if n not in alarms]
            if missing:
                return f"required alarm {', '.join(missing)} no longer exists: the watch cannot see it"
            inert = [n for n in self.alarms if not alarms[n].actions_enabled]
            if inert:
                names = ", ".join(inert)
                return f"required alarm {names} had its actions disabled during the watch: it can act on nothing"
            no_data = [n for n in self.alarms if alarms[n].state == "INSUFFICIENT_DATA"]
            if no_data and self.settings.insufficient_data == "fail":
                return (
                    f"{', '.join(no_data)} in INSUFFICIENT_DATA (watch.insufficient_data = fail): "
                    "the alarm cannot tell whether the worker is healthy"
                )
            for name in no_data:
                self._insufficient.setdefault(name, f"{utc_now():%H:%M:%S}")
        return None

    # --- endings --------------------------------------------------------------------------------------
    def _roll_back(self, reason: str, reading: _Reading) -> WatchResult:
        data = self._data(reading)
        data["trigger"] = reason
        if reading.alarms is not None:
            firing = _firing(reading.alarms)
            if firing:
                data["alarm"] = firing[0].name
                data["alarm_value"] = alarm_value(firing[0].reason)
        self._save(utc_now(), final=True)
        return WatchResult(failed(f"rolling back at once: {reason}", **data), rollback_reason=reason)

    def _stopped(self, lost: str) -> WatchResult:
        self._clear()
        detail = f"watch stopped after {self._polls} polls: this run was {lost}; whoever holds the lock is in charge"
        return WatchResult(Verdict(Status.SKIP, detail, {"polls": self._polls}), stopped=lost)

    def _conclude(self, reading: _Reading, now: datetime) -> WatchResult:
        data = self._data(reading)
        minutes = f"{self.settings.minutes:g} min"
        if not reading.complete:
            since = self._unknown_since or now
            reason = (
                f"the watch could not read {', '.join(reading.problems) or 'its sources'} since "
                f"{since:%H:%M:%S} UTC and its window has ended: unknown is not PASS ({reading.problem_text()})"
            )
            self._save(now, final=True)
            data["trigger"] = reason
            return WatchResult(failed(f"rolling back: {reason}", **data), rollback_reason=reason)
        caveats = list(self.caveats)
        if self._insufficient:
            names = ", ".join(self._insufficient)
            caveats.append(f"INSUFFICIENT_DATA seen on {names} (watch.insufficient_data = warn): not proof of health")
        if self._blind_s > 0:
            caveats.append(f"reads failed for {self._blind_s:.0f} s during the watch before they came back")
        errors = self._errors_text(reading, caveats, data)
        assert reading.alarms is not None
        head = (
            f"{len(self.alarms)} alarms OK for the whole {minutes} ({self._polls} polls every "
            f"{self.settings.poll_seconds:g} s); {errors}"
        )
        self._clear()
        if caveats:
            return WatchResult(warned("; ".join([head, *caveats]), **data))
        return WatchResult(passed(head, **data))

    def _errors_text(self, reading: _Reading, caveats: list[str], data: dict[str, Any]) -> str:
        bound = f"bound {self.settings.max_errors}"
        assert reading.errors is not None
        if not reading.errors.empty:
            return f"worker Errors {reading.errors.total:g} over the watch ({bound})"
        # No Errors datapoint: zero, or a query that does not see the function. The control says which.
        control = self._invocations()
        if isinstance(control, str):
            caveats.append(f"no Errors datapoints, and the control query failed ({control}): cannot confirm zero")
            data["control"] = control
            return "no Errors datapoints"
        data["control_invocations"] = control.total
        if control.empty:
            caveats.append(
                f"no Errors and no Invocations datapoints for {self.function} over the watch: cannot tell the "
                "query sees this function (Lambda publishes neither while it is idle)"
            )
            return "no Errors datapoints"
        return (
            f"worker Errors 0 ({bound}; no datapoints, and the same query sees {control.total:g} invocations, "
            "so it sees the function)"
        )

    def _invocations(self) -> MetricSeries | str:
        """The worker's Invocations over the window (retried within one poll), or why it could not be read."""
        deadline = time.monotonic() + float(self.settings.poll_seconds)
        why = "no answer"
        while True:
            try:
                start, end = self._window()
                series = self.aws.metric_datapoints(self.function, INVOCATIONS, start, end, 60)
                if series.complete:
                    return series
                why = f"not complete ({_incomplete(series)})"
            except UpstreamError as exc:
                why = str(exc)
            if time.monotonic() >= deadline:
                return why
            self._sleep(max(0.05, min(1.0, float(self.settings.poll_seconds) / 4)))

    # --- store and progress ------------------------------------------------------------------------------
    def _save(self, now: datetime, *, final: bool = False) -> None:
        self.state = self.state.model_copy(update={"last_poll_at": now})
        if final:
            return  # the command clears it once the rollback has run (a crash before that must resume it)
        try:
            self.run_ctx.store.save_watch(self.state)
        except StateError:
            log.warning("saving the %s watch failed; it keeps watching", self.state.env, exc_info=True)

    def _clear(self) -> None:
        try:
            self.run_ctx.store.clear_watch(self.state.env, self.state.run_id)
        except StateError:
            log.warning("clearing the %s watch failed", self.state.env, exc_info=True)

    def _progress(self, reading: _Reading, now: datetime) -> None:
        tick = time.monotonic()
        if self._last_progress is not None and tick - self._last_progress < self.progress_every_s:
            return
        self._last_progress = tick
        left = (self.state.ends_at - now).total_seconds()
        parts = [f"watching: {time_left(left)} left of {self.settings.minutes:g} min"]
        status = Status.PASS
        if reading.alarms is not None:
            states = [reading.alarms[n].state for n in self.alarms if n in reading.alarms]
            ok = sum(1 for s in states if s == "OK")
            parts.append(f"{ok}/{len(self.alarms)} alarms OK")
        if self._insufficient:
            status = Status.WARN
            parts.append(f"INSUFFICIENT_DATA on {', '.join(self._insufficient)} (warn: still watching)")
        parts.append(f"Errors {self._errors_total:g} (bound {self.settings.max_errors})")
        if not reading.complete:
            status = Status.WARN
            since = self._unknown_since or now
            parts.append(f"unknown since {since:%H:%M:%S} UTC, reads failing ({reading.problem_text()})")
        try:
            self.run_ctx.progress(
                CheckResult(
                    name="watch",
                    status=status,
                    detail="; ".join(parts),
                    data={"in_progress": True, "left_s": max(0.0, round(left, 1)), "polls": self._polls},
                )
            )
        except Exception:  # a broken display must not stop the watch
            log.exception("watch progress failed")

    def _data(self, reading: _Reading) -> dict[str, Any]:
        data: dict[str, Any] = {
            "window_start": self.state.started_at.isoformat(),
            "window_end": self.state.ends_at.isoformat(),
            "poll_seconds": self.settings.poll_seconds,
            "polls": self._polls,
            "max_errors": self.settings.max_errors,
            "errors": self._errors_total,
            "insufficient_data": self.settings.insufficient_data,
        }
        if reading.alarms is not None:
            data["alarms"] = {n: reading.alarms[n].state for n in self.alarms if n in reading.alarms}
        if self._transitions:
            data["alarm_transitions"] = list(self._transitions)
        if reading.problems:
            data["read_problems"] = dict(reading.problems)
        if self._blind_s:
            data["blind_s"] = round(self._blind_s, 1)
        return data


def _firing(alarms: dict[str, AlarmDetail]) -> list[AlarmDetail]:
    return [a for a in alarms.values() if a.state == "ALARM"]


def _alarm_says(alarm: AlarmDetail) -> str:
    value = alarm_value(alarm.reason)
    reason = " ".join((alarm.reason or "no reason given").split())
    if len(reason) > _REASON_CHARS:
        reason = reason[: _REASON_CHARS - 1] + "…"
    shown = f"value {value}" if value is not None else "no value in its reason"
    return f"alarm {alarm.name} is in ALARM ({shown}): {reason}"


def _incomplete(series: MetricSeries) -> str:
    code = series.status_code or "no result"
    messages = "; ".join(series.messages[:2])
    return f"StatusCode {code}" + (f": {messages}" if messages else "")


def _floor_s(moment: datetime) -> datetime:
    return datetime.fromtimestamp(math.floor(moment.timestamp()), tz=UTC)


def _ceil_s(moment: datetime) -> datetime:
    return datetime.fromtimestamp(math.ceil(moment.timestamp()), tz=UTC)


__all__ = ["PROGRESS_EVERY_S", "Watch", "WatchResult", "alarm_value", "time_left", "watch_client"]
