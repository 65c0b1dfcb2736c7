"""Several runs attach evidence to one PR at once (threads, then processes): all of it lands.

One commit per run, one sticky comment naming every run, and each run's status on its own commit.
Real PyGithub against the loopback GitHub, which answers slowly enough for the runs to interleave.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from commands.evidence import Bundle, write_bundle
from commands.execute import EvidenceResult
from commands.outbox import Outbox
from commands.publish import GitHubPublisher, marker, parse_history, status_context
from commands.redaction import Redactor
from commands.report import Report
from integrations.github import GitHubEvidence
from integrations.sandbox.github import SANDBOX_TOKEN, GitHubFake
from tests import test_github_evidence as base

REPO, BRANCH, PR = base.REPO, base.BRANCH, base.PR
RUNS = 3
CONTEXT = status_context("prod", "preflight")


@pytest.fixture
def fake() -> Iterator[GitHubFake]:
    with GitHubFake(repo=REPO) as gh:
        gh.add_pr(PR, BRANCH)
        gh.latency_s = 0.01  # every answer a little late: the runs' calls interleave
        yield gh


def reports(tmp_path: Path) -> list[tuple[Report, Bundle]]:
    out = []
    for i in range(RUNS):
        report = base.make_report(fail=i == 1)
        out.append((report, write_bundle(report, tmp_path / "local", redactor=Redactor())))
    return out


def publish_in_worker(url: str, outbox: str, report: Report, bundle: Bundle) -> EvidenceResult:
    """What one worker does: its own client and publisher over the shared outbox folder."""
    sink = GitHubEvidence(repo=REPO, token=SANDBOX_TOKEN, base_url=url, timeout_s=10)
    pub = GitHubPublisher(sink, Outbox(outbox), evidence_dir="evidence", attempts=2, wait_s=0)
    try:
        return pub.publish(report, bundle, pr=PR, keep_account_ids=False)
    finally:
        sink.close()


def check_everything_landed(fake: GitHubFake, runs: list[tuple[Report, Bundle]], results: list) -> None:
    assert [r.state for r in results] == ["attached"] * RUNS, [r.detail for r in results]
    history = fake.commits_on(BRANCH)
    assert len(history) == 2 + RUNS  # initial, branch work, then exactly one commit per run
    stickies = [c for c in fake.comments(PR) if c["body"].startswith(marker("prod", "preflight"))]
    assert len(stickies) == 1 and stickies[0]["author"] == fake.login
    lines = parse_history(stickies[0]["body"])
    for report, bundle in runs:
        [commit] = [c for c in history if f"(run {report.run_id})" in c["message"]]
        folder = f"evidence/prod/{bundle.name}"
        assert f"{folder}/report.json" in fake.files_at(commit["sha"])
        [own] = [s for s in fake.statuses(commit["sha"]) if s["context"] == CONTEXT]  # one, on its own commit
        assert own["target_url"].endswith(f"/tree/{commit['sha']}/{folder}")
        assert own["state"] == ("failure" if report.overall_status == "FAIL" else "success")
        assert sum(report.run_id in line for line in lines) == 1  # every run named once
    for commit in history[:RUNS]:  # the canary status set before the runs follows every new head
        assert {s["context"] for s in fake.statuses(commit["sha"])} == {CONTEXT, "cutover/prod/canary"}


def test_concurrent_threads_on_one_pr_all_land(fake: GitHubFake, tmp_path: Path) -> None:
    base.evidence(fake).set_status(fake.head_sha(BRANCH), "cutover/prod/canary", "success", "canary PASS", None)
    runs = reports(tmp_path)
    start = threading.Barrier(RUNS)
    results: list = [None] * RUNS

    def worker(i: int) -> None:
        start.wait()
        results[i] = publish_in_worker(fake.url, str(tmp_path / "outbox"), *runs[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(RUNS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    check_everything_landed(fake, runs, results)
    assert len(fake.received("PATCH", "/git/refs/")) == RUNS  # each ref update went through the first time


def test_concurrent_processes_on_one_pr_all_land(fake: GitHubFake, tmp_path: Path) -> None:
    base.evidence(fake).set_status(fake.head_sha(BRANCH), "cutover/prod/canary", "success", "canary PASS", None)
    runs = reports(tmp_path)
    ctx = multiprocessing.get_context("spawn")  # fresh interpreters: nothing shared but the outbox folder
    with ProcessPoolExecutor(max_workers=RUNS, mp_context=ctx) as pool:
        futures = [pool.submit(publish_in_worker, fake.url, str(tmp_path / "outbox"), r, b) for r, b in runs]
        results = [f.result(timeout=60) for f in futures]
    check_everything_landed(fake, runs, results)
