"""Ack latency under load: N concurrent signed slash commands while the runs behind them are slow.

    .venv/bin/python bench/ack.py [-n 50] [--run-seconds 1.0] [--server gunicorn|threaded]
    .venv/bin/python bench/ack.py --sandbox [--latency 0.3]

Serves the real Bolt app (bot.slack.app + bot.slack.wsgi) on 127.0.0.1, by default under gunicorn with the
Procfile's settings (1 worker, 8 threads); Slack's Web API is the loopback SlackFake. Each run
takes `--run-seconds` (a scripted runner that reports checks slowly), or with `--sandbox` each run
is the real preflight against the sandbox (moto and the fakes) with `--latency` on every upstream.
Prints p50/p99/max ack latency, how many were answered 200, and how many got their final message
in the channel. Targets: p99 < 100 ms at 50 concurrent, none lost.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
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


def wsgi_app(slack_url: str, run_seconds: float, config_path: str = "") -> Any:
    from bot.slack.app import create_app
    from bot.slack.wsgi import make_wsgi_app

    if config_path:  # the real preflight on the sandbox, run as in production (a worker process each)
        from bot.execution.worker_pool import ProcessRunner
        from commands.config import load_config

        return make_wsgi_app(create_app(config=load_config(config_path), tokens=Tokens(), runner=ProcessRunner()))
    tokens = Tokens(slack_bot_token=TOKEN, slack_signing_secret=SECRET, slack_api_url=slack_url)
    config = CutoverConfig.model_validate(bench_config())
    return make_wsgi_app(create_app(config=config, tokens=tokens, runner=SlowRunner(run_seconds)))


def gunicorn_app() -> Any:
    """Factory for the gunicorn child: `bench.ack:gunicorn_app()` (settings come through the environment)."""
    env = os.environ
    return wsgi_app(env["BENCH_SLACK_URL"], float(env["BENCH_RUN_SECONDS"]), env.get("BENCH_CONFIG", ""))


def start_gunicorn(slack_url: str, run_seconds: float, port: int, config_path: str = "") -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "BENCH_SLACK_URL": slack_url,
        "BENCH_RUN_SECONDS": str(run_seconds),
        "BENCH_CONFIG": config_path,
    }
    cmd = [
        str(Path(sys.executable).parent / "gunicorn"),
        "--workers", "1", "--threads", "8",
        "--bind", f"127.0.0.1:{port}",
        "--log-level", "warning",
        "--chdir", str(ROOT),
        "bench.ack:gunicorn_app()",
    ]  # fmt: skip
    return subprocess.Popen(cmd, env=env)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the app did not come up at {url}")


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


def fire(
    url: str, n: int, response_url: str, *, secret: str = SECRET, channel: str = CHANNEL, user: str = USER
) -> list[tuple[int, float, bool]]:
    """N concurrent commands released together; (status, seconds, queued) for each.
    Not queued = acked with a private "busy" reply (the bot's bounded queue was full)."""
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
    results: list[tuple[int, float, bool]] = [(0, 0.0, False)] * n
    barrier = threading.Barrier(n)

    def one(i: int) -> None:
        headers = signed_headers(bodies[i], secret)
        with httpx.Client(timeout=10) as client:
            barrier.wait()
            started = time.perf_counter()
            try:
                response = client.post(f"{url}/slack/events", content=bodies[i], headers=headers)
            except httpx.HTTPError:
                results[i] = (0, time.perf_counter() - started, False)
                return
            elapsed = time.perf_counter() - started
            queued = response.status_code == 200 and response.json().get("response_type") == "in_channel"
            results[i] = (response.status_code, elapsed, queued)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=50, help="concurrent commands (default 50)")
    parser.add_argument("--run-seconds", type=float, default=1.0, help="how long each run takes (default 1.0)")
    parser.add_argument("--server", choices=("gunicorn", "threaded"), default="gunicorn")
    parser.add_argument("--sandbox", action="store_true", help="real preflights against the sandbox")
    parser.add_argument("--latency", type=float, default=0.3, help="with --sandbox: seconds on every upstream")
    parser.add_argument("--sandbox-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sandbox_process:
        return serve_sandbox(args.latency)

    from integrations.sandbox.slack import SlackFake

    sandbox = None
    config_path, channel, user = "", CHANNEL, USER
    fake = SlackFake(token=TOKEN).start()
    if args.sandbox:
        # moto and the fakes live in a process of their own, so neither the bot nor this client
        # shares a GIL with them: the latency measured is the bot's.
        sandbox = start_sandbox_process(args.latency)
        info = json.loads(sandbox.stdout.readline())
        os.environ.update(info["environ"])
        os.environ.update(SLACK_API_URL=fake.url + "/api/", SLACK_BOT_TOKEN=TOKEN, SLACK_SIGNING_SECRET=SECRET)
        config_path, channel, user = info["config"], info["channel"], info["user"]
        fake.groups = {info["group"]: [user]}
    proc = server = None
    try:
        if args.server == "gunicorn":
            port = free_port()
            proc = start_gunicorn(fake.url, args.run_seconds, port, config_path)
            url = f"http://127.0.0.1:{port}"
        else:
            from bot.slack.wsgi import serve_threaded

            server = serve_threaded(wsgi_app(fake.url, args.run_seconds, config_path))
            url = f"http://127.0.0.1:{server.server_address[1]}"
        wait_healthy(url)
        who = {"channel": channel, "user": user}
        fire(url, 2, fake.response_url("warmup"), **who)  # warm the imports and the first connections
        time.sleep(args.run_seconds + 0.5 if not sandbox else 3.0)
        fake.reset()
        if sandbox is not None:
            fake.groups = {info["group"]: [user]}

        started = time.perf_counter()
        results = fire(url, args.n, fake.response_url("r"), **who)
        latencies_ms = [s * 1000 for _, s, _ in results]
        ok = sum(1 for status, _, _ in results if status == 200)
        queued = sum(1 for _, _, q in results if q)

        deadline = time.monotonic() + args.run_seconds * args.n + 30
        finals = 0
        while time.monotonic() < deadline:
            finals = sum(1 for m in fake.messages(channel) if not in_progress(m.blocks))
            if finals >= queued:
                break
            time.sleep(0.05)
        all_done_s = time.perf_counter() - started

        p50, p99, worst = percentile(latencies_ms, 50), percentile(latencies_ms, 99), max(latencies_ms)
        print(
            f"server: {args.server} (1 worker, 8 threads)" if args.server == "gunicorn" else "server: threaded wsgiref"
        )
        what = (
            f"the real preflight on the sandbox (its own process), {args.latency * 1000:.0f} ms on every upstream"
            if sandbox
            else f"each run {args.run_seconds:.1f} s"
        )
        print(f"{args.n} concurrent /preflight, {what}")
        print(
            f"ack latency ms: p50 {p50:.1f}  p99 {p99:.1f}  max {worst:.1f}  (mean {statistics.mean(latencies_ms):.1f})"
        )
        print(f"answered 200: {ok}/{args.n} (queued {queued}, refused as busy {ok - queued})")
        lost = queued - finals
        print(f"final message in the channel: {finals}/{queued} queued (all within {all_done_s:.1f} s); lost: {lost}")
        print(f"chat.update calls: {len(fake.calls('chat.update'))}")
        verdict = p99 < 100 and ok == args.n and finals == queued == args.n
        print("targets (p99 < 100 ms, 0 lost):", "met" if verdict else "NOT met")
        print(
            json.dumps(
                {
                    "p50_ms": round(p50, 1),
                    "p99_ms": round(p99, 1),
                    "max_ms": round(worst, 1),
                    "ok": ok,
                    "queued": queued,
                    "final": finals,
                }
            )
        )
        return 0 if verdict else 1
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
        if server is not None:
            server.shutdown()
        if sandbox is not None:
            sandbox.stdin.close()  # the sandbox process stops when its input closes
            sandbox.wait(timeout=30)
        fake.stop()


if __name__ == "__main__":
    raise SystemExit(main())
