"""/preflight on the sandbox: a healthy environment passes, each single fault fails exactly its check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.terminal.cli import main
from commands.config import load_config
from commands.evidence import verify_bundle
from commands.execute import RunRequest, execute
from commands.preflight import is_event, worker_event
from commands.report import Status
from integrations.aws import Aws
from integrations.errors import UpstreamError
from integrations.sandbox.env import Scenario, outbound_parameter
from integrations.sandbox.http import Fault
from tests.conftest import assert_nothing_planted

ALL_CHECKS = {
    "aws_identity",
    "secrets.richpanel_api_key",
    "secrets.richpanel_webhook_token",
    "secrets.richpanel_bot_agent_id",
    "secrets.openai_api_key",
    "secrets.shopify_admin_api_token",
    "bot_agent_id_secret_present",
    "env_flags",
    "richpanel_get",
    "shopify_rest",
    "shopify_graphql",
    "shopify_token_refresh_last_success",
    "openai_models",
    "alarms",
    "outbound_flag",
    "rollback_ready",
}


def run(config, env, tmp_path, **kwargs):
    seen = []
    request = RunRequest("preflight", env, **kwargs)
    outcome = execute(request, config=config, progress=seen.append, evidence_root=tmp_path)
    assert sorted(c.name for c in seen) == sorted(c.name for c in outcome.report.checks)  # progress saw every check
    return outcome


def failing(outcome):
    return {c.name for c in outcome.report.checks if c.status != Status.PASS}


def detail(outcome, name):
    return next(c for c in outcome.report.checks if c.name == name).detail


def bundle_text(outcome):
    return "\n".join(b.decode() for b in outcome.bundle.files.values())


def test_healthy_environment_passes_every_check(sandbox, config, tmp_path):
    outcome = run(config, "prod", tmp_path)
    report = outcome.report
    assert {c.name for c in report.checks} == ALL_CHECKS
    assert failing(outcome) == set()
    assert report.overall_status == "PASS"
    refresh = next(c for c in report.checks if c.name == "shopify_token_refresh_last_success")
    assert 0.9 < refresh.data["last_success_age_hours"] < 1.1
    assert verify_bundle(outcome.bundle.path) == []
    assert_nothing_planted(sandbox, bundle_text(outcome))


@pytest.mark.parametrize(
    ("env", "failed", "reason"),
    [
        ("missing-secret", {"secrets.richpanel_bot_agent_id", "bot_agent_id_secret_present"}, "does not exist"),
        ("wrong-flag", {"env_flags"}, "RICHPANEL_OUTBOUND_ENABLED must be false"),
        ("stale-marker", {"shopify_token_refresh_last_success"}, "h ago (limit 8 h)"),  # seeded 12 h before start
        ("no-marker", {"shopify_token_refresh_last_success"}, "no 'shopify_token_refresh_success' marker"),
        ("firing-alarm", {"alarms"}, "in ALARM: rp-mw-firing-alarm-worker-error-rate"),
        ("inert-alarms", {"alarms"}, "actions disabled"),
    ],
)
def test_each_environment_fault_fails_exactly_its_check(config, tmp_path, env, failed, reason):
    outcome = run(config, env, tmp_path)
    assert failing(outcome) == failed
    assert outcome.report.overall_status == "FAIL"
    assert all(reason in detail(outcome, name) for name in failed)
    assert all(c.status == Status.FAIL for c in outcome.report.checks if c.name in failed)


def test_a_missing_flag_is_named(config, tmp_path):
    assert "missing SHOPIFY_WRITE_DISABLED" in detail(run(config, "wrong-flag", tmp_path), "env_flags")


def test_insufficient_data_is_a_warning_that_names_the_alarm(config, tmp_path):
    outcome = run(config, "quiet-alarm", tmp_path)
    alarms = next(c for c in outcome.report.checks if c.name == "alarms")
    assert alarms.status == Status.WARN
    assert "rp-mw-quiet-alarm-openai-failures" in alarms.detail
    assert outcome.report.overall_status == "PASS"


def test_wrong_account_fails_fast_and_nothing_else_is_trusted(sandbox, config, tmp_path):
    outcome = run(config, "wrong-account", tmp_path)
    identity = next(c for c in outcome.report.checks if c.name == "aws_identity")
    assert identity.status == Status.FAIL
    assert "123456789012" in identity.detail and "999988887777" in identity.detail  # both named in the report
    assert {c.status for c in outcome.report.checks if c.name != "aws_identity"} == {Status.SKIP}
    assert not sandbox.envs["wrong-account"].shopify.received()  # no outside call on the wrong account
    # ...and redacted on the way out unless asked for.
    assert "999988887777" not in bundle_text(outcome)
    shown = run(config, "wrong-account", tmp_path, include_aws_account_id=True)
    assert "999988887777" in bundle_text(shown)


def test_region_override_that_differs_from_the_map_fails(config, tmp_path):
    outcome = run(config, "prod", tmp_path, aws_region="us-west-2")
    assert "aws_identity" in failing(outcome)
    assert "differs from the map's us-east-2" in detail(outcome, "aws_identity")


def test_no_aws_credentials_skips_the_dependent_checks(config, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    outcome = run(config, "prod", tmp_path)
    statuses = {c.name: c.status for c in outcome.report.checks}
    assert statuses.pop("aws_identity") == Status.FAIL
    assert set(statuses.values()) == {Status.SKIP}
    assert outcome.report.overall_status == "FAIL"


UPSTREAM_FAULTS = [
    ("richpanel", "/v1/users", "richpanel_get"),
    ("shopify", "shop.json", "shopify_rest"),
    ("shopify", "graphql.json", "shopify_graphql"),
    ("openai", "/v1/models", "openai_models"),
]
FAULTS = {
    "401": (Fault("status", 401), "401"),
    "403": (Fault("status", 403), "403"),
    "429": (Fault("status", 429, retry_after=120), "429"),
    "500": (Fault("status", 500), "500"),
    "malformed": (Fault("malformed"), "malformed"),
    "dropped": (Fault("drop"), "connection"),
    "hang": (Fault("hang", seconds=5), "no answer within"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize(("system", "path", "check_name"), UPSTREAM_FAULTS)
def test_each_upstream_fault_fails_exactly_its_check(sandbox, config, tmp_path, system, path, check_name, fault):
    env = sandbox.envs["prod"]
    spec, reason = FAULTS[fault]
    # The broken upstream echoes a secret and PII in its body: none of it may reach the report.
    leaky = {"errors": f"customer {env.pii[0]} {env.pii[1]} key {env.secrets['openai_api_key']}"}
    body = leaky if spec.kind == "status" else None
    planted = Fault(spec.kind, spec.status, spec.seconds, spec.retry_after, body=body)
    getattr(env, system).inject(path, planted)
    outcome = run(config, "prod", tmp_path)
    assert failing(outcome) == {check_name}
    assert reason in detail(outcome, check_name).lower() or reason in detail(outcome, check_name)
    assert outcome.report.overall_status == "FAIL"
    assert_nothing_planted(sandbox, bundle_text(outcome))


def test_shopify_401_refreshes_once_then_fails_with_an_actionable_reason(sandbox, config, tmp_path):
    shopify = sandbox.envs["prod"].shopify
    shopify.reset()
    shopify.inject("shop.json", Fault("status", 401))
    outcome = run(config, "prod", tmp_path)
    assert len(shopify.received("GET", "shop.json")) == 2  # the call and one retry after the refresh
    reason = detail(outcome, "shopify_rest")
    assert "rp-mw/prod/shopify_admin_api_token" in reason


def test_shopify_401_then_success_after_refresh_passes(sandbox, config, tmp_path):
    sandbox.envs["prod"].shopify.inject("shop.json", Fault("status", 401, times=1))
    outcome = run(config, "prod", tmp_path)
    rest = next(c for c in outcome.report.checks if c.name == "shopify_rest")
    assert rest.status == Status.PASS
    assert rest.data["refreshed"] is True


def test_cli_prints_the_table_writes_outputs_and_exits_by_status(sandbox, config_path, tmp_path, capsys):
    out_json, out_md = tmp_path / "r.json", tmp_path / "r.md"
    argv = ["preflight", "--env", "prod", "--config", str(config_path), "--evidence-dir", str(tmp_path / "ev")]
    assert main([*argv, "--out-json", str(out_json), "--out-md", str(out_md)]) == 0
    printed = capsys.readouterr().out
    assert "PASS preflight prod: 16 passed" in printed
    assert "evidence: " in printed
    assert json.loads(out_json.read_text())["overall_status"] == "PASS"
    assert "| `aws_identity` |" in out_md.read_text()
    failing_argv = ["preflight", "--env", "firing-alarm", "--config", str(config_path), "--evidence-dir", str(tmp_path)]
    assert main(failing_argv) == 1
    assert_nothing_planted(sandbox, printed, capsys.readouterr().out)


def test_cli_runs_n_times_with_a_bundle_each_and_a_summary(config_path, tmp_path, capsys):
    evidence = tmp_path / "ev"
    argv = ["preflight", "--env", "prod", "--config", str(config_path), "--runs", "3", "--evidence-dir", str(evidence)]
    assert main(argv) == 0
    bundles = list((evidence / "prod").iterdir())
    assert len(bundles) == 3
    assert all(verify_bundle(b) == [] for b in bundles)
    assert "3 runs: 3 PASS, 0 FAIL" in capsys.readouterr().out


def test_evidence_defaults_to_the_maps_folder(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outcome = execute(RunRequest("preflight", "prod"), config=config)
    assert Path(outcome.bundle.path).resolve().is_relative_to((tmp_path / "evidence" / "prod").resolve())


def test_cli_with_a_pr_attaches_the_evidence_to_it(sandbox, config_path, tmp_path, capsys):
    from integrations.sandbox.env import PR_BRANCH, PR_NUMBER

    argv = ["preflight", "--env", "prod", "--config", str(config_path), "--pr", str(PR_NUMBER)]
    assert main([*argv, "--evidence-dir", str(tmp_path)]) == 0
    assert f"pull request: attached to PR #{PR_NUMBER}: 3 files in commit" in capsys.readouterr().out
    comments = sandbox.github.comments(PR_NUMBER)
    assert len([c for c in comments if "cutover:prod:preflight" in c["body"]]) == 1
    files = sandbox.github.files_at(PR_BRANCH)
    assert any(path.startswith("evidence/prod/") and path.endswith("/manifest.json") for path in files)
    statuses = sandbox.github.statuses(sandbox.github.head_sha(PR_BRANCH))
    assert any(s["context"] == "cutover/prod/preflight" and s["state"] == "success" for s in statuses)
    assert_nothing_planted(sandbox, *(c["body"] for c in comments), *(b.decode() for b in files.values()))


def test_a_pr_without_github_configured_keeps_evidence_local_and_says_so(config_path, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GITHUB_TOKEN")
    argv = ["preflight", "--env", "prod", "--config", str(config_path), "--pr", "7", "--evidence-dir", str(tmp_path)]
    assert main(argv) == 0
    assert "GitHub is not configured" in capsys.readouterr().out


def test_the_sandbox_starts_fast_and_seeds_the_outbound_flag_in_the_background():
    import time

    import boto3

    from integrations.sandbox.env import Sandbox, Scenario

    t0 = time.perf_counter()
    sandbox = Sandbox({"solo": Scenario()}).start()
    started = time.perf_counter() - t0
    try:
        sandbox.wait_until_seeded()
        ssm = boto3.client("ssm", region_name="us-east-2")
        assert ssm.get_parameter(Name="/rp-mw/solo/outbound_enabled")["Parameter"]["Value"] == "false"
    finally:
        sandbox.stop()
    print(f"sandbox start: {started:.2f} s")  # a figure (bench/startup.py), not an assertion


# --- more environments, each with one more thing wrong, added to the session's sandbox ------------

LEAKY_FLAG = "sk-proj-pasted-by-mistake-0123456789"
LEAKY_SHOP = "someone-elses-shop.myshopify.com"
MORE = {
    "outbound-on": Scenario(outbound_enabled=True),
    "outbound-missing": Scenario(outbound_enabled=None),
    "outbound-garbled": Scenario(),  # the parameter is overwritten with a non-boolean below
    "lambda-lever": Scenario(outbound_flag="lambda_env"),
    "lambda-lever-on": Scenario(outbound_flag="lambda_env", outbound_enabled=True),
    "refresh-failing": Scenario(refresh_age_hours=None, refresh_failure_age_hours=0.5),
    "refresh-json": Scenario(refresh_age_hours=1.0, refresh_marker_json=True, refresh_failure_age_hours=0.5),
    "silent-alarm": Scenario(alarms_without_actions=("token-refresh-errors",)),
    "silent-quiet-alarms": Scenario(
        alarms_without_actions=("shopify-429s",), alarm_states={"openai-failures": "INSUFFICIENT_DATA"}
    ),
    "silent-firing-alarms": Scenario(
        alarms_without_actions=("shopify-429s",), alarm_states={"worker-error-rate": "ALARM"}
    ),
    "no-models": Scenario(openai_models=()),
    "other-shop": Scenario(shop_answers_as="rp-mw-staging.myshopify.com"),
    "leaky-flags": Scenario(flag_overrides={"MW_ALLOW_NETWORK_READS": LEAKY_FLAG, "SHOPIFY_SHOP_DOMAIN": LEAKY_SHOP}),
}


@pytest.fixture(scope="module")
def more(sandbox, tmp_path_factory):
    """A config that also holds the MORE environments (the session's `config` predates them)."""
    for name, scenario in MORE.items():
        if name not in sandbox.envs:
            sandbox.add_env(name, scenario)
    sandbox.aws.client("ssm").put_parameter(
        Name=outbound_parameter("outbound-garbled"), Value="enabled-please", Type="String", Overwrite=True
    )
    return load_config(sandbox.write_config(tmp_path_factory.mktemp("more")))


def check_of(outcome, name):
    return next(c for c in outcome.report.checks if c.name == name)


# --- outbound_flag: the lever the map names, read now ------------------------------------------------


def test_outbound_flag_off_passes_and_names_the_parameter(sandbox, config, tmp_path):
    outcome = run(config, "prod", tmp_path)
    flag = check_of(outcome, "outbound_flag")
    assert flag.status == Status.PASS
    assert "outbound is off" in flag.detail and "/rp-mw/prod/outbound_enabled" in flag.detail
    assert flag.data["enabled"] is False


def test_outbound_flag_on_fails(more, tmp_path):
    outcome = run(more, "outbound-on", tmp_path)
    assert failing(outcome) == {"outbound_flag"}
    assert "outbound is ON" in detail(outcome, "outbound_flag")
    assert outcome.report.overall_status == "FAIL"


def test_outbound_flag_missing_parameter_fails_naming_it(more, tmp_path):
    outcome = run(more, "outbound-missing", tmp_path)
    assert failing(outcome) == {"outbound_flag", "rollback_ready"}  # a rollback would have no lever either
    assert "/rp-mw/outbound-missing/outbound_enabled does not exist" in detail(outcome, "outbound_flag")


def test_outbound_flag_not_a_boolean_fails_without_echoing_it(sandbox, more, tmp_path):
    outcome = run(more, "outbound-garbled", tmp_path)
    assert failing(outcome) == {"outbound_flag", "rollback_ready"}
    reason = detail(outcome, "outbound_flag")
    assert "cannot read SSM parameter /rp-mw/outbound-garbled/outbound_enabled" in reason
    assert "not true or false" in reason
    assert "enabled-please" not in bundle_text(outcome)


def test_outbound_flag_unreadable_fails_with_the_reason(config, tmp_path, monkeypatch):
    """moto grants everything: access denied is a constructed error, as AWS would answer it."""

    def denied(self, name):
        raise UpstreamError("aws", f"get_parameter {name}", "access denied: grant ssm:GetParameter", code="403")

    monkeypatch.setattr(Aws, "read_ssm_flag", denied)
    outcome = run(config, "prod", tmp_path)
    assert failing(outcome) == {"outbound_flag"}
    reason = detail(outcome, "outbound_flag")
    assert "cannot read SSM parameter /rp-mw/prod/outbound_enabled" in reason
    assert "access denied" in reason


def test_outbound_flag_as_a_lambda_env_key(sandbox, more, tmp_path):
    assert more.env("lambda-lever").outbound_flag.lambda_env == "RICHPANEL_OUTBOUND_ENABLED"
    outcome = run(more, "lambda-lever", tmp_path)
    assert failing(outcome) == set()
    flag = check_of(outcome, "outbound_flag")
    assert "RICHPANEL_OUTBOUND_ENABLED on rp-mw-lambda-lever-worker = false" in flag.detail
    assert flag.data["lever"] == "lambda_env"

    on = run(more, "lambda-lever-on", tmp_path)
    assert failing(on) == {"outbound_flag", "env_flags"}  # the same key is one of the safety flags
    assert "outbound is ON" in detail(on, "outbound_flag")
    assert_nothing_planted(sandbox, bundle_text(outcome), bundle_text(on))


# --- the refresh marker is an event, not a substring ------------------------------------------------


def test_a_line_that_only_mentions_the_marker_is_not_a_refresh_success(more, tmp_path):
    # The only lines with the phrase say `shopify_token_refresh_success=false` (text and JSON forms).
    outcome = run(more, "refresh-failing", tmp_path)
    assert failing(outcome) == {"shopify_token_refresh_last_success"}
    reason = detail(outcome, "shopify_token_refresh_last_success")
    assert "no 'shopify_token_refresh_success' marker" in reason
    assert "2 lines mention it but record another event" in reason
    assert check_of(outcome, "shopify_token_refresh_last_success").data["not_the_event"] == 2


def test_the_newest_json_success_counts_not_a_newer_failure(more, tmp_path):
    outcome = run(more, "refresh-json", tmp_path)
    assert failing(outcome) == set()
    refresh = check_of(outcome, "shopify_token_refresh_last_success")
    assert 0.9 < refresh.data["last_success_age_hours"] < 1.1  # not the failure 0.5 h ago
    assert refresh.data["not_the_event"] == 2


MARKER = "shopify_token_refresh_success"
RID = "8f7a2c1e-4b3d-4e5f-9a8b-7c6d5e4f3a2b"
EVENT_LINES = [
    f"{MARKER} token_kind=offline",
    f"[INFO]\t2026-01-01T00:00:00.000Z\t{RID}\t{MARKER} token_kind=offline expires_in_s=86399\n",
    f"2026-01-01T00:00:00.000Z\t{RID}\tINFO\t{MARKER}",  # Node's runtime prefix
    json.dumps({"event": MARKER, "token_kind": "offline"}),
    f'[INFO]\t{RID}\t{{"event": "{MARKER}"}}',
    json.dumps({"timestamp": "2026-01-01T00:00:00Z", "level": "INFO", "message": {"event": MARKER}}),
    json.dumps({"level": "INFO", "message": f"{MARKER} token_kind=offline"}),
    f"level=info event={MARKER} token_kind=offline",
]
NOT_EVENT_LINES = [
    f"{MARKER}=false status=401",
    f"{MARKER}=0",
    f"[ERROR]\t{RID}\t{MARKER}=false status=401",
    f"token refresh failed: {MARKER}=false",
    f"retrying after {MARKER}",
    f"{MARKER}_count=3",
    f"{MARKER}ful token_kind=offline",
    json.dumps({"event": "shopify_token_refresh_failed", MARKER: False}),
    json.dumps({MARKER: True}),  # a field, not the event
    json.dumps({"event": f"{MARKER}_false"}),
    f'{{"event": "{MARKER}", broken json',
    f"level=error event=shopify_token_refresh_failed {MARKER}=false",
    "",
    f"[INFO]\t{RID}\t",
]


@pytest.mark.parametrize("line", EVENT_LINES)
def test_is_event_accepts_the_marker_as_the_lines_event(line):
    assert is_event(line, MARKER)


@pytest.mark.parametrize("line", NOT_EVENT_LINES)
def test_is_event_refuses_a_line_that_only_mentions_the_marker(line):
    assert not is_event(line, MARKER)


def test_worker_event_gives_the_fields_of_both_forms():
    text = "[INFO]\t2026-01-01T00:00:00.000Z\t" + RID + "\torder_status_processed ticket_id=1042 intent=order_status"
    assert worker_event(text) == ("order_status_processed", {"ticket_id": "1042", "intent": "order_status"})
    name, fields = worker_event('{"event": "order_status_processed", "ticket_id": "1042"}')
    assert (name, fields["ticket_id"]) == ("order_status_processed", "1042")


# --- alarms that notify nobody, OpenAI with no models, the wrong shop, flags without values ----------


def test_an_alarm_without_actions_is_a_warning_that_names_it(more, tmp_path):
    outcome = run(more, "silent-alarm", tmp_path)
    alarms = check_of(outcome, "alarms")
    assert alarms.status == Status.WARN
    assert "no alarm actions" in alarms.detail
    assert "rp-mw-silent-alarm-token-refresh-errors" in alarms.detail
    assert alarms.data["no_alarm_actions"] == ["rp-mw-silent-alarm-token-refresh-errors"]
    assert outcome.report.overall_status == "PASS"


def test_alarm_caveats_are_reported_together_and_with_a_failure(more, tmp_path):
    quiet = check_of(run(more, "silent-quiet-alarms", tmp_path), "alarms")
    assert quiet.status == Status.WARN
    assert "rp-mw-silent-quiet-alarms-openai-failures" in quiet.detail
    assert "rp-mw-silent-quiet-alarms-shopify-429s" in quiet.detail
    firing = check_of(run(more, "silent-firing-alarms", tmp_path), "alarms")
    assert firing.status == Status.FAIL
    assert "in ALARM: rp-mw-silent-firing-alarms-worker-error-rate" in firing.detail
    assert "rp-mw-silent-firing-alarms-shopify-429s" in firing.detail


def test_openai_key_that_sees_no_models_is_a_warning_not_a_pass(more, tmp_path):
    outcome = run(more, "no-models", tmp_path)
    models = check_of(outcome, "openai_models")
    assert models.status == Status.WARN
    assert "key accepted but sees no models" in models.detail
    assert "restricted by scopes" in models.detail  # why WARN and not FAIL
    assert models.data["model_count"] == 0


def test_shopify_answering_for_another_shop_fails_naming_both(sandbox, more, tmp_path):
    outcome = run(more, "other-shop", tmp_path)
    assert failing(outcome) == {"shopify_rest", "shopify_graphql"}
    for name in ("shopify_rest", "shopify_graphql"):
        reason = detail(outcome, name)
        assert "answered for rp-mw-staging.myshopify.com" in reason
        assert "rp-mw-other-shop.myshopify.com" in reason
    assert_nothing_planted(sandbox, bundle_text(outcome))


def test_shopify_checks_name_the_shop_they_proved(config, tmp_path):
    outcome = run(config, "prod", tmp_path)
    assert "for rp-mw-prod.myshopify.com" in detail(outcome, "shopify_rest")
    assert "for rp-mw-prod.myshopify.com" in detail(outcome, "shopify_graphql")


def test_env_flags_name_the_flag_and_the_rule_never_the_deployed_value(sandbox, more, tmp_path):
    outcome = run(more, "leaky-flags", tmp_path)
    assert failing(outcome) == {"env_flags"}
    reason = detail(outcome, "env_flags")
    assert "MW_ALLOW_NETWORK_READS must be true" in reason
    assert "SHOPIFY_SHOP_DOMAIN does not match the env's shop rp-mw-leaky-flags.myshopify.com" in reason
    flags = check_of(outcome, "env_flags")
    assert flags.data["wrong"] == ["MW_ALLOW_NETWORK_READS", "SHOPIFY_SHOP_DOMAIN"]
    everything = bundle_text(outcome) + json.dumps(flags.data)
    assert LEAKY_FLAG not in everything
    assert LEAKY_SHOP not in everything
    assert_nothing_planted(sandbox, everything)
