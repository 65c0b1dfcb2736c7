"""A chart of a cutover run, for people who would rather look than read.

The worker's Invocations and Errors (AWS/Lambda, per period) around the run, with what the run did
marked on it: the outbound flag's changes, the canary ticket, alarm transitions, the watch window or
the rollback's quiet window. Drawn for canary, enable-outbound and rollback runs (never preflight),
as `chart.png` in the evidence bundle (listed in its manifest, committed with it, linked from the PR)
and posted in the run's Slack thread.

Nothing on it identifies anything: no function, alarm, parameter or ticket name, no run or user id,
no account. Every label comes from `LABELS` (anything else reads "event"), the title is the command's
title, and the PNG's metadata is set explicitly (no "Software" line, a generic title).

matplotlib is imported inside `draw()` only, with the Agg backend, and through its object API (a
`Figure` of its own, no pyplot state shared between threads): the Slack app never imports it; a run
that draws pays for it.

What the chart reads from a report (a check's `data`; commands add these as they have them):
- `chart_marks`: a list of `{"at": ISO time, "label": one of LABELS, "kind": flag|ticket|alarm|event}`
- `chart_spans`: a list of `{"start": ISO time, "end": ISO time, "label": one of LABELS}`
- `alarm_transitions`: a list of `{"at": ISO time, "state": OK|ALARM|INSUFFICIENT_DATA}`
- on the `outbound_flag` step: `value` (bool) with `modified_at` (when the write took effect) and
  `written` (False: nothing was written, so nothing is marked), and `effective_at`
- `window_start`/`window_end` (the rollback's quiet window, a watch window), `confirmed_at` (rule
  paused/enabled), `ticket_created_at` (or `created_at` on the canary's `test_ticket` step: the canary
  ticket), `processed_at` (its processed line)
"""

from __future__ import annotations

import io
import logging
import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from commands.registry import title
from commands.report import Report
from integrations.errors import UpstreamError

if TYPE_CHECKING:  # boto3 (through the AWS client) loads only in a run that draws: not in the Slack app's start-up
    from commands.run_context import RunContext
    from integrations.aws import Aws, MetricSeries

log = logging.getLogger(__name__)

CHART_FILE = "chart.png"
CHARTED = frozenset({"canary", "enable-outbound", "rollback"})
CHART_TIMEOUT_S = 20.0  # the chart is a picture of the evidence, never a reason to hold a run's result
# The only words that may appear on a chart (besides times, counts and the command's title).
LABELS = frozenset(
    {
        "outbound on",
        "outbound off",
        "flag in effect",
        "canary ticket",
        "ticket processed",
        "rule enabled",
        "rule paused",
        "alarm: ALARM",
        "alarm: OK",
        "alarm: INSUFFICIENT_DATA",
        "watch window",
        "quiet window",
        "window",
        "rollback",
        "event",
    }
)
_WINDOW_LABELS = {"no_invocations": "quiet window", "watch": "watch window"}
_CONFIRM_LABELS = {"rule_paused": "rule paused", "rule_enabled": "rule enabled"}
_PERIODS = (1, 5, 10, 30, 60, 300, 900, 3600)  # CloudWatch: high-resolution periods, then minutes
_MAX_BUCKETS = 120
_MAX_WINDOW = timedelta(hours=24)
_PNG_METADATA = {
    "Software": None,  # matplotlib would name itself and its version
    "Title": "cutover run chart",
    "Description": "worker invocations and errors per period, with the run's events marked",
}


@dataclass(frozen=True)
class Series:
    label: str  # "invocations", "errors"
    points: Sequence[tuple[datetime, float]]
    complete: bool = True  # False: the legend says the data is partial (unknown is not zero)


@dataclass(frozen=True)
class Mark:
    at: datetime
    label: str
    kind: str = "event"  # flag | ticket | alarm | event: the line's colour


@dataclass(frozen=True)
class Span:
    start: datetime
    end: datetime
    label: str


def safe_label(label: str) -> str:
    """A label from the vocabulary, or "event": nothing else is ever written on a chart."""
    return label if label in LABELS else "event"


# --- what the report says happened ------------------------------------------------------------
def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def marks_from_report(report: Report) -> tuple[list[Mark], list[Span]]:
    """The events and windows a report's steps carry (see the module docstring for the keys)."""
    marks: list[Mark] = []
    spans: list[Span] = []
    for check in report.checks:
        data = check.data or {}
        for item in data.get("chart_marks") or []:
            if isinstance(item, dict) and (at := _time(item.get("at"))):
                marks.append(Mark(at, safe_label(str(item.get("label", ""))), str(item.get("kind") or "event")))
        for item in data.get("chart_spans") or []:
            if isinstance(item, dict) and (s := _time(item.get("start"))) and (e := _time(item.get("end"))):
                spans.append(Span(s, e, safe_label(str(item.get("label", "")))))
        for item in data.get("alarm_transitions") or []:
            if isinstance(item, dict) and (at := _time(item.get("at"))):
                marks.append(Mark(at, safe_label(f"alarm: {item.get('state')}"), "alarm"))
        if check.name == "outbound_flag" and isinstance(data.get("value"), bool) and data.get("written") is not False:
            if at := _time(data.get("modified_at")):
                marks.append(Mark(at, "outbound on" if data["value"] else "outbound off", "flag"))
            if at := _time(data.get("effective_at")):
                marks.append(Mark(at, "flag in effect", "flag"))
        if (start := _time(data.get("window_start"))) and (end := _time(data.get("window_end"))):
            spans.append(Span(start, end, _WINDOW_LABELS.get(check.name, "window")))
        if check.name in _CONFIRM_LABELS and (at := _time(data.get("confirmed_at"))):
            marks.append(Mark(at, _CONFIRM_LABELS[check.name], "event"))
        created = data.get("ticket_created_at") or (data.get("created_at") if check.name == "test_ticket" else None)
        if at := _time(created):
            marks.append(Mark(at, "canary ticket", "ticket"))
        if at := _time(data.get("processed_at")):
            marks.append(Mark(at, "ticket processed", "ticket"))
    return marks, spans


def window(report: Report, marks: Iterable[Mark], spans: Iterable[Span]) -> tuple[datetime, datetime, int]:
    """(start, end, period seconds): the run and everything marked, with a margin on both sides."""
    times = [report.started_at, report.finished_at]
    times += [m.at for m in marks] + [t for s in spans for t in (s.start, s.end)]
    first, last = min(times), max(times)
    if last - first > _MAX_WINDOW:  # a stray old timestamp must not ask CloudWatch for weeks
        first = last - _MAX_WINDOW
    pad = min(timedelta(minutes=5), max(timedelta(seconds=5), (last - first) / 10))
    start, end = first - pad, last + pad
    span_s = (end - start).total_seconds()
    # Lambda publishes per minute: a window of minutes is read per minute (or coarser), a short one
    # (the sandbox's seconds-long runs) per few seconds.
    floor = 60 if span_s >= 5 * 60 else 1
    period = next((p for p in _PERIODS if p >= floor and span_s / p <= _MAX_BUCKETS), _PERIODS[-1])
    start = datetime.fromtimestamp(math.floor(start.timestamp() / period) * period, tz=UTC)
    end = datetime.fromtimestamp(math.ceil(end.timestamp() / period) * period, tz=UTC)
    return start, end, period


# --- the drawing ------------------------------------------------------------------------------
_LABEL_BOX = {"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1}
_MARK_COLOURS = {"flag": "#1f6feb", "ticket": "#8250df", "alarm": "#cf222e", "event": "#57606a"}


def draw(
    series: Sequence[Series],
    marks: Sequence[Mark] = (),
    spans: Sequence[Span] = (),
    *,
    title: str,
    start: datetime,
    end: datetime,
    period_s: int = 60,
) -> bytes:
    """A PNG of `series` (bars per period) with `marks` (vertical lines) and `spans` (shaded windows)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import dates as mdates
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.6), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    step = timedelta(seconds=period_s) / len(series or [None]) * 0.9  # bars of each series side by side
    width_days = step / timedelta(days=1)  # matplotlib's date unit
    colours = ("#2da44e", "#cf222e", "#bf8700")
    for i, s in enumerate(series):
        label = s.label + ("" if s.complete else " (data incomplete)")
        if not s.points:  # Lambda publishes nothing for zero: say "no datapoints", never draw a zero
            ax.plot([], [], color=colours[i % 3], linewidth=6, label=f"{label} (no datapoints)")
            continue
        xs = [t + step * i for t, _ in s.points]
        ax.bar(xs, [v for _, v in s.points], width=width_days, align="edge", color=colours[i % 3], label=label)
    for span in spans:
        ax.axvspan(span.start, span.end, color="#bf8700", alpha=0.12)
        ax.text(span.start, 1.0, f" {safe_label(span.label)}", transform=ax.get_xaxis_transform(), va="top",
                fontsize=8, color="#7d4e00")  # fmt: skip
    for n, mark in enumerate(sorted(marks, key=lambda m: m.at)):
        colour = _MARK_COLOURS.get(mark.kind, _MARK_COLOURS["event"])
        ax.axvline(mark.at, color=colour, linestyle="--", linewidth=1.2)
        y = 0.92 - 0.1 * (n % 4)  # staggered, so labels of close events do not overlap
        ax.text(mark.at, y, f" {safe_label(mark.label)}", transform=ax.get_xaxis_transform(), fontsize=8,
                color=colour, va="top", bbox=_LABEL_BOX)  # fmt: skip
    ax.set_xlim(start, end)
    ax.set_ylim(bottom=0)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S", tz=UTC))
    ax.set_xlabel(f"UTC (per {period_s:g} s)")
    ax.set_ylabel("count")
    ax.set_title(title, fontsize=10)
    if series:
        ax.legend(loc="upper right", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", metadata=_PNG_METADATA)
    return out.getvalue()


# --- a run's chart ----------------------------------------------------------------------------
def chart_for(run: RunContext, report: Report, *, aws: Aws | None = None) -> bytes | None:
    """The run's chart, or None for a command that has none. Raises UpstreamError if a metric read fails."""
    if report.command not in CHARTED or report.dry_run:
        return None
    from commands.lever import aws_for

    marks, spans = marks_from_report(report)
    start, end, period = window(report, marks, spans)
    aws = aws or aws_for(run.env, region=run.request.aws_region)
    function = run.env.worker_function
    series = [_series(aws.metric_datapoints(function, metric, start, end, period), label) for metric, label in
              (("Invocations", "invocations"), ("Errors", "errors"))]  # fmt: skip
    chart_title = f"{title(report.command)}: worker invocations and errors"
    return draw(series, marks, spans, title=chart_title, start=start, end=end, period_s=period)


def _series(found: MetricSeries, label: str) -> Series:
    return Series(label, list(found.points), complete=found.complete)


def chart_files(run: RunContext, report: Report, *, timeout_s: float = CHART_TIMEOUT_S) -> dict[str, bytes]:
    """`{"chart.png": ...}` for the bundle, or {} (no chart for this command, or it could not be drawn
    in time: logged, and the run's result stands without it)."""
    if report.command not in CHARTED or report.dry_run:
        return {}
    box: dict[str, bytes | None] = {}

    def work() -> None:
        try:
            box["png"] = chart_for(run, report)
        except UpstreamError as exc:
            log.warning("no chart for run %s: %s", report.run_id, exc)
        except Exception:
            log.exception("no chart for run %s", report.run_id)

    thread = threading.Thread(target=work, name=f"chart-{report.run_id}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        log.warning("no chart for run %s: not drawn within %g s", report.run_id, timeout_s)
        return {}
    png = box.get("png")
    return {CHART_FILE: png} if png else {}
