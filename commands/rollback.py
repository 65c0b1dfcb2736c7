"""/rollback: always allowed, never waits on an approval, a lock, GitHub or a click.

Three steps, each its own check, each idempotent, each attempted even when an earlier one failed:

1. `outbound_flag`: the outbound lever set to false and read back (skipped as a write when it already
   reads false); reports the previous value and when the worker surely sees it (`propagation_seconds`).
2. `rule_paused`: a person pauses the Order Status rule in Richpanel (no API for rules) and confirms it
   (a button in Slack, `--confirm rule-paused` on the CLI). The rollback does not wait for the click:
   the step is WARN "not yet confirmed" until it comes (re-read when the run ends).
3. `no_invocations`: once the flag change has propagated, the worker's Invocations over
   `rollback.quiet_minutes` sum to zero, with a positive control: the same query over the window before
   the rollback finds the invocations that were there (none there: WARN, the query may not see them).

`roll_back(run, steps, reason=...)` appends the three steps to any command's `Steps` (the canary's and
enable-outbound's automatic rollbacks) and answers whether the lever is confirmed false.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from commands.checks import Verdict, failed, passed, warned
from commands.config import CutoverConfig, EnvConfig
from commands.lever import (
    account_of,
    aws_for,
    describe_lever,
    effective_by,
    lever_api,
    propagation_seconds,
    read_lever,
    reading_data,
    write_lever,
)
from commands.report import CheckResult, Report, Status, new_run_id, utc_now
from commands.request import RunRequest
from commands.run_context import RunContext, Steps
from integrations.aws import Aws, FlagReading, MetricSeries
from integrations.errors import UpstreamError

log = logging.getLogger(__name__)

STEPS = ("outbound_flag", "rule_paused", "no_invocations")
RULE_PAUSED = "rule-paused"  # the person-step's key: the Slack button, `--confirm rule-paused`
METRIC = "Invocations"
# While the quiet window runs, look this often for an invocation that already disproves it.
_POLL_MAX_S = 15.0
_SETTLE_MAX_S = 60.0  # CloudWatch publishes Lambda metrics up to about a minute late
MAX_WAIT_S = 13 * 60.0  # the quiet window must end within a run's deadline (15 min), with room to report


def rule_prompt(env: str) -> str:
    return (
        f"pause the Order Status automation rule in Richpanel for {env}, then confirm it "
        f"(the button here, or `--confirm {RULE_PAUSED}` on the CLI)"
    )


@dataclass
class _Rollback:
    run: RunContext
    reason: str
    began: datetime = field(default_factory=utc_now)
    aws: Aws | None = None
    flag_effective_at: datetime | None = None  # when the worker surely sees the lever false
    lever_off: bool = False

    @property
    def env(self) -> EnvConfig:
        return self.run.env

    @property
    def env_name(self) -> str:
        return self.run.request.env

    def client(self) -> Aws:
        if self.aws is None:
            self.aws = aws_for(self.env, region=self.run.request.aws_region)
        return self.aws

    # --- 1. outbound_flag -------------------------------------------------------------------------
    def outbound_flag(self) -> Verdict:
        env, where = self.env, describe_lever(self.env)
        aws = self.client()
        try:
            previous: FlagReading | None = read_lever(aws, env)
        except UpstreamError:
            previous = None  # the write is still attempted: it is the point of a rollback
        # The account the lever lives in: from the reading's ARN (no extra call), else from STS.
        account, account_note = account_of(previous), ""
        if account is None:
            try:
                account = aws.caller_identity().account
            except UpstreamError as exc:
                account_note = f"the AWS account could not be confirmed ({exc.reason})"
        if account is not None and account != env.aws_account_id:
            return failed(
                f"NOT changed: the AWS credentials are for account {account}, not {self.env_name}'s "
                f"{env.aws_account_id}. By hand: set {where} to false with {self.env_name}'s credentials, "
                f"or run /rollback {self.env_name} again with them",
                lever=where,
                account=account,
            )
        propagation = propagation_seconds(env)
        if previous is not None and previous.value is False:
            reading, wrote = previous, False
        else:
            try:
                reading = write_lever(aws, env, False)
            except UpstreamError as exc:
                return failed(
                    f"could not set {where} to false: {exc}. By hand: set {where} to false in the AWS console "
                    f"(or run /rollback {self.env_name} again)",
                    lever=where,
                    previous=_value_text(previous),
                    code=exc.code,
                )
            wrote = True
        written_at = utc_now()
        data = {
            "lever": where,
            "previous": _value_text(previous),
            "previous_version": previous.version if previous is not None else None,
            "written": wrote,
            "propagation_seconds": propagation,
            **reading_data(reading),
        }
        if reading.value is not False:
            return failed(
                f"{where} reads {_value_text(reading)} after the write{_version(reading)}: someone or "
                f"something set it back. By hand: set {where} to false and find who writes it",
                **data,
            )
        if reading.update_status == "Failed":
            return failed(
                f"{where} reads false but the function update Failed: the worker may still run the old "
                f"configuration. By hand: check {env.worker_function} in the Lambda console",
                **data,
            )
        effective = effective_by(env, reading, written_at=written_at)
        self.flag_effective_at = effective
        self.lever_off = True
        data["effective_at"] = effective.isoformat()
        self.run.audit("rollback.outbound_off", f"{where} false{_version(reading)}; {self.reason}")
        if wrote:
            head = f"{where} set to false (was {_value_text(previous)}), read back false{_version(reading)}"
        else:
            head = f"{where} already false{_version(reading)}; nothing written"
        seen = f"the worker surely sees it by {max(effective, written_at):%H:%M:%S} UTC (propagation {propagation:g} s)"
        notes = []
        if reading.overwritten:
            notes.append(f"written as version {reading.written_version}, a later write is in effect (still false)")
        caveats = []
        if account_note:
            caveats.append(account_note)
        if reading.update_status == "InProgress":
            caveats.append("the function update is still InProgress: the worker may run the old value a moment longer")
        detail = "; ".join([head, seen, *notes, *caveats])
        return (warned if caveats else passed)(detail, **data)

    # --- 2. rule_paused -----------------------------------------------------------------------------
    def rule_paused(self) -> Verdict:
        found = self.run.confirmation(RULE_PAUSED)
        if found is not None:
            return _confirmed(found)
        prompt = rule_prompt(self.env_name)
        self.run.request_confirmation(RULE_PAUSED, prompt)
        self.run.audit("rollback.rule_pause_requested", prompt)
        return warned(
            f"not yet confirmed: {prompt}. The rollback does not wait for it",
            **self.awaiting(prompt),
        )

    def awaiting(self, prompt: str) -> dict[str, str]:
        return {"awaiting": RULE_PAUSED, "run_id": self.run.run_id, "env": self.env_name, "prompt": prompt}

    # --- 3. no_invocations ----------------------------------------------------------------------------
    def no_invocations(self) -> Verdict:
        env = self.env
        function = env.worker_function
        quiet_s = float(env.rollback.quiet_minutes) * 60
        align = 60 if quiet_s >= 60 else 1  # Lambda metrics are per minute; CloudWatch rounds to the period
        period = align
        effective = self.flag_effective_at or (utc_now() + timedelta(seconds=propagation_seconds(env)))
        start = _ceil(max(effective, self.began), align)
        end = start + timedelta(seconds=max(align, _ceil_s(quiet_s, align)))
        before_end = _ceil(self.began, align)  # up to the rollback's own second: no overlap with the window
        before_start = before_end - (end - start)
        settle = min(_SETTLE_MAX_S, max(0.5, quiet_s / 5))
        aws = self.client()
        window = f"{start:%H:%M:%S}-{end:%H:%M:%S} UTC"
        data: dict[str, object] = {
            "function": function,
            "metric": f"AWS/Lambda {METRIC}",
            "window_start": start.isoformat(),
            "window_end": end.isoformat(),
            "quiet_minutes": env.rollback.quiet_minutes,
            "control_start": before_start.isoformat(),
            "control_end": before_end.isoformat(),
        }
        wait_s = (end - utc_now()).total_seconds() + settle
        if wait_s > MAX_WAIT_S:
            return failed(
                f"the quiet window {window} ends {wait_s / 60:.0f} min from now (propagation_seconds "
                f"{propagation_seconds(env):g} + quiet_minutes {env.rollback.quiet_minutes:g}), past what one run "
                f"may wait ({MAX_WAIT_S / 60:.0f} min): unknown is not zero. {_BY_HAND} after {end:%H:%M:%S} UTC",
                **data,
            )
        early = self._wait_for_window(aws, function, start, end, settle, period)
        if early is not None:
            return self._invocations_seen(early, window, data)
        series = aws.metric_datapoints(function, METRIC, start, end, period)
        data.update(status_code=series.status_code, invocations=series.total, api_calls=series.api_calls)
        if not series.complete:
            return failed(f"the quiet-window query is not complete ({_why_incomplete(series)}): {_BY_HAND}", **data)
        if series.total > 0:
            return self._invocations_seen(series, window, data)
        control = aws.metric_datapoints(function, METRIC, before_start, before_end, period)
        data.update(control_status_code=control.status_code, control_invocations=control.total)
        if not control.complete:
            return failed(
                f"0 invocations over {window}, but the control query (the window before the rollback) is not "
                f"complete ({_why_incomplete(control)}): unknown is not zero. {_BY_HAND}",
                **data,
            )
        if control.empty or control.total <= 0:
            return warned(
                f"0 invocations over {window}, but cannot tell the query sees this function: it finds none in "
                f"the window before the rollback ({before_start:%H:%M:%S}-{before_end:%H:%M:%S} UTC) either. "
                f"Check {function}'s Invocations in CloudWatch by hand",
                **data,
            )
        last = control.last_at
        self.run.audit("rollback.quiet", f"0 invocations over {window}; {control.total:g} before the rollback")
        return passed(
            f"0 invocations of {function} over {window} ({env.rollback.quiet_minutes:g} min after the flag "
            f"change propagated); the same query finds {control.total:g} in the window before the rollback"
            + (f" (last at {last:%H:%M:%S} UTC)" if last else ""),
            **data,
        )

    def _wait_for_window(
        self, aws: Aws, function: str, start: datetime, end: datetime, settle: float, period: int
    ) -> MetricSeries | None:
        """Sleep until the window (and the metric's settle time) has passed; on the way, a complete query
        that already finds invocations in the window ends the wait (returned)."""
        quiet_s = (end - start).total_seconds()
        poll = max(1.0, min(_POLL_MAX_S, quiet_s / 4))
        ready_at = end + timedelta(seconds=settle)
        while True:
            now = utc_now()
            if now >= ready_at:
                return None
            upto = _floor(min(now, end), period)
            if upto - start >= timedelta(seconds=period):
                try:
                    series = aws.metric_datapoints(function, METRIC, start, upto, period)
                except UpstreamError:
                    series = None  # only the final query decides on an error
                if series is not None and series.complete and series.total > 0:
                    return series
            time.sleep(max(0.05, min(poll, (ready_at - utc_now()).total_seconds())))

    def _invocations_seen(self, series: MetricSeries, window: str, data: dict[str, object]) -> Verdict:
        data.update(status_code=series.status_code, invocations=series.total)
        first = series.points[0][0] if series.points else None
        return failed(
            f"{series.total:g} invocations of {self.env.worker_function} in the quiet window {window}"
            + (f" (first at {first:%H:%M:%S} UTC)" if first else "")
            + f": tickets still reach the worker. By hand: pause the Order Status rule in Richpanel, "
            f"then run /rollback {self.env_name} again",
            **data,
        )


_BY_HAND = "By hand: read the worker's Invocations in CloudWatch, or run the rollback again"


def _version(reading: FlagReading) -> str:
    return f" (version {reading.version})" if reading.version else ""


def _value_text(reading: FlagReading | None) -> str:
    if reading is None:
        return "unreadable"
    return {True: "true", False: "false"}.get(reading.value, "absent")  # type: ignore[arg-type]


def _confirmed(found: object) -> Verdict:
    by = getattr(found, "confirmed_by", "?")
    surface = getattr(found, "surface", "?")
    at: datetime | None = getattr(found, "at", None)
    when = f" at {at:%H:%M:%S} UTC" if at else ""
    return passed(
        f"rule paused in Richpanel, confirmed by {by} ({surface}){when}",
        confirmed_by=by,
        surface=surface,
        confirmed_at=at.isoformat() if at else None,
    )


def _why_incomplete(series: MetricSeries) -> str:
    code = series.status_code or "no result"
    messages = "; ".join(series.messages[:3])
    return f"StatusCode {code}" + (f": {messages}" if messages else "")


def _floor(moment: datetime, step: int) -> datetime:
    seconds = math.floor(moment.timestamp() / step) * step
    return datetime.fromtimestamp(seconds, tz=UTC)


def _ceil(moment: datetime, step: int) -> datetime:
    seconds = math.ceil(moment.timestamp() / step) * step
    return datetime.fromtimestamp(seconds, tz=UTC)


def _ceil_s(seconds: float, step: int) -> float:
    return math.ceil(seconds / step) * step


def roll_back(run: RunContext, steps: Steps, *, reason: str) -> bool:
    """Append the rollback's three steps to `steps` (never skipped by preemption); True when the
    outbound lever is confirmed false (read back). Every step runs whatever the others did."""
    rollback = _Rollback(run, reason)
    steps.run("outbound_flag", rollback.outbound_flag, always=True)  # first: nothing may delay the lever
    run.audit("rollback.start", reason)
    paused = steps.run("rule_paused", rollback.rule_paused, always=True)
    steps.run("no_invocations", rollback.no_invocations, always=True)
    if paused.status == Status.WARN and paused.data.get("awaiting"):
        _late_confirmation(run, steps, paused)
    run.audit("rollback.end", "outbound off" if rollback.lever_off else "outbound NOT confirmed off")
    return rollback.lever_off


def _late_confirmation(run: RunContext, steps: Steps, pending: CheckResult) -> None:
    """The click may come while the quiet window runs: the report then shows who confirmed."""
    found = run.confirmation(RULE_PAUSED)
    if found is None:
        return
    verdict = _confirmed(found)
    updated = pending.model_copy(update={"status": verdict.status, "detail": verdict.detail, "data": verdict.data})
    for i, result in enumerate(steps.results):
        if result is pending:
            steps.results[i] = updated
            break
    try:
        run.progress(updated)
    except Exception:  # a broken display must not lose the result
        log.exception("progress callback failed for rule_paused")


def run_rollback(run: RunContext) -> Report:
    steps = Steps(run)
    roll_back(run, steps, reason=f"/rollback requested by {run.requester} ({run.request.surface})")
    return steps.report()


def plan_rollback(request: RunRequest, config: CutoverConfig) -> Report:
    """A dry run: each step and the exact change it would make, calling nothing."""
    env = config.env(request.env)
    quiet = env.rollback.quiet_minutes
    plan: list[tuple[str, str]] = [
        (
            "outbound_flag",
            f"would set {describe_lever(env)} to false ({lever_api(env, False)}; no write when it already reads "
            f"false); the worker sees it within {propagation_seconds(env):g} s",
        ),
        ("rule_paused", f"would ask a person to {rule_prompt(request.env)}; the rollback does not wait for it"),
        (
            "no_invocations",
            f"would wait for the change to propagate, then sum AWS/Lambda {METRIC} of {env.worker_function} over "
            f"{quiet:g} min (CloudWatch GetMetricData) and the same query over the window before the rollback",
        ),
    ]
    now = utc_now()
    return Report(
        command="rollback",
        env=request.env,
        run_id=request.run_id or new_run_id(),
        started_at=now,
        finished_at=now,
        checks=[CheckResult(name=n, status=Status.SKIP, detail=f"dry run: {what}") for n, what in plan],
        requested_by=request.requested_by,
        pr=request.pr,
        dry_run=True,
    )


__all__ = ["RULE_PAUSED", "STEPS", "plan_rollback", "roll_back", "run_rollback"]
