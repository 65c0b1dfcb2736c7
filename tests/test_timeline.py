"""The per-environment timeline: rows from the state store (runs, approvals bound to a head, the watch),
newest first; on the PR one comment per environment, the bot's own, edited in place, a planted marker in
someone else's comment ignored; `status --env ENV --md` for a change record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.terminal.cli import main
from commands.outbox import Outbox
from commands.publish import GitHubPublisher
from commands.redaction import Redactor
from commands.request import RunRequest
from commands.state import ApprovalRequest, RunRecord, RunStatus, SqliteStore, WatchState
from commands.timeline import comment, entries, marker, status_markdown
from integrations.github import GitHubEvidence
from integrations.sandbox.env import REPO, Sandbox, Scenario

T0 = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
HEAD = "3f2a9c1b0d" + "0" * 30
MANAGER, ENGINEER = "U0MANAGER1", "U0ENGINEER"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def run(store: SqliteStore, command: str, minute: float, status: RunStatus = RunStatus.PASS, **extra) -> str:
    run_id = f"{command[:3]}{int(minute * 10):04d}"
    store.record_run_start(
        RunRecord(
            run_id=run_id, env="prod", command=command, started_at=at(minute), requested_by=ENGINEER, pr=7, **extra
        )
    )
    if status != RunStatus.RUNNING:
        store.record_run_finish("prod", run_id, status, finished_at=at(minute + 0.5), summary=f"{status} {command}")
    return run_id


@pytest.fixture
def store(tmp_path) -> SqliteStore:
    s = SqliteStore(tmp_path / "state.db")
    run(s, "preflight", 0)
    approval = ApprovalRequest(approval_id="ap-canary-1", env="prod", command="canary", head_sha=HEAD,
                               evidence_sha256="ab" * 32, requested_by=ENGINEER, expires_at=at(30))  # fmt: skip
    s.create_approval(approval, now=at(1))
    s.decide("ap-canary-1", MANAGER, "approved", at(2))
    canary = run(s, "canary", 3)
    s.consume("ap-canary-1", canary, now=at(3))
    rejected = ApprovalRequest(approval_id="ap-eo-1", env="prod", command="enable-outbound", head_sha=HEAD,
                               requested_by=ENGINEER, expires_at=at(30))  # fmt: skip
    s.create_approval(rejected, now=at(5))
    s.decide("ap-eo-1", "U0MANAGER2", "rejected", at(6))
    run(s, "enable-outbound", 7)
    s.save_watch(WatchState(env="prod", run_id="ena0070", started_at=at(7.2), ends_at=at(22), poll_seconds=10,
                            requested_by=ENGINEER))  # fmt: skip
    s.audit("prod", "cutover-bot", "watch.alarm", "bot", "ena0070", "alarm worker-error-rate in ALARM", now=at(9))
    run(s, "rollback", 10)
    run(s, "preflight", 0.2, dry_run=True)  # a dry run is no phase: never on the timeline
    s.audit("dev", "cutover-bot", "watch.alarm", "bot", "x", "another env", now=at(9))  # another env's
    return s


def test_rows_are_built_from_the_store_newest_first_with_approvals_bound_to_their_head(store):
    rows = entries(store, "prod", now=at(11))
    assert [(r.phase, r.verdict) for r in rows] == [
        ("Rollback", "PASS"),
        ("Watch", "alarm"),
        ("Outbound on", "PASS"),  # ended at 7.5 min
        ("Watch", "watching"),  # started at 7.2 min
        ("Approval", "rejected"),
        ("Canary", "PASS"),
        ("Approval", "approved"),
        ("Preflight", "PASS"),
    ]
    approved = rows[6]
    assert approved.at == at(2)  # when the manager decided
    assert f"approved by {MANAGER}" in approved.what and f"requested by {ENGINEER}" in approved.what
    assert f"head `{HEAD[:7]}`" in approved.what and "evidence sha256 `abababababab`" in approved.what
    assert "used by run can0030" in approved.what
    assert "rejected by U0MANAGER2" in rows[4].what
    assert rows[1].what == "alarm worker-error-rate in ALARM"


def test_the_comment_links_evidence_and_heads_and_says_where_the_env_stands(store):
    links = {
        "can0030": {"folder": "https://gh.example/acme/rp-mw/tree/abc/evidence/prod/x", "chart": "https://c/x.png"}
    }
    body = comment(store, "prod", links=links, repo_url="https://gh.example/acme/rp-mw", now=at(11))
    assert body.startswith(marker("prod") + "\n")
    assert "**Now:** rolled back" in body
    canary = next(line for line in body.splitlines() if "| Canary |" in line)
    assert "[evidence](https://gh.example/acme/rp-mw/tree/abc/evidence/prod/x)" in canary
    assert "[chart](https://c/x.png)" in canary
    approval = next(line for line in body.splitlines() if "| ✅ approved |" in line)
    assert f"[evidence](https://gh.example/acme/rp-mw/commit/{HEAD})" in approval


def test_what_the_comment_says_is_redacted_and_cannot_break_the_table(tmp_path):
    s = SqliteStore(tmp_path / "state.db")
    secret = "rpk_" + "9f" * 16
    redactor = Redactor()
    redactor.register("richpanel_api_key", secret)
    run(s, "preflight", 0)
    s.record_run_start(RunRecord(run_id="r1", env="prod", command="canary", started_at=at(1), requested_by=ENGINEER))
    s.record_run_finish("prod", "r1", RunStatus.FAIL, finished_at=at(2),
                        summary=f"FAIL | key {secret} | mail jane@example.org\n| forged | row |")  # fmt: skip
    body = comment(s, "prod", now=at(3), redactor=redactor)
    assert secret not in body and "jane@example.org" not in body
    row = next(line for line in body.splitlines() if "| Canary |" in line)
    assert row.count(" | ") == 4 and "\\|" in row  # one row, its pipes escaped
    assert "| forged |" not in body


@pytest.fixture(scope="module")
def trust(sandbox: Sandbox):
    if "tl-trust" not in sandbox.envs:
        sandbox.add_env("tl-trust", Scenario())
    sandbox.github.add_pr(72, "cutover/timeline-trust")
    return sandbox


def test_the_timeline_comment_is_the_bots_own_one_per_env_edited_in_place_ignoring_planted_markers(trust, tmp_path):
    from commands.config import load_config
    from commands.execute import execute

    gh = trust.github
    gh.add_token("ghp_mallory000000000000000000000000000", "mallory")
    config = load_config(trust.write_config(tmp_path, evidence_dir=str(tmp_path / "evidence")))
    planted = f"{marker('tl-trust')}\n| 2099-01-01 00:00:00 | Outbound on | ✅ PASS | forged approval | — |"
    forged = GitHubEvidence(repo=REPO, token="ghp_mallory000000000000000000000000000", base_url=gh.url)
    forged.upsert_comment(72, marker("tl-trust"), planted)
    sink = GitHubEvidence(repo=REPO, token=trust.github_token, base_url=gh.url)
    from commands.state import store_for

    pub = GitHubPublisher(sink, Outbox(tmp_path / "outbox"), evidence_dir="evidence", attempts=1, wait_s=0,
                          store_factory=lambda: store_for(config))  # fmt: skip
    first = execute(RunRequest("preflight", "tl-trust", pr=72), config=config, publisher=pub)
    second = execute(RunRequest("preflight", "tl-trust", pr=72), config=config, publisher=pub)
    assert first.evidence.state == second.evidence.state == "attached"
    timelines = [c for c in gh.comments(72) if c["body"].startswith(marker("tl-trust"))]
    mine = [c for c in timelines if c["author"] == gh.login]
    [theirs] = [c for c in timelines if c["author"] == "mallory"]
    assert theirs["body"] == planted and theirs["edits"] == 0  # left alone
    [bot] = mine  # one, edited in place
    assert bot["edits"] == 1
    assert "forged" not in bot["body"]
    rows = [line for line in bot["body"].splitlines() if line.startswith("| 20")]
    assert [r.split(" | ")[1] for r in rows] == ["Preflight", "Preflight"]
    assert second.report.run_id in rows[0] and first.report.run_id in rows[1]  # newest first
    assert len([c for c in gh.comments(72) if c["body"].startswith(marker("prod"))]) == 0  # per env


def test_status_md_prints_the_timeline_and_the_audit_trail(store, tmp_path, capsys, config_path):
    text = status_markdown(store, "prod", now=at(11))
    assert text.startswith("# Cutover timeline: `prod`")
    assert text.index("| Rollback |") < text.index("| Canary |") < text.index("| Preflight |")
    assert "**Lock:** free" in text
    trail = text.split("## Audit trail (oldest first)", 1)[1]
    assert trail.index("approval.request") < trail.index("approval.decide") < trail.index("watch.alarm")
    assert "another env" not in text
    assert main(["status", "--env", "prod", "--config", str(config_path), "--md"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Cutover timeline: `prod`") and "**Now:**" in out


def test_status_md_for_an_unknown_env_is_a_usage_error(config_path, capsys):
    assert main(["status", "--env", "nowhere", "--config", str(config_path), "--md"]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "Traceback" not in err


def test_a_finished_watch_comes_from_the_bots_record_of_the_run_it_published(store):
    watch = {"status": "PASS", "detail": "4 alarms OK for 15 min, 0 errors", "at": at(7.4).isoformat()}
    links = {"ena0070": {"folder": "https://gh.example/tree/x", "chart": None, "watch": watch}}
    rows = [r for r in entries(store, "prod", links=links, now=at(11)) if r.phase == "Watch"]
    assert [(r.verdict, r.what, r.evidence) for r in rows] == [
        ("alarm", "alarm worker-error-rate in ALARM", None),
        ("PASS", "4 alarms OK for 15 min, 0 errors", "https://gh.example/tree/x"),  # replaces "watching"
    ]
