"""`python -m bot serve`: the Slack app under gunicorn, the same production server as the Procfile."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication

from bot.slack.app import require_tokens
from bot.slack.wsgi import WSGIApp, build_application
from commands.config import Tokens, load_config

# One worker: the retry de-duplication set, the run executor and `/cutover status` live in the
# process, so a Slack retry landing on a second worker could run twice. Scale with threads.
WORKERS = 1
THREADS = 8


class _Gunicorn(BaseApplication):
    def __init__(self, app: Callable[[], WSGIApp], options: dict[str, Any]) -> None:
        self._app = app
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> WSGIApp:
        # Built in the worker, after the fork: the app starts threads (outbox drainer, watch resume)
        # that must live in the process that serves, not in gunicorn's master.
        return self._app()


DEFAULT_PORT = 3000


def serve_port(given: int | None) -> int:
    """--port, else $PORT (what every PaaS sets, and the Procfile uses), else 3000."""
    if given is not None:
        return given
    raw = os.environ.get("PORT", "").strip()
    if not raw:
        return DEFAULT_PORT
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        from commands.config import ConfigError

        raise ConfigError(f"PORT={raw[:20]!r} is not a TCP port number")
    return int(raw)


def serve(*, port: int, host: str = "0.0.0.0") -> int:  # noqa: S104 - a server listens on all interfaces
    require_tokens(Tokens())  # config and token problems surface here, as exit 2, before binding
    load_config()
    _Gunicorn(
        build_application, {"bind": f"{host}:{port}", "workers": WORKERS, "threads": THREADS, "accesslog": None}
    ).run()
    return 0
