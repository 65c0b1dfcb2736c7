"""Shared pieces of the Slack tests: a config, a scripted runner, signed requests, a served app.

The app under test is the real Bolt app from `bot.slack.app`, served over HTTP on loopback by
`bot.slack.wsgi`, talking to `SlackFake` for the Web API. Only the command runner is scripted.
"""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bot.slack.app import CutoverBot
from bot.slack.blocks import in_progress
from bot.slack.wsgi import make_wsgi_app, serve_threaded
from commands.config import CutoverConfig, Tokens
from commands.evidence import Bundle
from commands.execute import EvidenceResult, Outcome, RunRequest
from commands.report import CheckResult, Report, Status, overall_status
from integrations.sandbox import slack_requests as slash_requests
from integrations.sandbox.slack import Message, SlackFake
from integrations.sandbox.slack_requests import slash_command_body

SIGNING_SECRET = "test-signing-secret-0123456789abcdef"
BOT_TOKEN = "xoxb-sandbox-token"
CHANNEL = "C0CUTOVER"
ALICE = "U0ALICE"  # a runner by id
BOB = "U0BOB"  # in the runners' user group
MALLORY = "U0MALLORY"  # nobody
GROUP = "S0CUTOVER"


def _env(runners: Sequence[str]) -> dict[str, Any]:
    return {
        "aws_account_id": "111122223333",
        "aws_region": "us-east-2",
        "shop_domain": "example.myshopify.com",
        "worker_function": "rp-mw-prod-worker",
        "worker_log_group": "/aws/lambda/rp-mw-prod-worker",
        "alarms": ["rp-mw-prod-worker-error-rate"],
        "outbound_flag": {"ssm_parameter": "/rp-mw/prod/outbound_enabled"},
        "internal_test_address": "cutover-canary@example.com",
        "runners": list(runners),
        "approvers": ["U0MANAGER1"],
        "secrets": {
            name: f"rp-mw/x/{name}"
            for name in (
                "richpanel_api_key",
                "richpanel_webhook_token",
                "richpanel_bot_agent_id",
                "openai_api_key",
                "shopify_admin_api_token",
            )
        },
    }


def make_config(runners: Sequence[str] = (ALICE, GROUP)) -> CutoverConfig:
    state = f"sqlite:///{Path(tempfile.mkdtemp(prefix='cutover-state-')) / 'state.db'}"  # each app its own store
    return CutoverConfig.model_validate(
        {"state": state, "slack": {"channel": CHANNEL}, "envs": {"prod": _env(runners), "dev": _env(runners)}}
    )


# --- a scripted runner with execute()'s signature ---------------------------------------


def checks_of(n: int, *, failing: int = 0, detail: str = "ok") -> list[CheckResult]:
    return [
        CheckResult(
            name=f"check_{i:03d}",
            status=Status.FAIL if i < failing else Status.PASS,
            detail=f"{detail} ({i})",
            duration_ms=i,
        )
        for i in range(n)
    ]


@dataclass
class ScriptedRunner:
    """Reports `checks` one by one (sleeping `delay_s` before each), then returns the outcome."""

    checks: list[CheckResult] = field(default_factory=lambda: checks_of(3, failing=1, detail="reason"))
    delay_s: float = 0.0
    error: Exception | None = None
    evidence: EvidenceResult = field(default_factory=lambda: EvidenceResult("local", "no PR given: kept locally"))
    calls: list[RunRequest] = field(default_factory=list)
    hold: threading.Event | None = None  # when given, every run waits here before it reports anything
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(
        self, request: RunRequest, *, config: CutoverConfig, progress: Callable, publisher: Any = None, **_: Any
    ) -> Outcome:
        with self._lock:
            self.calls.append(request)
        if self.hold is not None:
            self.hold.wait(30)
        if self.error is not None:
            raise self.error
        started = datetime.now(UTC)
        for check in self.checks:
            if self.delay_s:
                time.sleep(self.delay_s)
            progress(check)
        report = Report(
            command=request.command,
            env=request.env,
            run_id=uuid.uuid4().hex[:10],
            started_at=started,
            finished_at=max(datetime.now(UTC), started + timedelta(milliseconds=1)),
            overall_status=overall_status([], self.checks),
            checks=self.checks,
            requested_by=request.requested_by,
            pr=request.pr,
        )
        return Outcome(report, Bundle(path=Path("evidence/none"), files={}), self.evidence)


# --- signed requests ----------------------------------------------------------------------


def command_body(command: str, text: str, *, user: str, response_url: str, trigger_id: str | None = None) -> str:
    return slash_command_body(
        command, text, user=user, channel=CHANNEL, response_url=response_url, trigger_id=trigger_id
    )


def signed_headers(body: str, *, secret: str = SIGNING_SECRET, timestamp: int | None = None) -> dict[str, str]:
    return slash_requests.signed_headers(body, secret, timestamp=timestamp)


@dataclass
class Harness:
    fake: SlackFake
    bot: CutoverBot
    runner: Any  # a ScriptedRunner, or execute itself
    url: str  # the app's base URL
    http: httpx.Client
    secret: str = SIGNING_SECRET

    def post(self, body: str, headers: dict[str, str]) -> httpx.Response:
        return self.http.post(f"{self.url}/slack/events", content=body, headers=headers)

    def command(
        self,
        command: str,
        text: str,
        *,
        user: str = ALICE,
        trigger_id: str | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        body = command_body(
            command, text, user=user, response_url=self.fake.response_url(uuid.uuid4().hex[:8]), trigger_id=trigger_id
        )
        return self.post(body, {**signed_headers(body, secret=self.secret), **(extra_headers or {})})

    def final_messages(self, count: int, *, timeout_s: float = 10.0) -> list[Message]:
        """Wait until `count` channel messages carry a result (not the started/progress form)."""
        deadline = time.monotonic() + timeout_s
        while True:
            done = [m for m in self.fake.messages(CHANNEL) if is_final(m)]
            if len(done) >= count or time.monotonic() > deadline:
                return done
            time.sleep(0.02)


def is_final(message: Message) -> bool:
    """Started and progress forms open with the hourglass; a result or a notice does not."""
    return not in_progress(message.blocks)


_fake: SlackFake | None = None
_fake_lock = threading.Lock()


def shared_fake() -> SlackFake:
    """One SlackFake for the whole test session (reset for each test): stopping one costs 0.5 s."""
    global _fake
    with _fake_lock:
        if _fake is None:
            _fake = SlackFake(token=BOT_TOKEN)
            _fake.start()
        return _fake


@contextmanager
def served_bot(
    runner: Callable[..., Outcome] | None = None,
    *,
    config: CutoverConfig | None = None,
    groups: dict[str, list[str]] | None = None,
    workers: int = 32,
    update_interval_s: float = 0.2,
    bot_kwargs: dict[str, Any] | None = None,
    fake: SlackFake | None = None,
    tokens: Tokens | None = None,
) -> Iterator[Harness]:
    """The app over HTTP. By default with the session's own SlackFake and tokens; the sandbox passes its own."""
    runner = runner or ScriptedRunner()
    if fake is None:
        fake = shared_fake()
        fake.groups = groups if groups is not None else {GROUP: [BOB]}
    fake.reset()
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="test-run")
    tokens = tokens or Tokens(slack_bot_token=BOT_TOKEN, slack_signing_secret=SIGNING_SECRET, slack_api_url=fake.url)
    assert tokens.slack_signing_secret is not None
    bot = CutoverBot(
        config=config or make_config(),
        tokens=tokens,
        runner=runner,
        executor=executor,
        update_interval_s=update_interval_s,
        **(bot_kwargs or {}),
    )
    server = serve_threaded(make_wsgi_app(bot.app))
    host, port = server.server_address[:2]
    http = httpx.Client(timeout=10.0)
    try:
        yield Harness(fake, bot, runner, f"http://{host}:{port}", http, tokens.slack_signing_secret)
    finally:
        http.close()
        server.shutdown()
        server.server_close()
        executor.shutdown(wait=True, cancel_futures=True)
        bot.shutdown()
        fake.reset()
