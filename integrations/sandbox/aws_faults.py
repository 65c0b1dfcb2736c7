"""Faults per AWS service in front of moto: the same kinds the loopback fakes inject (integrations/sandbox/http.py).

A WSGI middleware (`AwsSandbox.wrap_app`) that reads which service a request is for from its SigV4
credential scope (`Credential=KEY/DATE/REGION/SERVICE/aws4_request`) and, for one access key only (the
bot's: the sandbox's seeding and the simulated worker keep theirs), answers instead of moto:

- `latency`/`hang`: wait `seconds`, then let moto answer (past the client's read timeout: a timeout);
- `status`: an error in the service's own protocol (query XML for STS, JSON with `__type` for the JSON
  services, `X-Amzn-ErrorType` for Lambda's REST-JSON, CBOR for CloudWatch), `Retry-After` with a 429;
- `malformed`: 200 with a truncated body in the service's format;
- `drop`: the connection closed without an answer.

`body` of a status fault is its message (tests plant secrets and PII there to prove none escapes).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from integrations.sandbox.http import Fault

# friendly name -> SigV4 signing name (CloudWatch signs as "monitoring")
SERVICES = {
    "sts": "sts",
    "secretsmanager": "secretsmanager",
    "lambda": "lambda",
    "logs": "logs",
    "cloudwatch": "monitoring",
    "ssm": "ssm",
    "dynamodb": "dynamodb",
}
_PROTOCOL = {
    "sts": "query",
    "secretsmanager": "json",
    "lambda": "rest-json",
    "logs": "json",
    "monitoring": "json",
    "ssm": "json",
    "dynamodb": "json",
}
_CODES = {
    401: "UnrecognizedClientException",
    403: "AccessDeniedException",
    429: "ThrottlingException",
    500: "InternalFailure",
    503: "ServiceUnavailable",
}
_SCOPE = re.compile(r"Credential=(?P<key>[^/,\s]+)/\d{8}/[^/]+/(?P<service>[^/]+)/aws4_request")

_REASONS = {401: "Unauthorized", 403: "Forbidden", 429: "Too Many Requests", 500: "Internal Server Error"}


class AwsFaults:
    """`faults = sandbox.aws.wrap_app(lambda app: AwsFaults(app, access_key=sandbox.bot_access_key_id))`."""

    def __init__(self, app: Callable[..., Any], *, access_key: str | None = None) -> None:
        self._app = app
        self.access_key = access_key  # None: every caller
        self._lock = threading.Lock()
        self._faults: list[tuple[str, re.Pattern[str] | None, Fault]] = []
        self.hits: dict[str, int] = {}  # signing name -> faulted requests
        self.calls: dict[str, int] = {}  # signing name -> every request of the access key (faulted or not)

    def inject(self, service: str, fault: Fault, *, operation: str | None = None) -> None:
        """`service`: a key of SERVICES (or a signing name); `operation`: a regex searched in the request's
        X-Amz-Target, path and query (e.g. "PutParameter", "GetMetricData") to fault only those calls."""
        name = SERVICES.get(service, service)
        with self._lock:
            self._faults.append((name, re.compile(operation) if operation else None, fault))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self.hits.clear()

    def _take(self, service: str, what: str) -> Fault | None:
        with self._lock:
            for name, op, fault in self._faults:
                if name != service or (op is not None and not op.search(what)):
                    continue
                if fault.times is not None:
                    if fault.times <= 0:
                        continue
                    fault.times -= 1
                self.hits[service] = self.hits.get(service, 0) + 1
                return fault
        return None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        m = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
        if m is None or (self.access_key is not None and m["key"] != self.access_key):
            return self._app(environ, start_response)
        service = m["service"]
        with self._lock:
            self.calls[service] = self.calls.get(service, 0) + 1
        what = " ".join(
            (environ.get("HTTP_X_AMZ_TARGET", ""), environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", ""))
        )
        if _PROTOCOL.get(service) == "query":  # STS: the action is in the form body; read it and hand it on
            what, environ = _with_body(environ, what)
        fault = self._take(service, what)
        if fault is None:
            return self._app(environ, start_response)
        if fault.kind in ("latency", "hang"):
            time.sleep(fault.seconds)
            return self._app(environ, start_response)
        if fault.kind == "drop":
            _drop(environ)
            start_response("500 Dropped", [("Content-Length", "0"), ("Connection", "close")])
            return []
        protocol = _PROTOCOL.get(service, "json")
        if fault.kind == "malformed":
            body, ctype = _truncated(protocol)
            start_response("200 OK", [("Content-Type", ctype), ("Content-Length", str(len(body)))])
            return [body]
        status = fault.status
        code = _CODES.get(status, "InternalFailure")
        message = str(fault.body) if fault.body is not None else f"simulated {status}"
        body, headers = _error(protocol, code, message)
        if fault.retry_after is not None:
            headers.append(("Retry-After", f"{fault.retry_after:g}"))
        headers.append(("Content-Length", str(len(body))))
        start_response(f"{status} {_REASONS.get(status, 'Error')}", headers)
        return [body]


def install(aws: Any, *, access_key: str | None) -> AwsFaults:
    """The one AwsFaults in front of this AwsSandbox's moto for `access_key` (wrapped once, then reused)."""
    found: dict[str | None, AwsFaults] = aws.__dict__.setdefault("_fault_middlewares", {})
    if access_key not in found:
        found[access_key] = aws.wrap_app(lambda app: AwsFaults(app, access_key=access_key))
    return found[access_key]


def _with_body(environ: dict[str, Any], what: str) -> tuple[str, dict[str, Any]]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ = {**environ, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}
    return f"{what} {body.decode(errors='replace')}", environ


def _drop(environ: dict[str, Any]) -> None:
    sock = environ.get("werkzeug.socket")
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _truncated(protocol: str) -> tuple[bytes, str]:
    if protocol == "query":
        return b"<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>arn:aws", "text/xml"
    if protocol == "cbor":
        return b"\xbf\x67Metric", "application/cbor"  # an indefinite map cut off mid-key
    return b'{"truncated": ', "application/x-amz-json-1.1"


def _error(protocol: str, code: str, message: str) -> tuple[bytes, list[tuple[str, str]]]:
    if protocol == "query":
        xml = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{_xml(message)}</Message>"
            "</Error><RequestId>sandbox-fault</RequestId></ErrorResponse>"
        )
        return xml.encode(), [("Content-Type", "text/xml")]
    if protocol == "rest-json":
        return json.dumps({"message": message}).encode(), [
            ("Content-Type", "application/json"),
            ("X-Amzn-ErrorType", code),
        ]
    if protocol == "cbor":
        return _cbor_map({"__type": code, "message": message}), [
            ("Content-Type", "application/cbor"),
            ("smithy-protocol", "rpc-v2-cbor"),
        ]
    return json.dumps({"__type": code, "message": message}).encode(), [("Content-Type", "application/x-amz-json-1.1")]


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cbor_map(values: dict[str, str]) -> bytes:
    """A definite CBOR map of text strings (enough for an error body)."""
    out = bytearray(_cbor_head(5, len(values)))
    for key, value in values.items():
        for text in (key, value):
            raw = text.encode()
            out += _cbor_head(3, len(raw)) + raw
    return bytes(out)


def _cbor_head(major: int, length: int) -> bytes:
    if length < 24:
        return bytes([major << 5 | length])
    if length < 256:
        return bytes([major << 5 | 24, length])
    if length < 65536:
        return bytes([major << 5 | 25]) + length.to_bytes(2, "big")
    return bytes([major << 5 | 26]) + length.to_bytes(4, "big")


__all__ = ["SERVICES", "AwsFaults", "install"]
