"""Runs every benchmark in bench/ and prints a summary table.

    .venv/bin/python bench/run_all.py [--only ack,startup] [--quick] [--timeout 1200] [--nice -10]

The speed benches run by default; `--only faults` runs the fault matrix (a reliability run, long).
Each bench runs as its own process (`python bench/<name>.py ...`) with its output streamed as it comes;
its exit code says whether its targets were met (0) or not (1; 2 or more: it could not run). Benches
whose file does not exist are listed as absent. `--quick` passes smaller parameters (fewer runs and
rounds) for a fast look; the figures in docs/performance.md come from the defaults, with `--nice -10`
(on a machine shared with other jobs, a higher priority keeps their bursts out of the percentiles).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


@dataclass(frozen=True)
class Bench:
    name: str
    measures: str
    args: tuple[str, ...] = ()
    quick: tuple[str, ...] = ()
    pick: str = ""  # the output line to show as the verdict (default: the last line naming a target)
    default: bool = True  # False: only with --only NAME (a long run that is not a speed measurement)


BENCHES = (
    Bench("preflight", "preflight wall time / the slowest check", quick=("--runs", "1"), pick="median wall/slowest"),
    Bench("ack", "ack latency at 50 and 200 vs a bare Bolt app; RSS over 1,000 commands", quick=("--rounds", "1")),
    Bench("github_calls", "GitHub calls per evidence upload (3, 30, 300 files)"),
    Bench("startup", "CLI and Slack app start-up vs a bare interpreter", quick=("--repeat", "3"), pick="Slack app"),
    Bench("serve_startup", "`python -m bot serve` to the first 200 from /healthz", quick=("--runs", "2")),
    Bench(
        "redaction",
        "redaction time on adversarial input (linear)",
        quick=("--sizes", "10000,100000"),
        pick="redact() end to end",
    ),
    Bench("rollback", "/rollback to the lever read back false, with 50 queued", quick=("-n", "5"), pick="ms, p99"),
    Bench(
        "auto_rollback",
        "an alarm during the watch to the lever read back false",
        quick=("--runs", "5"),
        pick="runs, poll",
    ),
    Bench(
        "faults",
        "the fault matrix: every upstream x fault x command (reliability, docs/reliability.md)",
        quick=("--commands", "rollback"),
        default=False,
    ),
)


@dataclass
class Outcome:
    bench: Bench
    status: str  # met, MISSED, error (rc), timeout, absent
    seconds: float
    headline: str


def run(bench: Bench, *, quick: bool, timeout_s: float, nice: int = 0) -> Outcome:
    path = BENCH / f"{bench.name}.py"
    if not path.exists():
        return Outcome(bench, "absent", 0.0, f"{path.relative_to(ROOT)} does not exist")
    args = bench.quick if quick else bench.args
    cmd = [sys.executable, str(path), *args]
    shown = " ".join([".venv/bin/python", str(path.relative_to(ROOT)), *args])
    print(f"\n=== {bench.name}: {f'nice -n {nice} ' if nice else ''}{shown}", flush=True)
    started = time.perf_counter()
    lines: list[str] = []
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        preexec_fn=(lambda: os.nice(nice)) if nice else None,  # a priority change, before exec
    )

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            print(f"  {line}", end="", flush=True)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        rc = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        reader.join(timeout=5)
        return Outcome(bench, "timeout", time.perf_counter() - started, f"stopped after {timeout_s:.0f} s")
    reader.join(timeout=10)
    seconds = time.perf_counter() - started
    status = {0: "met"}.get(rc, "MISSED" if rc == 1 else f"error ({rc})")
    return Outcome(bench, status, seconds, headline(lines, bench.pick))


def headline(lines: list[str], pick: str = "") -> str:
    """The bench's verdict line: its `summary:` line, the line containing `pick`, else the last line naming
    a target (a JSON line is not one)."""
    text = [line.strip(" │") for line in lines if line.strip() and not line.lstrip().startswith("{")]
    for line in reversed(text):
        if line.startswith("summary:") or (pick and pick in line):
            return " ".join(line.removeprefix("summary:").replace("│", " ").split())
    for line in reversed(text):
        if "target" in line.lower() or line.startswith(("PASS", "MISS")):
            return line
    return text[-1] if text else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="comma-separated bench names (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller parameters, for a fast look")
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds per bench before it is stopped")
    parser.add_argument(
        "--nice", type=int, default=0, help="run the benches at this niceness (negative needs root: a shared machine)"
    )
    args = parser.parse_args()
    known = {b.name: b for b in BENCHES}
    wanted = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in known]
    if unknown:
        parser.error(f"unknown bench {', '.join(unknown)}; known: {', '.join(known)}")
    if not 1 <= args.timeout <= 7200:
        parser.error("--timeout must be within 1..7200 seconds")
    if not -20 <= args.nice <= 19:
        parser.error("--nice must be within -20..19")
    chosen = [known[name] for name in wanted] if wanted else [b for b in BENCHES if b.default]

    load, cpus = os.getloadavg()[0], os.cpu_count()
    outcomes = [run(bench, quick=args.quick, timeout_s=args.timeout, nice=args.nice) for bench in chosen]

    notes = (", --quick" if args.quick else "") + (f", nice {args.nice}" if args.nice else "")
    print(f"\n=== summary ({cpus} CPUs, load average {load:.2f} at start{notes})")
    width = max(len(o.bench.name) for o in outcomes)
    print(f"{'bench':<{width}}  {'result':<10} {'seconds':>8}  verdict")
    for o in outcomes:
        print(f"{o.bench.name:<{width}}  {o.status:<10} {o.seconds:8.1f}  {o.headline}")
    print(
        json.dumps({o.bench.name: {"status": o.status, "seconds": round(o.seconds, 1)} for o in outcomes}),
    )
    failed = [o for o in outcomes if o.status not in ("met", "absent")]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
