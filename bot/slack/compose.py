"""The one composition root of the production Slack app: config, tokens, worker processes,
the evidence publisher and its outbox. The WSGI entry, Socket Mode and the demo all build it here."""

from __future__ import annotations

from typing import Any

from bot.execution.evidence_publisher import publisher_for, start_drainer
from bot.execution.worker_pool import ProcessRunner
from bot.slack.app import CutoverBot
from commands.config import CutoverConfig, Tokens
from commands.redaction import install_log_redaction


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
    return CutoverBot(config=config, tokens=tokens, **options)
