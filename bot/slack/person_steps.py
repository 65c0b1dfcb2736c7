"""The "Done" button of a step a person does in a UI the bot cannot drive (Richpanel's rule: enable
it for the canary, pause it in a rollback). The click is verified (signed like any request, by Bolt),
checked (the run's requester or a runner of the env), recorded in the store where the run reads
it, and the message is edited in place: a finished run's WARN line becomes "confirmed by".
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, Protocol

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.slack.blocks import CONFIRM_ACTION, escape
from commands.access import AccessPolicy
from commands.config import CutoverConfig
from commands.execute import store_for
from commands.state import RunStatus, StateError

log = logging.getLogger(__name__)


class CutoverBot(Protocol):
    """What a click needs of the app (bot/slack/app.py's CutoverBot)."""

    config: CutoverConfig
    access: AccessPolicy
    client: WebClient


def register(app: App, bot: CutoverBot) -> None:
    app.action(CONFIRM_ACTION)(lambda ack, body: _on_confirm(bot, ack, body))


def _on_confirm(bot: CutoverBot, ack: Ack, body: dict[str, Any]) -> None:
    ack()  # within 3 s, before anything slow; the answer goes out as an ephemeral message
    user = str((body.get("user") or {}).get("id") or "")
    channel = str((body.get("channel") or {}).get("id") or "")
    try:
        target = json.loads(body["actions"][0]["value"])
        run_id, env, step = str(target["run"]), str(target["env"]), str(target["step"])
    except (KeyError, IndexError, TypeError, ValueError):
        _tell(bot, channel, user, "That button's payload is not one this bot made. Nothing was recorded.")
        return
    store = store_for(bot.config)
    try:
        run = store.get_run(env, run_id) if env in bot.config.envs else None
        if run is None:
            _tell(bot, channel, user, f"No run `{escape(run_id[:40])}` in this bot's records. Nothing was recorded.")
            return
        if user != run.requested_by:
            decision = bot.access.may_run(user, env, run.command)
            if not decision.allowed:
                why = f"Only the requester or a runner of {env} may confirm this. {decision.message}"
                _tell(bot, channel, user, why)
                store.audit(
                    env, user, "confirmation.refused", "slack", run_id, f"{step}: not the requester or a runner"
                )
                return
        confirmation = store.record_confirmation(env, run_id, step, user, "slack")
    except StateError as exc:
        log.warning("recording a confirmation failed: %s", exc)
        _tell(bot, channel, user, f"The confirmation could not be recorded ({exc}). Try again.")
        return
    if confirmation.confirmed_by != user:
        _tell(bot, channel, user, f"`{step}` was already confirmed by <@{confirmation.confirmed_by}>.")
    if run.status != RunStatus.RUNNING:  # the run will not re-render its message: edit it here
        _mark_confirmed(bot, body, step, confirmation.confirmed_by, confirmation.at)


def _mark_confirmed(bot: CutoverBot, body: dict[str, Any], step: str, by: str, at: datetime) -> None:
    message = body.get("message") or {}
    channel = str((body.get("channel") or {}).get("id") or "")
    blocks = [b for b in message.get("blocks") or [] if b.get("block_id") != f"confirm:{step}"[:255]]
    when = at.astimezone(UTC).strftime("%H:%M:%S UTC")
    line = f"✅ `{escape(step)}` confirmed by <@{by}> at {when}"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": line}]})
    try:
        bot.client.chat_update(channel=channel, ts=message.get("ts"), text=line, blocks=blocks)
    except (SlackApiError, SlackClientError, OSError) as exc:
        log.warning("could not edit the run's message after a confirmation: %s", exc)


def _tell(bot: CutoverBot, channel: str, user: str, text: str) -> None:
    try:
        bot.client.chat_postEphemeral(channel=channel, user=user, text=text)
    except (SlackApiError, SlackClientError, OSError) as exc:
        log.warning("could not answer a click: %s", exc)
