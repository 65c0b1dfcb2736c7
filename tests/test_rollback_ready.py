"""Preflight's `rollback_ready`: the lever a rollback writes exists and reads now, the bot's role may write
it (IAM's policy simulator, the loopback fake reached through AWS_ENDPOINT_URL_IAM), and the state store
holding the lock answers. Denied is FAIL naming action and resource; unprovable is WARN with what to grant;
and the check writes nothing anywhere (moto's, the IAM fake's and every fake's request logs say so)."""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import pytest

from bot.terminal.cli import main
from commands.config import load_config
from commands.execute import RunRequest, execute
from commands.report import Status
from commands.state import open_store
from integrations.sandbox.env import MOTO_ACCOUNT_ID, REGION, Sandbox, Scenario, outbound_parameter
from tests.conftest import assert_nothing_planted

RB = {
    "rb-implicit": Scenario(iam_decision="implicitDeny", iam_actions=("ssm:PutParameter",)),
    "rb-explicit": Scenario(iam_decision="explicitDeny", iam_actions=("ssm:PutParameter",)),
    "rb-refused": Scenario(iam_decision="refuse"),
    "rb-lambda": Scenario(outbound_flag="lambda_env"),
    "rb-lambda-denied": Scenario(
        outbound_flag="lambda_env", iam_decision="implicitDeny", iam_actions=("lambda:UpdateFunctionConfiguration",)
    ),
    "rb-no-lever": Scenario(outbound_enabled=None),
}
LAMBDA_ACTIONS = ("lambda:GetFunctionConfiguration", "lambda:UpdateFunctionConfiguration")


def param_arn(env: str) -> str:
    return f"arn:aws:ssm:{REGION}:{MOTO_ACCOUNT_ID}:parameter/rp-mw/{env}/outbound_enabled"


def function_arn(env: str) -> str:
    return f"arn:aws:lambda:{REGION}:{MOTO_ACCOUNT_ID}:function:rp-mw-{env}-worker"


@dataclass(frozen=True)
class AwsCall:
    access_key: str
    service: str
    method: str
    operation: str  # "GetParameter", or "GET /2015-03-31/functions/x/configuration" for Lambda's REST API

    @property
    def is_read(self) -> bool:
        if " " in self.operation:  # REST: the method says it
            return self.method in ("GET", "HEAD")
        return self.operation.startswith(("Get", "Describe", "List", "Filter", "Simulate"))


class AwsCallLog:
    """WSGI middleware in front of moto: every AWS operation, with the access key that signed it."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.recording = False
        self.calls: list[AwsCall] = []
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if self.recording and not environ.get("PATH_INFO", "").startswith("/moto-api/"):
            self._record(environ)
        return self.app(environ, start_response)

    def _record(self, environ: dict[str, Any]) -> None:
        signed = re.search(r"Credential=([^/]+)/[^/]+/[^/]+/([^/]+)/", environ.get("HTTP_AUTHORIZATION", ""))
        key, service = signed.groups() if signed else ("", "")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)  # moto reads it after us
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target:  # JSON protocol (SSM, Secrets Manager, Logs)
            operation = target.rsplit(".", 1)[-1]
        elif "/operation/" in path:  # CBOR (CloudWatch)
            operation = path.rsplit("/", 1)[-1]
        else:  # query protocol (STS, IAM) or REST (Lambda)
            operation = (parse_qs(body.decode("utf-8", "replace")).get("Action") or [""])[-1] or f"{method} {path}"
        with self._lock:
            self.calls.append(AwsCall(key, service, method, operation))

    def take(self) -> list[AwsCall]:
        with self._lock:
            calls, self.calls = self.calls, []
        return calls


@pytest.fixture(scope="module")
def rb(sandbox: Sandbox, tmp_path_factory) -> tuple[Any, Any]:
    """A map that also holds the RB environments (the session's `config` predates them)."""
    for name, scenario in RB.items():
        if name not in sandbox.envs:
            sandbox.add_env(name, scenario)
    path = sandbox.write_config(tmp_path_factory.mktemp("rollback-ready"))
    return load_config(path), path


@pytest.fixture(scope="module")
def aws_calls(sandbox: Sandbox) -> AwsCallLog:
    log: AwsCallLog = sandbox.aws.wrap_app(AwsCallLog)  # stays in front of moto, recording only when asked
    return log


def run(config, env, tmp_path, **kwargs):
    seen = []
    outcome = execute(
        RunRequest("preflight", env), config=config, progress=seen.append, evidence_root=tmp_path, **kwargs
    )
    assert "rollback_ready" in {c.name for c in seen}  # reported live like every check
    return outcome


def check(outcome):
    return next(c for c in outcome.report.checks if c.name == "rollback_ready")


def not_passing(outcome) -> set[str]:
    return {c.name for c in outcome.report.checks if c.status != Status.PASS}


def bundle_text(outcome) -> str:
    return "\n".join(b.decode() for b in outcome.bundle.files.values())


# --- PASS: the lever's value in the evidence, the permission proven for the caller's role -------------


def test_preflight_shows_rollback_ready_with_the_levers_value(sandbox, config, tmp_path):
    before = len(sandbox.iam.simulations)
    outcome = run(config, "prod", tmp_path)
    ready = check(outcome)
    assert ready.status == Status.PASS, ready.detail
    assert outcome.report.overall_status == "PASS"
    # the value a rollback changes from, and which write it is
    assert ready.data["value"] is False
    assert ready.data["version"] == str(
        sandbox.aws.client("ssm").get_parameter(Name=outbound_parameter("prod"))["Parameter"]["Version"]
    )
    assert "SSM parameter /rp-mw/prod/outbound_enabled = false now" in ready.detail
    # STS names an assumed role; IAM was asked about the role itself, for the write a rollback makes
    identity = next(c for c in outcome.report.checks if c.name == "aws_identity")
    assert ":assumed-role/cutover-bot/" in identity.data["arn"]
    assert ready.data["principal"] == sandbox.bot_role_arn == f"arn:aws:iam::{MOTO_ACCOUNT_ID}:role/cutover-bot"
    asked = [s for s in sandbox.iam.simulations[before:] if param_arn("prod") in s.resources]
    assert [(s.policy_source_arn, s.actions, s.resources) for s in asked] == [
        (sandbox.bot_role_arn, ("ssm:PutParameter",), (param_arn("prod"),))
    ]
    assert ready.data["decisions"] == {"ssm:PutParameter": "allowed"}
    assert f"may ssm:PutParameter on {param_arn('prod')}" in ready.detail
    assert ready.data["state"] == config.state and "answers" in ready.detail
    # the evidence on disk keeps the value (and redacts the account id in the ARNs)
    written = bundle_text(outcome)
    assert '"value": false' in written and "parameter/rp-mw/prod/outbound_enabled" in written
    assert MOTO_ACCOUNT_ID not in written
    assert_nothing_planted(sandbox, written)


def test_the_lambda_form_asks_for_the_lambda_actions_on_the_worker(sandbox, rb, tmp_path):
    config, _ = rb
    before = len(sandbox.iam.simulations)
    outcome = run(config, "rb-lambda", tmp_path)
    ready = check(outcome)
    assert ready.status == Status.PASS, ready.detail
    assert not_passing(outcome) == set()
    assert ready.data["lever"] == "lambda_env" and ready.data["value"] is False
    assert "RICHPANEL_OUTBOUND_ENABLED on rp-mw-rb-lambda-worker = false now" in ready.detail
    asked = [s for s in sandbox.iam.simulations[before:] if function_arn("rb-lambda") in s.resources]
    assert [(s.actions, s.resources) for s in asked] == [(LAMBDA_ACTIONS, (function_arn("rb-lambda"),))]
    assert ready.data["decisions"] == dict.fromkeys(LAMBDA_ACTIONS, "allowed")


# --- FAIL: denied, naming the action and the resource ---------------------------------------------


@pytest.mark.parametrize(("env", "decision"), [("rb-implicit", "implicitDeny"), ("rb-explicit", "explicitDeny")])
def test_a_denied_put_parameter_fails_naming_action_and_resource(sandbox, rb, tmp_path, env, decision):
    config, _ = rb
    outcome = run(config, env, tmp_path)
    assert not_passing(outcome) == {"rollback_ready"}  # nothing else asks IAM: only this check knows
    assert outcome.report.overall_status == "FAIL"
    ready = check(outcome)
    assert ready.status == Status.FAIL
    assert f"may not ssm:PutParameter on {param_arn(env)} ({decision}" in ready.detail
    assert ready.data["decisions"] == {"ssm:PutParameter": decision}
    assert ready.data["value"] is False  # the lever itself is fine: the evidence still shows it
    hint = "grant it" if decision == "implicitDeny" else "remove that deny"
    assert hint in ready.detail
    assert f"ssm:PutParameter on arn:aws:ssm:{REGION}:" in bundle_text(outcome)
    assert f"parameter/rp-mw/{env}/outbound_enabled" in bundle_text(outcome)


def test_a_denied_lambda_update_fails_naming_it_and_the_function(rb, tmp_path):
    config, _ = rb
    outcome = run(config, "rb-lambda-denied", tmp_path)
    assert not_passing(outcome) == {"rollback_ready"}
    ready = check(outcome)
    assert f"may not lambda:UpdateFunctionConfiguration on {function_arn('rb-lambda-denied')}" in ready.detail
    assert "lambda:GetFunctionConfiguration on" not in ready.detail  # allowed: not named as denied
    assert ready.data["decisions"] == {
        "lambda:GetFunctionConfiguration": "allowed",
        "lambda:UpdateFunctionConfiguration": "implicitDeny",
    }


def test_the_cli_exits_1_and_prints_the_denied_action(sandbox, rb, tmp_path, capsys):
    _, path = rb
    argv = ["preflight", "--env", "rb-implicit", "--config", str(path), "--evidence-dir", str(tmp_path)]
    assert main(argv) == 1
    printed = capsys.readouterr().out
    assert "rollback_ready" in printed and "ssm:PutParameter" in printed
    assert "Traceback" not in printed
    assert_nothing_planted(sandbox, printed)


def test_a_missing_lever_fails_rollback_ready_too(rb, tmp_path):
    config, _ = rb
    outcome = run(config, "rb-no-lever", tmp_path)
    assert not_passing(outcome) == {"outbound_flag", "rollback_ready"}
    ready = check(outcome)
    assert "/rp-mw/rb-no-lever/outbound_enabled does not exist: a rollback has no lever to turn off" in ready.detail
    assert ready.data["value"] is None


# --- WARN: the permission cannot be proven, with what to grant; never PASS -------------------------


def test_a_refused_simulator_is_a_warning_that_says_what_to_grant(sandbox, rb, tmp_path):
    config, _ = rb
    before = len(sandbox.iam.received("POST"))
    outcome = run(config, "rb-refused", tmp_path)
    ready = check(outcome)
    assert ready.status == Status.WARN
    assert "cannot prove the rollback permission" in ready.detail
    assert f"grant it iam:SimulatePrincipalPolicy on itself ({sandbox.bot_role_arn})" in ready.detail
    assert ready.data["grant"] == "iam:SimulatePrincipalPolicy"
    assert ready.data["value"] is False  # the rest of the check still ran
    assert not_passing(outcome) == {"rollback_ready"}
    assert outcome.report.overall_status == "PASS"  # a WARN passes with its caveat shown, as everywhere
    # the question really reached the simulator (which answered 403 AccessDenied), about this env's lever
    asked = [r.form() for r in sandbox.iam.received("POST")[before:]]
    asked = [f for f in asked if f.get("Action") == "SimulatePrincipalPolicy"]
    assert [f.get("ResourceArns.member.1") for f in asked] == [param_arn("rb-refused")]


def test_a_caller_iam_cannot_simulate_is_a_warning(sandbox, config, tmp_path, monkeypatch):
    # moto's default identity for keys it never issued is `arn:aws:sts::ACCOUNT:user/moto`: no role to ask about
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    ready = check(run(config, "prod", tmp_path))
    assert ready.status == Status.WARN
    assert "is not a role or user IAM can simulate" in ready.detail


@pytest.fixture
def pathed_role(sandbox: Sandbox, monkeypatch) -> Iterator[str]:
    """The bot as a role with a path: STS's assumed-role ARN drops the path, IAM knows only the full ARN."""
    iam, sts = sandbox.aws.client("iam"), sandbox.aws.client("sts")
    name = "cutover-bot-pathed"
    try:
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        trust = '{"Version": "2012-10-17", "Statement": []}'
        arn = iam.create_role(RoleName=name, Path="/cutover/team/", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    creds = sts.assume_role(RoleArn=arn, RoleSessionName="pathed")["Credentials"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", creds["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", creds["SecretAccessKey"])
    monkeypatch.setenv("AWS_SESSION_TOKEN", creds["SessionToken"])
    sandbox.iam.known_principals = {arn}
    try:
        yield arn
    finally:
        sandbox.iam.known_principals = None
        sandbox.iam.refused_calls.discard("GetRole")


def test_a_role_with_a_path_is_found_with_get_role(sandbox, config, tmp_path, pathed_role):
    assert pathed_role == f"arn:aws:iam::{MOTO_ACCOUNT_ID}:role/cutover/team/cutover-bot-pathed"
    before = len(sandbox.iam.simulations)
    ready = check(run(config, "prod", tmp_path))
    assert ready.status == Status.PASS, ready.detail
    assert ready.data["principal"] == pathed_role
    sources = [s.policy_source_arn for s in sandbox.iam.simulations[before:] if param_arn("prod") in s.resources]
    assert sources == [f"arn:aws:iam::{MOTO_ACCOUNT_ID}:role/cutover-bot-pathed", pathed_role]


def test_a_role_with_a_path_that_may_not_get_role_is_a_warning(sandbox, config, tmp_path, pathed_role):
    sandbox.iam.refuse_call("GetRole")
    ready = check(run(config, "prod", tmp_path))
    assert ready.status == Status.WARN
    assert "grant it iam:GetRole on its role cutover-bot-pathed" in ready.detail
    assert ready.data["grant"] == "iam:GetRole"


# --- the store a rollback uses ---------------------------------------------------------------------


def test_an_unwritable_sqlite_state_fails_naming_the_store(sandbox, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the state's directory should be")
    state = f"sqlite:///{blocker}/cutover.db"
    bad = load_config(sandbox.write_config(tmp_path, state=state))
    # the run itself records into a store that works; the map names, for every rollback, one that does not
    outcome = run(bad, "prod", tmp_path, store=open_store(f"sqlite:///{tmp_path / 'run.db'}"))
    ready = check(outcome)
    assert not_passing(outcome) == {"rollback_ready"}
    assert ready.status == Status.FAIL
    assert f"the state store a rollback uses ({state}) is not reachable" in ready.detail
    assert str(blocker) in ready.detail
    assert ready.data["value"] is False and ready.data["decisions"] == {"ssm:PutParameter": "allowed"}


def test_a_dynamodb_state_must_answer(sandbox, tmp_path):
    table = "cutover-rollback-ready"
    open_store(f"dynamodb://{table}").create_table_if_missing()
    (tmp_path / "good").mkdir()
    (tmp_path / "missing").mkdir()
    good = load_config(sandbox.write_config(tmp_path / "good", state=f"dynamodb://{table}"))
    ready = check(run(good, "prod", tmp_path))
    assert ready.status == Status.PASS, ready.detail
    assert ready.data["state"] == f"dynamodb://{table}"

    missing = load_config(sandbox.write_config(tmp_path / "missing", state="dynamodb://no-such-cutover-table"))
    outcome = run(missing, "prod", tmp_path, store=open_store(f"dynamodb://{table}"))
    ready = check(outcome)
    assert ready.status == Status.FAIL
    assert "the state store a rollback uses (dynamodb://no-such-cutover-table) is not reachable" in ready.detail


# --- nothing is written anywhere -------------------------------------------------------------------


def _lever_state(sandbox: Sandbox, env: str) -> tuple[Any, ...]:
    if sandbox.envs[env].scenario.outbound_flag == "ssm_parameter":
        param = sandbox.aws.client("ssm").get_parameter(Name=outbound_parameter(env))["Parameter"]
        return (param["Version"], param["LastModifiedDate"], param["Value"])
    conf = sandbox.aws.client("lambda").get_function_configuration(FunctionName=f"rp-mw-{env}-worker")
    return (conf.get("RevisionId"), conf["LastModified"], conf["Environment"]["Variables"])


@pytest.mark.parametrize("env", ["prod", "rb-lambda"])
def test_the_check_writes_nothing_to_any_system(sandbox, rb, aws_calls, tmp_path, env):
    config, _ = rb
    fakes = [*sandbox.envs[env].fakes, sandbox.github, sandbox.slack]
    seen = {id(f): len(f.received()) for f in fakes}
    iam_seen = len(sandbox.iam.received())
    lever_before = _lever_state(sandbox, env)
    aws_calls.take()
    aws_calls.recording = True
    try:
        outcome = run(config, env, tmp_path)
    finally:
        aws_calls.recording = False
    assert check(outcome).status == Status.PASS
    assert _lever_state(sandbox, env) == lever_before  # same version, same time, same value

    bot = [c for c in aws_calls.take() if c.access_key == sandbox.bot_access_key_id]
    assert not [c for c in bot if not c.is_read], "preflight wrote to AWS"
    lever_read = "GetParameter" if env == "prod" else f"GET /2015-03-31/functions/rp-mw-{env}-worker/configuration"
    assert lever_read in {c.operation for c in bot}  # positive control: the log does see the bot's calls
    assert "GetCallerIdentity" in {c.operation for c in bot}

    iam_actions = [r.form().get("Action") for r in sandbox.iam.received()[iam_seen:]]
    assert "SimulatePrincipalPolicy" in iam_actions
    assert set(iam_actions) <= {"SimulatePrincipalPolicy", "GetRole"}, iam_actions

    for fake in fakes:
        for request in fake.received()[seen[id(fake)] :]:
            if request.method != "GET":  # Shopify's GraphQL read is a POST: a query, never a mutation
                assert request.path.endswith("/graphql.json") and b"mutation" not in request.body, request.path
    assert len(sandbox.github.received()) == seen[id(sandbox.github)]  # no PR given: GitHub untouched
    assert len(sandbox.slack.received()) == seen[id(sandbox.slack)]


def test_the_dry_run_names_the_check_and_calls_nothing(sandbox, rb, tmp_path):
    config, _ = rb
    iam_seen = len(sandbox.iam.received())
    plan = execute(RunRequest("preflight", "rb-lambda", dry_run=True), config=config)
    step = next(c for c in plan.report.checks if c.name == "rollback_ready")
    assert step.status == Status.SKIP
    assert "IAM SimulatePrincipalPolicy (lambda:GetFunctionConfiguration and lambda:UpdateFunctionConfiguration" in (
        step.detail
    )
    names = [c.name for c in plan.report.checks]
    assert names.index("rollback_ready") == names.index("outbound_flag") + 1
    assert len(sandbox.iam.received()) == iam_seen
