"""The sticky comment's body on its own: size limit, history, outbox durability. No network."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands.evidence import Bundle, render_files
from commands.outbox import Outbox, is_retryable
from commands.publish import COMMENT_LIMIT, EvidenceLinks, add_history, compose_comment, new_job, parse_history
from commands.redaction import Redactor
from commands.report import CheckResult, Report, Status, new_run_id, overall_status, utc_now
from integrations.errors import UpstreamError

LINKS = EvidenceLinks("https://github.com/acme/rp-mw", "a" * 40, "evidence/prod/run")


def _report(statuses: list[Status], detail_size: int) -> Report:
    started = utc_now()
    checks = [
        CheckResult(name=f"check_{i}", status=s, detail="d" * detail_size, duration_ms=i)
        for i, s in enumerate(statuses)
    ]
    return Report(
        command="canary",
        env="prod",
        run_id=new_run_id(),
        started_at=started,
        finished_at=started + timedelta(seconds=1),
        overall_status=overall_status([c.name for c in checks], checks),
        checks=checks,
    )


def _job(report: Report, tmp: Path) -> dict:
    bundle = Bundle(path=tmp / "b", files=render_files(report, redactor=Redactor()))
    return new_job(report, bundle, pr=1, keep_account_ids=False, evidence_dir="evidence", redactor=Redactor())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    statuses=st.lists(st.sampled_from(list(Status)), min_size=1, max_size=400),
    detail_size=st.sampled_from([0, 50, 400, 3000]),
)
def test_body_always_fits_and_keeps_failures_when_it_can(statuses: list[Status], detail_size: int, tmp_path) -> None:
    report = _report(statuses, detail_size)
    job = _job(report, tmp_path)
    body = compose_comment(job, LINKS)
    assert len(body) <= COMMENT_LIMIT
    assert body.startswith(job["marker"])
    assert len(parse_history(body)) == 1
    failing = [c for c in report.checks if c.status == Status.FAIL]
    if failing:
        assert f"`{failing[0].name}`" in body  # the first failing row always survives
    if "Shortened" in body:
        assert f"{len(report.by_status(Status.PASS))} passing checks counted" in body


def test_history_is_newest_first_bounded_and_not_duplicated(tmp_path: Path) -> None:
    entries: list[dict] = []  # the bot's own record (kept in the outbox folder), never the comment's text
    ids = []
    for _ in range(25):
        job = _job(_report([Status.PASS], 0), tmp_path)
        ids.append(job["run_id"])
        entries = add_history(entries, job, LINKS)
        body = compose_comment(job, LINKS, history=[e["line"] for e in entries])
    history = parse_history(body)
    assert len(history) == 20
    assert ids[-1] in history[0] and ids[-20] in history[-1]
    entries = add_history(entries, job, LINKS)  # the same run sent twice (a retry)
    again = compose_comment(job, LINKS, history=[e["line"] for e in entries])
    assert parse_history(again) == history


def test_outbox_writes_atomically_and_survives_a_new_instance(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    box.save({"id": "prod-canary-abc", "created_at": "1", "steps": {}})
    assert [p.name for p in tmp_path.glob("*.json")] == ["prod-canary-abc.json"]
    assert not list(tmp_path.glob("*.tmp"))
    (tmp_path / "broken.json").write_text("{not json")
    again = Outbox(tmp_path)
    assert [j["id"] for j in again.pending()] == ["prod-canary-abc"]
    assert (tmp_path / "failed" / "broken.json").exists()
    with again.claim("prod-canary-abc") as mine, Outbox(tmp_path).claim("prod-canary-abc") as theirs:
        assert mine and not theirs


def test_what_counts_as_retryable() -> None:
    def err(status: int | None = None, code: str | None = None) -> UpstreamError:
        return UpstreamError("github", "x", "y", status_code=status, code=code)

    assert is_retryable(err(500)) and is_retryable(err(429)) and is_retryable(err(code="timeout"))
    assert is_retryable(err(403, "rate_limited"))
    assert not is_retryable(err(404)) and not is_retryable(err(422)) and not is_retryable(err(401))
    assert not is_retryable(ValueError("bug"))
