"""Automatic rollback speed: from an alarm entering ALARM during the watch to the lever read back false.

    python bench/auto_rollback.py [--runs 20] [--poll 2] [--latency 0]

On the sandbox, each run is a real /enable-outbound (in-process, as the CLI runs it) whose watch polls
every `--poll` seconds; once the watch is polling, an alarm is put into ALARM (CloudWatch SetAlarmState
against moto) at a random moment within a poll interval, and the SSM lever is read every 10 ms until it
reads false. Between runs the alarm goes back to OK and a fresh canary is recorded (the automatic
rollback is a rollback: the phase rules want a new canary). Prints p50, p99 and max against the target
p99 <= poll_seconds + 1 s.
"""

from __future__ import annotations

import argparse
import math
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from commands.config import CutoverConfig, load_config
from commands.execute import Outcome, RunRequest, execute
from commands.report import new_run_id
from commands.state import RunRecord, RunStatus, StateStore, store_for
from integrations.sandbox.env import Sandbox, Scenario, outbound_parameter

ENV = "bench"
ALARM = f"rp-mw-{ENV}-worker-error-rate"


def write_map(sandbox: Sandbox, workdir: Path, poll_s: float) -> CutoverConfig:
    text = sandbox.config_toml(evidence_dir=str(workdir / "evidence"), state=f"sqlite:///{workdir / 'state.db'}")
    watch = f"[envs.{ENV}.watch]\nminutes = 10\npoll_seconds = {poll_s}\n"
    text = re.sub(rf"^\[envs\.{ENV}\.watch\]\n(?:[a-z_]+ = .*\n)*", watch, text, count=1, flags=re.MULTILINE)
    text = text.replace("quiet_minutes = 0.05", "quiet_minutes = 0.02")  # the rollback's own quiet window
    path = workdir / "cutover.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def fresh_canary(store: StateStore) -> None:
    now = datetime.now(UTC)
    for i, command in enumerate(("preflight", "canary")):
        run_id = new_run_id()
        at = now - timedelta(seconds=2 - i)
        store.record_run_start(RunRecord(run_id=run_id, env=ENV, command=command, started_at=at, requested_by="bench"))
        store.record_run_finish(ENV, run_id, RunStatus.PASS, finished_at=at + timedelta(milliseconds=100))


def polls_seen(store: StateStore, count: int, timeout_s: float) -> bool:
    """True once the watch has saved `count` distinct polls (it is in its loop, not before it)."""
    seen: set[datetime] = set()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for w in store.active_watches():
            if w.env == ENV and w.last_poll_at is not None:
                seen.add(w.last_poll_at)
        if len(seen) >= count:
            return True
        time.sleep(0.01)
    return False


def one_run(sandbox: Sandbox, config: CutoverConfig, poll_s: float, rng: random.Random) -> tuple[float, str]:
    store = store_for(config)
    cw, ssm = sandbox.aws.client("cloudwatch"), sandbox.aws.client("ssm")
    cw.set_alarm_state(AlarmName=ALARM, StateValue="OK", StateReason="bench: reset")
    fresh_canary(store)
    outcomes: list[Outcome] = []
    runner = threading.Thread(
        target=lambda: outcomes.append(execute(RunRequest("enable-outbound", ENV, requested_by="bench"), config=config))
    )
    runner.start()
    if not polls_seen(store, 2, timeout_s=30 + 3 * poll_s):
        runner.join()
        raise SystemExit(f"the watch never started: {outcomes[0].report.checks if outcomes else 'no outcome'}")
    time.sleep(rng.uniform(0, poll_s))  # a random moment within a poll interval
    cw.set_alarm_state(AlarmName=ALARM, StateValue="ALARM", StateReason="Threshold Crossed: [9.0 (bench)]")
    fired = time.perf_counter()
    while ssm.get_parameter(Name=outbound_parameter(ENV))["Parameter"]["Value"] != "false":
        if time.perf_counter() - fired > 10 * poll_s + 30:
            raise SystemExit("the lever never went back to false")
        time.sleep(0.01)
    elapsed = time.perf_counter() - fired
    runner.join()
    status = outcomes[0].report.overall_status if outcomes else "no outcome"
    return elapsed, status


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--poll", type=float, default=2.0, help="watch.poll_seconds")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every AWS answer")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="bench-auto-rollback-"))
    times: list[float] = []
    with Sandbox({ENV: Scenario(approval_required=(), rule_enabled=True)}) as sandbox:
        config = write_map(sandbox, workdir, args.poll)
        sandbox.set_latency(args.latency)
        for i in range(args.runs):
            elapsed, status = one_run(sandbox, config, args.poll, rng)
            times.append(elapsed)
            print(f"run {i + 1:>3}: ALARM -> lever read back false in {elapsed:6.3f} s ({status} enable-outbound)")
    target = args.poll + 1.0
    p50, p99 = statistics.median(times), percentile(times, 99)
    print(
        f"{args.runs} runs, poll {args.poll:g} s, latency {args.latency * 1000:.0f} ms on AWS: p50 {p50:.3f} s, "
        f"p99 {p99:.3f} s, max {max(times):.3f} s; target p99 <= poll + 1 s = {target:g} s "
        f"(p99 is {p99 / target:.2f} of it)"
    )
    ok = p99 <= target
    print("target met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
