"""A run's chart in its Slack thread: the same upload for runs in the app and runs on Actions runners."""

from __future__ import annotations

import logging

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.slack.live_message import slack_error
from commands.chart import CHART_FILE
from commands.execute import Outcome
from commands.redaction import REDACTOR
from commands.registry import title

log = logging.getLogger(__name__)

ALT_TEXT = "the worker's invocations and errors per period around the run, with its events marked"


def post_chart(client: WebClient, outcome: Outcome, *, channel: str, thread_ts: str | None) -> bool:
    """Upload the bundle's chart (canary, enable-outbound, rollback) into the thread with files_upload_v2.
    False when there is none or the upload failed (logged): the result is already in the channel."""
    png = outcome.bundle.files.get(CHART_FILE) if outcome.bundle is not None else None
    if not png or thread_ts is None:
        return False
    report = outcome.report
    try:
        client.files_upload_v2(
            channel=channel,
            thread_ts=thread_ts,
            file=png,
            filename=CHART_FILE,
            title=REDACTOR.redact(f"{title(report.command)} {report.env}: worker invocations and errors"),
            alt_txt=ALT_TEXT,
        )
    except (SlackApiError, SlackClientError, OSError, ValueError) as exc:  # ValueError: an answer not JSON
        log.warning("the chart of run %s was not posted: %s", report.run_id, slack_error(exc))
        return False
    return True
