"""Evidence you can trust (DESIGN.md): whose comment is edited, which branches take proof files, and
an outbox that drains while the process runs. Real PyGithub against the loopback GitHub."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from commands.evidence import write_bundle
from commands.outbox import BUSY_RECHECK_S as OUTBOX_BUSY_RECHECK_S
from commands.outbox import Outbox, OutboxDrainer
from commands.publish import HISTORY_END, HISTORY_START, GitHubPublisher, marker, parse_history
from commands.redaction import Redactor
from integrations.github import GitHubEvidence
from integrations.sandbox.github import SANDBOX_LOGIN, SANDBOX_TOKEN, GitHubFake
from integrations.sandbox.http import Fault
from tests import test_github_evidence as base

REPO, BRANCH, PR = base.REPO, base.BRANCH, base.PR
MALLORY_TOKEN = "ghp_mallory0000000000000000000000000000"
FAKE_RUN = "deadbeef00"
FAKE_LINE = (
    f"- 2020-01-01 00:00 UTC ✅ PASS preflight prod: 99 passed in 0.1 s (run {FAKE_RUN}) · "
    "[evidence](https://evil.example/forged)"
)
PLANTED = f"{marker('prod', 'preflight')}\n## Cutover evidence\n\n{HISTORY_START}\n{FAKE_LINE}\n{HISTORY_END}\n"


@pytest.fixture
def fake() -> Iterator[GitHubFake]:
    with GitHubFake(repo=REPO) as gh:
        gh.add_pr(PR, BRANCH)
        gh.add_token(MALLORY_TOKEN, "mallory")
        yield gh


@pytest.fixture
def redactor() -> Redactor:
    r = Redactor()
    r.register("richpanel_api_key", base.SECRET)
    return r


def mallory(fake: GitHubFake) -> GitHubEvidence:
    return GitHubEvidence(repo=REPO, token=MALLORY_TOKEN, base_url=fake.url, timeout_s=1)


def publish(pub: GitHubPublisher, tmp_path: Path, redactor: Redactor, *, pr: int = PR, **kw: object):
    report = base.make_report(**kw)
    bundle = write_bundle(report, tmp_path / "local", redactor=redactor)
    return report, bundle, pub.publish(report, bundle, pr=pr, keep_account_ids=False)


def bot_comments(fake: GitHubFake) -> list[dict]:
    return [c for c in fake.comments(PR) if c["author"] == fake.login]


# --- 1. the sticky comment is the bot's own, and nothing is read back from comment text -----------
def test_identity_of_a_user_token_and_of_an_app_installation_token() -> None:
    with GitHubFake(repo=REPO) as gh:
        assert GitHubEvidence(repo=REPO, token=SANDBOX_TOKEN, base_url=gh.url).identity() == SANDBOX_LOGIN
        assert len(gh.received("GET", "^/user$")) == 1 and not gh.received("POST", "^/graphql$")
    app_token = "ghs_installation000000000000000000000000"
    with GitHubFake(repo=REPO, token=app_token) as gh:
        sink = GitHubEvidence(repo=REPO, token=app_token, base_url=gh.url)
        assert sink.identity() == sink.identity() == "cutover-bot[bot]"  # /user is 403, GraphQL names the bot
        assert len(gh.received("GET", "^/user$")) == 1 and len(gh.received("POST", "^/graphql$")) == 1
        named = GitHubEvidence(repo=REPO, token=app_token, base_url=gh.url, app_slug="cutover-bot")
        before = len(gh.requests)
        assert named.identity() == "cutover-bot[bot]" and len(gh.requests) == before  # no call at all


def test_a_planted_marker_is_neither_edited_nor_trusted(fake: GitHubFake, tmp_path: Path, redactor: Redactor) -> None:
    mallory(fake).upsert_comment(PR, marker("prod", "preflight"), PLANTED)
    [planted] = fake.comments(PR)
    assert planted["author"] == "mallory"
    sink = base.evidence(fake)
    assert sink.find_comment(PR, marker("prod", "preflight")) is None  # not ours, so not found

    pub = base.publisher(sink, tmp_path, redactor)
    first, _, result = publish(pub, tmp_path, redactor)
    second, _, _ = publish(pub, tmp_path, redactor, fail=True)
    assert result.state == "attached", result.detail

    after = {c["id"]: c for c in fake.comments(PR)}
    assert after[planted["id"]]["body"] == PLANTED and after[planted["id"]]["edits"] == 0  # untouched
    [own] = bot_comments(fake)  # the bot made its own, and edited only that one
    assert own["id"] != planted["id"] and own["body"].startswith(marker("prod", "preflight"))
    assert FAKE_RUN not in own["body"] and "evil.example" not in own["body"]
    history = parse_history(own["body"])
    assert len(history) == 2 and second.run_id in history[0] and first.run_id in history[1]
    assert not [r for r in fake.received("PATCH", r"/issues/comments/") if r.path.endswith(str(planted["id"]))]


def test_history_never_comes_from_comment_text(fake: GitHubFake, tmp_path: Path, redactor: Redactor) -> None:
    pub = base.publisher(base.evidence(fake), tmp_path, redactor)
    first, _, _ = publish(pub, tmp_path, redactor)
    [own] = bot_comments(fake)
    # Someone with write access edits the bot's own comment and slips a passing run into its history.
    with fake._state:
        stored = fake._comments[own["id"]]
        stored["body"] = stored["body"].replace(HISTORY_START, f"{HISTORY_START}\n{FAKE_LINE}")
    assert FAKE_RUN in fake.comments(PR)[0]["body"]

    second, _, result = publish(pub, tmp_path, redactor)
    assert result.state == "attached"
    [own] = bot_comments(fake)
    history = parse_history(own["body"])
    assert FAKE_RUN not in own["body"] and "evil.example" not in own["body"]
    assert len(history) == 2 and second.run_id in history[0] and first.run_id in history[1]


def test_only_the_bots_own_statuses_follow_the_evidence_commit(
    fake: GitHubFake, tmp_path: Path, redactor: Redactor
) -> None:
    head = fake.head_sha(BRANCH)
    mallory(fake).set_status(head, "cutover/prod/rollback", "success", "rollback PASS (forged)", None)
    sink = base.evidence(fake)
    sink.set_status(head, "cutover/prod/canary", "success", "canary PASS", None)
    _, _, result = publish(base.publisher(sink, tmp_path, redactor), tmp_path, redactor)
    assert result.state == "attached"
    carried = {s["context"]: s["creator"] for s in fake.statuses(fake.head_sha(BRANCH))}
    assert carried == {"cutover/prod/canary": fake.login, "cutover/prod/preflight": fake.login}


# --- 2. which branches take proof files ------------------------------------------------------------
@pytest.mark.parametrize(
    ("setup", "says"),
    [
        (lambda gh: gh.add_pr(7, "main"), "PR #7's head branch `main` is the repository's default branch"),
        (lambda gh: gh.add_pr(7, "release/1", base="release/1"), "PR #7's head branch `release/1` is its own base"),
        (lambda gh: gh.add_pr(7, "feature/done", state="closed"), "PR #7 is closed"),
        (lambda gh: gh.add_pr(7, "feature/shipped", state="merged"), "PR #7 is merged"),
        (lambda gh: gh.add_pr(7, "main", fork="someone/rp-mw"), "its branch lives in the fork someone/rp-mw"),
    ],
    ids=["head-is-default-branch", "head-is-base", "closed", "merged", "fork-main"],
)
def test_proof_files_stay_local_unless_the_pr_is_open_on_its_own_branch(
    fake: GitHubFake, tmp_path: Path, redactor: Redactor, setup, says: str
) -> None:
    setup(fake)
    refs_before = dict(fake.refs)
    pub = base.publisher(base.evidence(fake), tmp_path, redactor)
    report, bundle, result = publish(pub, tmp_path, redactor, pr=7)
    assert result.state == "local"
    assert says in result.detail and f"evidence kept locally at {bundle.path}" in result.detail
    assert fake.git_writes() == [] and fake.refs == refs_before  # not one git object, no ref moved
    assert not [r for r in fake.requests if r.method != "GET"]  # nor a status or a comment
    assert pub.outbox.pending() == []
    assert pub.retry(report).detail == result.detail  # a later retry answers the same, not "attached"


def test_a_pr_closed_while_evidence_waited_gets_no_commit(fake: GitHubFake, tmp_path: Path, redactor: Redactor) -> None:
    fake.inject(r"/git/commits$", Fault("status", status=500))
    pub = base.publisher(base.evidence(fake), tmp_path, redactor)
    report, _, result = publish(pub, tmp_path, redactor)
    assert result.state == "pending"
    fake.clear_faults()
    fake.set_pr_state(PR, "closed")
    refs_before = dict(fake.refs)
    [drained] = base.publisher(base.evidence(fake), tmp_path, redactor).drain()
    assert drained.state == "local" and f"PR #{PR} is closed" in drained.detail
    assert fake.refs == refs_before and fake.comments(PR) == []
    assert pub.retry(report).state == "local"


# --- 4. the outbox drains while the process runs ---------------------------------------------------
def wait_for(predicate, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_a_running_drainer_delivers_a_pending_job_without_a_restart(
    fake: GitHubFake, tmp_path: Path, redactor: Redactor
) -> None:
    fake.inject(r"/git/commits$", Fault("status", status=500))
    pub = base.publisher(base.evidence(fake), tmp_path, redactor)
    results: list = []
    with OutboxDrainer(pub, interval_s=0.1, on_result=results.append) as drainer:
        _, bundle, result = publish(pub, tmp_path, redactor)
        assert result.state == "pending"
        assert wait_for(lambda: drainer.passes >= 2)  # passes run, the job keeps waiting while GitHub fails
        assert pub.outbox.pending() and fake.comments(PR) == []
        fake.clear_faults()  # GitHub is back: no restart, no new publish
        assert wait_for(lambda: not pub.outbox.pending() and len(fake.comments(PR)) == 1)
        assert drainer.running
    assert not drainer.running
    assert any(r.state == "attached" for r in results)
    assert f"evidence/prod/{bundle.name}/report.json" in fake.files_at(BRANCH)
    assert len(fake.commits_on(BRANCH)) == 3


def test_a_job_another_worker_held_is_looked_at_again_in_seconds_not_at_the_next_interval(
    fake: GitHubFake, tmp_path: Path, redactor: Redactor
) -> None:
    fake.inject(r"/git/commits$", Fault("status", status=500))
    pub = base.publisher(base.evidence(fake), tmp_path, redactor)
    _, _, result = publish(pub, tmp_path, redactor)
    assert result.state == "pending"
    fake.clear_faults()
    [job] = pub.outbox.pending()
    held = threading.Event()
    release = threading.Event()

    def another_worker() -> None:  # holds the job as a process that is dying, or slow, would
        with pub.outbox.claim(job["id"]) as mine:
            assert mine
            held.set()
            release.wait(10)

    holder = threading.Thread(target=another_worker)
    holder.start()
    held.wait(5)
    with OutboxDrainer(pub, interval_s=300) as drainer:  # the production interval would be 60 s
        assert wait_for(lambda: drainer.passes >= 1)
        assert pub.outbox.pending() and fake.comments(PR) == []  # skipped: someone else holds it
        release.set()
        holder.join(5)
        assert wait_for(lambda: len(fake.comments(PR)) == 1, timeout_s=OUTBOX_BUSY_RECHECK_S + 5)
    assert pub.outbox.pending() == []


def test_a_corrupt_job_does_not_stop_the_good_one(fake: GitHubFake, tmp_path: Path, redactor: Redactor) -> None:
    fake.inject(r"/git/commits$", Fault("status", status=500))
    pub = base.publisher(base.evidence(fake), tmp_path, redactor)
    _, bundle, result = publish(pub, tmp_path, redactor)
    assert result.state == "pending"
    root = pub.outbox.root
    (root / "aaa-not-json.json").write_text("{half a job")
    (root / "aab-a-list.json").write_text("[1, 2, 3]")
    (root / "aac-no-pr.json").write_text(json.dumps({"id": "aac-no-pr", "created_at": "0"}))
    (root / "aad-wrong-id.json").write_text(json.dumps({"id": "something-else", "pr": PR}))
    fake.clear_faults()

    drainer = OutboxDrainer(pub, interval_s=30)
    results = drainer.run_once()  # the first pass a started drainer makes
    assert [r.state for r in results if r.state == "attached"] == ["attached"]
    assert len(fake.comments(PR)) == 1 and f"evidence/prod/{bundle.name}/report.json" in fake.files_at(BRANCH)
    assert pub.outbox.pending() == [] and not list(root.glob("*.json"))
    failed = root / "failed"
    for name in ("aaa-not-json", "aab-a-list", "aad-wrong-id"):
        assert (failed / f"{name}.json").exists() and (failed / f"{name}.json.reason").read_text().strip()
    assert [j["id"] for j in pub.outbox.failed()] == ["aac-no-pr", "something-else"]
    assert all(j["id"] != "aac-no-pr" or j["failed_reason"] for j in pub.outbox.failed())


def test_the_drainer_survives_a_failing_pass() -> None:
    calls: list[int] = []
    done = threading.Event()

    class Flaky:
        def drain(self) -> list:
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("disk full")
            done.set()
            return []

    drainer = OutboxDrainer(Flaky(), interval_s=0.05).start()
    try:
        assert done.wait(5)
    finally:
        drainer.stop()
    assert len(calls) >= 2 and not drainer.running
    drainer.stop()  # idempotent


def test_outbox_lock_serialises_across_threads(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    inside: list[int] = []
    overlap: list[bool] = []

    def work() -> None:
        for _ in range(20):
            with box.lock("pr-1"):
                inside.append(1)
                overlap.append(len(inside) > 1)
                time.sleep(0.001)
                inside.pop()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(overlap) == 80 and not any(overlap)
    with box.lock("pr-1"), pytest.raises(Exception, match="held pr-1"), Outbox(tmp_path).lock("pr-1", timeout_s=0.1):
        pass
