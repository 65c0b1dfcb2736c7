"""A full cutover of one environment on the sandbox, with a PR: what a reviewer and a manager see.

preflight -> canary -> enable-outbound (a short watch) -> rollback, each the real command through
`execute` with the real publisher (PyGithub against the GitHub fake, the outbox, the state store).
Afterwards the PR shows one timeline comment for the environment (newest first, from the store), each
cutover phase is a GitHub Deployment of the PR head with `in_progress` then `success` and the evidence
as `log_url`, the rollback ended the outbound deployment (`inactive`), every cutover bundle holds a
chart listed in its manifest and committed on the branch, and `status --env ENV --md` prints the same
timeline.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bot.execution.evidence_publisher import publisher_for
from bot.terminal.cli import main
from commands.chart import CHART_FILE
from commands.config import CutoverConfig, load_config
from commands.execute import Outcome, execute
from commands.request import RunRequest
from commands.state import store_for
from commands.timeline import marker
from integrations.sandbox.env import PR_BRANCH, Sandbox, Scenario
from tests.conftest import assert_nothing_planted
from tests.test_chart import png_text
from tests.test_enable_outbound_support import wait_for, write_map

ENV = "tl-cutover"
PR = 71
BRANCH = "cutover/timeline-e2e"
PHASES = ("canary", "enable-outbound", "rollback")


@pytest.fixture(scope="module")
def cutover(sandbox: Sandbox, tmp_path_factory) -> tuple[CutoverConfig, dict[str, Outcome]]:
    if ENV not in sandbox.envs:
        sandbox.add_env(ENV, Scenario(approval_required=(), worker_url=True))
    assert BRANCH != PR_BRANCH
    sandbox.github.add_pr(PR, BRANCH)
    config = load_config(
        write_map(sandbox, tmp_path_factory.mktemp("timeline-cutover"), watch={ENV: {"minutes": 0.05}})
    )
    publisher = publisher_for(config)
    assert publisher is not None and publisher.deployments is not None
    env = sandbox.envs[ENV]

    def run(command: str, *confirm: str) -> Outcome:
        request = RunRequest(command, ENV, requested_by="cli:tester", pr=PR, confirmations=confirm)
        return execute(request, config=config, publisher=publisher)

    outcomes = {"preflight": run("preflight")}
    env.set_rule(enabled=True, by="tester")  # a person enables the rule, and confirms it up front
    outcomes["canary"] = run("canary", "http-target", "rule-enabled")
    outcomes["enable-outbound"] = run("enable-outbound")
    env.set_rule(enabled=False, by="tester")  # and pauses it for the rollback
    outcomes["rollback"] = run("rollback", "rule-paused")
    for command, outcome in outcomes.items():
        assert outcome.report.overall_status == "PASS", (command, [(c.name, c.detail) for c in outcome.report.checks])
    # The rollback never waits on GitHub: its evidence, deployment and timeline row go in the background,
    # the timeline last.
    rollback = outcomes["rollback"].report.run_id
    wait_for(lambda: any(rollback in c["body"] for c in _timeline_comments(sandbox)), what="the rollback's row")
    return config, outcomes


def _deployments(sandbox: Sandbox) -> dict[str, dict]:
    return {d["task"]: d for d in sandbox.github.deployments(ENV)}


def _timeline_comments(sandbox: Sandbox) -> list[dict]:
    return [c for c in sandbox.github.comments(PR) if c["body"].startswith(marker(ENV))]


def test_the_pr_shows_one_timeline_for_the_env_newest_first_with_verdicts_and_links(sandbox, cutover):
    _, outcomes = cutover
    [comment] = _timeline_comments(sandbox)  # one, edited in place after each run
    assert comment["author"] == sandbox.github.login
    assert comment["edits"] >= 3
    body = comment["body"]
    rows = [line for line in body.splitlines() if line.startswith("| 20")]
    phases = [row.split(" | ")[1] for row in rows]
    assert phases == ["Rollback", "Outbound on", "Watch", "Canary", "Preflight"], phases
    assert all("✅ PASS" in row for row in rows)
    watch = rows[2]  # the enable-outbound run's watch, with its verdict and the same evidence
    assert outcomes["enable-outbound"].report.run_id in watch and "alarms" in watch
    for command, outcome in outcomes.items():
        row = next(r for r in rows if f"(run {outcome.report.run_id})" in r)
        folder = re.search(r"\[evidence\]\(([^)]+)\)", row)
        assert folder and f"/{outcome.bundle.name}" in folder.group(1), row  # the committed folder
        assert ("[chart](" in row) == (command in PHASES)
    assert "**Now:** rolled back" in body
    assert_nothing_planted(sandbox, body)


def test_each_cutover_phase_is_a_deployment_with_in_progress_then_success_and_the_evidence(sandbox, cutover):
    _, outcomes = cutover
    found = _deployments(sandbox)
    assert sorted(found) == sorted(PHASES)  # preflight changes nothing: no deployment
    commits = {c["sha"] for c in sandbox.github.commits_on(BRANCH)}
    for command in PHASES:
        d = found[command]
        assert d["environment"] == ENV and d["creator"] == sandbox.github.login
        assert d["auto_merge"] is False and d["required_contexts"] == []
        assert d["payload"] == {"run_id": outcomes[command].report.run_id, "pr": PR}
        assert d["sha"] in commits  # the PR head when the run started
        states = [s["state"] for s in d["statuses"]]
        assert states[:2] == ["in_progress", "success"], (command, states)
        log_url = d["statuses"][1]["log_url"]
        sha, folder = re.search(r"/tree/([0-9a-f]{40})/(.+)$", log_url).groups()
        assert folder.endswith(outcomes[command].bundle.name)
        assert f"{folder}/report.json" in sandbox.github.files_at(sha)  # the link resolves to the proof
    # The rollback turned outbound off: the outbound deployment is no longer active.
    assert [s["state"] for s in found["enable-outbound"]["statuses"]] == ["in_progress", "success", "inactive"]
    assert [s["state"] for s in found["rollback"]["statuses"]] == ["in_progress", "success"]


def test_every_cutover_bundle_has_a_chart_in_its_manifest_committed_on_the_branch(sandbox, cutover):
    _, outcomes = cutover
    assert CHART_FILE not in outcomes["preflight"].bundle.files  # never for preflight
    on_branch = sandbox.github.files_at(BRANCH)
    for command in PHASES:
        bundle = outcomes[command].bundle
        png = bundle.files[CHART_FILE]
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert CHART_FILE in json.loads(bundle.files["manifest.json"])["files"]
        assert main(["verify", str(bundle.path)]) == 0
        [path] = [p for p in on_branch if p.endswith(f"{bundle.name}/{CHART_FILE}")]
        assert on_branch[path] == png
        assert_nothing_planted(sandbox, json.dumps(png_text(png)))


def test_status_md_prints_the_same_timeline_for_a_change_record(cutover, capsys):
    config, outcomes = cutover
    path = Path(str(config.evidence_dir)).parent / "cutover.sandbox.toml"
    assert main(["status", "--env", ENV, "--config", str(path), "--md"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# Cutover timeline: `{ENV}`")
    rows = [line for line in out.splitlines() if line.startswith("| 20")]
    assert [row.split(" | ")[1] for row in rows] == ["Rollback", "Outbound on", "Watch", "Canary", "Preflight"]
    assert all(f"(run {o.report.run_id})" in out for o in outcomes.values())
    assert "## Audit trail (oldest first)" in out
    assert store_for(config).last_run(ENV, "rollback").status.value == "PASS"
