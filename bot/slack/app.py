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

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slack_bolt import Ack, App
from slack_bolt.authorization import AuthorizeResult
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

from bot.execution.actions import ActionsDispatcher, DispatchFailed, local_aws_credentials
from bot.execution.admission import RunQueue, guarded
from bot.slack import approvals, person_steps
from bot.slack.access import GroupCache, GroupLookup, slack_group_lookup
from bot.slack.args import ArgsError, parse_command_text, usage
from bot.slack.blocks import (
    dispatched_blocks,
    escape,
    notice_blocks,
    progress_blocks,
    result_blocks,
    started_blocks,
)
from bot.slack.chart_post import post_chart
from bot.slack.evidence_followup import RETRY_DELAYS_S, follow_pending_evidence
from bot.slack.live_message import SLACK_CALL_TIMEOUT_S, LiveMessage
from bot.slack.recent_runs import RECENT_RUNS, RecentRuns, RunRecord
from bot.slack.retry_dedup import RetryDedup
from commands.access import AccessPolicy, Decision, mention
from commands.config import ConfigError, CutoverConfig, Tokens
from commands.execute import Outcome, Publisher, RunRequest, UsageError, execute, store_for
from commands.gate import Refused, Vouched, admit
from commands.redaction import REDACTOR, redact_and_clip
from commands.registry import COMMANDS, spec, title
from commands.report import CheckResult, new_run_id
from commands.state import StateError
from commands.state.phases import phase
from commands.status import env_status, render_slack

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://slack.com/api/"
UPDATE_INTERVAL_S = 1.0  # progress edits at most once a second: chat.update is rate limited per channel
ACCESS_LOOKUP_TIMEOUT_S = 2  # a group lookup happens before the ack, which must come within 3 s

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
    """The Bolt app for HTTP (bot.slack.wsgi) and Socket Mode (bot.slack.socket_mode). See `CutoverBot`."""
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


# --- the app ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """A run admitted by the gate, with where in Slack to report it."""

    request: RunRequest
    decision: Decision  # the gate's access decision, carried to the worker process (never from input)
    channel: str
    response_url: str | None
    run: int  # RecentRuns id


def require_tokens(tokens: Tokens) -> None:
    """The tokens the app cannot start without, each named with where to find it (ConfigError)."""
    if not tokens.slack_bot_token:
        raise ConfigError("SLACK_BOT_TOKEN is not set: the bot token (xoxb-...) from the Slack app's OAuth page")
    if not tokens.slack_signing_secret:
        raise ConfigError(
            "SLACK_SIGNING_SECRET is not set: the signing secret from the Slack app's Basic Information page"
        )


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
        dispatcher: ActionsDispatcher | None = None,
    ):
        require_tokens(tokens)
        assert tokens.slack_bot_token and tokens.slack_signing_secret
        for name, value in (
            ("slack_bot_token", tokens.slack_bot_token),
            ("slack_signing_secret", tokens.slack_signing_secret),
        ):
            if len(value) >= 8:  # shorter is not a real credential (tests); the redactor refuses it
                REDACTOR.register(name, value)
        self.config = config
        self.runner = runner
        # executor = "github-actions": runs are dispatched to the workflow (ConfigError now without GitHub);
        # a rollback whose dispatch fails still runs here when this host has AWS credentials of its own.
        if dispatcher is None and config.executor == "github-actions":
            dispatcher = ActionsDispatcher.from_config(config, tokens)
        self.dispatcher = dispatcher
        self.local_credentials: Callable[[], bool] = local_aws_credentials
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
        groups = GroupCache(group_lookup or slack_group_lookup(lookup_client))
        self.access = AccessPolicy(config, groups.members)
        # An injected runner (tests, the ack bench) decides for itself what it can run.
        self.real_runner = runner is execute or getattr(runner, "runs_execute", False)
        self._publisher: Publisher | None = None
        self._publisher_built = False
        self._publisher_lock = threading.Lock()
        self._own_executor = executor is None
        self.executor = executor or ThreadPoolExecutor(
            max_workers=config.concurrent_runs(), thread_name_prefix="cutover-run"
        )
        self.queue = RunQueue(self.executor, queue_capacity or max(64, 4 * config.max_concurrency))
        # Rollbacks: a lane of their own, never queued behind other runs. Each holds a thread for its
        # propagation wait and quiet window (minutes in production), so the lane has room for several.
        self.urgent = ThreadPoolExecutor(max_workers=8, thread_name_prefix="cutover-urgent")
        self.recent = RecentRuns()
        self.dedup = RetryDedup()
        self.app = self._build_app(token, tokens.slack_signing_secret, base_url)

    def shutdown(self, *, wait: bool = True) -> None:
        if self._own_executor:
            self.executor.shutdown(wait=wait)
        self.urgent.shutdown(wait=wait)
        self.approvals.close()

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
        person_steps.register(app, self)
        self.approvals = approvals.register(app, self)
        return app

    # --- listeners (these must stay fast: they answer Slack's 3 s deadline) ----------
    def _on_run_command(self, ack: Ack, command: dict[str, Any]) -> None:
        name = str(command.get("command", "")).lstrip("/")
        user = str(command.get("user_id", ""))
        channel = str(command.get("channel_id", ""))
        try:
            request = parse_command_text(command.get("text"), command=name, envs=self.config.envs, requested_by=user)
        except ArgsError as exc:
            _ack_ephemeral(ack, str(exc))
            return
        urgent = spec(name).urgent
        home = self.config.slack.channel
        if home and channel != home and not urgent:  # rollback works from anywhere
            _ack_ephemeral(ack, f"Run `/{name}` in <#{home}>, where the team sees it. Nothing was run.")
            return
        try:
            # The store's phases answer at the ack ("no PASS preflight..."), before a manager is asked.
            # (An injected runner, in tests and the ack bench, decides for itself.)
            store = store_for(self.config) if self.real_runner else None
            gate = admit(request, self.config, authorizer=self.access, require_built=self.real_runner, store=store)
        except (Refused, UsageError, ConfigError) as exc:
            if isinstance(exc, Refused) and exc.rule == "approval" and self.approvals.wanted(request):
                self.approvals.start(ack, request, channel=channel)  # asks a manager; runs once approved
                return
            _ack_ephemeral(ack, f"{exc} Nothing was run." if isinstance(exc, Refused) else f"{exc}. Nothing was run.")
            return
        run = self.recent.add(RunRecord(name, request.env, user, datetime.now(UTC)))
        job = Job(
            request=gate.request,
            decision=Decision(True),
            channel=channel,
            response_url=command.get("response_url"),
            run=run,
        )
        if urgent:
            self.urgent.submit(guarded, lambda: self._run(job))
        elif not self.queue.submit(lambda: self._run(job)):
            self.recent.update(run, state="did not run", summary="the bot was at capacity")
            _ack_ephemeral(
                ack,
                f"The bot is busy ({self.queue.capacity} runs queued or running). "
                "Nothing was run; try again in a minute.",
            )
            return
        ack(text=REDACTOR.redact(f"{title(name)} {request.env} queued"), response_type="in_channel")

    def _on_cutover(self, ack: Ack, command: dict[str, Any]) -> None:
        word = " ".join(str(command.get("text") or "").split()).lower()
        if word.split()[:1] == ["status"]:
            text, public = self._status_reply(word.split()[1:])
            if public:
                ack(text=REDACTOR.redact(text), response_type="in_channel")
            else:
                _ack_ephemeral(ack, text)
        elif word in ("", "help"):
            _ack_ephemeral(ack, self._help_text())
        else:
            said = escape(redact_and_clip(word, 40))
            _ack_ephemeral(ack, f"Unknown `/cutover {said}`: try `/cutover help` or `/cutover status`.")

    def _help_text(self) -> str:
        envs = self.config.envs
        lines = ["*Cutover bot*: each command runs one phase of the Order Status cutover and posts the result here."]
        for command, command_spec in COMMANDS.items():
            note = "" if command_spec.available or not self.real_runner else " _(not available yet)_"
            lines.append(f"• {usage(command, envs).removeprefix('Usage: ')}: {command_spec.summary}{note}")
        lines.append(
            "• `/cutover status [ENV] [public]`: the phase, the lock, the last runs, pending approvals and "
            "the audit trail (privately unless `public`)"
        )
        for env_name, env in sorted(envs.items()):
            who = ", ".join(mention(x) for x in env.runners) or "nobody (set `runners`)"
            lines.append(f"{env_name}: may run: {who}")
        return "\n".join(lines)

    def _status_reply(self, words: list[str]) -> tuple[str, bool]:
        """`/cutover status [ENV] [public]`: (the text, whether the channel sees it)."""
        public = "public" in words
        rest = [w for w in words if w != "public"]
        if not rest:
            return self._status_text(), public
        env = rest[0]
        if len(rest) > 1 or env not in self.config.envs:
            known = ", ".join(sorted(self.config.envs))
            said = escape(redact_and_clip(" ".join(rest), 40))
            usage_text = f"use `/cutover status [ENV] [public]` (environments: {known})"
            return f"Unknown `/cutover status {said}`: {usage_text}.", False
        try:
            return render_slack(env_status(store_for(self.config), env)), public
        except (StateError, ConfigError) as exc:
            return f"The state store could not be read ({escape(str(exc))}): no status for {env}.", False

    def _status_text(self) -> str:
        lines = ["*Environments* (`/cutover status ENV` for one env's timeline):"]
        try:
            store = store_for(self.config)
            for env_name in sorted(self.config.envs):
                lines.append(f"• *{escape(env_name)}*: {escape(phase(store, env_name).text)}")
        except (StateError, ConfigError) as exc:
            lines.append(f"• the state store could not be read ({escape(str(exc))})")
        runs = self.recent.latest_first()
        if not runs:
            lines.append("Nothing has run in this bot process since it started.")
            return "\n".join(lines)
        lines.append(f"Recent runs in this bot process (latest first, up to {RECENT_RUNS}):")
        for r in runs:
            summary = f": {escape(r.summary)}" if r.summary else ""
            lines.append(f"• {r.received_at:%H:%M:%S} UTC `/{r.command} {r.env}` by <@{r.user}>: *{r.state}*{summary}")
        return "\n".join(lines)

    # --- the work (on the bot's executor) ---------------------------------------------
    def _run(self, job: Job) -> None:
        request = job.request
        user = request.requested_by
        self.recent.update(job.run, state="running")
        live = LiveMessage(
            self.client,
            progress_client=self.progress_client,
            channel=job.channel,
            response_url=job.response_url,
            interval_s=self.update_interval_s,
        )
        live.post(started_blocks(request.command, request.env, user, pr=request.pr, dry_run=request.dry_run))
        if self.dispatcher is not None and self._dispatched(job, live):
            return
        started = time.monotonic()
        done: list[CheckResult] = []
        done_lock = threading.Lock()

        def progress(check: CheckResult) -> None:
            with done_lock:
                # A step reports more than once (waiting for a person, then its verdict; a watch's
                # time left): the newest line of each step replaces the earlier one in place.
                same = next((i for i, c in enumerate(done) if c.name == check.name), None)
                if same is None:
                    done.append(check)
                else:
                    done[same] = check
                snapshot: Sequence[CheckResult] = list(done)
            live.maybe_update(
                lambda: progress_blocks(
                    request.command,
                    request.env,
                    user,
                    snapshot,
                    elapsed_s=time.monotonic() - started,
                    pr=request.pr,
                    dry_run=request.dry_run,
                )
            )

        try:
            publisher = None if request.dry_run else self.publisher()
            outcome = self.runner(
                request,
                config=self.config,
                progress=progress,
                publisher=publisher,
                authorizer=Vouched(job.decision),
            )
        except (UsageError, ConfigError, Refused) as exc:
            text = f"{title(request.command)} {request.env} did not run: {escape(str(exc))}"
            self.recent.update(job.run, state="did not run", summary=str(exc))
            live.finish(notice_blocks(text))
            if request.approval_id:
                self.approvals.run_refused(request.approval_id, str(exc))
            return
        except Exception as exc:
            log.exception("/%s %s failed", request.command, request.env)
            text = (
                f"{title(request.command)} {request.env} stopped with an internal error ({exc.__class__.__name__}). "
                "The bot's log has the details; check them before running it again."
            )
            self.recent.update(job.run, state="error", summary=exc.__class__.__name__)
            live.finish(notice_blocks(text, icon="🛑"))
            return
        self.recent.update(job.run, state=outcome.report.overall_status, summary=f"run {outcome.report.run_id}")
        live.finish(result_blocks(outcome, user=user))
        post_chart(self.client, outcome, channel=live.channel, thread_ts=live.ts)
        if publisher is not None:
            follow_pending_evidence(
                outcome,
                publisher,
                show=lambda later: live.finish(result_blocks(later, user=user)),
                delays_s=self.evidence_retry_delays_s,
            )

    def submit_approved(self, request: RunRequest, channel: str) -> str | None:
        """A run a manager approved in the channel (bot/slack/approvals.py), queued like a slash command;
        its request carries the approval id, which `execute` checks and consumes. None, or why not."""
        decision = self.access.may_run(request.requested_by, request.env, request.command)
        run = self.recent.add(RunRecord(request.command, request.env, request.requested_by, datetime.now(UTC)))
        job = Job(request=request, decision=decision, channel=channel, response_url=None, run=run)
        if self.queue.submit(lambda: self._run(job)):
            return None
        self.recent.update(run, state="did not run", summary="the bot was at capacity")
        return f"the bot is busy ({self.queue.capacity} runs queued or running); the approval stays usable for a retry"

    def _dispatched(self, job: Job, live: LiveMessage) -> bool:
        """executor = "github-actions": hand the run to a workflow run, which edits `live`'s message as it goes.
        True when nothing more happens here (dispatched, or the failure reported in the channel); False
        when the run goes ahead here after all: a rollback whose dispatch failed, on a host with AWS
        credentials of its own (a rollback never depends on one path)."""
        assert self.dispatcher is not None
        request = job.request
        name = f"{title(request.command)} {request.env}"
        run_id = request.run_id or new_run_id()
        try:
            dispatched = self.dispatcher.dispatch(request, run_id=run_id, channel=live.channel, ts=live.ts)
        except DispatchFailed as exc:
            urgent = spec(request.command).urgent
            if urgent and self.local_credentials():
                log.warning("%s: dispatch failed, running it here: %s", name, exc)
                note = f"⚠️ {escape(str(exc))}. Running {name} here instead (this host's AWS credentials)."
                self._thread_note(live, note)
                return False
            self.recent.update(job.run, state="did not run", summary=str(exc))
            where = (
                " This host has no AWS credentials of its own, so it cannot run it here either: run "
                f"`python -m bot {request.command} --env {request.env}` where the credentials are."
                if urgent
                else " Try again, or check the token and the workflow."
            )
            live.finish(notice_blocks(f"{name} did not start: {escape(str(exc))}. Nothing ran.{where}", icon="🛑"))
            return True
        self.recent.update(job.run, state="dispatched", summary=f"run {run_id} on GitHub Actions")
        link = dispatched.link
        rendered = dispatched_blocks(
            request.command,
            request.env,
            request.requested_by,
            url=link.url,
            exact=link.run_id is not None,
            run_id=run_id,
            pr=request.pr,
            dry_run=request.dry_run,
        )
        live.finish(rendered)  # still in progress: the workflow run ends it with the result
        return True

    def _thread_note(self, live: LiveMessage, text: str) -> None:
        """A reply in the run message's thread (best effort: the run goes on without it)."""
        try:
            thread = {"thread_ts": live.ts} if live.ts else {}
            self.client.chat_postMessage(channel=live.channel, text=REDACTOR.redact(text), **thread)
        except Exception as exc:
            log.warning("a note in the channel failed: %s", exc.__class__.__name__)

    def publisher(self) -> Publisher | None:
        """One evidence publisher for the app's lifetime (built on first use), or None without GitHub."""
        with self._publisher_lock:
            if not self._publisher_built and self.publisher_factory is not None:
                self._publisher = self.publisher_factory()
            self._publisher_built = True
            return self._publisher


def _ack_ephemeral(ack: Ack, text: str) -> None:
    ack(text=REDACTOR.redact(text), response_type="ephemeral")
