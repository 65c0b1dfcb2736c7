"""The simulated Order Status worker: what the real Lambda does, as far as the cutover can observe it.

While the environment's Richpanel automation rule is enabled (`RichpanelFake.set_rule(enabled=True)`),
every new ticket reaches this worker, which, on its own thread:

- puts an `Invocations` datapoint (AWS/Lambda, FunctionName) into moto: moto makes none on invoke;
- reads the outbound lever (the SSM parameter or the function's environment key, as the env's map says);
- with the lever true (or the `contacts_customer_with_lever_off` bug), posts a public reply on the
  ticket as the bot agent and logs `outbound_message_sent ticket_id=<id>`;
- logs `order_status_processed ticket_id=<id> intent=order_status` (text with Lambda's prefix, or JSON)
  to the function's log group, `logs_late_s` seconds late if asked.

Between tickets, while the rule is enabled, it keeps producing background invocations (one datapoint
every `invocation_interval_s`), so a rollback's "no invocations after the pause" has something real
to disprove. Everything it did is in `actions` (and `processed`, `outbound`, `invocations`).

`InsightsStall` is the `insights_running` fault: WSGI middleware in front of moto that answers
GetQueryResults for queries on a stalled log group with status Running (moto completes every query).
"""

from __future__ import annotations

import io
import json
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from botocore.config import Config
from botocore.exceptions import ClientError

from integrations.aws import _new_session
from integrations.sandbox.richpanel import RichpanelFake

PROCESSED_MARKER = "order_status_processed"
OUTBOUND_MARKER = "outbound_message_sent"
FAKE_KEY = "testing"

LogFormat = Literal["text", "json"]
ActionKind = Literal["invocation", "processed", "outbound", "errors", "skipped", "lever_unreadable"]


@dataclass
class WorkerFaults:
    """What is wrong with the worker. Mutable while running: `env.worker.faults.logs_late_s = 3`."""

    never_processes: bool = False  # tickets reach it but nothing happens: no invocation, no line
    contacts_customer_with_lever_off: bool = False  # a worker bug: replies to the customer whatever the lever says
    logs_late_s: float = 0.0  # the ticket's lines are written this long after it was handled (same timestamps)
    insights_running: bool = False  # Logs Insights queries on this env's log group never complete
    ignores_pause_s: float = 0.0  # keeps invoking this long after the rule is paused (in-flight retries)


@dataclass(frozen=True)
class Lever:
    """Where the worker reads RICHPANEL_OUTBOUND_ENABLED: exactly one of the two forms of the map."""

    ssm_parameter: str | None = None
    lambda_env: str | None = None

    def __post_init__(self) -> None:
        if (self.ssm_parameter is None) == (self.lambda_env is None):
            raise ValueError("a lever is either an SSM parameter or a Lambda environment key")


@dataclass(frozen=True)
class WorkerAction:
    """One thing the worker did, in order."""

    kind: ActionKind
    ticket_id: str | None
    at: datetime
    detail: str = ""


class SimulatedWorker:
    def __init__(
        self,
        *,
        endpoint_url: str,
        region: str,
        function_name: str,
        log_group: str,
        lever: Lever,
        richpanel: RichpanelFake,
        bot_agent_id: str,
        faults: WorkerFaults | None = None,
        log_format: LogFormat = "text",
        invocation_interval_s: float = 0.25,
        ready: Callable[[], None] | None = None,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.region = region
        self.function_name = function_name
        self.log_group = log_group
        self.lever = lever
        self.richpanel = richpanel
        self.bot_agent_id = bot_agent_id
        self.faults = faults if faults is not None else WorkerFaults()
        self.log_format: LogFormat = log_format
        self.invocation_interval_s = invocation_interval_s
        self.log_stream = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
        self.actions: list[WorkerAction] = []
        self._ready = ready  # called before the first lever read (the sandbox seeds SSM in the background)
        self._ready_done = False
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._pending: list[tuple[float, list[tuple[int, str]]]] = []  # (due, lines) of late lines
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()
        self._stream_ready = False
        self._busy = False
        self._last_enabled: float | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> SimulatedWorker:
        self.richpanel.on_rule_ticket(self._on_ticket)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"sandbox-worker-{self.function_name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    # --- what tests read -----------------------------------------------------------------------
    def done(self, kind: ActionKind, ticket_id: str | None = None) -> list[WorkerAction]:
        with self._lock:
            return [a for a in self.actions if a.kind == kind and (ticket_id is None or a.ticket_id == ticket_id)]

    @property
    def processed(self) -> list[str]:
        """Ticket ids whose processed line is in the log group (written, not just scheduled)."""
        return [a.ticket_id for a in self.done("processed") if a.ticket_id]

    @property
    def outbound(self) -> list[str]:
        """Ticket ids the worker replied to publicly as the bot agent."""
        return [a.ticket_id for a in self.done("outbound") if a.ticket_id]

    @property
    def invocations(self) -> int:
        return len(self.done("invocation"))

    @property
    def last_invocation_at(self) -> datetime | None:
        done = self.done("invocation")
        return done[-1].at if done else None

    def wait_for(self, kind: ActionKind, ticket_id: str | None = None, timeout_s: float = 5.0) -> WorkerAction | None:
        """The first action of `kind` (for `ticket_id`), waiting up to `timeout_s` for it."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for action in self.actions:
                    if action.kind == kind and (ticket_id is None or action.ticket_id == ticket_id):
                        return action
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(remaining)

    def wait_idle(self, timeout_s: float = 5.0) -> bool:
        """True once every ticket received so far is handled and no late line is pending."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if self._queue.empty() and not self._pending and not self._busy:
                    return True
            time.sleep(0.01)
        return False

    # --- what tests inject -----------------------------------------------------------------------
    def put_errors(self, value: float = 1.0, *, at: datetime | None = None) -> None:
        """Worker Errors (AWS/Lambda Errors, FunctionName) at `at` (now by default): what the watch sums."""
        moment = at or datetime.now(UTC)
        self._put_metric("Errors", value, moment)
        self._record("errors", None, moment, f"{value:g}")

    def invoke(self, value: float = 1.0, *, at: datetime | None = None) -> None:
        """One more Invocations datapoint now (or at `at`), as if the function ran once more."""
        moment = at or datetime.now(UTC)
        self._put_metric("Invocations", value, moment)
        self._record("invocation", None, moment, "manual")

    # --- the thread ------------------------------------------------------------------------------
    def _on_ticket(self, ticket: dict[str, Any]) -> None:
        with self._lock:
            self._busy = True  # until the thread has taken it: wait_idle must not see an empty queue first
        self._queue.put(ticket)

    def _run(self) -> None:
        next_tick = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            waits = [max(0.0, next_tick - now)]
            with self._lock:
                if self._pending:
                    waits.append(max(0.0, min(due for due, _ in self._pending) - now))
            try:
                item = self._queue.get(timeout=min(waits) if self._rule_active(now) or self._pending else 0.05)
            except queue.Empty:
                item = None
            if self._stop.is_set():
                break
            try:
                if item is not None:
                    self._handle(item)
                    next_tick = time.monotonic() + self.invocation_interval_s
                self._write_due()
                now = time.monotonic()
                if self._rule_active(now) and now >= next_tick:
                    self._put_metric("Invocations", 1.0, datetime.now(UTC))
                    self._record("invocation", None, datetime.now(UTC), "background")
                    next_tick = now + self.invocation_interval_s
            except Exception as exc:  # the sandbox stopping under us, or a moto hiccup: keep the thread alive
                if self._stop.is_set():
                    break
                self._record("skipped", None, datetime.now(UTC), f"worker error: {type(exc).__name__}")
            finally:
                with self._lock:
                    self._busy = not self._queue.empty()

    def _rule_active(self, now: float) -> bool:
        if self.richpanel.rule_enabled:
            self._last_enabled = now
            return True
        grace = self.faults.ignores_pause_s
        return bool(grace and self._last_enabled is not None and now - self._last_enabled < grace)

    def _handle(self, ticket: dict[str, Any]) -> None:
        ticket_id = str(ticket.get("id", ""))
        started = datetime.now(UTC)
        if self.faults.never_processes:
            self._record("skipped", ticket_id, started, "never_processes")
            return
        self._put_metric("Invocations", 1.0, started)
        self._record("invocation", ticket_id, started, "ticket")
        request_id = str(uuid.uuid4())
        lines = [(_ms(started), f"START RequestId: {request_id} Version: $LATEST")]
        lever = self._read_lever()
        if lever is None:
            self._record("lever_unreadable", ticket_id, datetime.now(UTC))
        if lever is True or self.faults.contacts_customer_with_lever_off:
            self.richpanel.add_reply(
                ticket_id,
                "Your order is on its way.",
                sender_type="operator",
                public=True,
                author_id=self.bot_agent_id,
            )
            at = datetime.now(UTC)
            self._record("outbound", ticket_id, at, "lever on" if lever else "lever off (worker bug)")
            lines.append((_ms(at), self._line(OUTBOUND_MARKER, ticket_id, request_id, at, channel="email")))
        at = datetime.now(UTC)
        lines.append((_ms(at), self._line(PROCESSED_MARKER, ticket_id, request_id, at, intent="order_status")))
        lines.append((_ms(at) + 1, f"END RequestId: {request_id}"))
        late = self.faults.logs_late_s
        if late > 0:
            with self._lock:
                self._pending.append((time.monotonic() + late, lines))
        else:
            self._write(lines)

    def _write_due(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [lines for at, lines in self._pending if at <= now]
            self._pending = [(at, lines) for at, lines in self._pending if at > now]
        for lines in due:
            self._write(lines)

    def _write(self, lines: list[tuple[int, str]]) -> None:
        logs = self._client("logs")
        if not self._stream_ready:
            try:
                logs.create_log_stream(logGroupName=self.log_group, logStreamName=self.log_stream)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ResourceAlreadyExistsException":
                    raise
            self._stream_ready = True
        events = [{"timestamp": ts, "message": msg} for ts, msg in sorted(lines)]
        logs.put_log_events(logGroupName=self.log_group, logStreamName=self.log_stream, logEvents=events)
        for _, msg in lines:
            if PROCESSED_MARKER in msg:  # recorded once it is in the log group, not when scheduled
                self._record("processed", _ticket_of(msg), datetime.now(UTC), self.log_format)

    def _line(self, marker: str, ticket_id: str, request_id: str, at: datetime, **fields: str) -> str:
        if self.log_format == "json":
            return json.dumps(
                {
                    "timestamp": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    "level": "INFO",
                    "requestId": request_id,
                    "event": marker,
                    "ticket_id": ticket_id,
                    **fields,
                }
            )
        extra = "".join(f" {k}={v}" for k, v in fields.items())
        return f"[INFO]\t{at:%Y-%m-%dT%H:%M:%S.%f}"[:-3] + f"Z\t{request_id}\t{marker} ticket_id={ticket_id}{extra}"

    def _read_lever(self) -> bool | None:
        if self._ready is not None and not self._ready_done:
            self._ready()
            self._ready_done = True
        try:
            if self.lever.ssm_parameter is not None:
                raw = self._client("ssm").get_parameter(Name=self.lever.ssm_parameter)["Parameter"]["Value"]
            else:
                config = self._client("lambda").get_function_configuration(FunctionName=self.function_name)
                raw = config.get("Environment", {}).get("Variables", {}).get(self.lever.lambda_env or "")
        except ClientError:
            return None
        if not isinstance(raw, str) or raw.strip().lower() not in ("true", "false"):
            return None
        return raw.strip().lower() == "true"

    def _put_metric(self, metric: str, value: float, at: datetime) -> None:
        self._client("cloudwatch").put_metric_data(
            Namespace="AWS/Lambda",
            MetricData=[
                {
                    "MetricName": metric,
                    "Dimensions": [{"Name": "FunctionName", "Value": self.function_name}],
                    "Timestamp": at,
                    "Value": float(value),
                    "Unit": "Count",
                }
            ],
        )

    def _record(self, kind: ActionKind, ticket_id: str | None, at: datetime, detail: str = "") -> None:
        with self._changed:
            self.actions.append(WorkerAction(kind, ticket_id, at, detail))
            self._changed.notify_all()

    def _client(self, service: str) -> Any:
        with self._clients_lock:
            client = self._clients.get(service)
            if client is None:
                client = _new_session(self.region).client(
                    service,
                    endpoint_url=self.endpoint_url,
                    aws_access_key_id=FAKE_KEY,
                    aws_secret_access_key=FAKE_KEY,
                    config=Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=10),
                )
                self._clients[service] = client
            return client


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _ticket_of(message: str) -> str | None:
    brace = message.find("{")
    if brace >= 0:
        try:
            data = json.loads(message[brace:])
        except ValueError:
            data = None
        if isinstance(data, dict) and "ticket_id" in data:
            return str(data["ticket_id"])
    for token in message.split():
        if token.startswith("ticket_id="):
            return token[len("ticket_id=") :]
    return None


# --- the insights_running fault -------------------------------------------------------------------


class InsightsStall:
    """WSGI middleware before moto: queries started on a stalled log group stay `Running` forever.

    GetQueryResults for such a query answers moto's own (partial) rows with status Running, as AWS does
    while a query runs: a client that takes rows before `Complete` is caught.
    """

    def __init__(self, app: Callable[..., Any], is_stalled: Callable[[Iterable[str]], bool]) -> None:
        self._app = app
        self._is_stalled = is_stalled
        self._stalled_ids: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith("Logs_") or not target.endswith((".StartQuery", ".GetQueryResults")):
            return self._app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return self._app(environ, start_response)
        if target.endswith(".StartQuery"):
            groups = [request.get("logGroupName"), *request.get("logGroupNames", [])]
            groups += request.get("logGroupIdentifiers", [])
            if not self._is_stalled([g for g in groups if g]):
                return self._app(environ, start_response)
            status, headers, answer = _call_app(self._app, environ)
            try:
                query_id = json.loads(answer).get("queryId")
            except ValueError:
                query_id = None
            if query_id:
                with self._lock:
                    self._stalled_ids.add(query_id)
            start_response(status, headers)
            return [answer]
        with self._lock:
            stalled = request.get("queryId") in self._stalled_ids
        if not stalled:
            return self._app(environ, start_response)
        status, headers, answer = _call_app(self._app, environ)
        try:
            data = json.loads(answer)
        except ValueError:
            data = None
        if isinstance(data, dict) and status.startswith("200"):
            data["status"] = "Running"
            answer = json.dumps(data).encode()
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Content-Length", str(len(answer))))
        start_response(status, headers)
        return [answer]


def _call_app(app: Callable[..., Any], environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    captured: dict[str, Any] = {}
    chunks: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        captured["status"], captured["headers"] = status, list(headers)
        return chunks.append

    result = app(environ, start_response)
    try:
        chunks.extend(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return captured["status"], captured["headers"], b"".join(chunks)
