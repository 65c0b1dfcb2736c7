"""A loopback Slack Web API: enough of chat.*, files (upload v2), usergroups.users.list and auth.test for the bot.

Methods live at `/api/<method>` (the SDK's `base_url` ends with `/api/`), accept form, JSON or query
parameters like Slack does, and answer Slack's envelope (`{"ok": true, ...}` / `{"ok": false, "error"}`).
Messages are kept by (channel, ts) with their latest text and blocks, so a test asserts on what a
person would see. `response_url` posts land on `/response/<id>`. Rate limits: `rate_limit(...)`.

Files arrive as slack_sdk's `files_upload_v2` sends them: `files.getUploadURLExternal` (filename and
length) hands out an upload URL on this server, the bytes are POSTed there, and
`files.completeUploadExternal` shares the uploaded files into a channel (a thread with `thread_ts`,
which must be a message of that channel). `files()` returns what was shared, bytes included.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from integrations.sandbox.http import FakeUpstream, Fault, Request, Response

TEAM_ID = "T0SANDBOX"
BOT_USER_ID = "U0CUTBOT"
BOT_ID = "B0CUTBOT"

# Block Kit limits Slack enforces with `invalid_blocks`; the fake enforces them too, so a rendering
# that would be refused in production is refused here.
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_SECTION_FIELDS = 10
MAX_HEADER_TEXT = 150
MAX_CONTEXT_ELEMENTS = 10


@dataclass
class Message:
    """One channel message as it stands now (after every chat.update)."""

    channel: str
    ts: str
    text: str | None
    blocks: list[dict[str, Any]]
    history: list[dict[str, Any]] = field(default_factory=list)  # every version, oldest first

    @property
    def updates(self) -> int:
        return len(self.history) - 1

    def all_text(self) -> str:
        """Text and blocks as one string: what a leak check or a `in` assertion reads."""
        return json.dumps({"text": self.text, "blocks": self.blocks}, ensure_ascii=False)


@dataclass
class UploadedFile:
    """A file from `files.getUploadURLExternal` on: its bytes once uploaded, where it was shared once completed."""

    file_id: str
    filename: str
    length: int
    alt_txt: str | None = None
    content: bytes | None = None  # None until the upload URL received it
    title: str | None = None
    channel: str | None = None  # set by files.completeUploadExternal
    thread_ts: str | None = None
    initial_comment: str | None = None


class SlackFake(FakeUpstream):
    """Slack's Web API on 127.0.0.1. `groups` maps user-group ids (S...) to their members."""

    name = "slack"

    def __init__(self, *, token: str | None = "xoxb-sandbox-token", groups: dict[str, Iterable[str]] | None = None):
        super().__init__()
        self.token = token  # None: accept any bearer token
        self.groups: dict[str, list[str]] = {k: list(v) for k, v in (groups or {}).items()}
        self._messages: dict[tuple[str, str], Message] = {}
        self._ephemerals: list[dict[str, Any]] = []
        self._responses: list[tuple[str, dict[str, Any]]] = []
        self._ts = itertools.count(1)
        self._files: dict[str, UploadedFile] = {}
        self._file_ids = itertools.count(1)
        self._data_lock = threading.Lock()
        self._methods = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.postEphemeral": self._post_ephemeral,
            "usergroups.users.list": self._usergroup_users,
            "files.getUploadURLExternal": self._get_upload_url,
            "files.completeUploadExternal": self._complete_upload,
        }
        self.route("POST", r"/api/(?P<method>[\w.]+)", self._api)
        self.route("GET", r"/api/(?P<method>[\w.]+)", self._api)
        self.route("POST", r"/response/(?P<id>[\w-]+)", self._response_url)
        self.route("POST", r"/upload/v1/(?P<id>\w+)", self._upload)

    def start(self) -> SlackFake:
        super().start()
        # socketserver listens with a backlog of 5: a burst of 20+ bot calls would wait on SYN
        # retransmits (1 s each). Listening again on the bound socket raises the backlog.
        assert self._server is not None
        self._server.socket.listen(256)
        return self

    # --- helpers for tests -------------------------------------------------------------
    @property
    def api_url(self) -> str:
        """What SLACK_API_URL / WebClient(base_url=...) should be."""
        return f"{self.url}/api/"

    def response_url(self, response_id: str) -> str:
        return f"{self.url}/response/{response_id}"

    def messages(self, channel: str | None = None) -> list[Message]:
        with self._data_lock:
            found = [m for m in self._messages.values() if channel is None or m.channel == channel]
        return sorted(found, key=lambda m: float(m.ts))

    def ephemerals(self) -> list[dict[str, Any]]:
        with self._data_lock:
            return list(self._ephemerals)

    def responses(self, response_id: str | None = None) -> list[dict[str, Any]]:
        with self._data_lock:
            return [body for rid, body in self._responses if response_id is None or rid == response_id]

    def files(self, channel: str | None = None) -> list[UploadedFile]:
        """Files shared by files.completeUploadExternal (into `channel`), in the order they were shared."""
        with self._data_lock:
            return [f for f in self._files.values() if f.channel is not None and channel in (None, f.channel)]

    def calls(self, method: str) -> list[Request]:
        """Requests received for one API method (e.g. "chat.update"), faults included."""
        return self.received(path_pattern=_method_path(method))

    def rate_limit(self, method: str, *, retry_after: float = 1.0, times: int | None = 1) -> None:
        """Answer the next `times` calls of `method` with 429 + Retry-After, as Slack does."""
        self.inject(
            _method_path(method),
            Fault(
                "status", status=429, retry_after=retry_after, body={"ok": False, "error": "ratelimited"}, times=times
            ),
        )

    def reset(self) -> None:
        super().reset()
        with self._data_lock:
            self._messages.clear()
            self._ephemerals.clear()
            self._responses.clear()
            self._files.clear()

    # --- the API -----------------------------------------------------------------------
    def _api(self, request: Request) -> Response:
        method = request.match["method"]
        handler = self._methods.get(method)
        if handler is None:
            return _error("unknown_method")
        auth = request.header("authorization") or ""
        if not auth.startswith("Bearer "):
            return _error("not_authed")
        if self.token is not None and auth.removeprefix("Bearer ") != self.token:
            return _error("invalid_auth")
        try:
            params = api_params(request)
        except ValueError:
            return _error("invalid_json")
        return handler(params)

    def _auth_test(self, params: dict[str, Any]) -> Response:
        return _ok(
            url="https://sandbox.slack.test/",
            team="Sandbox",
            user="cutover-bot",
            team_id=TEAM_ID,
            user_id=BOT_USER_ID,
            bot_id=BOT_ID,
        )

    def _post_message(self, params: dict[str, Any]) -> Response:
        channel = params.get("channel")
        if not channel:
            return _error("channel_not_found")
        content = _content(params)
        if isinstance(content, Response):
            return content
        text, blocks = content
        with self._data_lock:
            ts = f"{int(time.time())}.{next(self._ts):06d}"
            message = Message(channel, ts, text, blocks)
            message.history.append({"text": text, "blocks": blocks})
            self._messages[(channel, ts)] = message
        return _ok(channel=channel, ts=ts, message={"type": "message", "text": text, "blocks": blocks, "ts": ts})

    def _update(self, params: dict[str, Any]) -> Response:
        key = (str(params.get("channel")), str(params.get("ts")))
        content = _content(params)
        if isinstance(content, Response):
            return content
        text, blocks = content
        with self._data_lock:
            message = self._messages.get(key)
            if message is None:
                return _error("message_not_found")
            message.text, message.blocks = text, blocks
            message.history.append({"text": text, "blocks": blocks})
        return _ok(channel=key[0], ts=key[1], text=text)

    def _post_ephemeral(self, params: dict[str, Any]) -> Response:
        if not params.get("channel"):
            return _error("channel_not_found")
        if not params.get("user"):
            return _error("user_not_in_channel")
        content = _content(params)
        if isinstance(content, Response):
            return content
        text, blocks = content
        with self._data_lock:
            ts = f"{int(time.time())}.{next(self._ts):06d}"
            self._ephemerals.append(
                {"channel": params["channel"], "user": params["user"], "text": text, "blocks": blocks}
            )
        return _ok(message_ts=ts)

    def _get_upload_url(self, params: dict[str, Any]) -> Response:
        filename = params.get("filename")
        try:
            length = int(params.get("length"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return _error("invalid_arguments", detail="length is required (an integer)")
        if not filename or length <= 0:
            return _error("invalid_arguments", detail="filename and a positive length are required")
        with self._data_lock:
            file_id = f"F0SANDBOX{next(self._file_ids):04d}"
            self._files[file_id] = UploadedFile(file_id, str(filename), length, alt_txt=params.get("alt_txt"))
        return _ok(upload_url=f"{self.url}/upload/v1/{file_id}", file_id=file_id)

    def _upload(self, request: Request) -> Response:
        with self._data_lock:
            found = self._files.get(request.match["id"])
            if found is None or found.content is not None:
                return Response(404, b"not found", {"Content-Type": "text/plain"})
            if len(request.body) != found.length:
                return Response(400, b"length mismatch", {"Content-Type": "text/plain"})
            found.content = request.body
        return Response(200, f"OK - {len(request.body)}".encode(), {"Content-Type": "text/plain"})

    def _complete_upload(self, params: dict[str, Any]) -> Response:
        raw = params.get("files")
        try:
            items = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            return _error("invalid_arguments", detail="files is not JSON")
        if not isinstance(items, list) or not items or not all(isinstance(i, dict) and i.get("id") for i in items):
            return _error("invalid_arguments", detail="files must list objects with an id")
        channel = params.get("channel_id") or None
        thread_ts = params.get("thread_ts") or None
        if thread_ts and not channel:
            return _error("invalid_arguments", detail="thread_ts needs channel_id")
        with self._data_lock:
            if thread_ts and (str(channel), str(thread_ts)) not in self._messages:
                return _error("invalid_thread_ts")
            found = [self._files.get(str(i["id"])) for i in items]
            if any(f is None or f.content is None or f.channel is not None for f in found):
                return _error("file_not_found")
            shared = []
            for item, f in zip(items, found, strict=True):
                assert f is not None
                f.title = item.get("title") or f.filename
                f.channel, f.thread_ts = channel or "", thread_ts
                f.initial_comment = params.get("initial_comment") or None
                shared.append({"id": f.file_id, "title": f.title, "name": f.filename, "size": f.length})
        return _ok(files=shared)

    def _usergroup_users(self, params: dict[str, Any]) -> Response:
        group = params.get("usergroup")
        if group not in self.groups:
            return _error("no_such_subteam")
        return _ok(users=list(self.groups[group]))

    def _response_url(self, request: Request) -> Response:
        try:
            body = request.json()
        except ValueError:
            return Response(400, b"invalid_payload", {"Content-Type": "text/plain"})
        with self._data_lock:
            self._responses.append((request.match["id"], body))
        return Response(200, b"ok", {"Content-Type": "text/plain"})


def _method_path(method: str) -> str:
    return "^/api/" + re.escape(method) + "$"


def api_params(request: Request) -> dict[str, Any]:
    """Query, form or JSON body, merged the way Slack accepts them."""
    params: dict[str, Any] = {k: v[-1] for k, v in request.query.items()}
    content_type = (request.header("content-type") or "").lower()
    if request.body:
        if content_type.startswith("application/json"):
            body = request.json()
            if isinstance(body, dict):
                params.update(body)
        else:
            params.update(request.form())
    return params


def _content(params: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]]] | Response:
    text = params.get("text")
    blocks = params.get("blocks") or []
    if isinstance(blocks, str):  # form-encoded calls send blocks as a JSON string
        try:
            blocks = json.loads(blocks)
        except ValueError:
            return _error("invalid_blocks_format")
    if not isinstance(blocks, list):
        return _error("invalid_blocks_format")
    if not text and not blocks:
        return _error("no_text")
    problem = block_kit_problem(blocks)
    if problem:
        return _error("invalid_blocks", detail=problem)
    return text, blocks


def block_kit_problem(blocks: list[dict[str, Any]]) -> str | None:
    """The first Block Kit limit `blocks` breaks, or None. Shared by the fake and the tests."""
    if len(blocks) > MAX_BLOCKS:
        return f"{len(blocks)} blocks (at most {MAX_BLOCKS})"
    for i, block in enumerate(blocks):
        kind = block.get("type")
        text = (block.get("text") or {}).get("text", "") if isinstance(block.get("text"), dict) else ""
        if kind == "section":
            if len(text) > MAX_SECTION_TEXT:
                return f"block {i}: section text of {len(text)} chars (at most {MAX_SECTION_TEXT})"
            fields = block.get("fields") or []
            if len(fields) > MAX_SECTION_FIELDS:
                return f"block {i}: {len(fields)} fields (at most {MAX_SECTION_FIELDS})"
            if not text and not fields:
                return f"block {i}: section without text or fields"
        elif kind == "header" and len(text) > MAX_HEADER_TEXT:
            return f"block {i}: header text of {len(text)} chars (at most {MAX_HEADER_TEXT})"
        elif kind == "context":
            elements = block.get("elements") or []
            if not elements or len(elements) > MAX_CONTEXT_ELEMENTS:
                return f"block {i}: context with {len(elements)} elements (1 to {MAX_CONTEXT_ELEMENTS})"
    return None


def _ok(**fields: Any) -> Response:
    return Response(200, {"ok": True, **fields})


def _error(error: str, **fields: Any) -> Response:
    # Slack answers 200 with ok=false for API errors; only rate limits and outages change the status.
    return Response(200, {"ok": False, "error": error, **fields})
