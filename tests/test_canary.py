"""/canary on the sandbox: the gate's refusals, each worker fault FAILs with its reason, the CLI path
with `--confirm`, the dry run, and proof files free of planted PII.

Real parts only: moto over HTTP (SSM, Lambda, Logs, Logs Insights, Secrets Manager), the Richpanel fake
with the simulated Order Status worker behind its rule, the state store, `execute` and the CLI's `main`.
The Slack path (buttons, the channel message, the rollback) is in tests/test_canary_slack.py.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from commands.config import CutoverConfig, load_config
from commands.execute import Outcome, execute, store_for
from commands.gate import Refused
from commands.report import CheckResult, Status, new_run_id
from commands.request import RunRequest
from commands.state import RunRecord, RunStatus
from integrations.sandbox.env import EnvSandbox, Sandbox, Scenario, outbound_parameter
from integrations.sandbox.worker import WorkerFaults
from tests.conftest import assert_nothing_planted

STEPS = ["outbound_off", "http_target", "rule_enabled", "test_ticket", "processed", "no_customer_contact"]
ROLLBACK_STEPS = ["outbound_flag", "rule_paused", "no_invocations"]
INTERNAL = "cutover-canary@example.com"
CONFIRM_ALL = ("http-target", "rule-enabled")

_READY = {"approval_required": (), "worker_url": True}
# Few environments (each is fakes and a worker thread on the session sandbox): a test that needs a worker
# fault sets it on its env's worker for its own duration (`faulty`).
CANARY_ENVS: dict[str, Scenario] = {
    "canary-ok": Scenario(**_READY),
    "canary-absent": Scenario(**_READY, outbound_enabled=None),
    "canary-approval": Scenario(worker_url=True),  # the map's default: canary needs an approval
    "canary-notarget": Scenario(approval_required=()),  # no function URL, no richpanel_http_target
    "canary-fault": Scenario(**_READY),
    "canary-slack": Scenario(**_READY),
}


def canary_envs(sandbox: Sandbox) -> dict[str, EnvSandbox]:
    """The canary's environments on the session sandbox (added once, whichever module asks first)."""
    for name, scenario in CANARY_ENVS.items():
        if name not in sandbox.envs:
            sandbox.add_env(name, scenario)
    return {name: sandbox.envs[name] for name in CANARY_ENVS}


@pytest.fixture
def envs(sandbox: Sandbox) -> Iterator[dict[str, EnvSandbox]]:
    found = canary_envs(sandbox)
    yield found
    settle(found)


def settle(envs: dict[str, EnvSandbox]) -> None:
    """After a test: rules paused (an enabled rule keeps its worker invoking), workers healthy again."""
    for env in envs.values():
        env.set_rule(enabled=False, by="teardown")
        assert env.worker is not None
        env.worker.faults = WorkerFaults()
        env.worker.log_format = "text"


def faulty(env: EnvSandbox, **faults: Any) -> EnvSandbox:
    """`env` with these worker faults until the test ends (`settle` clears them)."""
    assert env.worker is not None
    env.worker.faults = WorkerFaults(**faults)
    return env


@pytest.fixture
def config(sandbox: Sandbox, envs, tmp_path: Path) -> CutoverConfig:
    """The sandbox's map with its own state store and evidence under tmp_path."""
    return load_config(sandbox.write_config(tmp_path, evidence_dir=str(tmp_path / "evidence")))


# --- helpers shared with tests/test_canary_slack.py ----------------------------------------------------


def tuned(
    config: CutoverConfig,
    env: str,
    *,
    max_age_preflight: float | None = None,
    quiet_minutes: float | None = None,
    **canary: Any,
) -> CutoverConfig:
    """The map with one env's [canary] keys (and max_age_minutes.preflight, rollback.quiet_minutes) changed."""
    current = config.envs[env]
    update: dict[str, Any] = {"canary": current.canary.model_copy(update=canary)}
    if quiet_minutes is not None:  # the automatic rollback's quiet window
        update["rollback"] = current.rollback.model_copy(update={"quiet_minutes": quiet_minutes})
    if max_age_preflight is not None:
        update["max_age_minutes"] = current.max_age_minutes.model_copy(update={"preflight": max_age_preflight})
    return config.model_copy(update={"envs": {**config.envs, env: current.model_copy(update=update)}})


def passed_preflight(config: CutoverConfig, env: str, *, finished_ago: timedelta = timedelta(0)) -> str:
    """A PASS preflight in the store, as a real one leaves it (the preflight itself is tested elsewhere)."""
    store = store_for(config)
    finished = datetime.now(UTC) - finished_ago
    run_id = new_run_id()
    record = RunRecord(
        run_id=run_id,
        env=env,
        command="preflight",
        started_at=finished - timedelta(seconds=2),
        requested_by="cli:tester",
    )
    store.record_run_start(record)
    store.record_run_finish(env, run_id, RunStatus.PASS, finished_at=finished, summary="PASS preflight")
    return run_id


def canary(
    config: CutoverConfig,
    env: str,
    *,
    confirm: tuple[str, ...] = CONFIRM_ALL,
    surface: str = "cli",
    progress: list[CheckResult] | None = None,
    on_progress: Callable[[CheckResult], None] | None = None,
) -> Outcome:
    request = RunRequest(command="canary", env=env, requested_by="cli:tester", surface=surface, confirmations=confirm)  # type: ignore[arg-type]
    seen = progress if progress is not None else []

    def report(check: CheckResult) -> None:
        seen.append(check)
        if on_progress is not None:
            on_progress(check)

    return execute(request, config=config, progress=report)


def checks(outcome: Outcome) -> dict[str, CheckResult]:
    return {c.name: c for c in outcome.report.checks}


def tickets_posted(env: EnvSandbox) -> list[dict[str, Any]]:
    return [r.json() for r in env.richpanel.received("POST", r"^/v1/tickets$")]


def lever(sandbox: Sandbox, env: EnvSandbox) -> str:
    return sandbox.aws.client("ssm").get_parameter(Name=outbound_parameter(env.name))["Parameter"]["Value"]


def bundle_text(outcome: Outcome) -> str:
    assert outcome.bundle is not None
    return "\n".join(body.decode() for name, body in outcome.bundle.files.items() if not name.endswith(".png"))


# --- the gate: refusals before anything is touched ---------------------------------------------------


def test_refused_without_a_pass_preflight(config, envs):
    with pytest.raises(Refused) as refused:
        canary(config, "canary-ok")
    assert refused.value.rule == "phase"
    assert "no PASS preflight for canary-ok in the last 60 min" in refused.value.reason
    assert tickets_posted(envs["canary-ok"]) == []


def test_refused_with_a_stale_preflight(config, envs):
    passed_preflight(config, "canary-ok", finished_ago=timedelta(seconds=30))
    stale = tuned(config, "canary-ok", max_age_preflight=0.25)  # 15 s
    with pytest.raises(Refused) as refused:
        canary(stale, "canary-ok")
    assert refused.value.rule == "phase"
    assert "in the last 0.25 min (the last one passed 30 s ago)" in refused.value.reason
    fresh_enough = tuned(config, "canary-ok", max_age_preflight=1.0)  # the same preflight, a longer limit
    assert canary(fresh_enough, "canary-ok", confirm=(), surface="cli").report.checks  # admitted, ran


def test_refused_when_the_lever_is_on_now_whatever_the_preflight_read(sandbox, config, envs):
    env = envs["canary-ok"]
    passed_preflight(config, env.name)  # the preflight saw the lever off...
    ssm = sandbox.aws.client("ssm")
    ssm.put_parameter(Name=outbound_parameter(env.name), Value="true", Type="String", Overwrite=True)  # ...now on
    try:
        with pytest.raises(Refused) as refused:
            canary(config, env.name)
    finally:
        ssm.put_parameter(Name=outbound_parameter(env.name), Value="false", Type="String", Overwrite=True)
    assert refused.value.rule == "precondition"
    assert refused.value.reason.startswith("outbound is ON for canary-ok")
    assert "/rollback canary-ok first" in refused.value.reason
    assert tickets_posted(env) == []
    assert store_for(config).last_run(env.name, "canary") is None  # refused: never started


def test_refused_when_the_lever_cannot_be_read(config, envs):
    passed_preflight(config, "canary-absent")
    with pytest.raises(Refused) as refused:
        canary(config, "canary-absent")
    assert refused.value.rule == "precondition"
    assert refused.value.reason.startswith("cannot read the outbound lever")
    assert outbound_parameter("canary-absent") in refused.value.reason


def test_refused_without_the_approval_where_required(config, envs):
    passed_preflight(config, "canary-approval")
    with pytest.raises(Refused) as refused:
        canary(config, "canary-approval")
    assert refused.value.rule == "approval"
    assert "needs a manager's approval" in refused.value.reason
    assert tickets_posted(envs["canary-approval"]) == []


def test_cli_refusal_exits_1_with_the_reason(sandbox, envs, tmp_path, capsys):
    from bot.terminal.cli import main

    path = sandbox.write_config(tmp_path)
    assert main(["canary", "--env", "canary-ok", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("refused: no PASS preflight for canary-ok")
    assert "Traceback" not in err


# --- the happy path on the CLI, with --confirm ----------------------------------------------------------


def test_cli_canary_with_confirm_passes_with_one_internal_ticket_processed_and_no_contact(sandbox, envs, tmp_path):
    from bot.terminal.cli import main

    env = envs["canary-ok"]
    path = sandbox.write_config(tmp_path, evidence_dir=str(tmp_path / "evidence"))
    passed_preflight(load_config(path), env.name)
    env.set_rule(enabled=True, by="tester")  # the person enables the rule, then confirms it with --confirm
    out = tmp_path / "canary.json"
    argv = ["canary", "--env", env.name, "--config", str(path), "--confirm", "rule-enabled"]
    argv += ["--confirm", "http-target", "--out-json", str(out)]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    assert report["overall_status"] == "PASS"
    assert [c["name"] for c in report["checks"]] == STEPS
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["rule_enabled"]["data"]["confirmed_by"].startswith("cli:")
    assert by_name["http_target"]["data"]["confirmed_on"] == "cli"
    [posted] = tickets_posted(env)  # exactly one ticket, from the internal address
    assert posted["ticket"]["via"]["source"]["from"]["address"] == INTERNAL
    assert report["run_id"] in posted["ticket"]["subject"]
    [ticket_id] = env.worker.processed
    assert env.worker.outbound == []
    assert by_name["test_ticket"]["data"]["ticket"].startswith("sha256:")
    assert f"ticket_id={ticket_id}" not in out.read_text()  # only hashed
    assert by_name["no_customer_contact"]["data"]["logs"]["status"] == "Complete"
    assert by_name["no_customer_contact"]["data"]["logs"]["processed_lines"] == 1  # the positive control
    assert by_name["no_customer_contact"]["data"]["richpanel"]["bot_public_replies"] == 0
    assert lever(sandbox, env) == "false"


def test_cli_without_confirm_fails_at_http_target_and_sends_nothing(sandbox, envs, tmp_path, capsys):
    from bot.terminal.cli import main

    env = envs["canary-ok"]
    path = sandbox.write_config(tmp_path, evidence_dir=str(tmp_path / "evidence"))
    passed_preflight(load_config(path), env.name)
    before = len(tickets_posted(env))
    out = tmp_path / "canary.json"
    assert main(["canary", "--env", env.name, "--config", str(path), "--out-json", str(out)]) == 1
    by_name = {c["name"]: c for c in json.loads(out.read_text())["checks"]}
    assert by_name["http_target"]["status"] == "FAIL"
    assert "--confirm http-target" in by_name["http_target"]["detail"]
    assert [by_name[n]["status"] for n in STEPS[2:]] == ["SKIP"] * 4
    assert len(tickets_posted(env)) == before


def test_dry_run_lists_each_step_and_touches_nothing(sandbox, config, envs):
    env = envs["canary-ok"]
    passed_preflight(config, env.name)
    version = sandbox.aws.client("ssm").get_parameter(Name=outbound_parameter(env.name))["Parameter"]["Version"]
    before = len(env.richpanel.requests)
    request = RunRequest(command="canary", env=env.name, requested_by="cli:tester", dry_run=True)
    outcome = execute(request, config=config)
    assert outcome.bundle is None
    assert [c.name for c in outcome.report.checks] == STEPS
    assert all(c.status == Status.SKIP for c in outcome.report.checks)
    plan = checks(outcome)
    assert f"would create one Richpanel ticket from {INTERNAL}" in plan["test_ticket"].detail
    assert "order_status_processed" in plan["processed"].detail
    assert "roll back" in plan["no_customer_contact"].detail
    assert len(env.richpanel.requests) == before
    assert sandbox.aws.client("ssm").get_parameter(Name=outbound_parameter(env.name))["Parameter"]["Version"] == version
    assert store_for(config).last_run(env.name, "canary") is None


# --- the steps that stop the canary before any ticket -------------------------------------------------


def test_rule_not_confirmed_in_time_fails_and_sends_no_ticket(config, envs):
    env = envs["canary-ok"]
    passed_preflight(config, env.name)
    quick = tuned(config, env.name, confirm_timeout_minutes=0.02)  # 1.2 s
    seen: list[CheckResult] = []
    before = len(tickets_posted(env))
    outcome = canary(quick, env.name, confirm=("http-target",), surface="slack", progress=seen)
    found = checks(outcome)
    assert found["rule_enabled"].status == Status.FAIL
    assert "nobody confirmed `rule-enabled` within 0.02 min" in found["rule_enabled"].detail
    assert "no ticket was sent" in found["rule_enabled"].detail
    asked = [c for c in seen if c.name == "rule_enabled" and c.data.get("awaiting") == "rule-enabled"]
    assert asked and asked[0].status == Status.WARN  # the live line a surface turns into a button
    assert [found[n].status for n in STEPS[3:]] == [Status.SKIP] * 3
    assert len(tickets_posted(env)) == before


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"url": "https://attacker.example.net/richpanel"}, "is not the worker's function URL"),
        ({"auth_header_sha256": "0" * 64}, "does not hash to the approved auth_header_sha256"),
    ],
)
def test_an_http_target_that_differs_from_the_approved_one_fails_without_asking(config, envs, change, expected):
    env = envs["canary-ok"]
    passed_preflight(config, env.name)
    current = config.envs[env.name]
    assert current.richpanel_http_target is not None
    target = current.richpanel_http_target.model_copy(update=change)
    changed = config.model_copy(
        update={"envs": {**config.envs, env.name: current.model_copy(update={"richpanel_http_target": target})}}
    )
    before = len(tickets_posted(env))
    seen: list[CheckResult] = []
    outcome = canary(changed, env.name, progress=seen)
    http = checks(outcome)["http_target"]
    assert http.status == Status.FAIL
    assert expected in http.detail
    assert "confirmed_by" not in http.data  # not asked: the automatic comparison already failed
    assert not any(c.data.get("awaiting") for c in seen)
    assert len(tickets_posted(env)) == before


def test_no_approved_http_target_in_the_map_fails(config, envs):
    passed_preflight(config, "canary-notarget")
    outcome = canary(config, "canary-notarget")
    http = checks(outcome)["http_target"]
    assert http.status == Status.FAIL
    assert "no approved Richpanel HTTP target in the map" in http.detail
    assert tickets_posted(envs["canary-notarget"]) == []


# --- the worker's faults: each a FAIL with its reason ---------------------------------------------------


def _run_with_rule(config: CutoverConfig, env: EnvSandbox, **kwargs: Any) -> Outcome:
    passed_preflight(config, env.name)
    env.set_rule(enabled=True, by="tester")
    return canary(config, env.name, **kwargs)


def test_worker_never_processes_fails_processed_and_cannot_prove_no_contact(config, envs):
    env = faulty(envs["canary-fault"], never_processes=True)
    before = len(tickets_posted(env))
    outcome = _run_with_rule(tuned(config, env.name, timeout_minutes=0.04), env)  # 2.4 s
    assert outcome.report.overall_status == "FAIL"
    found = checks(outcome)
    assert found["test_ticket"].status == Status.PASS
    assert found["processed"].status == Status.FAIL
    assert "no `order_status_processed` line for the test ticket within 2.4 s" in found["processed"].detail
    assert found["processed"].data["polls"] > 1
    contact = found["no_customer_contact"]
    assert contact.status == Status.FAIL  # unknown is not PASS: the positive control is missing
    assert "positive control" in contact.detail
    assert "a customer was contacted" not in contact.detail
    assert [c.name for c in outcome.report.checks] == STEPS  # no rollback: nobody was contacted
    assert len(tickets_posted(env)) == before + 1


def test_logs_later_than_the_timeout_fail_with_that_reason(config, envs):
    env = faulty(envs["canary-fault"], logs_late_s=5.0)  # the worker's lines land 5 s after it handled the ticket
    outcome = _run_with_rule(tuned(config, env.name, timeout_minutes=0.03), env)  # 1.8 s
    found = checks(outcome)
    assert found["processed"].status == Status.FAIL
    assert "within 1.8 s" in found["processed"].detail
    assert "its logs arrive late" in found["processed"].detail
    assert found["no_customer_contact"].status == Status.FAIL


def test_logs_a_little_late_are_waited_for_with_a_progress_line_and_one_call_per_poll(sandbox, config, envs):
    env = faulty(envs["canary-fault"], logs_late_s=1.0)  # lines land 1 s late, among many unrelated lines
    now = datetime.now(UTC)
    noise = [(now, f"order_status_processed ticket_id={9_000_000 + i} intent=order_status") for i in range(150)]
    noise += [(now, f"[INFO]\t{uuid.uuid4()}\tticket {i} intent=other") for i in range(150)]
    _put_lines(sandbox, env.log_group, noise)
    seen: list[CheckResult] = []
    outcome = _run_with_rule(tuned(config, env.name, timeout_minutes=0.15), env, progress=seen)
    found = checks(outcome)
    assert outcome.report.overall_status == "PASS", found
    assert found["processed"].data["polls"] > 1
    assert found["processed"].data["api_calls_per_poll"] == 1  # the server filters on the marker and the id
    waiting = [c for c in seen if c.name == "processed" and c.status == Status.WARN]
    assert waiting and "waiting for the worker's `order_status_processed` line" in waiting[0].detail


def test_insights_staying_running_fails_the_no_contact_proof(config, envs):
    env = faulty(envs["canary-fault"], insights_running=True)
    outcome = _run_with_rule(tuned(config, env.name, timeout_minutes=0.04), env)
    found = checks(outcome)
    assert found["processed"].status == Status.PASS  # filter_log_events still sees the line
    contact = found["no_customer_contact"]
    assert contact.status == Status.FAIL  # never PASS on a query that did not complete
    assert "did not complete" in contact.detail and "Running" in contact.detail
    assert contact.data["logs"]["status"] == "Running"
    assert outcome.report.overall_status == "FAIL"


def test_a_worker_that_contacts_the_customer_fails_and_rolls_back_at_once(sandbox, config, envs):
    env = faulty(envs["canary-fault"], contacts_customer_with_lever_off=True)
    quick = tuned(config, env.name, timeout_minutes=0.1, quiet_minutes=0.02)

    def person(check: CheckResult) -> None:  # the person pauses the rule once the rollback begins
        if check.name == "outbound_flag":
            env.set_rule(enabled=False, by="tester")

    outcome = _run_with_rule(quick, env, confirm=(*CONFIRM_ALL, "rule-paused"), on_progress=person)
    found = checks(outcome)
    contact = found["no_customer_contact"]
    assert contact.status == Status.FAIL
    assert contact.detail.startswith("a customer was contacted")
    assert contact.data["customer_contacted"] is True
    assert contact.data["richpanel"]["bot_public_replies"] == 1
    assert contact.data["logs"]["outbound_lines"] == 1
    assert [c.name for c in outcome.report.checks] == STEPS + ROLLBACK_STEPS  # the rollback ran right after
    assert found["outbound_flag"].status == Status.PASS
    assert lever(sandbox, env) == "false"
    assert env.worker.outbound  # the fault really contacted (the sandbox's own record)
    trail = [e.action for e in store_for(config).audit_trail(env.name)]
    assert "canary.rollback_needed" in trail and "rollback.start" in trail


# --- evidence: hashed ticket, redacted excerpts, no planted PII ------------------------------------------


def test_the_proof_files_hold_no_planted_pii_and_the_excerpts_are_redacted(sandbox, config, envs):
    env = faulty(envs["canary-fault"], never_processes=True)  # the only processed line is the one planted here
    first_ticket = str(1001 + len(env.richpanel.tickets))  # the fake numbers tickets from 1001
    email, phone = env.pii
    # The worker logs the customer's contact on its processed line for this ticket, as a careless worker would.
    line = {"event": "order_status_processed", "ticket_id": first_ticket, "customer_email": email, "phone": phone}
    at = datetime.now(UTC)
    _put_lines(sandbox, env.log_group, [(at, json.dumps(line))])
    outcome = _run_with_rule(config, env)
    assert outcome.report.overall_status == "PASS", checks(outcome)
    text = bundle_text(outcome)
    assert_nothing_planted(sandbox, text)
    assert f'"ticket_id": "{first_ticket}"' not in text and f"ticket_id={first_ticket}" not in text
    processed = checks(outcome)["processed"]
    assert "<ticket sha256:" in processed.data["excerpt"]
    assert "[REDACTED" in processed.data["excerpt"]
    assert processed.data["form"] == "json"
    assert (Path(outcome.bundle.path) / "manifest.json").exists()


def test_the_canarys_richpanel_client_refuses_a_customer_address_and_any_other_write(config, envs):
    from commands.canary import Canary
    from commands.run_context import RunContext
    from integrations.richpanel import WriteRefused

    env = envs["canary-ok"]
    request = RunRequest(command="canary", env=env.name, requested_by="cli:tester")
    run = RunContext(request, config, config.envs[env.name], store_for(config), "r-refusal")
    own = Canary(run)
    before = len(env.richpanel.requests)
    try:
        client = own.richpanel()
        with pytest.raises(WriteRefused, match="internal test address"):
            client.create_ticket(from_email="jane.customer@example.org", subject="x", body="y")
        with pytest.raises(WriteRefused, match="create_ticket is the only write"):
            client.request("PUT", "/v1/tickets/1001", json={"ticket": {"comment": {"body": "hi"}}})
    finally:
        own.close()
    assert len(env.richpanel.requests) == before  # nothing reached Richpanel


def _put_lines(sandbox: Sandbox, group: str, lines: list[tuple[datetime, str]]) -> None:
    logs = sandbox.aws.client("logs")
    stream = f"test-{uuid.uuid4().hex[:8]}"
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    events = sorted(
        ({"timestamp": int(at.timestamp() * 1000), "message": m} for at, m in lines), key=lambda e: e["timestamp"]
    )
    logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)


def wait_for(probe: Any, timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError("nothing happened in time")


def test_without_a_function_url_the_http_target_warns_and_the_person_check_carries_it(sandbox, config, envs):
    import hashlib

    from commands.config import HttpTarget

    env = envs["canary-notarget"]  # the worker has no function URL: the bot cannot read its endpoint
    token = env.secrets["richpanel_webhook_token"]
    target = HttpTarget(
        url="https://worker.example.com/richpanel", auth_header_sha256=hashlib.sha256(token.encode()).hexdigest()
    )
    current = config.envs[env.name]
    approved = config.model_copy(
        update={"envs": {**config.envs, env.name: current.model_copy(update={"richpanel_http_target": target})}}
    )
    outcome = _run_with_rule(approved, env)
    http = checks(outcome)["http_target"]
    assert http.status == Status.WARN  # passes with its caveat: unknown is not PASS
    assert "the worker has no function URL" in http.detail
    assert http.data["confirmed_by"] == "cli:tester"
    assert outcome.report.overall_status == "PASS"
