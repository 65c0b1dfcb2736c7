"""The fault matrix: every outside system x every fault the sandbox injects x every cutover command.

Each cell drives the real command through the real Slack app (signed slash commands over HTTP to
bot.slack's Bolt app, runs by commands.execute) on the sandbox: moto for AWS behind a per-service fault
middleware (integrations/sandbox/aws_faults.py), loopback fakes for Shopify, Richpanel, OpenAI, Slack and
GitHub. The canary's person-steps are recorded up front (as the CLI's --confirm does). A cell records:
the verdict, the step that failed and its reason, the wall time against the command's bound, whether the
channel got the result, where the evidence went (attached, queued in the outbox, local), whether the run
was fail-closed, and any traceback logged.

    .venv/bin/python bench/faults.py                  # the full cross product (12 x 7 x 4 cells)
    .venv/bin/python bench/faults.py --commands rollback --systems ssm,sts

tests/test_fault_matrix.py runs a representative subset of the same cells with the same checks.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from commands.config import CutoverConfig, Tokens, load_config  # noqa: E402
from commands.execute import execute  # noqa: E402
from commands.outbox import Outbox  # noqa: E402
from commands.publish import GitHubPublisher  # noqa: E402
from commands.redaction import configure_process_logging  # noqa: E402
from commands.report import Report, new_run_id  # noqa: E402
from commands.state import RunRecord, RunStatus, store_for  # noqa: E402
from commands.state.dynamodb import DynamoStore  # noqa: E402
from integrations.github import GitHubEvidence  # noqa: E402
from integrations.sandbox.aws_faults import AwsFaults, install  # noqa: E402
from integrations.sandbox.env import ENGINEER, PR_NUMBER, REPO, Sandbox, Scenario, outbound_parameter  # noqa: E402
from integrations.sandbox.http import Fault  # noqa: E402

AWS_SYSTEMS = ("sts", "secretsmanager", "lambda", "logs", "cloudwatch", "ssm", "dynamodb")
HTTP_SYSTEMS = ("shopify", "richpanel", "openai", "slack", "github")
SYSTEMS = AWS_SYSTEMS + HTTP_SYSTEMS
FAULTS = ("timeout", "401", "403", "429", "500", "malformed", "drop")
COMMANDS = ("preflight", "canary", "enable-outbound", "rollback")
LEVER_SYSTEMS = ("ssm",)  # the rollback's own lever (the sandbox's envs use the SSM form)
DELIVERY = ("slack", "github")  # outside systems that carry the result, never decide it
# Calls that decide nothing, so a PASS under their fault is right: the canary reads CloudWatch only for its
# evidence chart (chart.png, left out with a warning); enable-outbound reads the worker's logs only to end the
# propagation wait early (on a fault it waits the whole propagation_seconds).
NOT_DECISIVE = {("canary", "cloudwatch"), ("enable-outbound", "logs")}

HTTP_TIMEOUT_S = 1.0  # the map's http_timeout_s for the matrix (AWS read timeout and the HTTP clients')
# A bound per command on the sandbox's short waits: a cell past it did not "finish within its bound".
BOUND_S = {"preflight": 30.0, "canary": 60.0, "enable-outbound": 60.0, "rollback": 45.0}
ENVS = {
    "preflight": "fm-preflight",
    "canary": "fm-canary",
    "enable-outbound": "fm-enable",
    "rollback": "fm-rollback",
}
DYNAMO_TABLE = "cutover-fault-matrix"
# Words a person reads in a failed step's reason: what broke, never a traceback.
READABLE = (
    "401",
    "403",
    "429",
    "500",
    "access denied",
    "credentials",
    "throttled",
    "did not answer",
    "no answer",
    "could not be read",
    "malformed",
    "cannot reach",
    "connection",
    "refused",
    "unavailable",
    "not json",
    "invalid",
    "timed out",
)


@dataclass(frozen=True)
class Cell:
    system: str
    fault: str
    command: str

    @property
    def id(self) -> str:
        return f"{self.command}-{self.system}-{self.fault}"


@dataclass
class CellResult:
    cell: Cell
    seconds: float
    bound_s: float
    verdict: str  # PASS | FAIL | REFUSED | NONE (no result)
    failed_steps: list[str]
    warned_steps: list[str]
    reasons: dict[str, str]
    hits: int  # requests the fault answered: 0 means the command never called the system
    channel: str  # the final message's text ("" when none arrived)
    evidence: str  # attached | queued | local | none
    tracebacks: list[str]
    lever: str | None = None  # the lever after the run (rollback)
    flag_step: str | None = None  # the rollback's outbound_flag status
    problems: list[str] = field(default_factory=list)

    @property
    def affected(self) -> bool:
        return self.hits > 0

    def row(self) -> str:
        step = ",".join(self.failed_steps) or "-"
        mark = "n/a" if not self.affected else "ok" if not self.problems else "BAD"
        return (
            f"| {self.cell.system} | {self.cell.fault} | {self.cell.command} | {self.verdict} | {step} | "
            f"{self.seconds:.1f}/{self.bound_s:.0f} s | {self.evidence} | {mark} |"
        )


def scenarios() -> dict[str, Scenario]:
    return {
        "fm-preflight": Scenario(approval_required=()),
        "fm-canary": Scenario(approval_required=(), worker_url=True),
        "fm-enable": Scenario(approval_required=()),
        "fm-rollback": Scenario(approval_required=(), outbound_enabled=True),
    }


def add_envs(sandbox: Sandbox) -> None:
    for name, scenario in scenarios().items():
        if name not in sandbox.envs:
            sandbox.add_env(name, scenario)


def write_map(sandbox: Sandbox, directory: Path, *, dynamodb: bool = False) -> Path:
    """The sandbox's map for the matrix: short timeouts, short waits; state in SQLite or DynamoDB (moto)."""
    state = (
        f"dynamodb://{DYNAMO_TABLE}?region=us-east-2" if dynamodb else f"sqlite:///{(directory / 'state.db').resolve()}"
    )
    text = sandbox.config_toml(evidence_dir=str(directory / "evidence"), state=state)
    text = text.replace("http_timeout_s = 2", f"http_timeout_s = {HTTP_TIMEOUT_S:g}")
    text = text.replace("minutes = 0.1\npoll_seconds = 0.5", "minutes = 0.05\npoll_seconds = 0.5")
    text = text.replace("quiet_minutes = 0.05", "quiet_minutes = 0.0166")
    text = text.replace("timeout_minutes = 0.25", "timeout_minutes = 0.15")
    path = directory / "cutover.sandbox.toml"
    path.write_text(text, encoding="utf-8")
    if dynamodb:
        store = store_for(load_config(path))
        assert isinstance(store, DynamoStore)
        store.create_table_if_missing()
    return path


def fault_of(name: str, *, message: str = "") -> Fault:
    body = {"errors": message} if message else None
    if name == "timeout":
        return Fault("hang", seconds=HTTP_TIMEOUT_S * 2 + 0.5)
    if name == "malformed":
        return Fault("malformed")
    if name == "drop":
        return Fault("drop")
    status = int(name)
    return Fault("status", status, retry_after=1 if status == 429 else None, body=body)


def aws_fault_of(name: str, *, message: str = "") -> Fault:
    fault = fault_of(name, message=message)
    if fault.kind == "hang":  # moto answers after the client's read timeout: every attempt times out
        return Fault("latency", seconds=HTTP_TIMEOUT_S + 0.3)
    if fault.kind == "status":
        return Fault("status", fault.status, retry_after=fault.retry_after, body=message or None)
    return fault


class _Captured(logging.Handler):
    """Every record with a traceback, and every ERROR, logged while a cell runs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._guard:
            self.records.append(record)

    def tracebacks(self) -> list[str]:
        with self._guard:
            found = [r for r in self.records if r.exc_info]
        return [f"{r.name}: {r.getMessage()}: {''.join(traceback.format_exception(*r.exc_info))[-600:]}" for r in found]

    def text(self) -> str:
        with self._guard:
            return "\n".join(self.format(r) for r in self.records)


class Matrix:
    """The sandbox, two maps (SQLite and DynamoDB state), one served Slack app per map."""

    def __init__(self, sandbox: Sandbox, directory: Path) -> None:
        self.sandbox = sandbox
        self.directory = directory
        add_envs(sandbox)
        self.faults: AwsFaults = install(sandbox.aws, access_key=sandbox.bot_access_key_id)
        self.configs: dict[bool, CutoverConfig] = {}
        self._apps: dict[bool, Any] = {}
        self._stack: list[Any] = []

    def config(self, dynamodb: bool) -> CutoverConfig:
        if dynamodb not in self.configs:
            folder = self.directory / ("dynamodb" if dynamodb else "sqlite")
            folder.mkdir(parents=True, exist_ok=True)
            self.configs[dynamodb] = load_config(write_map(self.sandbox, folder, dynamodb=dynamodb))
        return self.configs[dynamodb]

    def publisher(self, config: CutoverConfig) -> GitHubPublisher:
        sink = GitHubEvidence(repo=REPO, token=self.sandbox.github_token, base_url=self.sandbox.github.url)
        outbox = Outbox(Path(config.evidence_dir) / ".outbox")
        return GitHubPublisher(
            sink, outbox, evidence_dir="evidence", attempts=1, wait_s=0.01, store_factory=lambda: store_for(config)
        )

    @contextmanager
    def app(self, dynamodb: bool) -> Iterator[Any]:
        from tests.slack_support import served_bot

        config = self.config(dynamodb)

        def runner(request: Any, **kwargs: Any) -> Any:
            if request.command == "canary":  # the person-steps, confirmed up front as the CLI's --confirm does
                request = dataclasses.replace(request, confirmations=("http-target", "rule-enabled"))
            return execute(request, **kwargs)

        with served_bot(
            runner,
            config=config,
            fake=self.sandbox.slack,
            tokens=Tokens(),
            bot_kwargs={
                "publisher_factory": lambda: self.publisher(config),
                "evidence_retry_delays_s": (),  # no follow-up retry: "queued" stays queued, nothing posts later
            },
        ) as harness:
            yield harness

    # --- one cell ---------------------------------------------------------------------------------
    def prepare(self, cell: Cell, config: CutoverConfig) -> None:
        env_name = ENVS[cell.command]
        env = self.sandbox.envs[env_name]
        store = store_for(config)
        ssm = self.sandbox.aws.client("ssm")
        lever_value = "true" if cell.command == "rollback" else "false"
        ssm.put_parameter(Name=outbound_parameter(env_name), Value=lever_value, Type="String", Overwrite=True)
        now = datetime.now(UTC)
        needs = {"canary": ("preflight",), "enable-outbound": ("preflight", "canary")}.get(cell.command, ())
        for i, command in enumerate(needs):
            at = now - timedelta(seconds=len(needs) - i)
            run_id = new_run_id()
            store.record_run_start(
                RunRecord(run_id=run_id, env=env_name, command=command, started_at=at, requested_by=ENGINEER)
            )
            store.record_run_finish(env_name, run_id, RunStatus.PASS, finished_at=at + timedelta(milliseconds=500))
        assert env.worker is not None
        if cell.command == "canary":
            env.set_rule(enabled=True, by=ENGINEER)  # the person enabled the rule (and confirms it up front)
        else:
            env.set_rule(enabled=False, by="fault-matrix")
            env.worker.wait_idle(5)
        if cell.command == "rollback":
            env.worker.invoke()  # the last invocation before the rollback: the quiet window's positive control

    def inject(self, cell: Cell, message: str) -> None:
        env = self.sandbox.envs[ENVS[cell.command]]
        if cell.system in AWS_SYSTEMS:
            self.faults.inject(cell.system, aws_fault_of(cell.fault, message=message))
        elif cell.system == "slack":
            self.sandbox.slack.inject(r"/api/chat\.", fault_of(cell.fault, message=message))
        elif cell.system == "github":
            self.sandbox.github.inject("/repos/", fault_of(cell.fault, message=message))
        else:
            getattr(env, cell.system).inject(".", fault_of(cell.fault, message=message))

    def clear(self, cell: Cell) -> None:
        self.faults.clear()
        self.sandbox.slack.clear_faults()
        self.sandbox.github.clear_faults()
        for fake in self.sandbox.envs[ENVS[cell.command]].fakes:
            fake.clear_faults()

    def _settle(self, config: CutoverConfig, env: str, command: str, timeout_s: float) -> None:
        store = store_for(config)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                running = [r for r in store.runs(env, limit=5) if r.status == RunStatus.RUNNING]
                if not running and store.lock_holder(env) is None:
                    return
            except Exception:
                pass
            time.sleep(0.1)

    def hits(self, cell: Cell, before: dict[str, int]) -> int:
        if cell.system in AWS_SYSTEMS:
            return sum(self.faults.hits.values())
        fake = self._fake(cell)
        return len(fake.requests) - before.get("requests", 0)

    def _fake(self, cell: Cell) -> Any:
        if cell.system == "slack":
            return self.sandbox.slack
        if cell.system == "github":
            return self.sandbox.github
        return getattr(self.sandbox.envs[ENVS[cell.command]], cell.system)

    def run(self, cell: Cell, harness: Any, config: CutoverConfig) -> CellResult:
        env_name = ENVS[cell.command]
        env = self.sandbox.envs[env_name]
        secret = env.secrets["openai_api_key"]
        message = f"upstream echo: customer {env.pii[0]} phone {env.pii[1]} key {secret}"
        self.prepare(cell, config)
        evidence_root = Path(config.evidence_dir) / env_name
        before_reports = set(evidence_root.rglob("report.json")) if evidence_root.exists() else set()
        outbox_before = {
            json.dumps(j, sort_keys=True, default=str)[:200]
            for j in Outbox(Path(config.evidence_dir) / ".outbox").pending()
        }
        fake = None if cell.system in AWS_SYSTEMS else self._fake(cell)
        before = {"requests": len(fake.requests) if fake is not None else 0}
        finals_before = _final_count(harness)
        captured = _Captured()
        root = logging.getLogger()
        root.addHandler(captured)
        configure_process_logging()  # as every process entry does: the redacting filter on every handler
        self.faults.hits.clear()
        self.inject(cell, message)
        started = time.monotonic()
        try:
            ack = harness.command(f"/{cell.command}", f"{env_name} pr={PR_NUMBER}", user=ENGINEER)
            ack_text = ack.text
            refused_at_ack = "Nothing was run" in ack_text  # the gate said no before anything was queued
            text = (
                ""
                if refused_at_ack
                else _wait_final(harness, finals_before, BOUND_S[cell.command] * 1.5, cell.command, env_name)
            )
            seconds = time.monotonic() - started
            hits = self.hits(cell, before)
        finally:
            self.clear(cell)
            root.removeHandler(captured)
        if not refused_at_ack:  # the run is over (recorded, lock freed) before the next cell starts
            self._settle(config, env_name, cell.command, BOUND_S[cell.command])
        if cell.command == "canary":
            env.set_rule(enabled=False, by="fault-matrix")
        report = _new_report(evidence_root, before_reports)
        outbox_after = {
            json.dumps(j, sort_keys=True, default=str)[:200]
            for j in Outbox(Path(config.evidence_dir) / ".outbox").pending()
        }
        evidence = _evidence_state(text, report, outbox_after - outbox_before)
        lever = self.sandbox.aws.client("ssm").get_parameter(Name=outbound_parameter(env_name))["Parameter"]["Value"]
        result = CellResult(
            cell=cell,
            seconds=seconds,
            bound_s=BOUND_S[cell.command],
            verdict=(report.overall_status if report else ("REFUSED" if _refused(ack_text, text) else "NONE")),
            failed_steps=[c.name for c in report.checks if c.status == "FAIL"] if report else [],
            warned_steps=[c.name for c in report.checks if c.status == "WARN"] if report else [],
            reasons={c.name: c.detail for c in report.checks if c.status == "FAIL"} if report else {},
            hits=hits,
            channel=text or ack_text,
            evidence=evidence,
            tracebacks=captured.tracebacks(),
            lever=lever,
            flag_step=next((c.status for c in report.checks if c.name == "outbound_flag"), None) if report else None,
        )
        planted = self.sandbox.planted()
        exits = {"channel": text, "ack": ack_text, "logs": captured.text()}
        exits.update({f"proof file {i}": t for i, t in enumerate(_bundle_texts(report, evidence_root))})
        exits["slack requests"] = "\n".join(
            r.body.decode("utf-8", "replace") for r in self.sandbox.slack.requests[-200:]
        )
        exits["github requests"] = "\n".join(
            r.body.decode("utf-8", "replace") for r in self.sandbox.github.requests[-200:]
        )
        leaks = sorted({name for name, out in exits.items() for p in planted if p and p in out})
        result.problems = judge(result, leaked=leaks)
        store = store_for(config) if cell.system != "dynamodb" else None
        if store is not None:
            holder = store.lock_holder(env_name)
            if holder is not None:
                result.problems.append(f"the lock is still held by {holder.holder.describe()}")
        return result


def judge(r: CellResult, *, leaked: list[str]) -> list[str]:
    """What a cell must show; an empty list is a green cell."""
    cell = r.cell
    problems: list[str] = []
    if leaked:
        problems.append(f"a planted secret or PII value reached: {', '.join(leaked)}")
    if r.seconds > r.bound_s:
        problems.append(f"took {r.seconds:.1f} s, past its bound of {r.bound_s:.0f} s")
    if not r.channel:
        problems.append("the channel got no answer")
    if r.tracebacks:
        problems.append(f"{len(r.tracebacks)} traceback(s) logged: {r.tracebacks[0][:300]}")
    if not r.affected:
        return problems  # the command never called this system: nothing else to judge
    if cell.system in DELIVERY:
        if r.verdict == "NONE":
            problems.append("no report")
        if r.evidence == "none":  # local (a 401/403 needs a person: said in the channel), queued or attached
            problems.append("no evidence written")
        return problems
    if (cell.command, cell.system) in NOT_DECISIVE:
        return problems
    if cell.system == "dynamodb" and cell.fault == "timeout":
        # 1.3 s per answer is below the store's own 10 s read timeout: a slow store, not a broken one
        return problems
    if cell.command == "rollback" and cell.system == "dynamodb":  # it acts without the store, and says so
        if "state_store" not in r.warned_steps + r.failed_steps:
            problems.append("the rollback ran without the store but its report does not say it is unrecorded")
        if r.flag_step not in ("PASS", "WARN") or r.lever != "false":
            problems.append(f"the rollback's lever did not hold: outbound_flag {r.flag_step}, lever {r.lever}")
        return problems
    if r.verdict == "PASS":
        problems.append("PASS although an upstream it called was broken (fail-open)")
    if r.verdict not in ("PASS", "REFUSED") and r.evidence == "none":
        problems.append("no evidence written")
    if r.verdict == "FAIL":
        if not r.failed_steps:
            problems.append("FAIL without a failed step")
        for name, reason in r.reasons.items():
            if "Traceback" in reason or "internal error" in reason:
                problems.append(f"{name}: not a reason a person understands: {reason[:160]}")
        if not any(any(w in reason.lower() for w in READABLE) for reason in r.reasons.values()):
            problems.append(f"no failed step names the fault: {json.dumps(r.reasons)[:300]}")
    if cell.command == "rollback":
        own = cell.system in LEVER_SYSTEMS
        if not own and (r.flag_step not in ("PASS", "WARN") or r.lever != "false"):
            problems.append(f"the rollback's lever did not hold: outbound_flag {r.flag_step}, lever {r.lever}")
        if own and r.flag_step == "PASS" and r.lever != "false":
            problems.append("outbound_flag PASS but the lever is not false")
    return problems


def _final_count(harness: Any) -> set[str]:
    """The timestamps of the channel's final messages so far (a cell waits for one more of its own)."""
    from tests.slack_support import CHANNEL, is_final

    return {m.ts for m in harness.fake.messages(CHANNEL) if is_final(m)}


def _wait_final(harness: Any, before: set[str], timeout_s: float, command: str, env: str) -> str:
    """This run's result: a new final message in the channel naming the command and env, or the same through
    response_url, or a refusal said privately."""
    from tests.slack_support import CHANNEL, is_final

    ours = (f"{command} {env}".lower(), f"{command.replace('-', ' ')} {env}".lower())
    deadline = time.monotonic() + timeout_s
    before_answers = len(harness.fake.responses()) + len(harness.fake.ephemerals())
    while time.monotonic() < deadline:
        for m in harness.fake.messages(CHANNEL):
            text = m.all_text()
            if is_final(m) and m.ts not in before and any(o in text.lower() for o in ours):
                return text
        answers = [json.dumps(r) for r in (*harness.fake.responses(), *harness.fake.ephemerals())]
        for answer in answers[before_answers:]:
            if any(o in answer.lower() for o in ours) and (
                "Nothing was run" in answer or "PASS" in answer or "FAIL" in answer or "refused" in answer.lower()
            ):
                return answer
        time.sleep(0.05)
    return ""


def _refused(ack: str, text: str) -> bool:
    said = (ack + text).lower()
    return "nothing was run" in said or "did not run" in said or "refused" in said


def _new_report(root: Path, before: set[Path]) -> Report | None:
    if not root.exists():
        return None
    fresh = sorted(set(root.rglob("report.json")) - before, key=lambda p: p.stat().st_mtime)
    return Report.model_validate_json(fresh[-1].read_text()) if fresh else None


def _bundle_texts(report: Report | None, root: Path) -> list[str]:
    if report is None or not root.exists():
        return []
    out = []
    for path in root.rglob("*"):
        if path.is_file() and report.run_id in str(path.parent) and path.suffix != ".png":
            out.append(path.read_text(errors="replace"))
    return out


def _evidence_state(text: str, report: Report | None, new_jobs: set[str]) -> str:
    if report is None:
        return "none"
    if "evidence attached" in text:
        return "attached"
    if new_jobs or "pending" in text:
        return "queued"
    return "local"


# --- the full matrix ----------------------------------------------------------------------------


def cells(commands: tuple[str, ...] = COMMANDS, systems: tuple[str, ...] = SYSTEMS) -> list[Cell]:
    return [Cell(s, f, c) for c in commands for s in systems for f in FAULTS]


def run_cells(matrix: Matrix, todo: list[Cell], on_result: Callable[[CellResult], None]) -> list[CellResult]:
    results = []
    by_store = {False: [c for c in todo if c.system != "dynamodb"], True: [c for c in todo if c.system == "dynamodb"]}
    for dynamodb, group in by_store.items():
        if not group:
            continue
        config = matrix.config(dynamodb)
        with matrix.app(dynamodb) as harness:
            for cell in group:
                result = matrix.run(cell, harness, config)
                results.append(result)
                on_result(result)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", default=",".join(COMMANDS))
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=open(os.devnull, "w"))  # noqa: SIM115 - captured per cell
    todo = cells(tuple(args.commands.split(",")), tuple(args.systems.split(",")))
    print(f"fault matrix: {len(todo)} cells (system x fault x command), HTTP timeout {HTTP_TIMEOUT_S:g} s")
    print("| system | fault | command | verdict | failed step | time/bound | evidence | cell |")
    print("|---|---|---|---|---|---|---|---|")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fault-matrix-") as tmp, Sandbox({}) as sandbox:
        matrix = Matrix(sandbox, Path(tmp))
        results = run_cells(matrix, todo, lambda r: print(r.row(), flush=True))
    bad = [r for r in results if r.problems]
    applicable = [r for r in results if r.affected]
    rollback = [r for r in applicable if r.cell.command == "rollback" and r.cell.system not in LEVER_SYSTEMS]
    held = [r for r in rollback if r.lever == "false" and r.flag_step in ("PASS", "WARN")]
    print()
    print(f"cells: {len(results)}; the command called the faulted system in {len(applicable)}; "
          f"green: {len(results) - len(bad)}; red: {len(bad)}")  # fmt: skip
    print(f"rollback's lever held under {len(held)}/{len(rollback)} faults outside its own system (SSM)")
    slowest = max(results, key=lambda r: r.seconds / r.bound_s)
    print(f"slowest cell against its bound: {slowest.cell.id} {slowest.seconds:.1f}/{slowest.bound_s:.0f} s")
    print(f"wall time: {time.monotonic() - started:.0f} s")
    for r in bad:
        print(f"RED {r.cell.id}: " + "; ".join(r.problems))
        print(f"    channel: {r.channel[:400]!r}")
        print(f"    reasons: {json.dumps(r.reasons)[:400]}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
