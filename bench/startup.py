"""Start-up time: how long before the bot can answer, against a bare interpreter.

    python bench/startup.py [--repeat 5]

Each figure is the median of fresh processes. Ratios are against `python -c pass`, so the numbers
travel between machines. The Slack app must start without any network call (no auth.test), and
without the charting dependency: it asserts matplotlib is not loaded (only a run that draws a chart
imports it); the last line is what importing it would cost, for comparison.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = {
    "bare interpreter": "pass",
    "CLI (--help)": (
        "import sys; sys.argv=['bot','--help']\ntry:\n"
        " import bot.terminal.cli; bot.terminal.cli.main()\nexcept SystemExit: pass"
    ),
    "preflight runner imported": "import commands.preflight",
    "Slack app built (WSGI)": (
        "import os; os.environ.update(SLACK_BOT_TOKEN='xoxb-0-bench', SLACK_SIGNING_SECRET='0'*32,"
        " SLACK_API_URL='http://127.0.0.1:9/api/', CUTOVER_CONFIG='cutover.example.toml')\n"
        "import bot.slack.wsgi; assert bot.slack.wsgi.application\n"
        "import sys; assert 'matplotlib' not in sys.modules, 'the Slack app imported matplotlib'"
    ),
    "matplotlib (a chart's import)": "import matplotlib; matplotlib.use('Agg'); import matplotlib.figure",
}


def timed(code: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    results = {name: statistics.median(timed(code) for _ in range(args.repeat)) for name, code in CASES.items()}
    bare = results["bare interpreter"]
    # A cold worker must still ack its first slash command inside Slack's 3 s.
    print(f"{'start-up':<28} {'median s':>9} {'x bare':>7} {'of 3 s ack':>10}")
    for name, seconds in results.items():
        print(f"{name:<28} {seconds:9.3f} {seconds / bare:7.1f} {seconds / 3:10.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
