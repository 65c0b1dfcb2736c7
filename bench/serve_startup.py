"""`python -m bot serve` start-up: from process start to the first 200 from GET /healthz.

    .venv/bin/python bench/serve_startup.py [--runs 5]

Starts the sandbox here (moto and the loopback fakes; its config from Sandbox.write_config and its
tokens in the environment), then `--runs` times: starts `python -m bot serve` on a free port of
127.0.0.1 (gunicorn, 1 worker, 8 threads), polls GET /healthz every 5 ms, and stops it (SIGTERM) once
it answers 200. The clock runs from just before the process is spawned to that first 200: interpreter,
imports, the config, the app, gunicorn's master and its forked worker. A bare interpreter
(`python -c pass`) is timed the same way for a ratio that travels between machines.

`python -m bot serve` listens on 0.0.0.0 (what a PaaS needs). So that nothing here listens beyond
loopback, the bench runs the same entry (`bot.terminal.cli.main(["serve", "--port", P])`, which is all
`bot/__main__.py` does) with the serve function's default host set to 127.0.0.1, unless the CLI
offers `--host`, which it then uses.

Target: ready within Slack's 3 s ack budget (a restarted bot must answer the first command in time).
The last line is the figures as JSON (bench/run_all.py reads it).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

HOST = "127.0.0.1"
BUDGET_S = 3.0  # Slack's ack deadline
READY_TIMEOUT_S = 60.0
POLL_S = 0.005

# `python -m bot serve --port P`, listening on loopback only (see the module docstring).
LOOPBACK_SERVE = (
    "import sys\n"
    "import bot.slack.serve\n"
    "bot.slack.serve.serve.__kwdefaults__['host'] = '127.0.0.1'\n"
    "from bot.terminal.cli import main\n"
    "sys.exit(main(['serve', '--port', sys.argv[1]]))\n"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def cli_has_host(env: dict[str, str]) -> bool:
    out = subprocess.run(
        [sys.executable, "-m", "bot", "serve", "--help"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    return "--host" in out.stdout


def serve_command(port: int, with_host: bool) -> list[str]:
    if with_host:
        return [sys.executable, "-m", "bot", "serve", "--port", str(port), "--host", HOST]
    return [sys.executable, "-c", LOOPBACK_SERVE, str(port)]


def time_to_ready(cmd: list[str], url: str, env: dict[str, str]) -> float:
    """Seconds from spawning `cmd` to its first 200 at `url`; the process is stopped afterwards."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with httpx.Client(timeout=1.0) as client:
            while True:
                try:
                    if client.get(url).status_code == 200:
                        return time.perf_counter() - started
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None:
                    err = proc.stderr.read().decode(errors="replace")[-600:] if proc.stderr else ""
                    raise SystemExit(f"`python -m bot serve` exited with {proc.returncode} before ready:\n{err}")
                if time.perf_counter() - started > READY_TIMEOUT_S:
                    raise SystemExit(f"`python -m bot serve` was not ready within {READY_TIMEOUT_S:.0f} s")
                time.sleep(POLL_S)
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # gunicorn: graceful; an idle worker stops at once
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    if proc.stderr is not None:
        proc.stderr.close()


def time_bare(env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], cwd=ROOT, env=env, check=True, timeout=60)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="fresh `serve` processes timed (default 5)")
    args = parser.parse_args()
    if not 1 <= args.runs <= 50:
        parser.error("--runs must be within 1..50")

    from integrations.sandbox.env import Sandbox, Scenario

    with Sandbox({"prod": Scenario()}) as sandbox, tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        config = sandbox.write_config(tmp, evidence_dir=str(Path(tmp) / "evidence"))
        # The sandbox put its endpoints and tokens (Slack, GitHub, AWS) in this process's environment.
        env = {**os.environ, "CUTOVER_CONFIG": str(config), "PYTHONPATH": str(ROOT)}
        env.pop("PORT", None)
        with_host = cli_has_host(env)
        bare = statistics.median(time_bare(env) for _ in range(args.runs))
        times: list[float] = []
        for _ in range(args.runs):
            port = free_port()
            times.append(time_to_ready(serve_command(port, with_host), f"http://{HOST}:{port}/healthz", env))

    p50, worst = statistics.median(times), max(times)
    how = "--host 127.0.0.1" if with_host else "the CLI's serve with its default host set to 127.0.0.1"
    print(f"`python -m bot serve` to the first 200 from GET /healthz, {args.runs} runs ({how}); sandbox config")
    print(f"{cpus_and_load()}")
    print(f"  p50 {p50:.3f} s  max {worst:.3f} s  (runs: {', '.join(f'{t:.3f}' for t in times)})")
    print(f"  bare interpreter p50 {bare:.3f} s: serve is {p50 / bare:.1f}x bare; {p50 / BUDGET_S:.0%} of the 3 s ack")
    ok = worst < BUDGET_S
    print(f"target: ready within {BUDGET_S:g} s (max): {'PASS' if ok else 'MISS'}")
    print(f"summary: ready p50 {p50:.2f} s, max {worst:.2f} s ({p50 / bare:.0f}x bare); {'PASS' if ok else 'MISS'}")
    print(
        json.dumps(
            {
                "runs": args.runs,
                "p50_s": round(p50, 3),
                "max_s": round(worst, 3),
                "bare_s": round(bare, 3),
                "ratio_bare": round(p50 / bare, 1),
                "target": "PASS" if ok else "MISS",
            }
        )
    )
    return 0 if ok else 1


def cpus_and_load() -> str:
    return f"  {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"


if __name__ == "__main__":
    raise SystemExit(main())
