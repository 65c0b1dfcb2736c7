"""Evidence on the pull request: PyGithub over HTTP against the loopback GitHub, through the publisher."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from commands.evidence import write_bundle
from commands.outbox import Outbox
from commands.publish import COMMENT_LIMIT, GitHubPublisher, marker, parse_history
from commands.redaction import Redactor
from commands.report import CheckResult, Report, Status, new_run_id, overall_status, utc_now
from integrations.errors import UpstreamError
from integrations.github import GitHubEvidence
from integrations.sandbox.github import SANDBOX_TOKEN, GitHubFake
from integrations.sandbox.http import Fault

REPO = "acme/rp-mw"
BRANCH = "feature/cutover"
PR = 12
SECRET = "rp-secret-value-9f8e7d6c5b"
EMAIL = "jane.customer@example.org"


@pytest.fixture
def fake() -> Iterator[GitHubFake]:
    with GitHubFake(repo=REPO) as gh:
        gh.add_pr(PR, BRANCH)
        yield gh


@pytest.fixture
def redactor() -> Redactor:
    r = Redactor()
    r.register("richpanel_api_key", SECRET)
    return r


def evidence(fake: GitHubFake, **kw: object) -> GitHubEvidence:
    return GitHubEvidence(repo=REPO, token=SANDBOX_TOKEN, base_url=fake.url, timeout_s=1, **kw)


def publisher(sink: GitHubEvidence, root: Path, redactor: Redactor, attempts: int = 2) -> GitHubPublisher:
    return GitHubPublisher(
        sink, Outbox(root / "outbox"), evidence_dir="evidence", redactor=redactor, attempts=attempts, wait_s=0
    )


def make_report(*, fail: bool = False, n_checks: int = 3, detail_size: int = 0) -> Report:
    started = utc_now()
    checks = [
        CheckResult(
            name="richpanel_get",
            status=Status.FAIL if fail else Status.PASS,
            detail=f"GET /v1/users with key {SECRET} for {EMAIL}",
            data={"key": SECRET, "contact": EMAIL},
        )
    ]
    checks += [
        CheckResult(name=f"secrets.s{i}", status=Status.PASS, detail="present " + "x" * detail_size, duration_ms=i)
        for i in range(n_checks - 1)
    ]
    return Report(
        command="preflight",
        env="prod",
        run_id=new_run_id(),
        started_at=started,
        finished_at=started + timedelta(seconds=1.5),
        overall_status=overall_status([c.name for c in checks], checks),
        checks=checks,
    )


def run_once(pub: GitHubPublisher, tmp_path: Path, redactor: Redactor, **kw: object):
    report = make_report(**kw)
    bundle = write_bundle(report, tmp_path / "local", redactor=redactor)
    return report, bundle, pub.publish(report, bundle, pr=PR, keep_account_ids=False)


# --- GitHubEvidence on its own ------------------------------------------------------------
def test_pr_head_reads_branch_and_sha(fake: GitHubFake) -> None:
    head = evidence(fake).pr_head(PR)
    assert (head.number, head.branch, head.sha, head.read_only) == (PR, BRANCH, fake.head_sha(BRANCH), False)
    assert head.html_url.endswith(f"/{REPO}/pull/{PR}")


def test_bad_pr_number_is_a_clear_error(fake: GitHubFake) -> None:
    with pytest.raises(UpstreamError) as err:
        evidence(fake).pr_head(999)
    assert err.value.status_code == 404
    assert "no pull request #999" in str(err.value)
    with pytest.raises(UpstreamError, match="not a pull request number"):
        evidence(fake).pr_head(0)


def test_bad_token_is_reported_without_the_token(fake: GitHubFake) -> None:
    sink = GitHubEvidence(repo=REPO, token="ghp_wrongtoken1234567890", base_url=fake.url, timeout_s=1)
    with pytest.raises(UpstreamError) as err:
        sink.pr_head(PR)
    assert err.value.status_code == 401 and "GITHUB_TOKEN" in str(err.value)
    assert "ghp_wrong" not in str(err.value)


def test_upsert_edits_in_place(fake: GitHubFake) -> None:
    sink = evidence(fake)
    m = marker("prod", "preflight")
    url1 = sink.upsert_comment(PR, m, f"{m}\nfirst")
    url2 = sink.upsert_comment(PR, m, f"{m}\nsecond")
    assert url1 == url2
    [comment] = fake.comments(PR)
    assert comment["body"].endswith("second") and comment["edits"] == 1
    assert sink.find_comment(PR, m) == (comment["id"], comment["body"])
    assert sink.find_comment(PR, marker("dev", "preflight")) is None


def test_commit_call_count_does_not_grow_with_files(fake: GitHubFake) -> None:
    sink = evidence(fake)
    counts = []
    for n in (3, 300):
        before = sink.calls
        sink.commit_files(BRANCH, {f"e/{n}/f{i}.json": b"{}" for i in range(n)}, f"batch {n}")
        counts.append(sink.calls - before)
    assert counts[0] == counts[1] == 4 + 1  # ref, commit, tree, commit, update ref
    assert len(fake.received("POST", "/git/blobs")) == 0


@pytest.mark.parametrize("fault", [Fault("status", status=502, times=1), Fault("drop", times=1)], ids=["502", "drop"])
def test_post_is_never_resent(fake: GitHubFake, fault: Fault) -> None:
    fake.inject(r"/statuses/", fault)
    with pytest.raises(UpstreamError) as err:
        evidence(fake).set_status(fake.head_sha(BRANCH), "cutover/prod/preflight", "success", "ok", None)
    assert err.value.status_code == (502 if fault.kind == "status" else None)
    assert len(fake.received("POST", "/statuses/")) == 1


def test_reads_are_retried_on_a_gateway_error(fake: GitHubFake) -> None:
    fake.inject(r"/pulls/", Fault("status", status=503, times=1))
    assert evidence(fake).pr_head(PR).branch == BRANCH
    assert len(fake.received("GET", "/pulls/")) == 2


# --- the publisher ---------------------------------------------------------------------------
def test_publish_attaches_commit_status_and_comment(fake: GitHubFake, tmp_path: Path, redactor: Redactor) -> None:
    sink = evidence(fake)
    report, bundle, result = run_once(publisher(sink, tmp_path, redactor), tmp_path, redactor)
    assert result.state == "attached", result.detail
    [commit, *_] = fake.commits_on(BRANCH)
    folder = f"evidence/prod/{bundle.name}"
    assert report.run_id in commit["message"] and "preflight prod PASS" in commit["message"]
    files = fake.files_at(BRANCH)
    assert {f"{folder}/{n}" for n in ("report.json", "report.md", "manifest.json")} <= set(files)
    manifest = json.loads(files[f"{folder}/manifest.json"])
    for name, meta in manifest["files"].items():
        assert hashlib.sha256(files[f"{folder}/{name}"]).hexdigest() == meta["sha256"]
    assert all(files[f"{folder}/{n}"] == body for n, body in bundle.files.items())  # the exact local bytes
    [status] = fake.statuses(commit["sha"])  # on the evidence commit: the PR's head now
    assert (status["context"], status["state"]) == ("cutover/prod/preflight", "success")
    assert status["target_url"].endswith(f"/tree/{commit['sha']}/{folder}")
    [comment] = fake.comments(PR)
    assert comment["body"].startswith(marker("prod", "preflight"))
    assert f"/blob/{commit['sha']}/{folder}/report.md" in comment["body"]
    assert result.url == f"{fake.html}/pull/{PR}#issuecomment-{comment['id']}"


def test_order_is_files_then_status_then_comment(fake: GitHubFake, tmp_path: Path, redactor: Redactor) -> None:
    run_once(publisher(evidence(fake), tmp_path, redactor), tmp_path, redactor)
    writes = [r.path for r in fake.requests if r.method in ("POST", "PATCH")]
    ref_update = next(i for i, p in enumerate(writes) if "/git/refs/" in p)
    status = next(i for i, p in enumerate(writes) if "/statuses/" in p)
    comment = next(i for i, p in enumerate(writes) if "/comments" in p)
    assert ref_update < status < comment


def test_two_runs_one_comment_with_history(fake: GitHubFake, tmp_path: Path, redactor: Redactor) -> None:
    pub = publisher(evidence(fake), tmp_path, redactor)
    first, _, _ = run_once(pub, tmp_path, redactor)
    second, _, _ = run_once(pub, tmp_path, redactor, fail=True)
    [comment] = fake.comments(PR)
    history = parse_history(comment["body"])
    assert len(history) == 2
    assert second.run_id in history[0] and "FAIL" in history[0]  # newest first
    assert first.run_id in history[1]
    assert len(fake.commits_on(BRANCH)) == 2 + 2  # initial + branch work + one per run
    head = fake.commits_on(BRANCH)[0]["sha"]
    contexts = {s["context"]: s["state"] for s in fake.statuses(head)}
    assert contexts == {"cutover/prod/preflight": "failure"}


def test_other_cutover_statuses_follow_the_evidence_commit(
    fake: GitHubFake, tmp_path: Path, redactor: Redactor
) -> None:
    sink = evidence(fake)
    sink.set_status(fake.head_sha(BRANCH), "cutover/prod/canary", "success", "canary PASS", None)
    sink.set_status(fake.head_sha(BRANCH), "ci/tests", "success", "green", None)
    run_once(publisher(sink, tmp_path, redactor), tmp_path, redactor)
    contexts = {s["context"] for s in fake.statuses(fake.head_sha(BRANCH))}
    assert contexts == {"cutover/prod/canary", "cutover/prod/preflight"}  # CI's own statuses are CI's business


def test_fork_pr_writes_nothing(fake: GitHubFake, tmp_path: Path, redactor: Redactor) -> None:
    fake.add_pr(13, "patch-1", fork="someone/rp-mw")
    report = make_report()
    bundle = write_bundle(report, tmp_path / "local", redactor=redactor)
    result = publisher(evidence(fake), tmp_path, redactor).publish(report, bundle, pr=13, keep_account_ids=False)
    assert result.state == "local"
    assert "read-only" in result.detail and "someone/rp-mw" in result.detail and str(bundle.path) in result.detail
    assert not [r for r in fake.requests if r.method != "GET"]
    assert Outbox(tmp_path / "outbox").pending() == []


def test_token_without_push_writes_nothing(tmp_path: Path, redactor: Redactor) -> None:
    with GitHubFake(repo=REPO, can_push=False) as gh:
        gh.add_pr(PR, BRANCH)
        _, _, result = run_once(publisher(evidence(gh), tmp_path, redactor), tmp_path, redactor)
        assert result.state == "local" and "cannot push" in result.detail
        assert not [r for r in gh.requests if r.method != "GET"]


def test_bad_pr_number_keeps_evidence_local(fake: GitHubFake, tmp_path: Path, redactor: Redactor) -> None:
    report = make_report()
    bundle = write_bundle(report, tmp_path / "local", redactor=redactor)
    pub = publisher(evidence(fake), tmp_path, redactor)
    result = pub.publish(report, bundle, pr=404, keep_account_ids=False)
    assert result.state == "local" and "no pull request #404" in result.detail
    assert pub.outbox.pending() == [] and len(pub.outbox.failed()) == 1  # not retried forever


@pytest.mark.parametrize(
    "fault",
    [
        Fault("status", status=500),
        Fault("status", status=403, body={"message": "API rate limit exceeded for installation"}),
        Fault("status", status=429, retry_after=30),
        Fault("hang", seconds=3),
    ],
    ids=["500", "rate-limit-403", "429", "timeout"],
)
def test_github_down_queues_then_drains_after_restart(
    fake: GitHubFake, tmp_path: Path, redactor: Redactor, fault: Fault
) -> None:
    fake.inject(r"/git/commits$", fault)  # every commit creation fails, the reads around it work
    _, bundle, result = run_once(publisher(evidence(fake), tmp_path, redactor), tmp_path, redactor)
    assert (result.state, result.detail) == ("pending", "GitHub unavailable: evidence queued, will retry")
    assert fake.comments(PR) == [] and len(fake.commits_on(BRANCH)) == 2

    fake.clear_faults()
    restarted = publisher(evidence(fake), tmp_path, redactor)  # a new process over the same folder
    [drained] = restarted.drain()
    assert drained.state == "attached", drained.detail
    assert restarted.drain() == []
    assert len(fake.comments(PR)) == 1
    assert len(fake.commits_on(BRANCH)) == 3
    assert len(fake.statuses(fake.head_sha(BRANCH))) == 1
    assert f"evidence/prod/{bundle.name}/report.json" in fake.files_at(BRANCH)


def test_failure_after_the_commit_resumes_without_a_second_commit(
    fake: GitHubFake, tmp_path: Path, redactor: Redactor
) -> None:
    fake.inject(r"/issues/\d+/comments$", Fault("status", status=502))
    _, _, result = run_once(publisher(evidence(fake), tmp_path, redactor, attempts=3), tmp_path, redactor)
    assert result.state == "pending"
    [job] = Outbox(tmp_path / "outbox").pending()
    assert job["steps"]["commit"] is not None and job["steps"]["status"] is True and job["steps"]["comment"] is None

    fake.clear_faults()
    [drained] = publisher(evidence(fake), tmp_path, redactor).drain()
    assert drained.state == "attached"
    assert len(fake.commits_on(BRANCH)) == 3 and len(fake.comments(PR)) == 1
    assert len(fake.received("POST", r"/statuses/")) == 1


def test_lost_answer_to_the_ref_update_does_not_commit_twice(
    fake: GitHubFake, tmp_path: Path, redactor: Redactor
) -> None:
    # The ref moves but the answer never arrives: the retry finds its own commit at the head.
    original = fake._update_ref

    def update_then_fail(req):
        original(req)
        from integrations.sandbox.http import Response

        return Response(500, {"message": "Server Error"})

    fake._routes = [r for r in fake._routes if "git/refs/heads" not in r.pattern.pattern or r.method != "PATCH"]
    fake.route("PATCH", rf"/repos/{REPO}/git/refs/heads/(?P<branch>.+)", update_then_fail)
    _, _, result = run_once(publisher(evidence(fake), tmp_path, redactor, attempts=2), tmp_path, redactor)
    assert result.state == "attached"
    assert len(fake.commits_on(BRANCH)) == 3


def test_oversized_comment_is_shortened_keeping_failures(fake: GitHubFake, tmp_path: Path, redactor: Redactor) -> None:
    _, _, result = run_once(
        publisher(evidence(fake), tmp_path, redactor), tmp_path, redactor, fail=True, n_checks=120, detail_size=900
    )
    assert result.state == "attached"
    [comment] = fake.comments(PR)
    body = comment["body"]
    assert len(body) <= COMMENT_LIMIT
    assert "`richpanel_get`" in body and "FAIL" in body
    assert "119 passing checks counted" in body and "report.md" in body
    assert "`secrets.s5`" not in body


def test_no_secret_or_pii_reaches_github(fake: GitHubFake, tmp_path: Path, redactor: Redactor) -> None:
    pub = publisher(evidence(fake), tmp_path, redactor)
    run_once(pub, tmp_path, redactor, fail=True)
    run_once(pub, tmp_path, redactor)
    assert fake.received("POST") and fake.received("PATCH")
    for request in fake.requests:
        sent = request.body.decode() + request.path
        assert SECRET not in sent and EMAIL not in sent
    for body in fake.blobs.values():
        assert SECRET.encode() not in body and EMAIL.encode() not in body
    assert "[REDACTED:richpanel_api_key]" in fake.comments(PR)[0]["body"]


def test_secret_registered_after_the_bundle_is_still_redacted(
    fake: GitHubFake, tmp_path: Path, redactor: Redactor
) -> None:
    late = "late-secret-abcdef123456"
    report = make_report()
    report = report.model_copy(
        update={"checks": [*report.checks[:-1], report.checks[-1].model_copy(update={"detail": late})]}
    )
    bundle = write_bundle(report, tmp_path / "local", redactor=redactor)
    redactor.register("late", late)
    result = publisher(evidence(fake), tmp_path, redactor).publish(report, bundle, pr=PR, keep_account_ids=False)
    assert result.state == "attached"
    assert not any(late.encode() in r.body for r in fake.requests)
    files = fake.files_at(BRANCH)
    folder = f"evidence/prod/{bundle.name}"
    manifest = json.loads(files[f"{folder}/manifest.json"])
    for name, meta in manifest["files"].items():  # re-hashed: the committed bundle still verifies
        assert hashlib.sha256(files[f"{folder}/{name}"]).hexdigest() == meta["sha256"]


def test_contents_api_reads_back_committed_files(fake: GitHubFake) -> None:
    sink = evidence(fake)
    sink.commit_files(BRANCH, {"evidence/x/a.md": "é ✅\n".encode()}, "one file")
    content = sink._repo.get_contents("evidence/x/a.md", ref=BRANCH)
    assert content.decoded_content == "é ✅\n".encode()
