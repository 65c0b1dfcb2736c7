"""Preflight wall time against the slowest single check, with the same latency on every upstream.

    python bench/preflight.py [--latency 0.3] [--runs 3]

Prints wall time, the slowest check, the sum of all checks, and the ratios wall/slowest (target
<= 1.25: the checks really run side by side) and sum/wall (how much concurrency buys).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from commands.config import load_config
from commands.execute import RunRequest, execute
from integrations.sandbox.env import Sandbox, Scenario

TARGET = 1.25


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.3, help="seconds added to every upstream answer")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-preflight-"))
    with Sandbox({"prod": Scenario()}) as sandbox:
        config = load_config(sandbox.write_config(workdir, evidence_dir=str(workdir / "evidence")))
        execute(RunRequest("preflight", "prod"), config=config)  # warm-up: imports, connection pools
        sandbox.set_latency(args.latency)
        rows = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            outcome = execute(RunRequest("preflight", "prod"), config=config)
            wall = time.perf_counter() - t0
            checks = outcome.report.checks
            slowest = max(checks, key=lambda c: c.duration_ms)
            total = sum(c.duration_ms for c in checks) / 1000
            rows.append((wall, slowest.duration_ms / 1000, slowest.name, total, outcome.report.overall_status))
    print(
        f"latency on every upstream (AWS included): {args.latency * 1000:.0f} ms, "
        f"{len(checks)} checks, {args.runs} runs"
    )
    print(
        f"{'run':>3} {'wall s':>7} {'slowest s':>9} {'slowest check':<36} {'sum s':>6} "
        f"{'wall/slowest':>12} {'sum/wall':>8}"
    )
    for i, (wall, slow, name, total, status) in enumerate(rows, 1):
        print(
            f"{i:>3} {wall:7.3f} {slow:9.3f} {name:<36} {total:6.2f} {wall / slow:12.2f} {total / wall:8.2f}  {status}"
        )
    ratio = statistics.median(w / s for w, s, *_ in rows)
    print(
        f"median wall/slowest = {ratio:.2f} (target <= {TARGET}); median sum/wall = "
        f"{statistics.median(t / w for w, _, _, t, _ in rows):.1f}"
    )
    ok = ratio <= TARGET and all(r[4] == "PASS" for r in rows)
    print("target met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
