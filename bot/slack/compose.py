"""The one composition root of the production Slack app: config, tokens, worker processes,
the evidence publisher and its outbox. The WSGI entry, Socket Mode and the demo all build it here."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

from bot.execution.evidence_publisher import publisher_for, start_drainer
from bot.execution.worker_pool import ProcessRunner
from bot.slack.app import CutoverBot
from bot.slack.blocks import notice_blocks, progress_blocks, result_blocks, started_blocks
from bot.slack.live_message import LiveMessage, slack_error
from commands.config import CutoverConfig, Tokens
from commands.deployments import end_interrupted
from commands.redaction import install_log_redaction
from commands.registry import COMMANDS
from commands.report import CheckResult
from commands.state import LockInfo, RunRecord, RunStatus, StateStore, WatchState, store_for

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
    report_interrupted_runs(bot, config)
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


def report_interrupted_runs(bot: CutoverBot, config: CutoverConfig) -> threading.Thread:
    """Runs an earlier process left RUNNING (killed mid-rollback, mid-canary, before a watch began): each is
    marked INTERRUPTED in the store and the channel is told what to do. Nothing resumes them: a rollback is
    re-run by a person (every step is idempotent and it takes the lock over). A run that still holds its
    lock may be alive elsewhere (a CLI, an Actions runner): it is judged once its lease has lapsed without
    renewal. A Slack run of the local executor ran in the app's own processes: it died with them. In the
    background: start-up never waits for the store."""

    booted = datetime.now(UTC)  # runs started after this are this process's own (a resumed watch's included)

    def check_all() -> None:
        try:
            store = store_for(config)
            watched = {(w.env, w.run_id) for w in store.active_watches()}  # resume_watches handles those
            found = [
                run
                for env in config.envs
                for run in store.runs(env, limit=20)
                if run.status == RunStatus.RUNNING
                and run.started_at < booted
                and not run.dry_run
                and (run.env, run.run_id) not in watched
                and (spec := COMMANDS.get(run.command)) is not None
                and spec.mutating
            ]
        except Exception:
            log.exception("reading the interrupted runs failed")
            return
        for run in found:
            threading.Thread(
                target=_report_interrupted,
                args=(bot, config, store, run),
                name=f"interrupted-{run.run_id}",
                daemon=True,
            ).start()

    thread = threading.Thread(target=check_all, name="interrupted-runs", daemon=True)
    thread.start()
    return thread


def _report_interrupted(bot: CutoverBot, config: CutoverConfig, store: StateStore, run: RunRecord) -> None:
    try:
        lock = store.lock_holder(run.env)
        ours = lock is not None and lock.holder.run_id == run.run_id
        died_with_the_app = run.surface == "slack" and config.executor == "local"
        if ours and not died_with_the_app:
            assert lock is not None
            while True:  # alive elsewhere renews its lease; a dead holder lets it lapse
                wait_s = (lock.expires_at - datetime.now(UTC)).total_seconds() + 1.0
                time.sleep(max(0.0, wait_s))
                again = store.lock_holder(run.env)
                if again is None or again.holder.run_id != run.run_id:
                    break
                if again.expires_at <= lock.expires_at:  # not renewed (a clock skew): look once more
                    lock = again
                    continue
                log.info("run %s on %s still renews its lock: not interrupted", run.run_id, run.env)
                return
            lock = None
        current = store.get_run(run.env, run.run_id)
        if current is None or current.status != RunStatus.RUNNING:
            return
        notice = interrupted_notice(run, lock if ours else None)
        store.record_run_finish(run.env, run.run_id, RunStatus.INTERRUPTED, summary=notice)
        store.audit(run.env, "cutover-bot", "run.interrupted", "slack", run.run_id, detail=notice)
    except Exception:
        log.exception("reporting the interrupted run %s failed", run.run_id)
        return
    log.warning("%s", notice)
    end_interrupted(bot.publisher(), env=run.env, command=run.command, run_id=run.run_id, pr=run.pr,
                    why=f"interrupted: the bot stopped before run {run.run_id} finished")  # fmt: skip
    channel = config.slack.channel or ""
    try:
        bot.client.chat_postMessage(channel=channel, **notice_blocks(notice, icon="⚠️").as_kwargs())
    except Exception as exc:
        log.warning("posting the interrupted-run notice failed: %s", slack_error(exc))


def interrupted_notice(run: RunRecord, lock: LockInfo | None) -> str:
    """What the channel reads about a run the bot stopped in the middle of, and what to do now."""
    who = run.requested_by
    if who[:1] in ("U", "W") and who.isalnum():
        who = f"<@{who}>"
    head = (
        f"The {run.command} of {run.env} (run {run.run_id}, requested by {who}, started "
        f"{run.started_at:%H:%M:%S} UTC) was interrupted: the bot stopped before it finished, and it is "
        "recorded as INTERRUPTED."
    )
    frees = f" Its lock frees at {lock.expires_at:%H:%M:%S} UTC (when its lease runs out)." if lock else ""
    if run.command == "rollback":
        todo = (
            f" The outbound flag may not be false yet: run `/rollback {run.env}` again now. Every step is "
            "idempotent, and a rollback takes the lock over at once."
        )
    else:
        todo = (
            f" Nothing resumes it. Check the outbound flag with `/cutover status {run.env}`; if in doubt, "
            f"`/rollback {run.env}` (always allowed), else run `/{run.command} {run.env}` again."
        )
    return head + frees + todo


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
