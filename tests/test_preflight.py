"""/preflight on the sandbox: a healthy environment passes, each single fault fails exactly its check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.cli import main
from commands.evidence import verify_bundle
from commands.execute import RunRequest, execute
from commands.report import Status
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
        ("wrong-flag", {"env_flags"}, "RICHPANEL_OUTBOUND_ENABLED=true (expected false)"),
        ("stale-marker", {"shopify_token_refresh_last_success"}, "12.0 h ago (limit 8 h)"),
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
    assert "PASS preflight prod: 14 passed" in printed
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
    print(f"sandbox start: {started:.2f} s")
    assert started < 2.0
