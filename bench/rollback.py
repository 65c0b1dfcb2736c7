"""Rollback speed: from the `/rollback` slash command to the outbound flag read back false, with 50
preflights queued in the same app.

    .venv/bin/python bench/rollback.py [-n 20] [--queued 50]

On the sandbox (moto over HTTP and the loopback fakes, in a process of their own, as real upstreams are
elsewhere; Slack's Web API is a SlackFake here), the production Slack app (bot.slack.compose.build_bot:
each run in a forked worker process, `/rollback` on its own lane) served over HTTP by
bot.slack.wsgi.serve_threaded. Each round: the SSM flag is set true, `--queued` signed /preflight
commands are posted (the real preflight, queued behind the app's bounded run slots), then one signed
/rollback; the clock runs from just before the /rollback POST until a boto3 read of the SSM parameter
(against moto) says false. "Behind the queue" means the flag turned false only after every preflight
posted before the rollback had finished. Each round waits for the rollback's result before the next.
Target: p99 < 1 s, never behind the queue.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
import httpx  # noqa: E402

from bot.slack.blocks import in_progress  # noqa: E402
from bot.slack.compose import build_bot  # noqa: E402
from bot.slack.wsgi import make_wsgi_app, serve_threaded  # noqa: E402
from commands.config import CutoverConfig, Tokens, load_config  # noqa: E402
from commands.registry import title  # noqa: E402
from integrations.sandbox.env import (  # noqa: E402
    CHANNEL,
    ENGINEER,
    RUNNERS_GROUP,
    Sandbox,
    Scenario,
    outbound_parameter,
)
from integrations.sandbox.slack import SlackFake  # noqa: E402
from integrations.sandbox.slack_requests import signed_headers, slash_command_body  # noqa: E402

ENV = "prod"
SLACK_TOKEN = "xoxb-bench-rollback-token"
SIGNING_SECRET = "bench-rollback-signing-secret-0123456789"
TARGET_P99_S = 1.0
POLL_S = 0.002
FLAG_TIMEOUT_S = 30.0
RESULT_TIMEOUT_S = 60.0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def serve_sandbox() -> int:
    """`bench/rollback.py --sandbox-process`: the upstreams in their own process (as in production, where
    AWS is elsewhere): prints one JSON line (the map, the AWS environment), serves until stdin closes."""
    with Sandbox({ENV: Scenario(outbound_enabled=True)}) as sandbox:
        workdir = Path(tempfile.mkdtemp(prefix="bench-rollback-"))
        config = sandbox.write_config(workdir, evidence_dir=str(workdir / "evidence"))
        environ = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
        print(json.dumps({"config": str(config), "environ": environ}), flush=True)
        sys.stdin.read()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--rounds", type=int, default=20, help="rollbacks measured")
    parser.add_argument("--queued", type=int, default=50, help="preflights posted before each rollback")
    parser.add_argument("--sandbox-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sandbox_process:
        return serve_sandbox()

    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--sandbox-process"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    slack = SlackFake(token=SLACK_TOKEN, groups={RUNNERS_GROUP: [ENGINEER]}).start()
    try:
        assert child.stdout is not None
        info = json.loads(child.stdout.readline())
        os.environ.update(info["environ"])
        tokens = Tokens(slack_bot_token=SLACK_TOKEN, slack_signing_secret=SIGNING_SECRET, slack_api_url=slack.api_url)
        return measure(load_config(info["config"]), tokens, slack, args.rounds, args.queued)
    finally:
        if child.stdin is not None:
            child.stdin.close()
        child.wait(timeout=30)
        slack.stop()


def measure(config: CutoverConfig, tokens: Tokens, slack: SlackFake, rounds: int, queued_per_round: int) -> int:
    bot = build_bot(config, tokens)
    server = serve_threaded(make_wsgi_app(bot.app))
    host, port = server.server_address[:2]
    url = f"http://{host}:{port}/slack/events"
    ssm = boto3.client("ssm", region_name=config.env(ENV).aws_region)
    parameter = outbound_parameter(ENV)
    http = httpx.Client(timeout=10)

    def post(command: str, text: str) -> httpx.Response:
        body = slash_command_body(
            command, text, user=ENGINEER, channel=CHANNEL, response_url=slack.response_url(uuid.uuid4().hex[:12])
        )
        return http.post(url, content=body, headers=signed_headers(body, SIGNING_SECRET))

    def finished(command: str) -> int:
        """Runs of `command` whose channel message shows a result (a message is told by its started line)."""
        started = f"{title(command)} {ENV} started by"
        return sum(
            1
            for m in slack.messages(CHANNEL)
            if m.history and str(m.history[0].get("text", "")).startswith(started) and not in_progress(m.blocks)
        )

    latencies: list[float] = []
    behind = 0
    ahead_at_flag: list[int] = []
    queued_total = refused_total = 0
    try:
        post("/preflight", f"{ENV} dry-run")  # warm-up: the forkserver and the runners' group cache
        wait_until(lambda: finished("preflight") >= 1)
        for round_no in range(rounds):
            ssm.put_parameter(Name=parameter, Value="true", Type="String", Overwrite=True)
            for _ in range(queued_per_round):
                if post("/preflight", ENV).json().get("response_type") == "in_channel":
                    queued_total += 1
                else:
                    refused_total += 1
            rollbacks_before = finished("rollback")
            started = time.perf_counter()
            ack = post("/rollback", ENV)
            if ack.status_code != 200:
                print(f"round {round_no}: /rollback answered {ack.status_code}", file=sys.stderr)
                return 1
            while ssm.get_parameter(Name=parameter)["Parameter"]["Value"] != "false":
                if time.perf_counter() - started > FLAG_TIMEOUT_S:
                    print(f"round {round_no}: the flag never read false", file=sys.stderr)
                    return 1
                time.sleep(POLL_S)
            latencies.append(time.perf_counter() - started)
            pending = queued_total + 1 - finished("preflight")  # + the warm-up
            ahead_at_flag.append(pending)
            behind += pending <= 0
            wait_until(lambda n=rollbacks_before: finished("rollback") > n)  # its lane is free for the next round
    finally:
        http.close()
        server.shutdown()
        bot.executor.shutdown(wait=False, cancel_futures=True)  # the preflights still queued: not measured
        bot.shutdown(wait=False)

    p50, p99 = statistics.median(latencies), percentile(latencies, 99)
    print(f"rollback: slash command -> flag read back false, {len(latencies)} rounds")
    print(f"  p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms")
    print(f"  each round (ms): {' '.join(f'{x * 1000:.0f}' for x in latencies)}")
    print(
        f"  preflights posted before each rollback: {queued_per_round} ({queued_total} accepted in all, "
        f"{refused_total} refused: the app's run queue was full); preflights queued or running when the "
        f"flag turned false: min {min(ahead_at_flag)}, median {statistics.median(ahead_at_flag):.0f}"
    )
    print(f"  rollbacks behind the queue: {behind} of {len(latencies)}")
    ok = p99 < TARGET_P99_S and behind == 0
    print(f"target p99 < {TARGET_P99_S:g} s and never behind the queue: {'met' if ok else 'NOT met'}", flush=True)
    return 0 if ok else 1


def wait_until(predicate: Callable[[], bool], timeout_s: float = RESULT_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for a run's result in the channel")
        time.sleep(0.02)


if __name__ == "__main__":
    raise SystemExit(main())
