"""The Slack app: slash commands acked in milliseconds, the runs on the bot's own bounded executor.

A listener only validates (arguments, who may) and acks; the slow work (the checks, the Slack
messages about them) runs on an executor this module owns. Bolt's listener pool has 5 threads
and answers 404 when a 6th command waits 3 s, so nothing slow may run on it; we go further and
use `process_before_response=True`, so the ack is computed on the web server's own request thread
and returned as soon as the listener returns (no hop through Bolt's pool, no 10 ms polling loop).

Middleware order (Bolt's built-ins first): ssl_check, request verification (signature and
timestamp, 401 otherwise: never turned off), authorization (our `authorize`, no network),
then our retry deduplication, then the listeners.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from slack_bolt import Ack, App, BoltResponse
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.middleware import Middleware
from slack_bolt.request import BoltRequest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from slack_sdk.webhook import WebhookClient

from bot.access import Access, GroupCache, GroupLookup, mention, slack_group_lookup
from bot.evidence_followup import RETRY_DELAYS_S, follow_pending_evidence
from bot.slack_args import ArgsError, CommandArgs, parse_command_text, usage
from bot.slack_blocks import Rendered, escape, notice_blocks, progress_blocks, result_blocks, started_blocks, title
from commands.config import COMMANDS, ConfigError, CutoverConfig, Tokens
from commands.execute import Outcome, Publisher, RunRequest, UsageError, execute
from commands.redaction import REDACTOR
from commands.report import CheckResult

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://slack.com/api/"
UPDATE_INTERVAL_S = 1.0  # progress edits at most once a second: chat.update is rate limited per channel
ACCESS_LOOKUP_TIMEOUT_S = 2  # a group lookup happens before the ack, which must come within 3 s
SLACK_CALL_TIMEOUT_S = 10
URGENT = frozenset({"rollback"})  # never queued behind other runs, never refused for capacity
RECENT_RUNS = 20

Runner = Callable[..., Outcome]  # commands.execute.execute's signature
PublisherFactory = Callable[[], Publisher | None]


def api_base_url(url: str | None) -> str:
    """SLACK_API_URL as WebClient wants it: ending in `/api/` (accepts it with or without `/api`)."""
    if not url:
        return DEFAULT_API_URL
    url = url.rstrip("/")
    if not url.endswith("/api"):
        url += "/api"
    return url + "/"


def create_app(
    *,
    config: CutoverConfig,
    tokens: Tokens,
    runner: Runner = execute,
    executor: Executor | None = None,
    publisher_factory: PublisherFactory | None = None,
    group_lookup: GroupLookup | None = None,
    update_interval_s: float = UPDATE_INTERVAL_S,
    evidence_retry_delays_s: Sequence[float] = RETRY_DELAYS_S,
) -> App:
    """The Bolt app for HTTP (bot.wsgi) and Socket Mode (bot.socket_mode). See `CutoverBot`."""
    return CutoverBot(
        config=config,
        tokens=tokens,
        runner=runner,
        executor=executor,
        publisher_factory=publisher_factory,
        group_lookup=group_lookup,
        update_interval_s=update_interval_s,
        evidence_retry_delays_s=evidence_retry_delays_s,
    ).app


# --- retries ---------------------------------------------------------------------------


class RetryDedup(Middleware):
    """Answers 200 to a request already seen, without running it again.

    Slack retries (X-Slack-Retry-Num) when an answer is slow or lost; Bolt does not deduplicate.
    A signed request can also be replayed for up to 5 minutes (the signature's time window), so
    any repeat of a key is dropped, retry header or not. The key is Slack's own id for the
    invocation (trigger_id, event_id), else a hash of the body.

    The set is in memory, so it holds per process only: with several worker processes a retry
    may land on another one. Hence one worker (`gunicorn --workers 1 --threads N`) in the Procfile.
    """

    def __init__(self, *, ttl_s: float = 600.0, clock: Callable[[], float] = time.monotonic):
        self._ttl_s = ttl_s  # longer than the signature window and Slack's retry schedule
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, float] = {}  # key -> expiry; dicts keep insertion order, so oldest first

    @staticmethod
    def key(req: BoltRequest) -> str:
        body = req.body if isinstance(req.body, dict) else {}
        for field in ("trigger_id", "event_id"):
            if isinstance(body.get(field), str) and body[field]:
                return f"{field}:{body[field]}"
        raw = req.raw_body if isinstance(req.raw_body, str) else repr(req.body)
        return "body:" + hashlib.sha256(raw.encode()).hexdigest()

    def first_time(self, key: str) -> bool:
        now = self._clock()
        with self._lock:
            while self._seen:
                oldest = next(iter(self._seen))
                if self._seen[oldest] > now:
                    break
                del self._seen[oldest]
            if key in self._seen:
                return False
            self._seen[key] = now + self._ttl_s
            return True

    def process(self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]) -> BoltResponse:
        if self.first_time(self.key(req)):
            return next()
        retry = (req.headers.get("x-slack-retry-num") or ["-"])[0]
        log.info("dropped a repeated Slack request (retry %s): already handled in this process", retry)
        return BoltResponse(status=200, body="")


# --- the bot's own executor -------------------------------------------------------------


class RunQueue:
    """The bot's executor with a bound on runs queued or running: a flood is refused at the ack
    with a clear reply instead of piling up work nobody is waiting for any more."""

    def __init__(self, executor: Executor, capacity: int):
        self._executor = executor
        self._slots = threading.BoundedSemaphore(capacity)
        self.capacity = capacity

    def submit(self, work: Callable[[], None]) -> bool:
        if not self._slots.acquire(blocking=False):
            return False

        def run() -> None:
            try:
                _guarded(work)
            finally:
                self._slots.release()

        try:
            self._executor.submit(run)
        except RuntimeError:  # shut down
            self._slots.release()
            return False
        return True


# --- what /cutover status shows ---------------------------------------------------------


@dataclass(frozen=True)
class RunRecord:
    command: str
    env: str
    user: str
    received_at: datetime
    state: str = "queued"  # queued, running, PASS, FAIL, did not run, error
    summary: str = ""


class RecentRuns:
    def __init__(self, size: int = RECENT_RUNS):
        self._lock = threading.Lock()
        self._runs: deque[RunRecord] = deque(maxlen=size)
        self._ids = 0
        self._index: dict[int, RunRecord] = {}

    def add(self, record: RunRecord) -> int:
        with self._lock:
            self._ids += 1
            self._runs.append(record)
            self._index = {k: v for k, v in self._index.items() if v in self._runs}
            self._index[self._ids] = record
            return self._ids

    def update(self, run: int, **changes: Any) -> None:
        with self._lock:
            old = self._index.get(run)
            if old is None:
                return
            new = replace(old, **changes)
            self._index[run] = new
            for i, r in enumerate(self._runs):
                if r is old:
                    self._runs[i] = new

    def latest_first(self) -> list[RunRecord]:
        with self._lock:
            return list(reversed(self._runs))


# --- one run's channel message ----------------------------------------------------------


class LiveMessage:
    """The one channel message of a run: posted once, edited at most once per interval while checks
    finish, and always edited a last time with the result (which no late progress edit can overwrite)."""

    def __init__(
        self,
        client: WebClient,
        *,
        progress_client: WebClient,
        channel: str,
        response_url: str | None,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._client = client
        self._progress_client = progress_client  # no rate-limit sleeps: a skipped progress edit is harmless
        self.channel = channel
        self._response_url = response_url
        self._interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()  # held during an edit, so the final edit waits for one in flight
        self._closed = False
        self._last = 0.0
        self.ts: str | None = None

    def post(self, rendered: Rendered) -> None:
        try:
            response = self._client.chat_postMessage(channel=self.channel, **rendered.as_kwargs())
            self.ts, self.channel = response["ts"], response.get("channel") or self.channel
        except (SlackApiError, SlackClientError, OSError) as exc:
            # e.g. not_in_channel: the result still reaches the person through response_url.
            log.warning("chat.postMessage failed in %s: %s", self.channel, _slack_error(exc))
        self._last = self._clock()

    def maybe_update(self, render: Callable[[], Rendered]) -> None:
        if self.ts is None or self._closed or self._clock() - self._last < self._interval_s:
            return
        if not self._lock.acquire(blocking=False):
            return  # an edit is in flight; the next check (or the final edit) brings the message up to date
        try:
            if self._closed or self._clock() - self._last < self._interval_s:
                return
            self._last = self._clock()
            self._progress_client.chat_update(channel=self.channel, ts=self.ts, **render().as_kwargs())
        except (SlackApiError, SlackClientError, OSError) as exc:
            log.info("progress update skipped: %s", _slack_error(exc))
        finally:
            self._lock.release()

    def finish(self, rendered: Rendered) -> bool:
        """Edit the message to its final form; fall back to a new message, then to response_url."""
        self._closed = True
        with self._lock:
            attempts: list[tuple[str, Callable[[], Any]]] = []
            if self.ts is not None:
                ts = self.ts
                attempts.append(
                    (
                        "chat.update",
                        lambda: self._client.chat_update(channel=self.channel, ts=ts, **rendered.as_kwargs()),
                    )
                )
            attempts.append(
                (
                    "chat.postMessage",
                    lambda: self._client.chat_postMessage(channel=self.channel, **rendered.as_kwargs()),
                )
            )
            if self._response_url:
                attempts.append(("response_url", self._respond(rendered)))
            for name, attempt in attempts:
                try:
                    attempt()
                    return True
                except (SlackApiError, SlackClientError, OSError, RuntimeError) as exc:
                    log.warning("final message via %s failed: %s", name, _slack_error(exc))
        log.error("the result of a run could not be delivered to Slack (channel %s)", self.channel)
        return False

    def _respond(self, rendered: Rendered) -> Callable[[], None]:
        def send() -> None:
            assert self._response_url is not None
            webhook = WebhookClient(self._response_url, timeout=SLACK_CALL_TIMEOUT_S)
            response = webhook.send(text=rendered.text, blocks=rendered.blocks, response_type="in_channel")
            if response.status_code != 200:
                raise RuntimeError(f"response_url answered {response.status_code}")

        return send


# --- the app ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    command: str
    args: CommandArgs
    pr: int | None
    user: str
    channel: str
    response_url: str | None
    run: int  # RecentRuns id


class CutoverBot:
    """Holds what the listeners share: the config, the clients, the executor, access rules, recent runs."""

    def __init__(
        self,
        *,
        config: CutoverConfig,
        tokens: Tokens,
        runner: Runner = execute,
        executor: Executor | None = None,
        publisher_factory: PublisherFactory | None = None,
        group_lookup: GroupLookup | None = None,
        update_interval_s: float = UPDATE_INTERVAL_S,
        queue_capacity: int | None = None,
        evidence_retry_delays_s: Sequence[float] = RETRY_DELAYS_S,
    ):
        if not tokens.slack_bot_token:
            raise ConfigError("SLACK_BOT_TOKEN is not set: the bot token (xoxb-...) from the Slack app's OAuth page")
        if not tokens.slack_signing_secret:
            raise ConfigError(
                "SLACK_SIGNING_SECRET is not set: the signing secret from the Slack app's Basic Information page"
            )
        for name, value in (
            ("slack_bot_token", tokens.slack_bot_token),
            ("slack_signing_secret", tokens.slack_signing_secret),
        ):
            if len(value) >= 8:  # shorter is not a real credential (tests); the redactor refuses it
                REDACTOR.register(name, value)
        self.config = config
        self.runner = runner
        self.publisher_factory = publisher_factory
        self.update_interval_s = update_interval_s
        self.evidence_retry_delays_s = evidence_retry_delays_s
        base_url = api_base_url(tokens.slack_api_url)
        token = tokens.slack_bot_token
        self.client = WebClient(
            token=token,
            base_url=base_url,
            timeout=SLACK_CALL_TIMEOUT_S,
            retry_handlers=[ConnectionErrorRetryHandler(), RateLimitErrorRetryHandler(max_retry_count=2)],
        )
        self.progress_client = WebClient(
            token=token, base_url=base_url, timeout=SLACK_CALL_TIMEOUT_S, retry_handlers=[]
        )
        lookup_client = WebClient(token=token, base_url=base_url, timeout=ACCESS_LOOKUP_TIMEOUT_S, retry_handlers=[])
        self.access = Access(config, GroupCache(group_lookup or slack_group_lookup(lookup_client)))
        self.available = _available_commands(runner)
        self._own_executor = executor is None
        self.executor = executor or ThreadPoolExecutor(
            max_workers=config.concurrent_runs(), thread_name_prefix="cutover-run"
        )
        self.queue = RunQueue(self.executor, queue_capacity or max(64, 4 * config.max_concurrency))
        self.urgent = ThreadPoolExecutor(max_workers=2, thread_name_prefix="cutover-urgent")
        self.recent = RecentRuns()
        self.dedup = RetryDedup()
        self.app = self._build_app(token, tokens.slack_signing_secret, base_url)

    def shutdown(self, *, wait: bool = True) -> None:
        if self._own_executor:
            self.executor.shutdown(wait=wait)
        self.urgent.shutdown(wait=wait)

    def _build_app(self, token: str, signing_secret: str, base_url: str) -> App:
        def authorize(enterprise_id: str | None, team_id: str | None, user_id: str | None) -> AuthorizeResult:
            # A single-workspace app with a static token: no auth.test at start-up or per request.
            return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, user_id=user_id, bot_token=token)

        app = App(
            name="cutover-bot",
            signing_secret=signing_secret,
            # No token on this client: with `authorize=`, Bolt takes the token from the AuthorizeResult.
            client=WebClient(base_url=base_url, timeout=SLACK_CALL_TIMEOUT_S),
            authorize=authorize,
            process_before_response=True,  # ack on the request thread; see the module docstring
            request_verification_enabled=True,
        )
        app.use(self.dedup)
        for command in COMMANDS:
            app.command(f"/{command}")(self._on_run_command)
        app.command("/cutover")(self._on_cutover)
        return app

    # --- listeners (these must stay fast: they answer Slack's 3 s deadline) ----------
    def _on_run_command(self, ack: Ack, command: dict[str, Any]) -> None:
        name = str(command.get("command", "")).lstrip("/")
        user = str(command.get("user_id", ""))
        channel = str(command.get("channel_id", ""))
        try:
            args = parse_command_text(command.get("text"), command=name, envs=self.config.envs)
        except ArgsError as exc:
            _ack_ephemeral(ack, str(exc))
            return
        if self.available is not None and name not in self.available:
            have = ", ".join(f"`/{c}`" for c in sorted(self.available)) or "none"
            _ack_ephemeral(ack, f"`/{name}` is not available yet in this bot (available: {have}). Nothing was run.")
            return
        decision = self.access.may_run(user, args.env, name)
        if not decision.allowed:
            _ack_ephemeral(ack, decision.message)
            return
        run = self.recent.add(RunRecord(name, args.env, user, datetime.now(UTC)))
        job = Job(
            command=name,
            args=args,
            pr=args.pr or self.config.github.default_pr,
            user=user,
            channel=channel,
            response_url=command.get("response_url"),
            run=run,
        )
        if name in URGENT:
            self.urgent.submit(_guarded, lambda: self._run(job))
        elif not self.queue.submit(lambda: self._run(job)):
            self.recent.update(run, state="did not run", summary="the bot was at capacity")
            _ack_ephemeral(
                ack,
                f"The bot is busy ({self.queue.capacity} runs queued or running). "
                "Nothing was run; try again in a minute.",
            )
            return
        ack(text=REDACTOR.redact(f"{title(name)} {args.env} queued"), response_type="in_channel")

    def _on_cutover(self, ack: Ack, command: dict[str, Any]) -> None:
        word = " ".join(str(command.get("text") or "").split()).lower()
        if word == "status":
            _ack_ephemeral(ack, self._status_text())
        elif word in ("", "help"):
            _ack_ephemeral(ack, self._help_text())
        else:
            _ack_ephemeral(ack, f"Unknown `/cutover {escape(word[:40])}`: try `/cutover help` or `/cutover status`.")

    def _help_text(self) -> str:
        envs = self.config.envs
        lines = ["*Cutover bot*: each command runs one phase of the Order Status cutover and posts the result here."]
        for command in COMMANDS:
            note = "" if self.available is None or command in self.available else " _(not available yet)_"
            lines.append(f"• {usage(command, envs).removeprefix('Usage: ')}{note}")
        lines.append("• `/cutover status`: what ran recently (in this bot process)")
        for env_name, env in sorted(envs.items()):
            who = ", ".join(mention(x) for x in env.runners) or "nobody (set `runners`)"
            lines.append(f"{env_name}: may run: {who}")
        return "\n".join(lines)

    def _status_text(self) -> str:
        runs = self.recent.latest_first()
        if not runs:
            return "Nothing has run in this bot process since it started."
        lines = [f"Recent runs in this bot process (latest first, up to {RECENT_RUNS}):"]
        for r in runs:
            summary = f": {escape(r.summary)}" if r.summary else ""
            lines.append(f"• {r.received_at:%H:%M:%S} UTC `/{r.command} {r.env}` by <@{r.user}>: *{r.state}*{summary}")
        return "\n".join(lines)

    # --- the work (on the bot's executor) ---------------------------------------------
    def _run(self, job: Job) -> None:
        args = job.args
        self.recent.update(job.run, state="running")
        live = LiveMessage(
            self.client,
            progress_client=self.progress_client,
            channel=job.channel,
            response_url=job.response_url,
            interval_s=self.update_interval_s,
        )
        live.post(started_blocks(job.command, args.env, job.user, pr=job.pr, dry_run=args.dry_run))
        started = time.monotonic()
        done: list[CheckResult] = []
        done_lock = threading.Lock()

        def progress(check: CheckResult) -> None:
            with done_lock:
                done.append(check)
                snapshot: Sequence[CheckResult] = list(done)
            live.maybe_update(
                lambda: progress_blocks(
                    job.command,
                    args.env,
                    job.user,
                    snapshot,
                    elapsed_s=time.monotonic() - started,
                    pr=job.pr,
                    dry_run=args.dry_run,
                )
            )

        request = RunRequest(command=job.command, env=args.env, requested_by=job.user, pr=job.pr, dry_run=args.dry_run)
        try:
            publisher = self.publisher_factory() if self.publisher_factory is not None else None
            outcome = self.runner(request, config=self.config, progress=progress, publisher=publisher)
        except (UsageError, ConfigError) as exc:
            text = f"{title(job.command)} {args.env} did not run: {escape(str(exc))}"
            self.recent.update(job.run, state="did not run", summary=str(exc))
            live.finish(notice_blocks(text))
            return
        except Exception as exc:
            log.exception("/%s %s failed", job.command, args.env)
            text = (
                f"{title(job.command)} {args.env} stopped with an internal error ({exc.__class__.__name__}). "
                "The bot's log has the details; check them before running it again."
            )
            self.recent.update(job.run, state="error", summary=exc.__class__.__name__)
            live.finish(notice_blocks(text, icon="🛑"))
            return
        self.recent.update(job.run, state=outcome.report.overall_status, summary=f"run {outcome.report.run_id}")
        live.finish(result_blocks(outcome, user=job.user))
        if publisher is not None:
            follow_pending_evidence(
                outcome,
                publisher,
                show=lambda later: live.finish(result_blocks(later, user=job.user)),
                delays_s=self.evidence_retry_delays_s,
            )


def _guarded(work: Callable[[], None]) -> None:
    """An executor would keep an exception in a Future nobody reads: log it instead."""
    try:
        work()
    except Exception:
        log.exception("a run failed outside its own error handling")


def _ack_ephemeral(ack: Ack, text: str) -> None:
    ack(text=REDACTOR.redact(text), response_type="ephemeral")


def _available_commands(runner: Runner) -> frozenset[str] | None:
    """The commands the real executor can run, so the ack can say "not available yet" up front.
    None when unknown (an injected runner decides for itself, answering UsageError)."""
    if runner is not execute and not getattr(runner, "runs_execute", False):
        return None
    try:
        from commands.execute import runners

        return frozenset(runners())
    except Exception:  # a command module that fails to import is reported when it is run
        log.exception("could not list the available commands")
        return None


def _slack_error(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error") or exc.response.status_code)
    return f"{exc.__class__.__name__}: {exc}"
