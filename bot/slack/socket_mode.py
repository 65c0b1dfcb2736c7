"""Socket Mode: the same Bolt app over a WebSocket Slack opens to us (no public URL; for development).

Needs an app-level token (`xapp-...`, scope connections:write) in SLACK_APP_TOKEN, plus the bot token.
Production uses HTTP (bot.slack.wsgi under gunicorn).
"""

from __future__ import annotations

import logging

from slack_bolt.adapter.socket_mode import SocketModeHandler

from commands.config import ConfigError, CutoverConfig, Tokens
from commands.redaction import REDACTOR

log = logging.getLogger(__name__)


def run_socket_mode(config: CutoverConfig, tokens: Tokens) -> int:
    """Connect and serve until interrupted. Raises ConfigError (exit 2 in the CLI) when a token is missing."""
    if not tokens.slack_app_token:
        raise ConfigError(
            "SLACK_APP_TOKEN is not set: Socket Mode needs an app-level token (xapp-..., scope connections:write) "
            "from the Slack app's Basic Information page; or serve over HTTP with `python -m bot serve`"
        )
    if not tokens.slack_app_token.startswith("xapp-"):
        raise ConfigError("SLACK_APP_TOKEN must be an app-level token starting with xapp-")
    if not tokens.slack_signing_secret:
        # Socket Mode does not check signatures, but the app is the same one HTTP serves.
        tokens = tokens.model_copy(update={"slack_signing_secret": "unused-in-socket-mode"})
    from bot.slack.compose import build_bot

    REDACTOR.register("slack_app_token", tokens.slack_app_token)
    app = build_bot(config, tokens).app
    handler = SocketModeHandler(app, app_token=tokens.slack_app_token)
    log.info("cutover bot connecting in Socket Mode")
    try:
        handler.start()  # blocks
    except KeyboardInterrupt:
        handler.close()
    return 0
