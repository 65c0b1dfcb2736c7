"""The foundation every command stands on: one registry, one gate, one request shape, dry runs
that touch nothing, a report that cannot disagree with its checks, and the bot's front door."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from bot.terminal.cli import build_parser, main
from commands.registry import COMMANDS
from commands.report import CheckResult, Report, Status, utc_now
from integrations.sandbox.env import PR_NUMBER
from tests.slack_support import ALICE, served_bot

ROOT = Path(__file__).resolve().parent.parent


# --- one registry -------------------------------------------------------------------------------
def test_every_surface_lists_exactly_the_registered_commands(tmp_path):
    subcommands = build_parser()._subparsers._group_actions[0].choices
    assert set(COMMANDS) <= set(subcommands)
    manifest = (ROOT / "slack-manifest.yml").read_text()
    declared = set(re.findall(r"- command: /([a-z-]+)", manifest))
    assert declared == {*COMMANDS, "cutover"}
    with served_bot() as h:
        help_text = h.command("/cutover", "help").json()["text"]
    for name, spec in COMMANDS.items():
        assert f"`/{name} ENV" in help_text
        assert spec.summary in help_text


# --- the report ---------------------------------------------------------------------------------
def test_overall_status_is_derived_from_the_checks_and_cannot_be_set():
    now = utc_now()
    failing = [
        CheckResult(name="a", status=Status.PASS, detail=""),
        CheckResult(name="b", status=Status.FAIL, detail=""),
    ]
    report = Report(
        command="preflight", env="prod", run_id="r", started_at=now, finished_at=now, checks=failing,
        overall_status="PASS",  # a caller claiming PASS is ignored
    )  # fmt: skip
    assert report.overall_status == "FAIL"
    assert report.model_dump(mode="json")["overall_status"] == "FAIL"
    empty = Report(command="preflight", env="prod", run_id="r", started_at=now, finished_at=now, checks=[])
    assert empty.overall_status == "FAIL"
    assert Report.model_validate_json(report.model_dump_json()).overall_status == "FAIL"


# --- the gate: the same reason on every surface --------------------------------------------------
def test_a_refusal_reads_the_same_on_the_cli_and_in_slack(sandbox, config_path, capsys):
    from commands.config import Tokens, load_config
    from commands.execute import execute
    from integrations.sandbox.env import ENGINEER

    # No preflight ever passed for `wrong-flag`: the gate's phase rule refuses the canary.
    assert main(["canary", "--env", "wrong-flag", "--config", str(config_path)]) == 1
    cli_reason = capsys.readouterr().err.strip().removeprefix("refused: ")
    assert cli_reason.startswith("no PASS preflight for wrong-flag in the last 60 min")
    with served_bot(execute, config=load_config(config_path), fake=sandbox.slack, tokens=Tokens()) as h:
        reply = h.command("/canary", "wrong-flag", user=ENGINEER).json()
    assert reply["response_type"] == "ephemeral"
    assert reply["text"] == f"{cli_reason} Nothing was run."


def test_slack_access_is_decided_by_the_gate_and_names_who_may():
    with served_bot() as h:
        reply = h.command("/preflight", "prod", user="U0STRANGER").json()
    assert reply["response_type"] == "ephemeral"
    assert "<@U0STRANGER> may not run `/preflight` in prod. Who may:" in reply["text"]
    assert "Nothing was run" in reply["text"]
    assert h.runner.calls == []


# --- dry run ------------------------------------------------------------------------------------
def test_cli_dry_run_with_a_pr_calls_nothing_and_writes_nothing_to_github(sandbox, config_path, tmp_path):
    for fake in (sandbox.github, *(f for env in sandbox.envs.values() for f in env.fakes)):
        fake.requests.clear()
    github_before = len(sandbox.github.comments(PR_NUMBER))
    out_json = tmp_path / "plan.json"
    evidence = tmp_path / "evidence"
    argv = ["preflight", "--env", "prod", "--pr", str(PR_NUMBER), "--dry-run", "--config", str(config_path)]
    argv += ["--out-json", str(out_json), "--evidence-dir", str(evidence)]
    done = subprocess.run(
        [sys.executable, "-m", "bot", *argv], capture_output=True, text=True, timeout=60, cwd=ROOT, env=os.environ
    )
    assert done.returncode == 0, done.stderr
    assert "DRY RUN preflight prod: would run" in done.stdout
    assert "nothing was called, changed or written" in done.stdout
    assert "Traceback" not in done.stderr
    plan = json.loads(out_json.read_text())
    assert plan["dry_run"] is True and plan["overall_status"] == "PASS"
    assert {c["status"] for c in plan["checks"]} == {"SKIP"}
    assert all(c["detail"].startswith("dry run: would call ") for c in plan["checks"])
    assert any("Shopify POST" in c["detail"] for c in plan["checks"])
    assert sandbox.github.requests == [], "a dry run must not talk to GitHub at all"
    assert len(sandbox.github.comments(PR_NUMBER)) == github_before
    for env in sandbox.envs.values():
        for fake in env.fakes:
            assert fake.requests == [], f"a dry run called {fake.__class__.__name__}"
    assert not evidence.exists(), "a dry run writes no bundle"


def test_the_dry_run_plan_names_every_check_a_real_preflight_runs(sandbox, config):
    from commands.execute import execute
    from commands.request import RunRequest

    real = execute(RunRequest("preflight", "prod"), config=config, evidence_root=sandbox_tmp(sandbox))
    plan = execute(RunRequest("preflight", "prod", dry_run=True), config=config)
    assert [c.name for c in plan.report.checks] == [c.name for c in real.report.checks]
    assert plan.bundle is None


def sandbox_tmp(sandbox) -> Path:
    import tempfile

    return Path(tempfile.mkdtemp(prefix="foundation-"))


def test_slack_dry_run_says_so_and_publishes_nothing():
    with served_bot() as h:
        assert h.command("/preflight", "prod dry-run").status_code == 200
        h.final_messages(1)
    assert h.runner.calls[0].dry_run is True


# --- the front door -----------------------------------------------------------------------------
def test_an_oversized_body_is_refused_with_413_before_it_is_read():
    with served_bot() as h:
        big = "x" * (300 * 1024)
        response = h.http.post(f"{h.url}/slack/events", content=big, headers={"Content-Type": "text/plain"})
        assert response.status_code == 413
        assert h.runner.calls == []
        assert h.command("/preflight", "prod").status_code == 200  # the app is still there


def test_a_pr_number_of_thousands_of_digits_gets_a_usage_reply():
    with served_bot() as h:
        reply = h.command("/preflight", "prod pr=" + "9" * 5000).json()
        assert reply["response_type"] == "ephemeral"
        assert "pr must be a positive integer" in reply["text"]
        assert h.command("/preflight", "prod pr=99999999999").json()["response_type"] == "ephemeral"
    assert h.runner.calls == []


def test_serve_honours_port(tmp_path):
    from bot.slack.serve import serve_port

    os.environ["PORT"] = "4123"
    try:
        assert serve_port(None) == 4123
        assert serve_port(5000) == 5000
        os.environ["PORT"] = "http"
        from commands.config import ConfigError

        with pytest.raises(ConfigError, match="not a TCP port"):
            serve_port(None)
    finally:
        del os.environ["PORT"]
    assert serve_port(None) == 3000


def test_python_m_bot_serve_listens_on_port_from_the_environment(sandbox, config_path):
    port = _free_port()
    env = {**os.environ, "PORT": str(port), "CUTOVER_CONFIG": str(config_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1"], cwd=ROOT, env=env, stderr=subprocess.PIPE
    )
    try:
        for _ in range(100):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).text == "ok":
                    break
            except httpx.TransportError:
                proc.poll()
                assert proc.returncode is None, proc.stderr.read().decode() if proc.stderr else ""
                import time

                time.sleep(0.1)
        else:
            pytest.fail("serve never answered on $PORT")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- bad input: verify and the terminal ---------------------------------------------------------
@pytest.mark.parametrize(
    ("files", "needle"),
    [
        ({"../outside.txt": {"sha256": "0" * 64, "size": 1}}, "is not a file name inside the bundle"),
        ({"/etc/hostname": {"sha256": "0" * 64, "size": 1}}, "is not a file name inside the bundle"),
        ({}, "lists no files"),
        ("not a dict", "lists no files"),
    ],
)
def test_verify_refuses_a_manifest_it_cannot_trust_with_exit_2(tmp_path, capsys, files, needle):
    (tmp_path / "manifest.json").write_text(json.dumps({"files": files}))
    assert main(["verify", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and err.count("\n") == 1


def test_verify_refuses_a_malformed_manifest_with_one_line(tmp_path, capsys):
    (tmp_path / "manifest.json").write_text("{not json")
    assert main(["verify", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unreadable manifest" in err and err.count("\n") == 1


def test_upstream_text_is_never_rich_markup(tmp_path):
    from rich.console import Console

    from bot.terminal.console import print_outcome
    from commands.execute import EvidenceResult, Outcome

    now = utc_now()
    detail = "Shopify said [/admin] and [bold]x[/bold] [link=http://e]y"
    report = Report(
        command="preflight",
        env="prod",
        run_id="r1",
        started_at=now,
        finished_at=now,
        checks=[CheckResult(name="shopify_rest", status=Status.FAIL, detail=detail)],
    )
    console = Console(record=True, width=200)
    print_outcome(console, Outcome(report, None, EvidenceResult("local", "[/x] kept")), keep_account_ids=False)
    text = console.export_text()
    assert "[/admin]" in text and "[bold]x[/bold]" in text and "[/x] kept" in text


def test_cli_with_markup_in_an_upstream_answer_still_writes_out_json(sandbox, config_path, tmp_path):
    from integrations.sandbox.http import Fault

    sandbox.envs["prod"].richpanel.inject("users", Fault("status", 500, body="[/admin] broke"))
    out_json = tmp_path / "r.json"
    argv = ["preflight", "--env", "prod", "--config", str(config_path), "--out-json", str(out_json)]
    assert main([*argv, "--evidence-dir", str(tmp_path / "ev")]) == 1
    assert json.loads(out_json.read_text())["overall_status"] == "FAIL"


def test_requests_from_every_surface_record_who_asked(config_path, tmp_path, capsys):
    # The verdict does not matter here (a loaded machine may time a check out): who asked does.
    assert main(["preflight", "--env", "prod", "--config", str(config_path), "--evidence-dir", str(tmp_path)]) in (0, 1)
    (bundle,) = (tmp_path / "prod").iterdir()
    report = json.loads((bundle / "report.json").read_text())
    assert report["requested_by"].startswith("cli:")
    assert ALICE  # the Slack surface records the Slack user id (tests/test_slack_app.py)


# --- a new command is its module plus one registry entry ----------------------------------------
def run_hello(run):
    """A whole command module for this test: one read-only step."""
    from commands.checks import passed
    from commands.run_context import Steps

    steps = Steps(run)
    steps.run("hello", lambda: passed(f"hello from {run.request.env}"))
    return steps.report()


def test_a_new_command_is_one_module_and_one_registry_entry(monkeypatch, config_path, tmp_path, capsys):
    from commands.registry import CommandSpec

    monkeypatch.setitem(
        COMMANDS,
        "hello",
        CommandSpec(
            name="hello",
            title="Hello",
            summary="says hello (a test command)",
            runner="tests.test_foundation:run_hello",
            planner=None,
            next_step="next: nothing",
            mutating=False,
        ),
    )
    # The CLI: a subcommand, run through the gate and execute, with its evidence bundle.
    assert main(["hello", "--env", "prod", "--config", str(config_path), "--evidence-dir", str(tmp_path)]) == 0
    assert "PASS hello prod: 1 passed" in capsys.readouterr().out
    # Slack: a listener and a help line, from the same entry.
    with served_bot(run_hello_in_slack) as h:
        assert "`/hello ENV" in h.command("/cutover", "help").json()["text"]
        assert h.command("/hello", "prod").json()["text"] == "Hello prod queued"
        [final] = h.final_messages(1)
        assert "hello from prod" in final.all_text()


def run_hello_in_slack(request, *, config, progress, **_):
    """The Slack app's runner seam: execute itself, with this test's map."""
    from commands.execute import execute

    return execute(request, config=config, progress=progress)
