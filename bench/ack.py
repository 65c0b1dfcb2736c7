"""Ack latency under load, beside a bare Bolt app, and the serving process's memory over 1,000 commands.

    .venv/bin/python bench/ack.py [-n 50 200] [--rounds 3] [--run-seconds 1.0] [--server gunicorn|threaded]
                                  [--memory 1000] [--memory-batch 50] [--no-bare]
    .venv/bin/python bench/ack.py --sandbox [--latency 0.3] [-n 50] [--memory 0]

Everything is on 127.0.0.1. The real Bolt app (bot.slack.app + bot.slack.wsgi) is served by default under
gunicorn with the Procfile's settings (1 worker, 8 threads); Slack's Web API is the loopback SlackFake.
Each run takes `--run-seconds` (a scripted runner that reports checks slowly, in the app's own run
threads), or with `--sandbox` each run is the real preflight against the sandbox (moto and the fakes, in
a process of their own) with `--latency` on every upstream, each run in a forked worker process as in
production.

Measured, in one run of this script:
1. Latency: for each `-n`, `--rounds` bursts of N concurrent signed `/preflight` commands released
   together, alternately at a *bare* Bolt app (request verification, the same `authorize` and
   `process_before_response` as the bot, and one `/preflight` listener that only acks), served the
   same way, and at the bot. Latencies are pooled over the rounds: p50/p99/max, answered 200, queued,
   told "busy" at the ack (the bot's bounded queue, `bot/execution/admission.py`), final messages in
   the channel, lost (no 200, or queued and no final message), and under gunicorn the serving process's
   CPU per command during the bursts (from /proc: what answering costs, which the machine's other load
   does not change much, unlike latency). Each bot burst waits for every final message before the next.
2. Memory: a fresh bot server, runs of `--memory-run-seconds`, `--memory` commands in bursts of
   `--memory-batch` (each burst's final messages awaited); the gunicorn worker's VmRSS
   (/proc/PID/status) after every 100th command. Growth is from the 100th to the last.

Targets (PASS/MISS, exit 1 on any MISS): at 50 concurrent, bot ack p99 < 100 ms and <= 1.5x the bare
app's p99; at 200 concurrent, 0 lost; memory growth < 10% from the 100th to the 1,000th command.
The last line is the figures as JSON (bench/run_all.py reads it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bot.slack.blocks import in_progress  # noqa: E402
from commands.config import CutoverConfig, Tokens  # noqa: E402
from commands.evidence import Bundle  # noqa: E402
from commands.execute import Outcome, RunRequest  # noqa: E402
from commands.report import CheckResult, Report, Status  # noqa: E402
from integrations.sandbox.slack_requests import signed_headers, slash_command_body  # noqa: E402

SECRET = "bench-signing-secret-0123456789abcdef"
TOKEN = "xoxb-bench-token"
CHANNEL = "C0BENCH"
USER = "U0BENCH"
CHECKS = 4
HOST = "127.0.0.1"
GUNICORN_THREADS = 8

TARGET_P99_MS = 100.0
TARGET_RATIO = 1.5
TARGET_GROWTH = 0.10
HTTP_TIMEOUT_S = 10.0


def bench_config() -> dict[str, Any]:
    env = {
        "aws_account_id": "111122223333",
        "aws_region": "us-east-2",
        "shop_domain": "bench.myshopify.com",
        "worker_function": "w",
        "worker_log_group": "/aws/lambda/w",
        "alarms": ["a"],
        "outbound_flag": {"ssm_parameter": "/f"},
        "internal_test_address": "canary@example.com",
        "runners": [USER],
        "secrets": {
            n: f"s/{n}"
            for n in (
                "richpanel_api_key",
                "richpanel_webhook_token",
                "richpanel_bot_agent_id",
                "openai_api_key",
                "shopify_admin_api_token",
            )
        },
    }
    return {"envs": {"prod": env}}


class SlowRunner:
    """execute()'s signature; reports CHECKS checks over `seconds`, all passing."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def __call__(
        self, request: RunRequest, *, config: CutoverConfig, progress: Any, publisher: Any = None, **_: Any
    ) -> Outcome:
        started = datetime.now(UTC)
        checks = []
        for i in range(CHECKS):
            time.sleep(self.seconds / CHECKS)
            check = CheckResult(name=f"check_{i}", status=Status.PASS, detail="ok", duration_ms=int(self.seconds * 250))
            checks.append(check)
            progress(check)
        report = Report(
            command=request.command,
            env=request.env,
            run_id=uuid.uuid4().hex[:10],
            started_at=started,
            finished_at=max(datetime.now(UTC), started + timedelta(milliseconds=1)),
            overall_status="PASS",
            checks=checks,
        )
        return Outcome(report, Bundle(Path("evidence/bench"), {}))


# --- the two apps under test ----------------------------------------------------------------


def wsgi_app(slack_url: str, run_seconds: float, config_path: str = "") -> Any:
    """The bot: the production app's code with a scripted runner, or (config_path) the real preflight."""
    from bot.slack.app import create_app
    from bot.slack.wsgi import make_wsgi_app

    if config_path:  # the real preflight on the sandbox, run as in production (a worker process each)
        from bot.execution.worker_pool import ProcessRunner
        from commands.config import load_config

        return make_wsgi_app(create_app(config=load_config(config_path), tokens=Tokens(), runner=ProcessRunner()))
    tokens = Tokens(slack_bot_token=TOKEN, slack_signing_secret=SECRET, slack_api_url=slack_url)
    config = CutoverConfig.model_validate(bench_config())
    return make_wsgi_app(create_app(config=config, tokens=tokens, runner=SlowRunner(run_seconds)))


def bare_wsgi_app(slack_url: str) -> Any:
    """The baseline: a Bolt app that verifies the signature and acks `/preflight`, nothing else.
    Same Bolt settings as the bot (no-network `authorize`, `process_before_response=True`) and the same
    WSGI wrapper, so the ratio is what the bot's own work before the ack costs."""
    from slack_bolt import Ack, App
    from slack_bolt.authorization import AuthorizeResult
    from slack_sdk import WebClient

    from bot.slack.app import api_base_url
    from bot.slack.wsgi import make_wsgi_app

    def authorize(enterprise_id: str | None, team_id: str | None, user_id: str | None) -> AuthorizeResult:
        return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, user_id=user_id, bot_token=TOKEN)

    app = App(
        name="bare",
        signing_secret=SECRET,  # what the bench signs with (in every mode)
        client=WebClient(base_url=api_base_url(slack_url), timeout=HTTP_TIMEOUT_S),
        authorize=authorize,
        process_before_response=True,
        request_verification_enabled=True,
    )

    @app.command("/preflight")
    def ack_only(ack: Ack) -> None:
        ack(text="Preflight prod queued", response_type="in_channel")

    return make_wsgi_app(app)


def gunicorn_app() -> Any:
    """Factory for the gunicorn child: `bench.ack:gunicorn_app()` (settings come through the environment)."""
    env = os.environ
    if env.get("BENCH_APP") == "bare":
        return bare_wsgi_app(env["BENCH_SLACK_URL"])
    return wsgi_app(env["BENCH_SLACK_URL"], float(env["BENCH_RUN_SECONDS"]), env.get("BENCH_CONFIG", ""))


# --- serving ---------------------------------------------------------------------------------


@dataclass
class Served:
    """One app on 127.0.0.1: under gunicorn (a process of its own) or the threaded wsgiref server here."""

    kind: str  # "bot" or "bare"
    url: str
    proc: subprocess.Popen[bytes] | None = None
    server: Any = None

    def worker_pid(self) -> int | None:
        """The gunicorn worker (the master's only child): the process that serves the requests."""
        if self.proc is None:
            return None
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            pids = [int(p) for p in children.read_text().split()]
        except OSError:
            return None
        return pids[0] if pids else None

    def cpu_s(self) -> float | None:
        """CPU time (user + system) the serving process has used so far; None when not under gunicorn."""
        pid = self.worker_pid()
        if pid is None:
            return None
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.server is not None:
            self.server.shutdown()


def serve_app(kind: str, server: str, slack_url: str, run_seconds: float, config_path: str = "") -> Served:
    if server == "threaded":
        from bot.slack.wsgi import serve_threaded

        app = bare_wsgi_app(slack_url) if kind == "bare" else wsgi_app(slack_url, run_seconds, config_path)
        threaded = serve_threaded(app, host=HOST)
        served = Served(kind, f"http://{HOST}:{threaded.server_address[1]}", server=threaded)
    else:
        port = free_port()
        env = {
            **os.environ,
            "BENCH_APP": kind,
            "BENCH_SLACK_URL": slack_url,
            "BENCH_RUN_SECONDS": str(run_seconds),
            "BENCH_CONFIG": config_path,
        }
        cmd = [
            str(Path(sys.executable).parent / "gunicorn"),
            "--workers", "1", "--threads", str(GUNICORN_THREADS),
            "--bind", f"{HOST}:{port}",
            "--log-level", "warning",
            "--chdir", str(ROOT),
            "bench.ack:gunicorn_app()",
        ]  # fmt: skip
        served = Served(kind, f"http://{HOST}:{port}", proc=subprocess.Popen(cmd, env=env))
    try:
        wait_healthy(served.url)
    except BaseException:
        served.stop()
        raise
    return served


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_healthy(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"the app did not come up at {url} within {timeout_s:.0f} s")


def rss_kib(pid: int | None) -> int | None:
    """VmRSS of a process in KiB (Linux /proc), or None when it cannot be read."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


# --- the sandbox (for --sandbox), in its own process ---------------------------------------


def start_sandbox_process(latency_s: float) -> subprocess.Popen[str]:
    """`bench/ack.py --sandbox-process`: prints one JSON line (config, environment), then serves."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--sandbox-process", "--latency", str(latency_s)]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def serve_sandbox(latency_s: float) -> int:
    import tempfile

    from integrations.sandbox import env as sandbox_env

    with sandbox_env.Sandbox({"prod": sandbox_env.Scenario()}, latency_s=latency_s) as sandbox:
        workdir = Path(tempfile.mkdtemp(prefix="bench-ack-"))
        config = sandbox.write_config(workdir, evidence_dir=str(workdir / "evidence"))
        aws = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
        info = {
            "config": str(config),
            "environ": aws,
            "channel": sandbox_env.CHANNEL,
            "user": sandbox_env.ENGINEER,
            "group": sandbox_env.RUNNERS_GROUP,
        }
        print(json.dumps(info), flush=True)
        sys.stdin.read()  # until the bench closes our input
    return 0


# --- firing commands ------------------------------------------------------------------------


@dataclass
class Answer:
    status: int  # 0: no HTTP answer (connection error, timeout)
    seconds: float
    kind: str  # "queued" (in_channel ack), "busy" (the bot's queue was full), "other"


def fire(
    url: str, n: int, response_url: str, *, secret: str = SECRET, channel: str = CHANNEL, user: str = USER
) -> list[Answer]:
    """N concurrent signed /preflight commands released together (a barrier), one connection each."""
    bodies = [
        slash_command_body(
            "/preflight",
            "prod",
            user=user,
            channel=channel,
            response_url=f"{response_url}{i}",
            trigger_id=f"bench.{i}.{uuid.uuid4().hex}",
        )
        for i in range(n)
    ]
    results: list[Answer] = [Answer(0, 0.0, "other")] * n
    barrier = threading.Barrier(n)

    def one(i: int) -> None:
        headers = signed_headers(bodies[i], secret)
        with httpx.Client(timeout=HTTP_TIMEOUT_S) as client:
            try:
                barrier.wait(timeout=60)
            except threading.BrokenBarrierError:
                return
            started = time.perf_counter()
            try:
                response = client.post(f"{url}/slack/events", content=bodies[i], headers=headers)
            except httpx.HTTPError:
                results[i] = Answer(0, time.perf_counter() - started, "other")
                return
            elapsed = time.perf_counter() - started
            results[i] = Answer(response.status_code, elapsed, _kind(response))

    threads = [threading.Thread(target=one, args=(i,), name=f"bench-client-{i}") for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _kind(response: httpx.Response) -> str:
    if response.status_code != 200:
        return "other"
    try:
        body = response.json()
    except ValueError:
        return "other"
    if body.get("response_type") == "in_channel":
        return "queued"
    return "busy" if "busy" in str(body.get("text", "")) else "other"


def wait_finals(fake: Any, channel: str, expected: int, timeout_s: float) -> int:
    """Final (not in-progress) messages in the channel, polled until `expected` or the timeout."""
    deadline = time.monotonic() + timeout_s
    finals = 0
    while True:
        finals = sum(1 for m in fake.messages(channel) if not in_progress(m.blocks))
        if finals >= expected or time.monotonic() >= deadline:
            return finals
        time.sleep(0.05)


def percentile(values: list[float], p: float) -> float:
    """Nearest rank: p99 of 50 samples is the largest, of 150 the second largest."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


@dataclass
class Tally:
    """One app at one concurrency, pooled over the rounds."""

    app: str
    n: int
    latencies_ms: list[float] = field(default_factory=list)
    sent: int = 0
    ok: int = 0
    queued: int = 0
    busy: int = 0
    other: int = 0
    finals: int = 0
    drain_s: list[float] = field(default_factory=list)
    round_p99_ms: list[float] = field(default_factory=list)  # each burst's own p99: one bad burst shows here
    cpu_s: list[float] = field(default_factory=list)  # the serving process's CPU from release to the last answer

    def add(self, answers: list[Answer]) -> None:
        self.round_p99_ms.append(percentile([a.seconds * 1000 for a in answers], 99))
        self.sent += len(answers)
        self.latencies_ms += [a.seconds * 1000 for a in answers]
        self.ok += sum(1 for a in answers if a.status == 200)
        self.queued += sum(1 for a in answers if a.kind == "queued")
        self.busy += sum(1 for a in answers if a.kind == "busy")
        self.other += sum(1 for a in answers if a.status == 200 and a.kind == "other")

    @property
    def lost(self) -> int:
        """No 200, or (the bot) queued and no final message. A "busy" reply is an answer, not a loss."""
        unanswered = self.sent - self.ok
        if self.app == "bare":
            return unanswered
        return unanswered + max(0, self.queued - self.finals)

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    def figures(self) -> dict[str, Any]:
        return {
            "p50_ms": round(self.p(50), 1),
            "p99_ms": round(self.p(99), 1),
            "max_ms": round(max(self.latencies_ms), 1) if self.latencies_ms else None,
            "sent": self.sent,
            "answered": self.ok,
            "queued": self.queued,
            "busy": self.busy,
            "final": self.finals if self.app == "bot" else None,
            "lost": self.lost,
            "round_p99_ms": [round(v, 1) for v in self.round_p99_ms],
            "cpu_ms_per_command": None if self.cpu_ms() is None else round(self.cpu_ms() or 0, 2),
        }

    def cpu_ms(self) -> float | None:
        """Server CPU per command during the bursts: what answering costs, whatever the machine's load."""
        return sum(self.cpu_s) * 1000 / self.sent if self.cpu_s and self.sent else None


# --- the phases -------------------------------------------------------------------------------


@dataclass
class Setup:
    fake: Any
    server: str
    run_seconds: float
    config_path: str
    channel: str
    user: str
    groups: dict[str, list[str]]
    per_run_s: float  # for the drain deadline


def reset_fake(setup: Setup) -> None:
    setup.fake.reset()
    setup.fake.groups = dict(setup.groups)


def latency_phase(setup: Setup, ns: list[int], rounds: int, bare: bool) -> dict[int, dict[str, Tally]]:
    who = {"channel": setup.channel, "user": setup.user}
    tallies: dict[int, dict[str, Tally]] = {n: {"bot": Tally("bot", n), "bare": Tally("bare", n)} for n in ns}
    bot = serve_app("bot", setup.server, setup.fake.url, setup.run_seconds, setup.config_path)
    base = serve_app("bare", setup.server, setup.fake.url, 0) if bare else None
    try:
        # Warm both: imports on first use, the first connections, the bot's run threads.
        for served in (s for s in (base, bot) if s is not None):
            fire(served.url, 2, setup.fake.response_url("warmup"), **who)
        wait_finals(setup.fake, setup.channel, 2, 60 + 2 * setup.per_run_s)
        for n in ns:
            for r in range(rounds):
                if base is not None:
                    burst(base, tallies[n]["bare"], n, setup.fake.response_url(f"bare{n}.{r}."), who)
                reset_fake(setup)
                tally = tallies[n]["bot"]
                started = time.perf_counter()
                answers = burst(bot, tally, n, setup.fake.response_url(f"bot{n}.{r}."), who)
                queued = sum(1 for a in answers if a.kind == "queued")
                tally.finals += wait_finals(setup.fake, setup.channel, queued, 60 + queued * setup.per_run_s)
                tally.drain_s.append(time.perf_counter() - started)
    finally:
        bot.stop()
        if base is not None:
            base.stop()
    return tallies


def burst(served: Served, tally: Tally, n: int, response_url: str, who: dict[str, str]) -> list[Answer]:
    cpu_before = served.cpu_s()
    answers = fire(served.url, n, response_url, **who)
    cpu_after = served.cpu_s()
    tally.add(answers)
    if cpu_before is not None and cpu_after is not None:
        tally.cpu_s.append(cpu_after - cpu_before)
    return answers


@dataclass
class MemoryResult:
    pid: int | None
    samples: list[tuple[int, int | None]]  # (commands so far, VmRSS KiB)
    lost: int

    def growth(self) -> float | None:
        first = next((kib for count, kib in self.samples if count >= 100), None)
        last = self.samples[-1][1] if self.samples else None
        if first is None or last is None or first == 0 or self.samples[-1][0] <= 100:
            return None
        return (last - first) / first


def memory_phase(setup: Setup, total: int, batch: int, run_seconds: float) -> MemoryResult:
    who = {"channel": setup.channel, "user": setup.user}
    bot = serve_app("bot", setup.server, setup.fake.url, run_seconds, setup.config_path)
    samples: list[tuple[int, int | None]] = []
    lost = 0
    try:
        pid = bot.worker_pid()
        sent = 0
        while sent < total:
            size = min(batch, total - sent)
            reset_fake(setup)
            answers = fire(bot.url, size, setup.fake.response_url(f"mem{sent}."), **who)
            queued = sum(1 for a in answers if a.kind == "queued")
            finals = wait_finals(setup.fake, setup.channel, queued, 60 + queued * max(run_seconds, setup.per_run_s))
            lost += (size - queued) + max(0, queued - finals)
            before = sent
            sent += size
            if sent // 100 > before // 100 or sent == total:
                samples.append((sent, rss_kib(pid)))
    finally:
        bot.stop()
    return MemoryResult(pid, samples, lost)


# --- report -----------------------------------------------------------------------------------


def verdict(ok: bool | None) -> str:
    return "PASS" if ok else ("MISS" if ok is not None else "n/a")


Target = tuple[str, bool | None, str]  # (what, met, the figure)


def print_latency(tallies: dict[int, dict[str, Tally]], ns: list[int]) -> None:
    print(
        f"{'n':>4} {'app':<5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'answered':>9} "
        f"{'queued':>7} {'busy':>5} {'final':>6} {'lost':>5} {'cpu ms':>7}  p99 of each burst"
    )
    for n in ns:
        for name in ("bare", "bot"):
            t = tallies[n][name]
            if not t.sent:
                continue
            final = f"{t.finals}" if name == "bot" else "-"
            cpu = "-" if t.cpu_ms() is None else f"{t.cpu_ms():.2f}"
            print(
                f"{n:>4} {name:<5} {t.p(50):8.1f} {t.p(99):8.1f} {max(t.latencies_ms):8.1f} "
                f"{t.ok:>4}/{t.sent:<4} {t.queued:>7} {t.busy:>5} {final:>6} {t.lost:>5} {cpu:>7}  "
                + " ".join(f"{v:.0f}" for v in t.round_p99_ms)
            )
        bot, bare = tallies[n]["bot"], tallies[n]["bare"]
        drain = f"; every final message within {max(bot.drain_s):.1f} s of its burst" if bot.drain_s else ""
        if bare.sent:
            ratios = f"p99 bot/bare = {bot.p(99) / bare.p(99):.2f}  (p50 {bot.p(50) / bare.p(50):.2f})"
            bot_cpu, bare_cpu = bot.cpu_ms(), bare.cpu_ms()
            if bot_cpu is not None and bare_cpu:
                ratios += f"; server CPU per command {bot_cpu / bare_cpu:.2f}x"
            print(f"{n:>4} ratio {ratios}{drain}")


def print_memory(result: MemoryResult) -> None:
    series = "  ".join(
        f"{count}: {kib / 1024:.1f}" if kib is not None else f"{count}: ?" for count, kib in result.samples
    )
    print(f"  VmRSS MiB of the gunicorn worker (pid {result.pid}) after command {series}")
    growth = result.growth()
    shown = f"{growth:+.1%}" if growth is not None else "unknown"
    print(f"  growth from the 100th to the {result.samples[-1][0]}th: {shown}; lost {result.lost}")


def targets_of(tallies: dict[int, dict[str, Tally]], ns: list[int], memory: MemoryResult | None) -> list[Target]:
    targets: list[Target] = []
    if 50 in tallies:
        bot50, bare50 = tallies[50]["bot"], tallies[50]["bare"]
        p99 = bot50.p(99)
        targets.append((f"ack p99 < {TARGET_P99_MS:g} ms at 50 concurrent", p99 < TARGET_P99_MS, f"{p99:.1f} ms"))
        if bare50.sent:
            ratio = p99 / bare50.p(99)
            figure = f"{ratio:.2f}x ({p99:.1f} / {bare50.p(99):.1f} ms)"
            met = None if bare50.lost else ratio <= TARGET_RATIO  # a baseline that did not answer is no baseline
            if bare50.lost:
                figure += f"; the bare app left {bare50.lost} of {bare50.sent} unanswered"
            targets.append((f"ack p99 <= {TARGET_RATIO:g}x the bare Bolt app at 50", met, figure))
    for n in ns:
        t = tallies[n]["bot"]
        told = f", {t.busy} told busy at the ack" if t.busy else ""
        targets.append((f"0 lost at {n} concurrent", t.lost == 0, f"{t.lost} lost of {t.sent}{told}"))
    if memory is not None:
        growth = memory.growth()
        targets.append(
            (
                f"memory growth < {TARGET_GROWTH:.0%} (100th -> {memory.samples[-1][0]}th command)",
                None if growth is None else growth < TARGET_GROWTH,
                "unknown" if growth is None else f"{growth:+.1%}",
            )
        )
        targets.append(("0 lost in the memory phase", memory.lost == 0, f"{memory.lost} lost"))
    return targets


def summary_line(
    tallies: dict[int, dict[str, Tally]], ns: list[int], memory: MemoryResult | None, targets: list[Target]
) -> str:
    """One line for bench/run_all.py's table."""
    parts = []
    for n in ns:
        bot, bare = tallies[n]["bot"], tallies[n]["bare"]
        ratio = f" ({bot.p(99) / bare.p(99):.2f}x bare)" if bare.sent else ""
        busy = f", {bot.busy} busy" if bot.busy else ""
        parts.append(f"{n}: p99 {bot.p(99):.0f} ms{ratio}, {bot.lost} lost{busy}")
    if memory is not None:
        growth = memory.growth()
        parts.append(f"RSS {'?' if growth is None else f'{growth:+.1%}'} over {memory.samples[-1][0]}")
    missed = sum(1 for _, ok, _ in targets if not ok)
    return "; ".join(parts) + (f"; {missed} target(s) MISSED" if missed else "; all targets PASS")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, nargs="+", default=None, help="concurrent commands (default 50 200)")
    parser.add_argument("--rounds", type=int, default=3, help="bursts per concurrency and app, pooled (default 3)")
    parser.add_argument("--run-seconds", type=float, default=1.0, help="how long each scripted run takes (1.0)")
    parser.add_argument("--server", choices=("gunicorn", "threaded"), default="gunicorn")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare Bolt app")
    parser.add_argument("--memory", type=int, default=None, help="commands in the memory phase (default 1000; 0 skips)")
    parser.add_argument("--memory-batch", type=int, default=50, help="concurrent commands per memory burst (50)")
    parser.add_argument("--memory-run-seconds", type=float, default=0.02, help="scripted run time in the memory phase")
    parser.add_argument("--sandbox", action="store_true", help="real preflights against the sandbox")
    parser.add_argument("--latency", type=float, default=0.3, help="with --sandbox: seconds on every upstream")
    parser.add_argument("--sandbox-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.n = args.n or ([50] if args.sandbox else [50, 200])
    if args.memory is None:
        args.memory = 0 if args.sandbox else 1000
    if any(n < 1 or n > 1000 for n in args.n) or not 1 <= args.rounds <= 20:
        parser.error("-n must be within 1..1000 and --rounds within 1..20")
    if not (args.memory == 0 or 200 <= args.memory <= 20000) or not 1 <= args.memory_batch <= 1000:
        parser.error("--memory must be 0 or within 200..20000 (growth is from the 100th), --memory-batch 1..1000")
    if not 0 <= args.run_seconds <= 60 or not 0 <= args.memory_run_seconds <= 60 or not 0 <= args.latency <= 10:
        parser.error("--run-seconds and --memory-run-seconds must be within 0..60, --latency within 0..10")
    if args.memory and args.server != "gunicorn":
        print("memory: measured only under gunicorn (the threaded server shares this process); skipped")
        args.memory = 0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.sandbox_process:
        return serve_sandbox(args.latency)
    ns: list[int] = args.n

    from integrations.sandbox.slack import SlackFake

    sandbox = None
    fake = SlackFake(token=TOKEN).start()
    setup = Setup(fake, args.server, args.run_seconds, "", CHANNEL, USER, {}, per_run_s=args.run_seconds)
    try:
        if args.sandbox:
            # moto and the fakes live in a process of their own, so neither the bot nor this client
            # shares a GIL with them: the latency measured is the bot's.
            sandbox = start_sandbox_process(args.latency)
            assert sandbox.stdout is not None
            info = json.loads(sandbox.stdout.readline())
            os.environ.update(info["environ"])
            os.environ.update(SLACK_API_URL=fake.url + "/api/", SLACK_BOT_TOKEN=TOKEN, SLACK_SIGNING_SECRET=SECRET)
            setup.config_path, setup.channel, setup.user = info["config"], info["channel"], info["user"]
            setup.groups = {info["group"]: [info["user"]]}
            setup.per_run_s = 3.0
            reset_fake(setup)

        load, cpus = os.getloadavg()[0], os.cpu_count()
        what = (
            f"the real preflight on the sandbox (its own process), {args.latency * 1000:.0f} ms on every upstream"
            if sandbox
            else f"each run {args.run_seconds:g} s (scripted, {CHECKS} checks)"
        )
        where = f"gunicorn (1 worker, {GUNICORN_THREADS} threads)" if args.server == "gunicorn" else "threaded wsgiref"
        print(f"server: {where} on {HOST}; {cpus} CPUs, load average {load:.2f} at start")
        print(f"/preflight bursts of {', '.join(map(str, ns))} concurrent, {args.rounds} round(s) each; {what}")
        tallies = latency_phase(setup, ns, args.rounds, bare=not args.no_bare)
        print_latency(tallies, ns)

        memory: MemoryResult | None = None
        if args.memory:
            print(
                f"memory: {args.memory} commands in bursts of {args.memory_batch}, "
                + ("each the real preflight" if sandbox else f"runs of {args.memory_run_seconds:g} s")
                + ", a fresh bot server"
            )
            memory = memory_phase(setup, args.memory, args.memory_batch, args.memory_run_seconds)
            print_memory(memory)

        targets = targets_of(tallies, ns, memory)
        print("targets:")
        for name, ok, figure in targets:
            print(f"  {verdict(ok):<4}  {name}: {figure}")
        print("summary:", summary_line(tallies, ns, memory, targets))
        figures: dict[str, Any] = {
            "load_average": round(load, 2),
            "cpus": cpus,
            "server": args.server,
            "mode": "sandbox" if sandbox else "scripted",
            "rounds": args.rounds,
            "latency": {
                str(n): {name: tallies[n][name].figures() for name in ("bare", "bot") if tallies[n][name].sent}
                for n in ns
            },
            "targets": {name: verdict(ok) for name, ok, _ in targets},
        }
        if memory is not None:
            growth = memory.growth()
            figures["memory"] = {
                "rss_kib": {str(count): kib for count, kib in memory.samples},
                "growth": None if growth is None else round(growth, 4),
            }
        print(json.dumps(figures))
        return 0 if all(ok for _, ok, _ in targets) else 1
    finally:
        if sandbox is not None:
            assert sandbox.stdin is not None
            sandbox.stdin.close()  # the sandbox process stops when its input closes
            sandbox.wait(timeout=30)
        fake.stop()


if __name__ == "__main__":
    raise SystemExit(main())
