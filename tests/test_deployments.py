"""Each cutover phase as a GitHub Deployment: PyGithub over HTTP against the GitHub fake (which validates
deployments as GitHub does), through the publisher's outbox job, and a real rollback on the sandbox."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from github import Auth, Github, GithubException

from commands.evidence import write_bundle
from commands.execute import execute
from commands.outbox import Outbox
from commands.publish import GitHubPublisher
from commands.report import CheckResult, Report, Status, new_run_id, utc_now
from commands.request import RunRequest
from commands.state import SqliteStore
from integrations.github import GitHubEvidence
from integrations.sandbox.env import REPO, Sandbox, Scenario
from integrations.sandbox.github import SANDBOX_TOKEN, GitHubFake
from integrations.sandbox.http import Fault
from tests.test_enable_outbound_support import wait_for

BRANCH = "cutover/phase-records"
PR = 31
OTHER_TOKEN = "ghp_someoneelse000000000000000000000000"


@pytest.fixture
def fake() -> Iterator[GitHubFake]:
    with GitHubFake(repo=REPO) as gh:
        gh.add_pr(PR, BRANCH)
        gh.add_token(OTHER_TOKEN, "someone-else")
        yield gh


def sink(fake: GitHubFake, token: str = SANDBOX_TOKEN) -> GitHubEvidence:
    return GitHubEvidence(repo=REPO, token=token, base_url=fake.url, timeout_s=2)


def publisher(fake: GitHubFake, root: Path, *, attempts: int = 2, store: SqliteStore | None = None) -> GitHubPublisher:
    return GitHubPublisher(
        sink(fake), Outbox(root / "outbox"), evidence_dir="evidence", attempts=attempts, wait_s=0,
        store_factory=(lambda: store) if store is not None else None,
    )  # fmt: skip


def cutover_report(command: str, *, passed: bool = True, env: str = "prod") -> Report:
    started = utc_now()
    status = Status.PASS if passed else Status.FAIL
    name = "outbound_flag" if command in ("rollback", "enable-outbound") else "processed"
    checks = [CheckResult(name=name, status=status, detail="the lever read back" if passed else "it did not")]
    return Report(
        command=command,
        env=env,
        run_id=new_run_id(),
        started_at=started,
        finished_at=started + timedelta(seconds=2),
        checks=checks,
        requested_by="U0ENGINEER",
        pr=PR,
    )


def publish(pub: GitHubPublisher, report: Report, root: Path, *, start: bool = True):
    if start:
        assert pub.deployments is not None
        pub.deployments.start(env=report.env, command=report.command, run_id=report.run_id, pr=PR,
                              requested_by="U0ENGINEER")  # fmt: skip
    bundle = write_bundle(report, root / "local")
    return bundle, pub.publish(report, bundle, pr=PR, keep_account_ids=False)


def raw_repo(fake: GitHubFake):
    """Plain PyGithub, as anyone would call it (no pauses between writes: the fake needs none)."""
    gh = Github(auth=Auth.Token(SANDBOX_TOKEN), base_url=fake.url, retry=None, seconds_between_writes=0,
                seconds_between_requests=0)  # fmt: skip
    return gh.get_repo(REPO)


def states(deployment: dict) -> list[str]:
    return [s["state"] for s in deployment["statuses"]]


# --- the fake validates like GitHub ---------------------------------------------------------------


def test_the_fake_refuses_deployments_as_github_does_and_the_client_never_trips_on_it(fake, tmp_path):
    head = fake.head_sha(BRANCH)  # it carries a failed preflight status
    sink(fake).set_status(head, "cutover/prod/preflight", "failure", "FAIL preflight prod", None)
    repo = raw_repo(fake)
    with pytest.raises(GithubException) as refused:  # required_contexts left out: every context must be green
        repo.create_deployment(head, task="rollback", environment="prod", auto_merge=False)
    assert refused.value.status == 409
    assert "Commit status checks failed" in refused.value.data["message"]
    sink(fake).commit_files("main", {"NEWS.md": b"main moved on\n"}, "main moves past the PR's base")
    with pytest.raises(GithubException) as conflict:  # auto_merge left on: GitHub would merge main into the ref
        repo.create_deployment(head, task="rollback", environment="prod", required_contexts=[])
    assert conflict.value.status == 409 and "Conflict merging main" in conflict.value.data["message"]
    with pytest.raises(GithubException) as long:
        repo.create_deployment(head, environment="prod", auto_merge=False, required_contexts=[], description="x" * 141)
    assert long.value.status == 422

    made = sink(fake).create_deployment(ref=head, task="rollback", environment="prod", description="d" * 300,
                                        payload={"run_id": "r1"})  # fmt: skip
    [stored] = fake.deployments("prod")
    assert (stored["id"], stored["sha"], stored["task"]) == (made.id, head, "rollback")
    assert stored["auto_merge"] is False and stored["required_contexts"] == []
    assert len(stored["description"]) == 140  # clipped by the client, accepted by the fake


def test_auto_inactive_applies_only_to_non_production_environments_on_the_fake(fake):
    repo = raw_repo(fake)
    head = fake.head_sha(BRANCH)
    for environment in ("staging", "production"):
        first = repo.create_deployment(head, environment=environment, auto_merge=False, required_contexts=[])
        first.create_status("success")
        second = repo.create_deployment(head, environment=environment, auto_merge=False, required_contexts=[])
        second.create_status("success")  # auto_inactive defaults to true
    staging = {d["id"]: states(d) for d in fake.deployments("staging")}
    production = {d["id"]: states(d) for d in fake.deployments("production")}
    assert sorted(staging.values()) == [["success"], ["success", "inactive"]]
    assert sorted(production.values()) == [["success"], ["success"]]  # GitHub leaves production alone


# --- through the publisher's outbox job -------------------------------------------------------------


def test_a_run_is_a_deployment_of_the_pr_head_in_progress_then_success_with_the_evidence(fake, tmp_path):
    pub = publisher(fake, tmp_path)
    head = fake.head_sha(BRANCH)
    report = cutover_report("canary")
    bundle, result = publish(pub, report, tmp_path)
    assert result.state == "attached"
    [d] = fake.deployments("prod")
    assert (d["sha"], d["task"], d["creator"]) == (head, "canary", fake.login)
    assert d["payload"] == {"run_id": report.run_id, "pr": PR}
    assert states(d) == ["in_progress", "success"]
    log_url = d["statuses"][1]["log_url"]
    evidence_sha = fake.head_sha(BRANCH)  # the evidence commit
    assert log_url == f"{fake.html}/tree/{evidence_sha}/evidence/prod/{bundle.name}"
    assert d["statuses"][1]["description"].startswith("PASS canary prod")
    assert pub.retry(report).state == "attached"  # delivered: nothing is posted twice
    assert [states(d) for d in fake.deployments()] == [["in_progress", "success"]]


def test_a_failed_run_ends_its_deployment_as_failure(fake, tmp_path):
    pub = publisher(fake, tmp_path)
    publish(pub, cutover_report("enable-outbound", passed=False), tmp_path)
    [d] = fake.deployments("prod")
    assert states(d) == ["in_progress", "failure"]


def test_preflight_is_no_deployment(fake, tmp_path):
    pub = publisher(fake, tmp_path)
    _, result = publish(pub, cutover_report("preflight"), tmp_path, start=False)
    assert result.state == "attached"
    assert fake.deployments() == []


def test_a_rollback_ends_only_the_bots_own_successful_outbound_deployments(fake, tmp_path):
    pub = publisher(fake, tmp_path)
    publish(pub, cutover_report("enable-outbound"), tmp_path)
    foreign = sink(fake, OTHER_TOKEN)  # someone else's "enable-outbound" deployment: not the bot's to end
    made = foreign.create_deployment(ref=fake.head_sha(BRANCH), task="enable-outbound", environment="prod",
                                     description="by hand")  # fmt: skip
    foreign.create_deployment_status(made.id, "success")
    assert [d.task for d in sink(fake).deployments(environment="prod")] == ["enable-outbound"]  # own only
    publish(pub, cutover_report("rollback"), tmp_path)
    by_creator = {(d["task"], d["creator"]): states(d) for d in fake.deployments("prod")}
    assert by_creator[("enable-outbound", fake.login)] == ["in_progress", "success", "inactive"]
    assert by_creator[("enable-outbound", "someone-else")] == ["success"]
    assert by_creator[("rollback", fake.login)] == ["in_progress", "success"]


def test_a_rollback_that_did_not_turn_outbound_off_leaves_the_outbound_deployment_active(fake, tmp_path):
    pub = publisher(fake, tmp_path)
    publish(pub, cutover_report("enable-outbound"), tmp_path)
    publish(pub, cutover_report("rollback", passed=False), tmp_path)  # its outbound_flag step failed
    by_task = {d["task"]: states(d) for d in fake.deployments("prod")}
    assert by_task == {"enable-outbound": ["in_progress", "success"], "rollback": ["in_progress", "failure"]}


def test_a_github_outage_at_start_and_at_publish_is_caught_up_by_the_same_outbox_job(fake, tmp_path):
    store = SqliteStore(tmp_path / "state.db")
    pub = publisher(fake, tmp_path, attempts=1, store=store)
    report = cutover_report("canary")
    fake.inject(r"/rp-mw/deployments", Fault("status", status=503))  # deployments are down, the rest is up
    assert pub.deployments is not None
    pub.deployments.start_quietly(env="prod", command="canary", run_id=report.run_id, pr=PR, requested_by="U0E")
    bundle, result = publish(pub, report, tmp_path, start=False)
    assert result.state == "pending"  # the job stays queued: its deployment step is not done
    assert fake.deployments() == []
    stickies = [c for c in fake.comments(PR) if c["body"].startswith("<!-- cutover:prod:canary -->")]
    assert len(stickies) == 1  # the steps before it are done and stay done
    fake.clear_faults()
    assert pub.retry(report).state == "attached"
    [d] = fake.deployments("prod")
    assert d["sha"] == fake.commits_on(BRANCH)[1]["sha"]  # the head the evidence was built on
    assert states(d) == ["success"]  # created by the job, ended with the evidence link
    assert d["statuses"][0]["log_url"].endswith(f"/evidence/prod/{bundle.name}")
    assert len([c for c in fake.comments(PR) if c["body"].startswith("<!-- cutover:prod:canary -->")]) == 1
    assert [c for c in fake.comments(PR) if c["body"].startswith("<!-- cutover:prod:timeline -->")]
    assert not list((tmp_path / "outbox").glob("*.json"))


def test_a_closed_pr_ends_a_started_deployment_as_error(fake, tmp_path):
    pub = publisher(fake, tmp_path)
    report = cutover_report("canary")
    assert pub.deployments is not None
    pub.deployments.start(env="prod", command="canary", run_id=report.run_id, pr=PR, requested_by="U0ENGINEER")
    fake.set_pr_state(PR, "closed")
    _, result = publish(pub, report, tmp_path, start=False)
    assert result.state == "local"
    [d] = fake.deployments("prod")
    assert states(d) == ["in_progress", "error"]
    assert "PR #31 is closed" in d["statuses"][1]["description"]


# --- a real rollback never waits on GitHub -----------------------------------------------------------

ENV = "dep-rollback"
SANDBOX_PR = 32


def test_a_rollback_does_not_wait_for_its_deployment_to_start(sandbox: Sandbox, tmp_path):
    from commands.config import load_config

    if ENV not in sandbox.envs:
        sandbox.add_env(ENV, Scenario(approval_required=()))
    sandbox.github.add_pr(SANDBOX_PR, "cutover/dep-rollback")
    config = load_config(sandbox.write_config(tmp_path, evidence_dir=str(tmp_path / "evidence")))
    gh = GitHubEvidence(repo=REPO, token=sandbox.github_token, base_url=sandbox.github.url, timeout_s=60)
    pub = GitHubPublisher(gh, Outbox(tmp_path / "outbox"), evidence_dir="evidence", attempts=1, wait_s=0)
    sandbox.github.inject(r"/deployments$", Fault("hang", seconds=60, times=1))  # GitHub never answers the start
    request = RunRequest("rollback", ENV, requested_by="cli:tester", pr=SANDBOX_PR, confirmations=("rule-paused",))
    outcome = execute(request, config=config, publisher=pub)
    assert outcome.report.overall_status == "PASS"
    assert outcome.evidence.state == "pending"  # queued, sent in the background
    starting = [t for t in threading.enumerate() if t.name == f"deploy-start-{outcome.report.run_id}"]
    assert starting and starting[0].is_alive()  # the run ended while its deployment's start still waited
    assert sandbox.github.received("POST", r"/deployments$")
    assert not sandbox.github.deployments(ENV)
    comments = rf"/issues/{SANDBOX_PR}/comments$"
    wait_for(lambda: sandbox.github.received("POST", comments), what="the evidence going on without the deployment")


AUTO_ENV, AUTO_PR = "dep-auto", 33


def test_an_automatic_rollback_is_a_deployment_of_its_own_beside_the_failed_enable_outbound(sandbox, tmp_path):
    from commands.config import load_config
    from commands.state import store_for
    from tests.test_enable_outbound_support import add_envs, lever, record_phases, set_alarm, watching, write_map

    add_envs(sandbox, {AUTO_ENV: Scenario(approval_required=(), rule_enabled=True)})
    sandbox.github.add_pr(AUTO_PR, "cutover/dep-auto")
    config = load_config(write_map(sandbox, tmp_path, watch={AUTO_ENV: {"minutes": 0.5}}))
    store = store_for(config)
    record_phases(store, AUTO_ENV, "preflight", "canary")
    gh = GitHubEvidence(repo=REPO, token=sandbox.github_token, base_url=sandbox.github.url, timeout_s=10)
    pub = GitHubPublisher(gh, Outbox(tmp_path / "outbox"), evidence_dir="evidence", attempts=2, wait_s=0)
    request = RunRequest("enable-outbound", AUTO_ENV, requested_by="cli:tester", pr=AUTO_PR)
    done: list = []
    runner = threading.Thread(target=lambda: done.append(execute(request, config=config, publisher=pub)))
    runner.start()
    wait_for(lambda: watching(store, AUTO_ENV) and lever(sandbox, AUTO_ENV)[0] == "true", what="the watch")
    set_alarm(sandbox, AUTO_ENV, "worker-error-rate", "ALARM", "Threshold Crossed: [9.0] was greater than 0.0")
    runner.join(60)
    [outcome] = done
    assert outcome.report.overall_status == "FAIL" and lever(sandbox, AUTO_ENV)[0] == "false"
    auto = store.last_run(AUTO_ENV, "rollback")
    assert auto is not None and auto.requested_by == "cutover-bot"
    wait_for(lambda: len(sandbox.github.deployments(AUTO_ENV)) == 2 and all(
        len(d["statuses"]) >= 2 or d["task"] == "rollback" for d in sandbox.github.deployments(AUTO_ENV)
    ), timeout_s=30, what="both deployments")  # fmt: skip
    by_task = {d["task"]: d for d in sandbox.github.deployments(AUTO_ENV)}
    enable, rollback = by_task["enable-outbound"], by_task["rollback"]
    assert [s["state"] for s in enable["statuses"]] == ["in_progress", "failure"]
    # Its verdict is the store's (here FAIL: the rule is still enabled, so the quiet window sees invocations),
    # and it started inside the enable-outbound run: no `in_progress` of its own.
    assert auto.status == "FAIL" and [s["state"] for s in rollback["statuses"]] == ["failure"]
    assert rollback["payload"] == {"run_id": auto.run_id, "pr": AUTO_PR}
    assert rollback["statuses"][0]["log_url"] == enable["statuses"][-1]["log_url"]  # the same evidence
    assert (
        f"automatic rollback in enable-outbound run {outcome.report.run_id}" in rollback["statuses"][0]["description"]
    )
    flag = next(c for c in outcome.report.checks[4:] if c.name == "outbound_flag")  # the rollback's first step
    assert flag.data["automatic_rollback"]["run_id"] == auto.run_id
