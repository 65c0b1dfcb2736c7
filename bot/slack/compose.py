"""The one composition root of the production Slack app: config, tokens, worker processes,
the evidence publisher and its outbox. The WSGI entry, Socket Mode and the demo all build it here."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from bot.execution.evidence_publisher import publisher_for, start_drainer
from bot.execution.worker_pool import ProcessRunner
from bot.slack.app import CutoverBot
from bot.slack.blocks import notice_blocks, progress_blocks, result_blocks, started_blocks
from bot.slack.live_message import LiveMessage, slack_error
from commands.config import CutoverConfig, Tokens
from commands.redaction import install_log_redaction
from commands.report import CheckResult
from commands.state import WatchState

log = logging.getLogger(__name__)
ENABLE_OUTBOUND = "enable-outbound"


def build_bot(config: CutoverConfig, tokens: Tokens, **overrides: Any) -> CutoverBot:
    """The app as production runs it; `overrides` are CutoverBot's keyword arguments (the demo
    shortens the evidence retry delays, tests pass an executor)."""
    install_log_redaction()
    start_drainer(publisher_for(config, tokens=tokens))  # evidence an earlier process could not deliver
    options: dict[str, Any] = {
        "runner": ProcessRunner(),
        "publisher_factory": lambda: publisher_for(config, tokens=tokens),
    }
    options.update(overrides)
    bot = CutoverBot(config=config, tokens=tokens, **options)
    resume_watches(bot, config)
    return bot


def resume_watches(bot: CutoverBot, config: CutoverConfig) -> threading.Thread:
    """Watches an earlier process left in the store (it stopped mid-watch): tell the channel, then resume
    each for the time left, or roll back when its window passed unwatched (commands/enable_outbound.py).
    In the background: start-up never waits for the store or AWS."""
    # Imported here, before the thread starts (about 0.1 s: boto3): `python -m bot serve` forks gunicorn's
    # worker right after this, and a module half-imported by a thread at the fork stays broken in the worker.
    from commands.enable_outbound import interrupted_watches

    def resume_all() -> None:
        try:
            watches = interrupted_watches(config)
        except Exception:
            log.exception("reading the interrupted watches failed")
            return
        for state in watches:
            threading.Thread(target=_resume_one, args=(bot, config, state), name=f"resume-{state.env}").start()

    thread = threading.Thread(target=resume_all, name="resume-watches", daemon=True)
    thread.start()
    return thread


def _resume_one(bot: CutoverBot, config: CutoverConfig, state: WatchState) -> None:
    from commands.enable_outbound import resume_notice, resume_watch

    channel = state.channel or config.slack.channel or ""
    notice = resume_notice(state)
    log.warning("%s", notice)
    try:
        bot.client.chat_postMessage(channel=channel, **notice_blocks(notice, icon="🔁").as_kwargs())
    except Exception as exc:
        log.warning("posting the resume notice failed: %s", slack_error(exc))
    live = LiveMessage(
        bot.client,
        progress_client=bot.progress_client,
        channel=channel,
        response_url=None,
        interval_s=bot.update_interval_s,
    )
    live.post(started_blocks(ENABLE_OUTBOUND, state.env, state.requested_by, pr=state.pr))
    started, done = time.monotonic(), list[CheckResult]()

    def progress(check: CheckResult) -> None:
        same = next((i for i, c in enumerate(done) if c.name == check.name), None)  # the newest line of a step
        if same is None:
            done.append(check)
        else:
            done[same] = check
        snapshot = list(done)
        elapsed = time.monotonic() - started
        live.maybe_update(
            lambda: progress_blocks(ENABLE_OUTBOUND, state.env, state.requested_by, snapshot, elapsed_s=elapsed)
        )

    try:
        result = resume_watch(state, config=config, progress=progress, publisher=bot.publisher())
    except Exception as exc:
        log.exception("resuming the %s watch failed", state.env)
        text = (
            f"Resuming the enable-outbound watch on {state.env} failed ({exc.__class__.__name__}): "
            f"check the outbound flag, or run /rollback {state.env}."
        )
        live.finish(notice_blocks(text, icon="🛑"))
        return
    if isinstance(result, str):
        live.finish(notice_blocks(f"The enable-outbound watch on {state.env} was not resumed: {result}"))
    else:
        live.finish(result_blocks(result, user=state.requested_by))
