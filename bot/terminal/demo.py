"""`python -m bot demo`: the bot's main job on the embedded sandbox, printed as a person would see it.

Starts moto and the loopback fakes with a healthy `prod` and a broken `staging`, then runs
/preflight on both, from the CLI and from Slack (signed requests to the real Bolt app served over
HTTP), with the evidence attached to a pull request on the GitHub fake. No traffic leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.panel import Panel
from rich.rule import Rule
from rich.text import Text  # Slack mrkdwn and PR Markdown contain [..] that rich would read as markup

from bot.slack.blocks import in_progress
from bot.slack.compose import build_bot
from bot.slack.wsgi import make_wsgi_app, serve_threaded
from bot.terminal.runs import EXIT_FAIL, EXIT_PASS, make_console, run_in_terminal
from commands.config import CutoverConfig, Tokens, load_config
from commands.redaction import REDACTOR, configure_process_logging
from commands.request import RunRequest, os_user
from integrations.sandbox.env import CHANNEL, ENGINEER, PR_BRANCH, PR_NUMBER, Sandbox, Scenario
from integrations.sandbox.http import Fault
from integrations.sandbox.slack_requests import signed_headers, slash_command_body

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
        configure_process_logging()  # the sandbox's tokens are in the environment now: register them
        # Staging's Shopify token was revoked: one refresh (re-read) and one retry, then a clear FAIL.
        sandbox.envs["staging"].shopify.inject("shop.json", Fault("status", 401))
        config = load_config(sandbox.write_config(workdir, evidence_dir=str(workdir / "evidence")))
        console.print(f"sandbox up in {time.monotonic() - t0:.1f} s; environments: {', '.join(config.envs)}\n")
        results = {}
        for env, extra in (("prod", ["--pr", str(PR_NUMBER)]), ("staging", [])):
            console.print(Rule(f"$ python -m bot preflight --env {env} {' '.join(extra)}".strip()))
            pr = PR_NUMBER if extra else None
            request = RunRequest("preflight", env, requested_by=os_user(), pr=pr)
            results[env] = run_in_terminal(request, config, console=console)
            console.print()
        slack_ok = _slack_steps(console, sandbox, config)
        _show_pull_request(console, sandbox)
        leaks = _leaks(sandbox, workdir)
    ok = results == {"prod": EXIT_PASS, "staging": EXIT_FAIL} and slack_ok
    verdict = "as expected" if ok else "NOT as expected"
    console.print(
        Panel(
            f"CLI: prod exit {results['prod']} (PASS), staging exit {results['staging']} (FAIL); "
            f"Slack: {'both verdicts posted' if slack_ok else 'MISSING verdicts'} — {verdict}\n"
            f"planted secrets/PII found in the channel, the PR or the evidence files: {leaks}\n"
            f"evidence bundles under {workdir / 'evidence'} (check one: python -m bot verify <folder>)\n"
            f"demo took {time.monotonic() - t0:.1f} s",
            title="demo summary",
        )
    )
    return 0 if ok and leaks == 0 else 1


def _slack_steps(console: Console, sandbox: Sandbox, config: CutoverConfig) -> bool:
    """Two signed slash commands to the real Bolt app over HTTP; print what the channel shows."""
    # As in production: each run in a worker process, so acks never wait on a run's CPU.
    app = build_bot(config, Tokens()).app
    server = serve_threaded(make_wsgi_app(app))
    url = f"http://127.0.0.1:{server.server_address[1]}/slack/events"
    try:
        with httpx.Client(timeout=5) as http:
            for text in (f"prod pr={PR_NUMBER}", "staging"):
                console.print(Rule(f"Slack: <@{ENGINEER}> types /preflight {text}"))
                t0 = time.perf_counter()
                body = slash_command_body(
                    "/preflight", text, user=ENGINEER, channel=CHANNEL, response_url="http://127.0.0.1:9/unused"
                )
                ack = http.post(url, content=body, headers=signed_headers(body, sandbox.slack_signing_secret))
                console.print(
                    f"ack {ack.status_code} in {(time.perf_counter() - t0) * 1000:.0f} ms: {ack.json()['text']}"
                )
                final = _wait_for_verdict(sandbox, count=1 + (text == "staging"))
                if final is None:
                    return False
                console.print(Panel(Text(final), title=f"#{CHANNEL}", expand=False))
    finally:
        server.shutdown()
    return True


def _wait_for_verdict(sandbox: Sandbox, *, count: int, timeout_s: float = 20.0) -> str | None:
    """The newest channel message once `count` runs have reached a verdict (not "started"/progress)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        finals = [m for m in sandbox.slack.messages(CHANNEL) if not in_progress(m.blocks)]
        if len(finals) >= count:
            return _plain(finals[-1].blocks) or finals[-1].text
        time.sleep(0.05)
    return None


def _plain(blocks: list[dict]) -> str:
    """Block Kit as a person reads it: each block's text on its own lines."""
    lines = []
    for block in blocks or []:
        texts = [block.get("text"), *block.get("fields", []), *block.get("elements", [])]
        lines += [t.get("text", "") for t in texts if isinstance(t, dict) and t.get("text")]
    return "\n".join(lines)


def _show_pull_request(console: Console, sandbox: Sandbox) -> None:
    github = sandbox.github
    comments = github.comments(PR_NUMBER)
    sha = github.head_sha(PR_BRANCH)
    statuses = ", ".join(f"{s['context']}={s['state']}" for s in github.statuses(sha))
    files = [p for p in github.files_at(PR_BRANCH) if p.startswith("evidence/")]
    console.print(Rule(f"GitHub: pull request #{PR_NUMBER} ({PR_BRANCH})"))
    console.print(f"commit statuses on the head: {statuses}")
    console.print(f"proof files on the branch: {len(files)} ({', '.join(sorted(files)[:3])})")
    for comment in comments:
        console.print(Panel(Text(comment["body"]), title="sticky PR comment", expand=False))


def _leaks(sandbox: Sandbox, workdir: Path) -> int:
    """Count planted secret/PII values found in anything the demo sent or wrote (must be 0)."""
    evidence = "\n".join(p.read_text(errors="replace") for p in (workdir / "evidence").rglob("*") if p.is_file())
    sent = [r.body.decode(errors="replace") for fake in (sandbox.slack, sandbox.github) for r in fake.requests]
    channel = [json.dumps(m.history) for m in sandbox.slack.messages(CHANNEL)]
    everything = "\n".join([evidence, *sent, *channel])
    return sum(value in everything for value in sandbox.planted()) + (REDACTOR.redact(evidence) != evidence)
