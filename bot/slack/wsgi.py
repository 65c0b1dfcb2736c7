"""The HTTP entry point: a WSGI application for gunicorn (see the Procfile).

    POST /slack/events -> the Bolt app (slash commands, interactivity)
    GET  /healthz      -> 200 "ok"

`bot.slack.wsgi:application` is built from `load_config()` and `Tokens()` when gunicorn first reads it;
a missing config file or token stops gunicorn with one clear line instead of a traceback.
The app is built on first access (PEP 562 module `__getattr__`) rather than at import, so tests and
the bench can import the helpers below without a config. Serve it with ONE worker process and
several threads: the retry deduplication and the run executor live in the process.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler

from commands.config import ConfigError, Tokens, load_config

log = logging.getLogger(__name__)

SLACK_PATH = "/slack/events"
GUNICORN_BOOT_ERROR = 3
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


# Slack's own payloads are small (a block_actions payload carries the message: tens of kB at most).
# Anything larger is refused before it is read: the signature cannot be checked without the body.
MAX_BODY_BYTES = 256 * 1024


def make_wsgi_app(bolt_app: App, *, max_body_bytes: int = MAX_BODY_BYTES) -> WSGIApp:
    slack = SlackRequestHandler(bolt_app, path=SLACK_PATH)

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz" and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            return _plain(start_response, "200 OK", b"ok")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _plain(start_response, "400 Bad Request", b"bad Content-Length")
        if length > max_body_bytes:
            return _plain(start_response, "413 Payload Too Large", b"request body too large")
        if length == 0 and environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
            body = environ["wsgi.input"].read(max_body_bytes + 1)
            if len(body) > max_body_bytes:
                return _plain(start_response, "413 Payload Too Large", b"request body too large")
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        else:
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
        if _malformed_interaction(body):
            log.warning("a Slack interaction whose payload has no usable action was refused (400)")
            return _plain(start_response, "400 Bad Request", b"malformed Slack interaction payload: nothing was done")
        try:
            return slack(environ, start_response)
        # Bolt parses the body before anything else: a `payload=` that is not JSON (ValueError), or JSON that
        # is not an object (`payload=[]`, `payload=null`: Bolt's context builder raises AttributeError/TypeError)
        except (ValueError, AttributeError, TypeError):
            log.warning("a Slack request whose body is not valid JSON or form data was refused (400)")
            return _plain(start_response, "400 Bad Request", b"malformed Slack request body: nothing was done")

    return application


def _malformed_interaction(body: bytes) -> bool:
    """An interaction the app cannot act on, which Bolt's matchers may crash on (500 and a traceback): the
    app handles button clicks only (`block_actions` with a user and a list of actions with an action_id), so
    any other shape is refused before the signature check. Nothing in it is acted on either way."""
    if not body.startswith(b"payload="):
        return False
    try:
        payload = json.loads(parse_qs(body.decode("utf-8"), max_num_fields=20).get("payload", [""])[-1])
    except (ValueError, UnicodeDecodeError):
        return False  # Bolt's own parse refuses it (400 below)
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        return True
    user, actions = payload.get("user"), payload.get("actions")
    if not isinstance(user, dict) or not isinstance(user.get("id"), str):
        return True
    return not (
        isinstance(actions, list)
        and actions
        and all(isinstance(a, dict) and isinstance(a.get("action_id"), str) for a in actions)
    )


def _plain(start_response: Callable[..., Any], status: str, body: bytes) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]


def build_application() -> WSGIApp:
    """The production app: config from CUTOVER_CONFIG (or ./cutover.toml), tokens from the environment.
    Raises ConfigError naming what is missing (the CLI turns it into exit 2)."""
    from bot.slack.compose import build_bot

    return make_wsgi_app(build_bot(load_config(), Tokens()).app)


_lock = threading.Lock()
_application: WSGIApp | None = None


def __getattr__(name: str) -> Any:
    # gunicorn's `bot.slack.wsgi:application` does getattr(module, "application"): built once, on first use.
    global _application
    if name != "application":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with _lock:
        if _application is None:
            try:
                _application = build_application()
            except ConfigError as exc:
                # One line saying what to set, not a traceback; exit code 3 is gunicorn's "worker failed
                # to boot", which stops the master instead of restarting the worker in a loop.
                sys.stderr.write(f"cutover bot cannot start: {exc}\n")
                raise SystemExit(GUNICORN_BOOT_ERROR) from None
        return _application


# --- a threaded loopback server for development, tests and the bench ----------------------


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    # socketserver's default backlog is 5: a burst of 50 commands would wait for SYN retransmits (1 s).
    request_queue_size = 256


def serve_threaded(wsgi_app: WSGIApp, *, host: str = "127.0.0.1", port: int = 0) -> ThreadingWSGIServer:
    """A started server (its own thread) on `host:port` (0 = a free port): `server.server_address`."""
    server = make_server(host, port, wsgi_app, server_class=ThreadingWSGIServer, handler_class=_QuietHandler)
    # A short poll interval: shutdown() returns within 50 ms instead of 0.5 s.
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="wsgi-server", daemon=True
    ).start()
    return server
