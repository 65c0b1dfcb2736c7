"""Socket Mode: the same Bolt app over a WebSocket Slack opens to us (no public URL; for development).

Needs an app-level token (`xapp-...`, scope connections:write) in SLACK_APP_TOKEN, plus the bot token.
Production uses HTTP (bot.wsgi under gunicorn).
"""

from __future__ import annotations

import logging

from slack_bolt.adapter.socket_mode import SocketModeHandler

from commands.config import ConfigError, CutoverConfig, Tokens
from commands.redaction import REDACTOR, install_log_redaction

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
    from bot.app import create_app
    from bot.process_runner import ProcessRunner
    from bot.wiring import drain_in_background, publisher_for

    install_log_redaction()
    REDACTOR.register("slack_app_token", tokens.slack_app_token)
    drain_in_background(publisher_for(config))  # evidence an earlier process could not deliver
    app = create_app(
        config=config, tokens=tokens, runner=ProcessRunner(), publisher_factory=lambda: publisher_for(config)
    )
    handler = SocketModeHandler(app, app_token=tokens.slack_app_token)
    log.info("cutover bot connecting in Socket Mode")
    try:
        handler.start()  # blocks
    except KeyboardInterrupt:
        handler.close()
    return 0
