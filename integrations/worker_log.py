"""The worker's log lines: which event a line records, with its fields (one parser for every reader).

The worker logs one line per event, as text (`order_status_processed ticket_id=1042 ...`) or as
JSON (`{"event": "order_status_processed", "ticket_id": "1042"}`), behind the Lambda runtime's own
prefix (`[INFO]\t<timestamp>\t<request id>\t`, or Node's `<timestamp>\t<request id>\tINFO\t`). A line
that only mentions a marker (`shopify_token_refresh_success=false`, `retrying after
order_status_processed`) records another event, or none: it is not that event's line.

Used by the preflight (the token-refresh marker) and by the canary (a ticket's processed and outbound
lines, through `Aws.find_ticket_event` and Logs Insights rows).
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

_RUNTIME_FIELD = re.compile(
    r"\[?(TRACE|DEBUG|INFO|WARN|WARNING|ERROR|CRITICAL|FATAL)\]?"  # level: [INFO] (Python), INFO (Node)
    r"|\d{4}-\d{2}-\d{2}T[\d:.]+Z?"  # timestamp
    r"|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"  # request id
)
# After a level or a timestamp, the runtime's next field is the request id, whatever its shape.
_REQUEST_ID = re.compile(r"[\w-]+")
_EVENT_NAME = re.compile(r"[A-Za-z_][\w.:-]*")


def _strip_runtime_prefix(message: str) -> str:
    """The line without the runtime's prefix fields (level, timestamp, request id)."""
    fields = message.strip().split("\t")
    stripped: list[str] = []
    while len(fields) > 1 and _RUNTIME_FIELD.fullmatch(fields[0].strip()):
        stripped.append(fields.pop(0).strip())
    has_uuid = any(len(f) == 36 and f.count("-") == 4 for f in stripped)
    if stripped and not has_uuid and len(fields) > 1 and _REQUEST_ID.fullmatch(fields[0].strip()):
        fields.pop(0)  # `[INFO]\t<ts>\t<rid>\t<line>` with a request id of another shape than a UUID
    return "\t".join(fields).strip()


def worker_event(message: str) -> tuple[str, dict[str, Any]] | None:
    """The event a worker log line records, with its fields; None when the line records no event."""
    body = _strip_runtime_prefix(message)
    if body.startswith("{"):
        try:
            return _json_event(json.loads(body))
        except ValueError:
            return None
    tokens = body.split()
    if not tokens:
        return None
    pairs = dict(t.partition("=")[::2] for t in tokens if "=" in t)
    if "=" in tokens[0]:  # logfmt (`level=info event=x ...`): the event is a field; `x=false` names none
        name = pairs.get("event", "").strip('"')
        return (name, pairs) if _EVENT_NAME.fullmatch(name) else None
    return (tokens[0], pairs) if _EVENT_NAME.fullmatch(tokens[0]) else None


def _json_event(obj: Any, depth: int = 0) -> tuple[str, dict[str, Any]] | None:
    if not isinstance(obj, dict) or depth > 2:
        return None
    if isinstance(obj.get("event"), str):
        return (obj["event"], obj) if _EVENT_NAME.fullmatch(obj["event"]) else None
    message = obj.get("message")  # Lambda's JSON log format wraps what the code logged in `message`
    if isinstance(message, dict):
        return _json_event(message, depth + 1)
    if isinstance(message, str):  # strictly shorter than the line it came from: the recursion ends
        return worker_event(message)
    return None


def is_event(message: str, event: str) -> bool:
    """Whether a log line records `event` (not merely mentions it)."""
    found = worker_event(message)
    return found is not None and found[0] == event


def ticket_event_form(message: str, event: str, ticket_id: str) -> Literal["text", "json"] | None:
    """The line's form when it records `event` for exactly `ticket_id` (`1042` never matches `10420`)."""
    found = worker_event(message)
    if found is None or found[0] != event:
        return None
    raw = found[1].get("ticket_id")
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        return None
    if str(raw).strip("\"'") != ticket_id:
        return None
    body = _strip_runtime_prefix(message)
    return "json" if body.startswith("{") else "text"
