"""The production runner: each command in a worker process, redacted before anything crosses back."""

from __future__ import annotations

import json

import pytest

from bot.execution.evidence_publisher import publisher_for
from bot.execution.worker_pool import ProcessRunner, WorkerDied
from commands.config import ConfigError, Tokens, load_config
from commands.execute import RunRequest
from commands.redaction import REDACTOR
from commands.report import Status
from integrations.sandbox.env import ENGINEER, PR_NUMBER, Sandbox, Scenario
from integrations.sandbox.http import Fault
from tests.conftest import assert_nothing_planted
from tests.slack_support import CHANNEL, served_bot


@pytest.fixture(scope="module")
def isolated(tmp_path_factory):
    """Secrets this test process has never read: only the worker's redactor can know them."""
    with Sandbox({"isolated": Scenario()}) as sandbox:
        workdir = tmp_path_factory.mktemp("isolated")
        config = load_config(sandbox.write_config(workdir, evidence_dir=str(workdir / "evidence")))
        yield sandbox, config


def test_a_run_in_a_worker_reports_progress_and_returns_a_redacted_outcome(isolated):
    sandbox, config = isolated
    env = sandbox.envs["isolated"]
    secret = env.secrets["richpanel_api_key"]  # rpk_<hex>: no pattern hides it, only its value can
    assert REDACTOR.redact(secret) == secret  # this process has never read it
    # An upstream answers with an error that echoes a secret the worker has read. (Shopify gets
    # 0.3 s of latency so the worker has surely read the Richpanel key by then.)
    env.shopify.latency_s = 0.3
    env.shopify.inject("shop.json", Fault("status", 500, body={"errors": f"boom for {secret} {env.pii[0]}"}))
    seen = []
    try:
        outcome = ProcessRunner()(RunRequest("preflight", "isolated"), config=config, progress=seen.append)
    finally:
        env.shopify.clear_faults()
        env.shopify.latency_s = 0.0
    assert REDACTOR.redact(secret) == secret  # the value never reached this process...
    rest = next(c for c in outcome.report.checks if c.name == "shopify_rest")
    assert rest.status == Status.FAIL
    assert "boom for [REDACTED:richpanel_api_key]" in rest.detail  # ...because the worker redacted it
    assert sorted(c.name for c in seen) == sorted(c.name for c in outcome.report.checks)
    crossed = [outcome.report.model_dump_json(), *(c.model_dump_json() for c in seen), outcome.evidence.detail]
    assert_nothing_planted(sandbox, *crossed, *(b.decode() for b in outcome.bundle.files.values()))


def test_slack_with_the_worker_runner_posts_verdicts_and_attaches_evidence(isolated):
    sandbox, config = isolated
    runner = ProcessRunner()
    bot_kwargs = {"publisher_factory": lambda: publisher_for(config)}
    with served_bot(runner, config=config, fake=sandbox.slack, tokens=Tokens(), bot_kwargs=bot_kwargs) as h:
        ack = h.command("/preflight", f"isolated pr={PR_NUMBER}", user=ENGINEER)
        assert ack.json()["text"] == "Preflight isolated queued"
        [final] = h.final_messages(1, timeout_s=60)
        text = final.all_text()
        assert "PASS preflight isolated" in text
        assert "evidence attached" in text
        everything = [json.dumps(v) for m in h.fake.messages(CHANNEL) for v in m.history]
        assert_nothing_planted(sandbox, *everything, *(r.body.decode() for r in h.fake.requests))
    assert any("cutover:isolated:preflight" in c["body"] for c in sandbox.github.comments(PR_NUMBER))


def test_errors_cross_the_process_boundary_as_themselves(isolated):
    _, config = isolated
    with pytest.raises(ConfigError, match="unknown environment 'nowhere'"):
        ProcessRunner()(RunRequest("preflight", "nowhere"), config=config)


def test_a_run_past_its_deadline_is_stopped_and_reported(isolated):
    sandbox, config = isolated
    sandbox.envs["isolated"].openai.inject("/v1/models", Fault("hang", seconds=10))
    try:
        with pytest.raises(WorkerDied, match="deadline"):
            ProcessRunner(deadline_s=0.5)(RunRequest("preflight", "isolated"), config=config)
    finally:
        sandbox.envs["isolated"].openai.clear_faults()
