"""`python -m bot demo`: the bot's main job on the embedded sandbox, printed as a person would see it.

Starts moto and the loopback fakes with a healthy `prod` and a broken `staging`, then runs
/preflight on both, from the CLI and from Slack (signed requests to the real Bolt app), with the
evidence attached to a pull request on the GitHub fake. No traffic leaves 127.0.0.1.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.rule import Rule

from bot.cli import EXIT_FAIL, EXIT_PASS, build_parser, make_console, run_command
from commands.config import load_config
from commands.redaction import REDACTOR
from integrations.sandbox.env import Sandbox, Scenario
from integrations.sandbox.http import Fault

DEMO_ENVS = {
    "prod": Scenario(),
    "staging": Scenario(
        refresh_age_hours=11.5,
        alarm_states={"worker-error-rate": "ALARM", "openai-failures": "INSUFFICIENT_DATA"},
        flag_overrides={"RICHPANEL_OUTBOUND_ENABLED": "true"},
    ),
}


def run_demo(console: Console | None = None) -> int:
    console = console or make_console()
    t0 = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="cutover-demo-"))
    console.print(Rule("cutover bot demo: everything below runs on 127.0.0.1"))
    with Sandbox(DEMO_ENVS) as sandbox:
        # Staging's Shopify token was revoked: one refresh (re-read) and one retry, then a clear FAIL.
        sandbox.envs["staging"].shopify.inject("shop.json", Fault("status", 401))
        config = load_config(sandbox.write_config(workdir, evidence_dir=str(workdir / "evidence")))
        console.print(f"sandbox up in {time.monotonic() - t0:.1f} s; environments: {', '.join(config.envs)}\n")
        results = {}
        for env in ("prod", "staging"):
            console.print(Rule(f"$ python -m bot preflight --env {env}"))
            args = build_parser().parse_args(["preflight", "--env", env])
            results[env] = run_command(args, config, console=console)
            console.print()
        leaks = _leaks(sandbox, workdir)
    ok = results == {"prod": EXIT_PASS, "staging": EXIT_FAIL}
    verdict = "as expected" if ok else "NOT as expected"
    console.print(
        Panel(
            f"prod: exit {results['prod']} (PASS), staging: exit {results['staging']} (FAIL) — {verdict}\n"
            f"planted secrets/PII found in evidence files: {leaks}\n"
            f"evidence bundles under {workdir / 'evidence'} (check one: python -m bot verify <folder>)\n"
            f"demo took {time.monotonic() - t0:.1f} s",
            title="demo summary",
        )
    )
    return 0 if ok and leaks == 0 else 1


def _leaks(sandbox: Sandbox, workdir: Path) -> int:
    """Count planted secret/PII values found in anything the demo wrote (must be 0)."""
    written = "\n".join(p.read_text(errors="replace") for p in (workdir / "evidence").rglob("*") if p.is_file())
    return sum(value in written for value in sandbox.planted()) + (REDACTOR.redact(written) != written)
