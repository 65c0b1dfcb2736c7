"""A loopback HTTP server that plays an upstream: routes, a record of every request, faults on demand.

Each simulated system (Shopify, Richpanel, OpenAI, Slack, GitHub) subclasses `FakeUpstream`
and registers its routes; tests and the demo inject faults per route to see how the bot reacts.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

FaultKind = Literal["latency", "status", "malformed", "drop", "hang"]


@dataclass(frozen=True)
class Request:
    """One request as the fake received it."""

    method: str
    path: str  # without the query string
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    match: dict[str, str] = field(default_factory=dict)  # named groups of the route pattern

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(self.body.decode()).items()}

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class Response:
    status: int = 200
    body: Any = None  # JSON-encoded unless bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Fault:
    """What to do instead of (or before) answering. `times=None` means every matching request."""

    kind: FaultKind
    status: int = 500
    seconds: float = 0.0  # latency before answering, or how long a hang lasts at most
    retry_after: float | None = None  # sent as Retry-After with a 429
    body: Any = None
    times: int | None = None


Handler = Callable[[Request], Response]


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler


class FakeUpstream:
    """Subclasses call `self.route(...)` in `__init__`; `start()` binds 127.0.0.1 on a free port."""

    name = "upstream"

    def __init__(self) -> None:
        self._routes: list[_Route] = []
        self._faults: list[tuple[re.Pattern[str], Fault]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.requests: list[Request] = []
        self.latency_s = 0.0  # added to every answer (for benches)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- routes and faults -------------------------------------------------------------
    def route(self, method: str, pattern: str, handler: Handler) -> None:
        """`pattern` is a regex matched against the whole path, e.g. r"/v1/tickets/(?P<id>\\w+)"."""
        self._routes.append(_Route(method.upper(), re.compile(pattern), handler))

    def inject(self, path_pattern: str, fault: Fault) -> None:
        """Apply `fault` to requests whose path matches `path_pattern` (regex, searched)."""
        with self._lock:
            self._faults.append((re.compile(path_pattern), fault))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self.requests.clear()

    def received(self, method: str | None = None, path_pattern: str = "") -> list[Request]:
        """The recorded requests, optionally filtered by method and a path regex (searched)."""
        rx = re.compile(path_pattern)
        with self._lock:
            return [r for r in self.requests if (method is None or r.method == method) and rx.search(r.path)]

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for rx, fault in self._faults:
                if rx.search(path) and (fault.times is None or fault.times > 0):
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    # --- serving -----------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None, f"{self.name} sandbox is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeUpstream:
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        # A short poll keeps stop() quick: a test session stops dozens of these.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name=f"sandbox-{self.name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases hanging requests
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def dispatch(self, request: Request) -> Response:
        for route in self._routes:
            m = route.pattern.fullmatch(request.path)
            if m and route.method == request.method:
                req = Request(request.method, request.path, request.query, request.headers, request.body, m.groupdict())
                return route.handler(req)
        return Response(404, {"error": "not_found", "path": request.path})


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # the default backlog of 5 drops connections under a bench's bursts

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up (a test's timeout, a bench stopping) is normal here, not a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _make_handler(fake: FakeUpstream) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # otherwise small answers wait ~40 ms for a delayed ACK

        def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read `requests`
            pass

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = Request(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
            with fake._lock:
                fake.requests.append(request)
            if fake.latency_s:
                time.sleep(fake.latency_s)
            fault = fake._take_fault(parts.path)
            if fault is not None:
                if fault.kind == "latency":
                    time.sleep(fault.seconds)
                elif fault.kind == "hang":
                    fake._stopping.wait(fault.seconds or 60.0)
                    self.close_connection = True
                    return
                elif fault.kind == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                elif fault.kind == "malformed":
                    self._send(Response(200, b'{"truncated": ', {"Content-Type": "application/json"}))
                    return
                elif fault.kind == "status":
                    headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
                    default = {"errors": f"simulated {fault.status}"}
                    self._send(Response(fault.status, fault.body if fault.body is not None else default, headers))
                    return
            try:
                response = fake.dispatch(request)
            except Exception as exc:  # a bug in a fake answers 500 instead of killing the thread silently
                response = Response(500, {"error": f"sandbox handler failed: {exc!r}"})
            self._send(response)

        def _send(self, response: Response) -> None:
            body = response.body
            headers = dict(response.headers)
            if not isinstance(body, bytes):
                body = json.dumps(body).encode() if body is not None else b""
                headers.setdefault("Content-Type", "application/json")
            self.send_response(response.status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    return _Handler
