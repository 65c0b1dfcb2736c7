"""`python -m bot demo`: the whole cutover on the embedded sandbox, printed as the team would see it.

Starts the sandbox (moto's server for AWS, loopback fakes of Shopify, Richpanel, OpenAI, Slack and GitHub,
the simulated Order Status worker), builds the production Slack app (`bot.slack.compose.build_bot`: each
run in a worker process), serves it over HTTP on 127.0.0.1 and drives it ONLY with signed Slack requests,
slash commands and button clicks, through the runbook:

  /preflight prod pr=7 FAILs (a stale token-refresh marker) -> the refresh runs again -> PASS
  /canary prod pr=7: the approval; the requester's own click is refused; the manager approves; the HTTP
      target and rule-enabled "Done" clicks -> PASS: one internal ticket processed, no customer contacted
  /enable-outbound prod pr=7: the manager approves; outbound on, the watch; an alarm fires -> the run
      rolls back by itself and FAILs naming the alarm, the lever reads back false; the rule-paused click
  /cutover status prod

What a person does outside Slack (Richpanel's UI, the worker's refresh job, CloudWatch firing an alarm) the
demo does on the sandbox directly, and says so. Then it prints the channel, the pull request as a reviewer
reads it, the evidence on disk, and a summary: each step expected vs actual, planted secrets or PII found
anywhere (must be 0), the time. Exit 0 only if every step behaved as the runbook says.

`--step` pauses for Enter between steps (only on a terminal). `--keep` leaves the sandbox and the app up
and prints how to talk to it: a signed `curl` line and `python -m bot demo --send "/cutover status prod"`,
which signs with the secret the demo wrote to a file only this user can read.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
from rich.console import Console
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table
from rich.text import Text  # Slack mrkdwn and PR Markdown contain [..] that rich would read as markup

from bot.slack.approvals import APPROVE_ACTION
from bot.slack.blocks import CONFIRM_ACTION, in_progress
from bot.slack.compose import build_bot
from bot.slack.wsgi import SLACK_PATH, make_wsgi_app, serve_threaded
from commands.chart import CHART_FILE
from commands.config import CutoverConfig, Tokens, load_config
from commands.redaction import REDACTOR, configure_process_logging
from commands.state import StateStore, store_for
from integrations.sandbox.env import (
    CHANNEL,
    ENGINEER,
    MANAGER,
    PR_BRANCH,
    PR_NUMBER,
    Sandbox,
    Scenario,
    outbound_parameter,
)
from integrations.sandbox.slack import Message
from integrations.sandbox.slack_requests import block_action_body, signed_headers, slash_command_body

T = TypeVar("T")
ENV = "prod"
REFRESH_MARKER = "shopify_token_refresh_success"
ALARM_KIND = "worker-error-rate"
ALARM_REASON = "Threshold Crossed: 1 out of the last 1 datapoints [7.0] was greater than or equal to the threshold"
STALE_HOURS = 11.5
# prod: a stale refresh marker (11.5 h, the limit is 8 h); the worker has a function URL, which the map
# approves as Richpanel's HTTP target; the map's default approvals (canary and enable-outbound).
DEMO_ENVS = {ENV: Scenario(refresh_age_hours=STALE_HOURS, worker_url=True)}
# How long the worker may cache the lever: the sandbox's 0.5 s, raised so the engineer the demo plays pauses
# the rule (when the rollback starts) well before the rollback's quiet window opens, even on a loaded machine.
PROPAGATION_S = 2.5
ENDPOINT_VARIABLE = "CUTOVER_DEMO_ENDPOINT"  # where --keep writes (and --send reads) the app's URL and secret
WAIT_S = 30.0  # no single step of the runbook takes this long on the sandbox: past it, the step did not happen
HTTP_TIMEOUT_S = 5.0


class StepFailed(Exception):
    """A step did not behave as the runbook says (the reason is the message)."""


@dataclass
class StepResult:
    name: str
    expected: str
    actual: str
    ok: bool


@dataclass
class Run:
    """One run's message in the channel, and its record in the store."""

    label: str
    message: Message
    run_id: str | None = None
    status: str | None = None


@dataclass
class Driver:
    """Speaks to the app as Slack does (signed commands and clicks), and reads the sandbox as people do."""

    console: Console
    sandbox: Sandbox
    config: CutoverConfig
    url: str
    http: httpx.Client
    step_mode: bool = False
    steps: list[StepResult] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    acks: list[str] = field(default_factory=list)  # what the app answered (for the leak count)

    @property
    def secret(self) -> str:
        return self.sandbox.slack_signing_secret

    @property
    def store(self) -> StateStore:
        return store_for(self.config)

    # --- talking to the app --------------------------------------------------------------------
    def command(self, command: str, text: str, *, user: str = ENGINEER) -> dict[str, Any]:
        self.console.print(Text(f"<@{user}> types: {command} {text}", style="bold"))
        body = slash_command_body(
            command, text, user=user, channel=CHANNEL, response_url=self.sandbox.slack.response_url(_rid())
        )
        started = time.perf_counter()
        response = self.http.post(self.url, content=body, headers=signed_headers(body, self.secret))
        ms = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise StepFailed(f"{command} {text} was answered {response.status_code}, not 200")
        answer = response.json() if response.content else {}
        said = str(answer.get("text", ""))
        self.acks.append(said)
        where = "only you can see this" if answer.get("response_type") != "in_channel" else "in the channel"
        self.console.print(Text(f"  ack {response.status_code} in {ms:.0f} ms ({where}): {_first_line(said)}"))
        return answer

    def click(self, message: Message, action_id: str, value: str, *, user: str, note: str) -> None:
        self.console.print(Text(note, style="cyan"))
        body = block_action_body(
            action_id,
            value,
            user=user,
            channel=CHANNEL,
            message_ts=message.ts,
            response_url=self._response_url(),
            blocks=message.blocks,
            text=message.text or "",
        )
        response = self.http.post(self.url, content=body, headers=signed_headers(body, self.secret))
        if response.status_code != 200:
            raise StepFailed(f"the click on {action_id} was answered {response.status_code}, not 200")

    def _response_url(self) -> str:
        return self.sandbox.slack.response_url(_rid())

    # --- reading the channel ---------------------------------------------------------------------
    def wait(self, probe: Callable[[], T | None], what: str, timeout_s: float = WAIT_S) -> T:
        deadline = time.monotonic() + timeout_s
        while True:
            found = probe()
            if found:
                return found
            if time.monotonic() > deadline:
                raise StepFailed(f"no {what} within {timeout_s:g} s")
            time.sleep(0.02)

    def messages(self) -> list[Message]:
        return self.sandbox.slack.messages(CHANNEL)

    def new_run_message(self, seen: set[str]) -> Message:
        """The run message posted after `seen` (its first form is the "started" hourglass)."""

        def probe() -> Message | None:
            for m in self.messages():
                if m.ts not in seen and m.history and in_progress(m.history[0].get("blocks") or []):
                    return m
            return None

        return self.wait(probe, "run message in the channel")

    def final(self, message: Message, what: str, timeout_s: float = WAIT_S) -> Message:
        def probe() -> Message | None:
            current = next((m for m in self.messages() if m.ts == message.ts), None)
            return current if current is not None and not in_progress(current.blocks) else None

        return self.wait(probe, f"verdict of {what}", timeout_s)

    def approval_message(self, seen: set[str]) -> Message:
        def probe() -> Message | None:
            return next(
                (m for m in self.messages() if m.ts not in seen and any(_is(b, APPROVE_ACTION) for b in _buttons(m))),
                None,
            )

        return self.wait(probe, "approval message")

    def button(self, message: Message, step: str) -> tuple[Message, dict[str, Any]]:
        """The run message once it shows the "Done" button of a person-step."""

        def probe() -> tuple[Message, dict[str, Any]] | None:
            current = next((m for m in self.messages() if m.ts == message.ts), None)
            for block in current.blocks if current else []:
                if block.get("type") == "actions" and block.get("block_id") == f"confirm:{step}":
                    return current, block["elements"][0]  # type: ignore[return-value]
            return None

        return self.wait(probe, f"'Done' button for {step}")

    def ephemeral_for(self, user: str, after: int) -> dict[str, Any]:
        return self.wait(
            lambda: next((e for e in self.sandbox.slack.ephemerals()[after:] if e["user"] == user), None),
            f"private reply to {user}",
        )

    def show(self, message: Message, title: str) -> str:
        text = plain(message.blocks) or (message.text or "")
        self.console.print(Panel(Text(text), title=f"#{CHANNEL}: {title}", title_align="left", expand=False))
        return text

    def seen(self) -> set[str]:
        return {m.ts for m in self.messages()}

    # --- bookkeeping --------------------------------------------------------------------------------
    def record(self, name: str, expected: str, actual: str, ok: bool) -> None:
        self.steps.append(StepResult(name, expected, actual, ok))
        mark = Text("as expected: ", style="green") if ok else Text("NOT as expected: ", style="bold red")
        self.console.print(mark + Text(actual))

    def pause(self, upcoming: str) -> None:
        self.console.print(Rule(upcoming))
        if self.step_mode and sys.stdin.isatty():
            try:
                input("(Enter for the next step) ")
            except EOFError:
                self.step_mode = False

    def person(self, text: str) -> None:
        self.console.print(Text(f"(the demo plays {text})", style="cyan"))

    def last_run(self, command: str) -> tuple[str, str]:
        record = self.store.last_run(ENV, command)
        if record is None:
            raise StepFailed(f"no {command} run in the store")
        return record.run_id, record.status.value

    def report(self, command: str, run_id: str) -> dict[str, Any]:
        found = sorted(Path(str(self.config.evidence_dir)).glob(f"{ENV}/*-{command}-{run_id}/report.json"))
        if not found:
            raise StepFailed(f"no evidence bundle for {command} run {run_id}")
        return json.loads(found[-1].read_text(encoding="utf-8"))

    def evidence_attached(self, run_id: str) -> None:
        """The run's row is in the PR's timeline comment: its evidence is on the branch (the next approval
        binds the PR head, so nothing may still be committing when it is asked)."""
        self.wait(
            lambda: any(run_id in c["body"] for c in self.sandbox.github.comments(PR_NUMBER)),
            f"PR timeline row for run {run_id}",
        )


# --- the runbook -----------------------------------------------------------------------------------


def _preflight(d: Driver, *, expect_pass: bool, label: str) -> Run:
    seen = d.seen()
    d.command("/preflight", f"{ENV} pr={PR_NUMBER}")
    final = d.final(d.new_run_message(seen), label)
    text = d.show(final, label)
    run_id, status = d.last_run("preflight")
    run = Run(label, final, run_id, status)
    d.runs.append(run)
    checks = {c["name"]: c for c in d.report("preflight", run_id)["checks"]}
    marker = checks.get("shopify_token_refresh_last_success", {})
    if expect_pass:
        ok = status == "PASS" and f"PASS preflight {ENV}" in text
        d.record(label, "PASS: every check passes", f"{status}; {marker.get('detail', '?')}", ok)
    else:
        failing = sorted(n for n, c in checks.items() if c["status"] == "FAIL")
        ok = status == "FAIL" and failing == ["shopify_token_refresh_last_success"] and f"FAIL preflight {ENV}" in text
        d.record(label, "FAIL: only the token refresh marker (stale)", f"{status}: {', '.join(failing)} failed", ok)
    return run


def _fix_refresh(d: Driver) -> None:
    d.person("the platform engineer: the worker's Shopify token refresh runs again and logs its success line")
    env = d.sandbox.envs[ENV]
    now = datetime.now(UTC)
    stream = f"{now:%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
    logs = d.sandbox.aws.client("logs")
    logs.create_log_stream(logGroupName=env.log_group, logStreamName=stream)
    line = (
        f"[INFO]\t{now:%Y-%m-%dT%H:%M:%S.%f}Z\t{uuid.uuid4()}\t{REFRESH_MARKER} token_kind=offline expires_in_s=86399"
    )
    d.sandbox.aws.put_log_lines(env.log_group, stream, [(int(now.timestamp() * 1000), line)])
    d.console.print(Text(f"  {env.log_group}: {line.split(chr(9))[-1]}"))
    d.record("fix", "a fresh refresh-success line in the worker's logs", "written just now", True)


def _approve(d: Driver, command: str, seen: set[str], *, refuse_requester: bool) -> None:
    approval = d.approval_message(seen)
    d.show(approval, f"approval request for /{command}")
    value = next(b["value"] for b in _buttons(approval) if _is(b, APPROVE_ACTION))
    if refuse_requester:
        before = len(d.sandbox.slack.ephemerals())
        d.click(approval, APPROVE_ACTION, value, user=ENGINEER, note=f"<@{ENGINEER}> (the requester) clicks Approve")
        reply = d.ephemeral_for(ENGINEER, before)
        d.console.print(Panel(Text(reply["text"]), title=f"only <@{ENGINEER}> sees this", expand=False))
        still = d.store.get_approval(value)
        ok = "someone else must approve" in reply["text"] and still is not None and still.status == "pending"
        d.record(
            f"{command}: requester approves", "refused (privately), nothing changed", _first_line(reply["text"]), ok
        )
    d.person(f"the manager <@{MANAGER}>: clicks Approve")
    d.click(approval, APPROVE_ACTION, value, user=MANAGER, note=f"<@{MANAGER}> clicks Approve")
    decided = d.wait(
        lambda: next((m for m in d.messages() if m.ts == approval.ts and "Approved by" in m.all_text()), None),
        "'Approved by' on the approval message",
    )
    record = d.store.get_approval(value)
    ok = record is not None and record.decided_by == MANAGER
    said = next((line for line in plain(decided.blocks).splitlines() if "Approved by" in line), "?")
    d.record(f"{command}: manager approves", f"approved by <@{MANAGER}>, the run starts", said, ok)


def _canary(d: Driver) -> Run:
    env = d.sandbox.envs[ENV]
    assert env.worker is not None
    processed, contacted = len(env.worker.processed), len(env.worker.outbound)
    writes_before = len(env.richpanel.requests)
    seen = d.seen()
    d.command("/canary", f"{ENV} pr={PR_NUMBER}")
    _approve(d, "canary", seen, refuse_requester=True)
    message = d.new_run_message(seen)
    current, button = d.button(message, "http-target")
    d.person(f"<@{ENGINEER}>: checks Richpanel's HTTP target shows the approved URL, clicks Done")
    d.click(current, CONFIRM_ACTION, button["value"], user=ENGINEER, note="  Done: http-target")
    current, button = d.button(message, "rule-enabled")
    d.person(f"<@{ENGINEER}>: enables the Order Status rule in Richpanel's UI (on the sandbox), clicks Done")
    env.set_rule(enabled=True, by=ENGINEER)
    d.click(current, CONFIRM_ACTION, button["value"], user=ENGINEER, note="  Done: rule-enabled")
    final = d.final(message, "/canary")
    text = d.show(final, "/canary")
    run_id, status = d.last_run("canary")
    run = Run("canary", final, run_id, status)
    d.runs.append(run)
    checks = {c["name"]: c for c in d.report("canary", run_id)["checks"]}
    writes = [r for r in env.richpanel.requests[writes_before:] if r.method != "GET"]
    tickets = len(env.worker.processed) - processed
    customers = len(env.worker.outbound) - contacted
    contact = checks.get("no_customer_contact", {}).get("data", {}).get("customer_contacted")
    ok = (
        status == "PASS"
        and f"PASS canary {ENV}" in text
        and [(r.method, r.path) for r in writes] == [("POST", "/v1/tickets")]
        and tickets == 1
        and customers == 0
        and contact is False
    )
    actual = (
        f"{status}: {len(writes)} Richpanel write(s) (the internal ticket), {tickets} ticket processed by the worker, "
        f"{customers} customer(s) contacted"
    )
    d.record("canary", "PASS: one internal ticket, processed; no customer contacted", actual, ok)
    d.evidence_attached(run_id)
    return run


def _lever(d: Driver) -> str:
    ssm = d.sandbox.aws.client("ssm")
    return str(ssm.get_parameter(Name=outbound_parameter(ENV))["Parameter"]["Value"])


def _enable_outbound(d: Driver) -> Run:
    env = d.sandbox.envs[ENV]
    seen = d.seen()
    d.command("/enable-outbound", f"{ENV} pr={PR_NUMBER}")
    _approve(d, "enable-outbound", seen, refuse_requester=False)
    message = d.new_run_message(seen)
    d.wait(
        lambda: any(w.env == ENV for w in d.store.active_watches()) and _lever(d) == "true",
        "outbound on and the watch running",
    )
    d.console.print(Text("  outbound is on (the lever reads true in SSM) and the bot watches the alarms"))
    alarm = f"rp-mw-{ENV}-{ALARM_KIND}"
    d.person(f"CloudWatch: the alarm {alarm} goes into ALARM during the watch")
    d.sandbox.aws.client("cloudwatch").set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason=ALARM_REASON)
    d.wait(lambda: _lever(d) == "false", "automatic rollback (the lever back to false)")
    d.person(f"<@{ENGINEER}>: sees the rollback start and pauses the rule in Richpanel's UI at once")
    env.set_rule(enabled=False, by=ENGINEER)
    current, button = d.button(message, "rule-paused")
    d.click(current, CONFIRM_ACTION, button["value"], user=ENGINEER, note="  Done: rule-paused")
    final = d.final(message, "/enable-outbound")
    text = d.show(final, "/enable-outbound")
    run_id, status = d.last_run("enable-outbound")
    run = Run("enable-outbound", final, run_id, status)
    d.runs.append(run)
    checks = d.report("enable-outbound", run_id)["checks"]
    names = [c["name"] for c in checks]
    watch = next((c for c in checks if c["name"] == "watch"), {})
    back = [c for c in checks if c["name"] == "outbound_flag"][-1:]
    lever_now = _lever(d)
    ok = (
        status == "FAIL"
        and f"FAIL enable-outbound {ENV}" in text
        and alarm in text
        and watch.get("data", {}).get("alarm") == alarm
        and names[-3:] == ["outbound_flag", "rule_paused", "no_invocations"]
        and bool(back)
        and "read back false" in back[0]["detail"]
        and lever_now == "false"
    )
    actual = f"{status}: watch: {_first_line(watch.get('detail', '?'))}; lever reads {lever_now}"
    d.record("enable-outbound", f"FAIL naming {alarm}; rolled back by itself, lever reads false", actual, ok)
    confirmed = d.wait(lambda: d.store.confirmation(run_id, "rule-paused"), "rule-paused confirmation in the store")
    quiet = next((c for c in reversed(checks) if c["name"] == "no_invocations"), {})
    ok = confirmed.confirmed_by == ENGINEER and quiet.get("status") == "PASS"
    actual = f"confirmed by <@{confirmed.confirmed_by}>; no_invocations {quiet.get('status')}: {quiet.get('detail')}"
    d.record("rollback", "rule paused (confirmed), then no invocations in the quiet window", actual, ok)
    d.evidence_attached(run_id)
    return run


def _status(d: Driver) -> None:
    answer = d.command("/cutover", f"status {ENV}")
    text = str(answer.get("text", ""))
    d.console.print(Panel(Text(text), title=f"only <@{ENGINEER}> sees this: /cutover status {ENV}", expand=False))
    phase = next((line for line in text.splitlines() if line.startswith("*Phase:*")), "")
    ok = text.startswith(f"*Cutover status: {ENV}*") and "roll" in phase.lower()
    d.record("status", "the phase (rolled back), the last runs, the audit trail", phase.replace("*", ""), ok)


RUNBOOK: list[tuple[str, Callable[[Driver], Any]]] = [
    ("1. /preflight with a stale token-refresh marker", lambda d: _preflight(d, expect_pass=False, label="preflight")),
    ("2. the refresh job runs again", _fix_refresh),
    ("3. /preflight again", lambda d: _preflight(d, expect_pass=True, label="preflight again")),
    ("4. /canary: approval, person-steps, one internal ticket", _canary),
    ("5. /enable-outbound: approval, the watch, an alarm, the automatic rollback", _enable_outbound),
    ("6. /cutover status", _status),
]


# --- the demo --------------------------------------------------------------------------------------


def run_demo(console: Console | None = None, *, step: bool = False, keep: bool = False) -> int:
    console = console or Console(record=True, width=None if sys.stdout.isatty() else 120)
    t0 = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="cutover-demo-"))
    evidence = workdir / "evidence"
    console.print(Rule("cutover bot demo: the whole cutover of prod, everything on 127.0.0.1"))
    with Sandbox(DEMO_ENVS) as sandbox:
        configure_process_logging()  # the sandbox's tokens are in the environment now: register them
        config = load_config(_write_map(sandbox, workdir, evidence))
        console.print(f"sandbox up in {time.monotonic() - t0:.1f} s: moto (AWS), Shopify, Richpanel, OpenAI, Slack, ")
        console.print(f"GitHub (PR #{PR_NUMBER} on {PR_BRANCH}) and the simulated Order Status worker")
        console.print(Text(_short_waits(config)))
        # Bolt warns that the app's client carries no token: by design (`authorize=` supplies it per request).
        logging.getLogger("slack_bolt.App").setLevel(logging.ERROR)
        bot = build_bot(config, Tokens(), evidence_retry_delays_s=(0.2, 0.5, 1.0))
        server = serve_threaded(make_wsgi_app(bot.app))
        url = f"http://127.0.0.1:{server.server_address[1]}{SLACK_PATH}"
        console.print(Text(f"the production Slack app (worker processes, the real Bolt listeners) serves {url}"))
        console.print(Text(f"#{CHANNEL}: <@{ENGINEER}> is the engineer (a runner), <@{MANAGER}> the manager\n"))
        driver = Driver(console, sandbox, config, url, httpx.Client(timeout=HTTP_TIMEOUT_S), step_mode=step)
        try:
            failure = _run_runbook(driver)
            _show_channel(driver)
            _show_pull_request(console, sandbox, evidence)
            _show_evidence(console, evidence)
            leaks = _leaks(sandbox, evidence, driver, console)
            ok = failure is None and all(s.ok for s in driver.steps) and leaks == 0
            _summary(console, driver, failure, leaks, ok, time.monotonic() - t0, evidence)
            if keep:
                _keep(console, driver, workdir)
        finally:
            driver.http.close()
            server.shutdown()
            server.server_close()
            bot.shutdown(wait=False)
    return 0 if ok else 1


def _run_runbook(d: Driver) -> str | None:
    for title, step in RUNBOOK:
        d.pause(title)
        try:
            step(d)
        except StepFailed as exc:
            d.record(title, "as the runbook says", f"stopped: {exc}", False)
            return f"{title}: {exc}"
        except Exception as exc:  # an upstream or the app broke: say which step, never a traceback
            said = REDACTOR.redact(f"{exc.__class__.__name__}: {exc}")[:500]
            d.record(title, "as the runbook says", f"stopped by an error: {said}", False)
            return f"{title}: {said}"
    return None


def _write_map(sandbox: Sandbox, workdir: Path, evidence: Path) -> Path:
    """The sandbox's map (state and evidence in `workdir`), with prod's lever propagation set for the demo."""
    path = sandbox.write_config(workdir, evidence_dir=str(evidence))
    text = path.read_text(encoding="utf-8")
    old = f'ssm_parameter = "{outbound_parameter(ENV)}", propagation_seconds = 0.5'
    if text.count(old) != 1:
        raise RuntimeError(f"the sandbox's map has no line {old!r} to adjust")
    new = f'ssm_parameter = "{outbound_parameter(ENV)}", propagation_seconds = {PROPAGATION_S}'
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


def _short_waits(config: CutoverConfig) -> str:
    env = config.env(ENV)
    return (
        "the cutover's waits are configured short on the sandbox (production defaults in brackets): "
        f"canary processed-wait {env.canary.timeout_minutes:g} min [10], "
        f"confirmations {env.canary.confirm_timeout_minutes:g} min [15], "
        f"watch {env.watch.minutes:g} min polled every {env.watch.poll_seconds:g} s [15 min, 10 s], "
        f"rollback quiet window {env.rollback.quiet_minutes:g} min [5], approvals expire after "
        f"{env.approval_ttl_minutes:g} min [30], lever propagation {env.outbound_flag.propagation_seconds:g} s [300]"
    )


# --- what people see afterwards -------------------------------------------------------------------


def _show_channel(d: Driver) -> None:
    d.console.print(Rule(f"the channel #{CHANNEL}, top to bottom (each message as it stands now)"))
    labels = {r.message.ts: r.label for r in d.runs}
    for m in d.messages():
        first = _first_line(plain(m.blocks) or (m.text or ""))
        label = labels.get(m.ts, "approval" if "Approved by" in m.all_text() else "message")
        d.console.print(Text(f"[{label}] {first}"))
    for e in d.sandbox.slack.ephemerals():
        d.console.print(Text(f"[private to <@{e['user']}>] {_first_line(e['text'])}"))
    for f in d.sandbox.slack.files(CHANNEL):
        d.console.print(Text(f"[file in a run's thread] {f.filename} ({f.length} bytes): {f.title or ''}"))


def _show_pull_request(console: Console, sandbox: Sandbox, evidence: Path) -> None:
    github = sandbox.github
    console.print(Rule(f"GitHub: pull request #{PR_NUMBER} ({PR_BRANCH}) as a reviewer reads it"))
    comments = github.comments(PR_NUMBER)
    for comment in comments:  # the timeline, in full: the phases, newest first, with evidence and charts
        if comment["body"].startswith(f"<!-- cutover:{ENV}:timeline -->"):
            console.print(Panel(Text(comment["body"]), title="the bot's timeline comment", expand=False))
    console.print("and one sticky comment per command, each edited in place (its newest verdict):")
    for comment in comments:
        if not comment["body"].startswith(f"<!-- cutover:{ENV}:timeline -->"):
            lines = [line for line in comment["body"].splitlines() if line.startswith(("## ", "### "))]
            console.print(Text("  " + " · ".join(line.lstrip("# ") for line in lines[:2])))
    table = Table(title="commit statuses (on the commit each run checked)", expand=False)
    for column in ("commit", "context", "state", "description"):
        table.add_column(column, overflow="fold")
    for commit in reversed(github.commits_on(PR_BRANCH)):
        for s in github.statuses(commit["sha"]):
            table.add_row(commit["sha"][:7], s["context"], s["state"], Text(s.get("description") or ""))
    console.print(table)
    table = Table(title="Deployments (one per cutover phase)", expand=False)
    for column in ("task", "environment", "commit", "statuses, oldest first", "log_url"):
        table.add_column(column, overflow="fold")
    for dep in github.deployments():
        states = " -> ".join(s["state"] for s in dep["statuses"])
        log_url = next((s.get("log_url") for s in reversed(dep["statuses"]) if s.get("log_url")), "")
        table.add_row(dep["task"], dep["environment"], dep["sha"][:7], states, log_url or "")
    console.print(table)
    files = sorted(p for p in github.files_at(PR_BRANCH) if p.startswith("evidence/"))
    folders: dict[str, list[str]] = {}
    for path in files:
        folder, _, name = path.rpartition("/")
        folders.setdefault(folder, []).append(name)
    console.print(f"committed on {PR_BRANCH}: {len(files)} files under evidence/")
    for folder, names in folders.items():
        console.print(Text(f"  {folder}/  {', '.join(names)}"))
    charts = [p for p in files if p.endswith(f"/{CHART_FILE}")]
    local = sorted(evidence.rglob(CHART_FILE))
    console.print(Text(f"charts (invocations and errors around each phase): {len(charts)} on the branch"))
    for path in local:
        console.print(Text(f"  open one: {path}"))


def _show_evidence(console: Console, evidence: Path) -> None:
    console.print(Rule("the evidence on disk"))
    bundles = sorted(p.parent for p in evidence.rglob("manifest.json"))
    console.print(Text(f"{evidence}: {len(bundles)} bundles (report.json, report.md, manifest.json, chart.png)"))
    for bundle in bundles:
        console.print(Text(f"  {bundle.relative_to(evidence)}/  {', '.join(sorted(p.name for p in bundle.iterdir()))}"))
    if bundles:
        console.print(Text(f"check one against its manifest: python -m bot verify {bundles[-1]}"))


def _leaks(sandbox: Sandbox, evidence: Path, d: Driver, console: Console) -> int:
    """Planted secret/PII values found in anything the demo sent, wrote or printed (must be 0)."""
    files = [p.read_bytes().decode("utf-8", "replace") for p in evidence.rglob("*") if p.is_file()]
    sent = [r.body.decode("utf-8", "replace") for fake in (sandbox.slack, sandbox.github) for r in fake.requests]
    channel = [json.dumps(v) for m in sandbox.slack.messages() for v in m.history]
    private = [json.dumps(e) for e in sandbox.slack.ephemerals()] + [json.dumps(r) for r in sandbox.slack.responses()]
    pr = [c["body"] for c in sandbox.github.comments(PR_NUMBER)]
    printed = [console.export_text(clear=False)] if console.record else []
    everything = "\n".join([*files, *sent, *channel, *private, *pr, *d.acks, *printed])
    texts = "\n".join(p.read_text("utf-8", "replace") for p in evidence.rglob("*") if p.suffix in (".json", ".md"))
    return sum(value in everything for value in sandbox.planted()) + (REDACTOR.redact(texts) != texts)


def _summary(
    console: Console, d: Driver, failure: str | None, leaks: int, ok: bool, seconds: float, evidence: Path
) -> None:
    table = Table(expand=False, show_lines=False)
    for column in ("step", "expected", "actual", ""):
        table.add_column(column, overflow="fold")
    for s in d.steps:
        table.add_row(
            s.name, s.expected, Text(s.actual), Text("ok" if s.ok else "NOT OK", style="green" if s.ok else "bold red")
        )
    console.print(Rule("demo summary"))
    console.print(table)
    verdict = "every step behaved as the runbook says" if ok else "NOT every step behaved as the runbook says"
    lines = [
        verdict + (f" (stopped at {failure})" if failure else ""),
        f"planted secrets/PII found in the channel, the PR, the evidence, the requests or this output: {leaks}",
        f"evidence bundles under {evidence}",
        f"demo took {seconds:.1f} s (the sandbox's waits configured short)",
    ]
    console.print(Panel(Text("\n".join(lines)), title="result", style="green" if ok else "red", expand=False))


# --- --keep and --send -----------------------------------------------------------------------------


def endpoint_file() -> Path:
    return Path(os.environ.get(ENDPOINT_VARIABLE) or Path(tempfile.gettempdir()) / "cutover-demo-endpoint.json")


def _keep(console: Console, d: Driver, workdir: Path) -> None:
    path = endpoint_file()
    info = {"url": d.url, "signing_secret": d.secret, "channel": CHANNEL, "response_url": d._response_url()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(info, out)
    os.chmod(path, 0o600)
    body = slash_command_body(
        "/cutover", f"status {ENV}", user=ENGINEER, channel=CHANNEL, response_url=info["response_url"]
    )
    headers = signed_headers(body, d.secret)
    curl = (
        f"curl -s {d.url} -H 'Content-Type: application/x-www-form-urlencoded' "
        f"-H 'X-Slack-Request-Timestamp: {headers['X-Slack-Request-Timestamp']}' "
        f"-H 'X-Slack-Signature: {headers['X-Slack-Signature']}' --data '{body}'"
    )
    console.print(Rule("--keep: the sandbox and the app stay up until Ctrl-C"))
    alarm = f"rp-mw-{ENV}-{ALARM_KIND}"
    d.sandbox.aws.client("cloudwatch").set_alarm_state(AlarmName=alarm, StateValue="OK", StateReason="recovered")
    d.person(f"CloudWatch: {alarm} is back to OK, so the cutover can be run again")
    console.print(Text(f"the app: {d.url} (its signing secret and URL are in {path}, readable by you only)"))
    console.print(Text("a signed /cutover status prod, valid for 5 minutes (Slack's replay window):"))
    console.print(Text(curl), soft_wrap=True)
    console.print(
        Text('any command, signed for you:  python -m bot demo --send "/preflight prod pr=7" [--as U0MANAGER1]')
    )
    console.print(Text("new channel messages and private replies are printed here as they arrive"))
    shown = {m.ts: _version(m) for m in d.messages()}
    private = len(d.sandbox.slack.ephemerals())
    console.print(Text("ready"))
    sys.stdout.flush()
    previous = signal.signal(signal.SIGTERM, _interrupt)  # `kill PID` stops it as cleanly as Ctrl-C
    try:
        while True:
            time.sleep(0.2)
            for m in d.messages():
                if shown.get(m.ts) != _version(m) and not in_progress(m.blocks):
                    shown[m.ts] = _version(m)
                    d.show(m, "new or edited")
            replies = d.sandbox.slack.ephemerals()
            for e in replies[private:]:
                console.print(Panel(Text(e["text"]), title=f"only <@{e['user']}> sees this", expand=False))
            private = len(replies)
            sys.stdout.flush()
    except KeyboardInterrupt:
        console.print(Text("stopping the app and the sandbox"))
    finally:
        signal.signal(signal.SIGTERM, previous)
        path.unlink(missing_ok=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _version(m: Message) -> int:
    return len(m.history)


def send(text: str, *, user: str = ENGINEER) -> int:
    """`python -m bot demo --send "/cutover status prod"`: one signed command to a demo left up by --keep."""
    path = endpoint_file()
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        url, secret = str(info["url"]), str(info["signing_secret"])
    except (OSError, ValueError, KeyError, TypeError):
        print(
            f"error: no running demo found ({path} missing or unreadable): start one with `python -m bot demo --keep`",
            file=sys.stderr,
        )
        return 2
    words = text.split(maxsplit=1)
    if not words or not re.fullmatch(r"/[a-z][a-z-]{0,30}", words[0]):
        print('error: --send takes a slash command and its text, e.g. --send "/preflight prod pr=7"', file=sys.stderr)
        return 2
    command, rest = words[0], words[1] if len(words) > 1 else ""
    body = slash_command_body(
        command,
        rest,
        user=user,
        channel=str(info.get("channel") or CHANNEL),
        response_url=str(info.get("response_url") or "http://127.0.0.1:9/unused"),
    )
    try:
        response = httpx.post(url, content=body, headers=signed_headers(body, secret), timeout=HTTP_TIMEOUT_S)
    except httpx.HTTPError as exc:
        print(
            f"error: the demo app at {url} did not answer ({exc.__class__.__name__}): is it still running?",
            file=sys.stderr,
        )
        return 2
    try:
        answer = response.json().get("text", "")
    except ValueError:
        answer = response.text
    print(f"{response.status_code}: {REDACTOR.redact(str(answer))}")
    print("(the run's messages appear in the demo's terminal)")
    return 0 if response.status_code == 200 else 1


# --- helpers -----------------------------------------------------------------------------------------


def plain(blocks: list[dict[str, Any]]) -> str:
    """Block Kit as a person reads it: each block's text on its own lines (buttons as [label])."""
    lines = []
    for block in blocks or []:
        if block.get("type") == "actions":
            labels = [e.get("text", {}).get("text", "") for e in block.get("elements", []) if isinstance(e, dict)]
            lines.append("  ".join(f"[{label}]" for label in labels if label))
            continue
        texts = [block.get("text"), *block.get("fields", []), *block.get("elements", [])]
        lines += [t.get("text", "") for t in texts if isinstance(t, dict) and t.get("text")]
    return "\n".join(lines)


def _buttons(message: Message) -> list[dict[str, Any]]:
    return [e for b in message.blocks if b.get("type") == "actions" for e in b.get("elements", [])]


def _is(button: dict[str, Any], action_id: str) -> bool:
    return button.get("action_id") == action_id


def _first_line(text: str) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def _rid() -> str:
    return secrets.token_hex(4)
