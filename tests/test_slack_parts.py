"""The Slack app's parts on their own: arguments, access, Block Kit rendering, retry dedup, the fake, entry points."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.slack.access import GroupCache, slack_group_lookup
from bot.slack.app import api_base_url
from bot.slack.args import ArgsError, parse_command_text
from bot.slack.blocks import TOTAL_BUDGET, progress_blocks, result_blocks, started_blocks
from bot.slack.retry_dedup import RetryDedup
from commands.access import AccessPolicy, LookupFailed, mention
from commands.config import ConfigError, Tokens
from commands.evidence import Bundle
from commands.execute import EvidenceResult, Outcome
from commands.redaction import REDACTOR
from commands.report import CheckResult, Report, Status
from commands.request import RunRequest
from integrations.sandbox.slack import SlackFake, block_kit_problem
from tests.slack_support import ALICE, BOB, GROUP, MALLORY, make_config

ENVS = ("dev", "prod")

# --- arguments -------------------------------------------------------------------------------


def CommandArgs(env: str, pr: int | None = None, dry_run: bool = False) -> RunRequest:
    """What a /preflight's words parse to: the run request itself."""
    return RunRequest("preflight", env, requested_by="", surface="slack", pr=pr, dry_run=dry_run)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("prod", CommandArgs("prod")),
        ("  PROD  ", CommandArgs("prod")),
        ("prod pr=12", CommandArgs("prod", pr=12)),
        ("pr=#7 dry-run dev", CommandArgs("dev", pr=7, dry_run=True)),
        ("dev --dry-run --pr=3", CommandArgs("dev", pr=3, dry_run=True)),
    ],
)
def test_arguments_parse(text, expected):
    assert parse_command_text(text, command="preflight", envs=ENVS) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "missing the environment (one of: dev, prod)"),
        ("pr=3", "missing the environment"),
        ("qa", "unknown environment `qa` (known: dev, prod)"),
        ("prod pr=-1", "`pr=-1`: pr must be a positive integer"),
        ("prod pr=1.5", "`pr=1.5`: pr must be a positive integer"),
        ("prod pr=٣", "pr must be a positive integer"),  # a non-ASCII digit is not a PR number
        ("prod pr=1 pr=2", "pr= is given twice"),
        ("prod dev", "more than one environment (`prod` and `dev`)"),
        ("prod --force", "unknown word: `--force`"),
        ("qa x=1 <!channel>", "unknown words: `x=1`, `&lt;!channel&gt;`"),
    ],
)
def test_argument_errors_name_the_problem(text, expected):
    with pytest.raises(ArgsError) as err:
        parse_command_text(text, command="canary", envs=ENVS)
    assert expected in str(err.value)
    assert "Usage: `/canary ENV [pr=N] [dry-run]`" in str(err.value)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_parses_or_is_refused_with_a_short_safe_message(text):
    try:
        args = parse_command_text(text, command="preflight", envs=ENVS)
    except ArgsError as err:
        message = str(err)
        assert len(message) < 2000
        assert "<!" not in message and "<@" not in message  # a person's words never become mentions
    else:
        assert args.env in ENVS
        assert args.pr is None or args.pr > 0


@given(st.sampled_from(ENVS), st.none() | st.integers(1, 10**6), st.booleans(), st.randoms())
def test_valid_arguments_in_any_order_round_trip(env, pr, dry_run, rnd):
    words = [env] + ([f"pr={pr}"] if pr else []) + (["dry-run"] if dry_run else [])
    rnd.shuffle(words)
    assert parse_command_text(" ".join(words), command="preflight", envs=ENVS) == CommandArgs(env, pr, dry_run)


# --- access ------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_runners_by_id_or_group_and_refusals_name_who_may():
    lookups: list[str] = []

    def lookup(group: str) -> list[str]:
        lookups.append(group)
        return [BOB]

    access = AccessPolicy(make_config(), GroupCache(lookup).members)
    assert access.may_run(ALICE, "prod", "preflight").allowed
    assert lookups == []  # a listed user needs no lookup
    assert access.may_run(BOB, "prod", "preflight").allowed
    refusal = access.may_run(MALLORY, "prod", "canary")
    assert not refusal.allowed
    assert refusal.message == f"<@{MALLORY}> may not run `/canary` in prod. Who may: <@{ALICE}>, <!subteam^{GROUP}>."
    assert mention("W0ENTERPRISE") == "<@W0ENTERPRISE>"


def test_approval_needs_an_approver_other_than_the_requester():
    access = AccessPolicy(make_config(), GroupCache(lambda g: []).members)
    assert access.may_approve("U0MANAGER1", "prod", "canary", requester=ALICE).allowed
    assert not access.may_approve("U0MANAGER1", "prod", "canary", requester="U0MANAGER1").allowed
    refusal = access.may_approve(ALICE, "prod", "canary", requester=BOB)
    assert "Who may: <@U0MANAGER1>" in refusal.message


def test_group_membership_is_cached_for_the_ttl_then_read_again():
    clock = Clock()
    members = {GROUP: [BOB]}
    calls: list[str] = []

    def lookup(group: str) -> list[str]:
        calls.append(group)
        return members[group]

    cache = GroupCache(lookup, ttl_s=60, clock=clock)
    access = AccessPolicy(make_config(), cache.members)
    assert access.may_run(BOB, "prod", "preflight").allowed
    members[GROUP] = []  # Bob leaves the group
    clock.now = 59
    assert access.may_run(BOB, "prod", "preflight").allowed  # still cached
    clock.now = 61
    assert not access.may_run(BOB, "prod", "preflight").allowed
    assert calls == [GROUP, GROUP]


def test_a_burst_of_checks_makes_one_lookup():
    calls: list[str] = []
    gate = threading.Event()

    def slow_lookup(group: str) -> list[str]:
        calls.append(group)
        gate.wait(1)
        return [BOB]

    access = AccessPolicy(make_config(), GroupCache(slow_lookup).members)
    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = [pool.submit(access.may_run, BOB, "prod", "preflight") for _ in range(16)]
        time.sleep(0.05)
        gate.set()
        assert all(f.result().allowed for f in futures)
    assert calls == [GROUP]


def test_a_failed_lookup_refuses_and_is_not_cached():
    attempts = []

    def flaky(group: str) -> list[str]:
        attempts.append(group)
        if len(attempts) == 1:
            raise LookupFailed("usergroups.users.list failed for S0CUTOVER: ratelimited")
        return [BOB]

    access = AccessPolicy(make_config(), GroupCache(flaky).members)
    refusal = access.may_run(BOB, "prod", "preflight")
    assert not refusal.allowed
    assert "could not be checked just now" in refusal.message
    assert access.may_run(BOB, "prod", "preflight").allowed


def test_slack_group_lookup_reads_usergroups_users_list_and_reports_errors():
    with SlackFake(token="xoxb-lookup-token-000", groups={GROUP: [BOB]}) as fake:
        client = WebClient(token="xoxb-lookup-token-000", base_url=fake.api_url)
        lookup = slack_group_lookup(client)
        assert lookup(GROUP) == [BOB]
        with pytest.raises(LookupFailed, match="no_such_subteam"):
            lookup("S0NOPE")


# --- Block Kit rendering -----------------------------------------------------------------------


def outcome_of(checks: list[CheckResult], evidence: EvidenceResult | None = None) -> Outcome:
    now = datetime.now(UTC)
    failing = any(c.status not in (Status.PASS, Status.WARN) for c in checks)
    report = Report(
        command="preflight",
        env="prod",
        run_id="3f2a9c1b0d",
        started_at=now,
        finished_at=now + timedelta(seconds=1.4),
        overall_status="FAIL" if failing else "PASS",
        checks=checks,
    )
    return Outcome(report, Bundle(Path("evidence/x"), {}), evidence or EvidenceResult("local", "no PR given"))


def block_text(blocks: list[dict]) -> str:
    return json.dumps(blocks, ensure_ascii=False)


def test_result_shows_failing_checks_first_with_reason_summary_duration_and_evidence():
    checks = [
        CheckResult(name="aws_identity", status=Status.PASS, detail="account ok"),
        CheckResult(name="alarms", status=Status.WARN, detail="rp-mw-prod-openai-failures has INSUFFICIENT_DATA"),
        CheckResult(name="env_flags", status=Status.FAIL, detail="RICHPANEL_OUTBOUND_ENABLED is true, expected false"),
    ]
    evidence = EvidenceResult("attached", "attached to PR #12", url="https://github.example/acme/rp-mw/pull/12")
    rendered = result_blocks(outcome_of(checks, evidence), user=ALICE)
    text = block_text(rendered.blocks)
    assert rendered.text.startswith("FAIL preflight prod: 1 failed, 1 warned, 1 passed in 1.4 s")
    assert text.index("env_flags") < text.index("alarms") < text.index("aws_identity")
    assert "RICHPANEL_OUTBOUND_ENABLED is true, expected false" in text
    assert "<https://github.example/acme/rp-mw/pull/12|evidence attached>" in text
    assert "1.4 s · run `3f2a9c1b0d`" in text
    assert f"requested by <@{ALICE}>" in text
    assert "fix what failed, then `/preflight prod` again" in text


@pytest.mark.parametrize(("state", "words"), [("pending", "evidence pending"), ("local", "kept locally")])
def test_evidence_states_read_plainly(state, words):
    rendered = result_blocks(
        outcome_of([CheckResult(name="a", status=Status.PASS, detail="")], EvidenceResult(state, "d"))
    )
    assert f"{words}: d" in block_text(rendered.blocks)


def test_details_cannot_mention_or_link():
    check = CheckResult(
        name="richpanel_get", status=Status.FAIL, detail="<!channel> see <https://evil.example|here> & more"
    )
    text = block_text(result_blocks(outcome_of([check])).blocks)
    assert "<!channel>" not in text
    assert "&lt;!channel&gt;" in text
    assert "&amp; more" in text


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(0, 400),
    detail_len=st.integers(0, 6000),
    fail_every=st.integers(1, 7),
)
def test_any_report_fits_block_kit_limits_and_says_what_was_cut(n, detail_len, fail_every):
    checks = [
        CheckResult(
            name=f"secrets.check_{i:03d}",
            status=Status.FAIL if i % fail_every == 0 else Status.PASS,
            detail="é<" * (detail_len // 2),
        )
        for i in range(n)
    ]
    for rendered in (
        result_blocks(outcome_of(checks)),
        progress_blocks("preflight", "prod", ALICE, checks, elapsed_s=3.2),
    ):
        assert block_kit_problem(rendered.blocks) is None
        assert len(block_text(rendered.blocks)) < TOTAL_BUDGET + 6000  # JSON overhead included, well under ~13k
        shown = block_text(rendered.blocks).count("check_")
        if shown < n:
            assert f"… {n - shown} more check" in block_text(rendered.blocks)


def test_a_secret_is_redacted_before_it_is_shortened():
    secret = "PLANTED-secret-value-" + "z" * 40
    REDACTOR.register("planted_long", secret)
    # The secret straddles the 400-char cut: cutting first would leave a prefix no redaction matches.
    check = CheckResult(name="richpanel_get", status=Status.FAIL, detail="x" * 380 + secret)
    text = block_text(result_blocks(outcome_of([check])).blocks)
    assert "PLANTED-secret" not in text


def test_started_and_progress_lines():
    started = started_blocks("enable-outbound", "prod", ALICE, pr=9, dry_run=True)
    assert started.text == f"Enable outbound prod started by <@{ALICE}> for PR #9 (dry run)"
    progress = progress_blocks(
        "preflight", "prod", ALICE, [CheckResult(name="x", status=Status.FAIL, detail="bad")], elapsed_s=2.04
    )
    assert "1 checks done, 1 not passing · 2.0 s" in block_text(progress.blocks)


# --- retry dedup, URLs ---------------------------------------------------------------------------


def test_dedup_forgets_after_its_ttl():
    clock = Clock()
    dedup = RetryDedup(ttl_s=600, clock=clock)
    assert dedup.first_time("trigger_id:1")
    assert not dedup.first_time("trigger_id:1")
    clock.now = 601
    assert dedup.first_time("trigger_id:1")


@pytest.mark.parametrize(
    ("given_url", "expected"),
    [
        (None, "https://slack.com/api/"),
        ("http://127.0.0.1:9000", "http://127.0.0.1:9000/api/"),
        ("http://127.0.0.1:9000/api", "http://127.0.0.1:9000/api/"),
        ("https://slack.com/api/", "https://slack.com/api/"),
    ],
)
def test_api_base_url_ends_with_api_slash(given_url, expected):
    assert api_base_url(given_url) == expected


# --- the fake -----------------------------------------------------------------------------------


def test_slack_fake_speaks_form_and_json_and_keeps_the_latest_version():
    with SlackFake(token="xoxb-fake-token-000") as fake:
        client = WebClient(token="xoxb-fake-token-000", base_url=fake.api_url)
        posted = client.chat_postMessage(channel="C1", text="hello", blocks=[{"type": "divider"}])
        client.chat_update(channel="C1", ts=posted["ts"], text="edited")
        form = httpx.post(
            f"{fake.url}/api/chat.postMessage",
            data={"channel": "C1", "text": "by form"},
            headers={"Authorization": "Bearer xoxb-fake-token-000"},
        ).json()
        assert form["ok"] and form["channel"] == "C1"
        [first, second] = fake.messages("C1")
        assert (first.text, first.updates) == ("edited", 1)
        assert second.text == "by form"
        client.chat_postEphemeral(channel="C1", user=ALICE, text="only you")
        assert fake.ephemerals()[0]["user"] == ALICE
        assert client.auth_test()["user_id"] == "U0CUTBOT"
        with pytest.raises(SlackApiError, match="invalid_auth"):
            WebClient(token="xoxb-wrong-000", base_url=fake.api_url).auth_test()
        with pytest.raises(SlackApiError, match="message_not_found"):
            client.chat_update(channel="C1", ts="1.000000", text="x")
        with pytest.raises(SlackApiError, match="invalid_blocks"):
            client.chat_postMessage(channel="C1", text="x", blocks=[{"type": "divider"}] * 51)
        assert httpx.post(fake.response_url("abc"), json={"text": "hi"}).status_code == 200
        assert fake.responses("abc") == [{"text": "hi"}]


def test_slack_fake_rate_limits_with_retry_after():
    with SlackFake(token=None) as fake:
        fake.rate_limit("chat.postMessage", retry_after=3, times=1)
        response = httpx.post(
            f"{fake.url}/api/chat.postMessage",
            json={"channel": "C1", "text": "x"},
            headers={"Authorization": "Bearer any"},
        )
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "3"
        assert response.json() == {"ok": False, "error": "ratelimited"}
        again = httpx.post(
            f"{fake.url}/api/chat.postMessage",
            json={"channel": "C1", "text": "x"},
            headers={"Authorization": "Bearer any"},
        )
        assert again.json()["ok"] is True


# --- entry points ----------------------------------------------------------------------------------


def test_socket_mode_without_an_app_token_says_what_to_set():
    from bot.slack.socket_mode import run_socket_mode

    with pytest.raises(ConfigError, match="SLACK_APP_TOKEN is not set"):
        run_socket_mode(
            make_config(), Tokens(slack_bot_token="xoxb-1-2", slack_signing_secret="s" * 32, slack_app_token=None)
        )
    with pytest.raises(ConfigError, match="xapp-"):
        run_socket_mode(
            make_config(), Tokens(slack_bot_token="xoxb-1-2", slack_signing_secret="s" * 32, slack_app_token="xoxb-no")
        )


def test_the_app_refuses_to_start_without_its_tokens():
    from bot.slack.app import create_app

    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET is not set"):
        create_app(config=make_config(), tokens=Tokens(slack_bot_token="xoxb-1-2", slack_signing_secret=None))
    with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN is not set"):
        create_app(config=make_config(), tokens=Tokens(slack_bot_token=None, slack_signing_secret="s" * 32))


def test_the_wsgi_entry_point_fails_with_one_clear_line(tmp_path, monkeypatch, capsys):
    import bot.slack.wsgi

    monkeypatch.setenv("CUTOVER_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="missing.toml: no such file"):
        bot.slack.wsgi.build_application()
    with pytest.raises(SystemExit) as exit_:
        bot.slack.wsgi.application  # noqa: B018  (what gunicorn reads)
    assert exit_.value.code == 3  # gunicorn's "worker failed to boot": the master stops
    err = capsys.readouterr().err
    assert "cutover bot cannot start:" in err
    assert "missing.toml: no such file" in err
    assert "Traceback" not in err


def test_a_user_mention_in_a_detail_reads_as_a_name_but_nothing_else_becomes_mrkdwn():
    from bot.slack.blocks import result_blocks

    now = datetime.now(UTC)
    detail = "approved by <@U0MANAGER1>; <!channel> <http://evil.example|click> <!subteam^S0X>"
    report = Report(
        command="canary", env="prod", run_id="r1", started_at=now, finished_at=now,
        checks=[CheckResult(name="approval", status=Status.PASS, detail=detail)],
    )  # fmt: skip
    text = json.dumps(result_blocks(Outcome(report, None, EvidenceResult("local", "kept"))).blocks)
    assert "approved by <@U0MANAGER1>" in text
    assert "<!channel>" not in text and "<http" not in text and "<!subteam" not in text
