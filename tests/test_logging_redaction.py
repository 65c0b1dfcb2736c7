"""Logs are an exit too: at DEBUG, no library writes a secret it carried on the wire.

The secret read from AWS is in botocore's DEBUG line of the response before the caller can register
it with the redactor, so redaction by value cannot be the defence: the process setup
(`configure_process_logging`) keeps the wire loggers from logging bodies and headers at all.
"""

from __future__ import annotations

import io
import json
import logging
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from commands import redaction
from commands.redaction import (
    ENV_SECRETS,
    WIRE_LOGGERS,
    RedactingFilter,
    Redactor,
    configure_process_logging,
    register_environment_secrets,
)
from integrations.sandbox.aws import AwsSandbox

ROOT = Path(__file__).resolve().parent.parent
SECRET_ID = "rp-mw/prod/openai/api_key"

# Shapes no pattern knows: only the process setup (registration, wire filtering) can hide them.
PLANTED_SECRET = f"planted-secret-{uuid.uuid4().hex}"
PLANTED_SESSION_TOKEN = f"planted-session-{uuid.uuid4().hex}{uuid.uuid4().hex}"

CHILD = textwrap.dedent(
    """
    import logging, sys
    import boto3
    {setup}
    log = logging.getLogger("bot.under_test")
    log.debug("positive control: debug logging is on")
    sm = boto3.client("secretsmanager")
    value = sm.get_secret_value(SecretId={secret_id!r})["SecretString"]
    assert value == {planted!r}, "the sandbox did not answer the planted value"
    # Someone turns the wire loggers back on, as a debugging session would: still nothing.
    logging.getLogger("botocore").setLevel(logging.DEBUG)
    logging.getLogger("urllib3").setLevel(logging.DEBUG)
    sm.get_secret_value(SecretId={secret_id!r})
    log.debug("read %d characters", len(value))
    print("done")
    """
)
SETUPS = {
    "configure_process_logging": (
        "from commands.redaction import configure_process_logging; configure_process_logging()"
    ),
    # The entry points' former call: it must now do the whole setup too.
    "install_log_redaction": "from commands.redaction import install_log_redaction; install_log_redaction()",
}


@pytest.fixture(scope="module")
def aws() -> Iterator[AwsSandbox]:
    with AwsSandbox() as sb:
        sb.client("secretsmanager").create_secret(Name=SECRET_ID, SecretString=PLANTED_SECRET)
        yield sb


def run_child(aws: AwsSandbox, setup: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CUTOVER_"))}
    env.update(aws.env(), AWS_SESSION_TOKEN=PLANTED_SESSION_TOKEN, CUTOVER_LOG_LEVEL="DEBUG", PYTHONPATH=str(ROOT))
    code = CHILD.format(setup=setup, secret_id=SECRET_ID, planted=PLANTED_SECRET)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=50, check=False
    )


@pytest.mark.parametrize("entry", sorted(SETUPS))
def test_debug_logs_of_a_real_secret_read_carry_no_secret_and_no_session_token(aws, entry):
    done = run_child(aws, SETUPS[entry])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "done" in done.stdout
    assert "positive control: debug logging is on" in done.stderr  # DEBUG is really on
    assert f"read {len(PLANTED_SECRET)} characters" in done.stderr
    assert PLANTED_SECRET not in done.stderr
    assert PLANTED_SESSION_TOKEN not in done.stderr


def test_without_the_setup_the_same_process_does_leak(aws):
    """The control: plain DEBUG logging writes both values, so the test above can see a leak."""
    done = run_child(aws, "logging.basicConfig(level=logging.DEBUG)")
    assert done.returncode == 0, done.stderr[-3000:]
    assert PLANTED_SECRET in done.stderr
    assert PLANTED_SESSION_TOKEN in done.stderr


# --- in-process setup: wire filtering, registration, idempotence ---------------------------------


@pytest.fixture
def logging_state() -> Iterator[io.StringIO]:
    """A root handler writing to a buffer; every piece of global state the setup touches is restored."""
    root = logging.getLogger()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    saved_level = root.level
    loggers = {name: logging.getLogger(name) for name in (*WIRE_LOGGERS, *redaction._WIRE_LEAVES, "bot.t")}
    saved = {name: (lg.level, list(lg.filters)) for name, lg in loggers.items()}
    saved_hooks = (sys.excepthook, threading.excepthook)
    last_resort_filters = list(logging.lastResort.filters) if logging.lastResort else []
    handler_filters = {h: list(h.filters) for h in root.handlers}  # pytest's own capture handlers
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_level)
        for name, (level, filters) in saved.items():
            loggers[name].setLevel(level)
            loggers[name].filters[:] = filters
        sys.excepthook, threading.excepthook = saved_hooks
        if logging.lastResort:
            logging.lastResort.filters[:] = last_resort_filters
        for h, filters in handler_filters.items():
            h.filters[:] = filters


def test_wire_records_below_warning_are_dropped_whatever_the_logger_level(logging_state):
    configure_process_logging(Redactor(), environ={})
    planted = f"body-{uuid.uuid4().hex}"
    for name in (
        "botocore.parsers",
        "botocore.endpoint",
        "urllib3.connectionpool",
        "httpcore.http11",
        "github.Requester",
    ):
        logging.getLogger(name).setLevel(logging.DEBUG)  # a library or a person lowers it again
        logging.getLogger(name).debug("Response body: %s", planted)
        logging.getLogger(name).info("Response body: %s", planted)
    logging.getLogger("httpcore.some.future.child").debug("headers %s", planted)
    logging.getLogger("bot.t").debug("ours at debug: kept")
    logging.getLogger("botocore.endpoint").warning("a library warning is kept")
    out = logging_state.getvalue()
    assert planted not in out
    assert "ours at debug: kept" in out
    assert "a library warning is kept" in out


def test_a_handler_on_a_library_logger_gets_no_wire_record_either(logging_state):
    """boto3.set_stream_logger() attaches its own handler to 'botocore': the leaf loggers still refuse."""
    configure_process_logging(Redactor(), environ={})
    own = io.StringIO()
    handler = logging.StreamHandler(own)
    botocore = logging.getLogger("botocore")
    botocore.addHandler(handler)
    try:
        botocore.setLevel(logging.DEBUG)
        logging.getLogger("botocore.parsers").debug("Response body: planted-in-library-handler")
    finally:
        botocore.removeHandler(handler)
    assert "planted-in-library-handler" not in own.getvalue()


def test_every_written_record_passes_the_redactor(logging_state):
    redactor = Redactor()
    configure_process_logging(redactor, environ={"GITHUB_TOKEN": "gh-env-token-0123456789"})
    log = logging.getLogger("bot.t")
    log.warning("token %s for %s", "gh-env-token-0123456789", "jane@example.com")
    try:
        raise RuntimeError("failed with gh-env-token-0123456789")
    except RuntimeError:
        log.exception("boom")
    out = logging_state.getvalue()
    assert "gh-env-token-0123456789" not in out
    assert "jane@example.com" not in out
    assert "[REDACTED:github_token]" in out


def test_environment_credentials_are_registered_by_value():
    redactor = Redactor()
    env = {
        "GITHUB_TOKEN": "plain-github-token-value",
        "SLACK_BOT_TOKEN": "plain-slack-bot-token",
        "SLACK_SIGNING_SECRET": "0123456789abcdef0123456789abcdef",
        "SLACK_APP_TOKEN": "plain-slack-app-token",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "AWS_SESSION_TOKEN": "plain-session-token-value",
    }
    register_environment_secrets(redactor, {**env, "OTHER": "not-a-credential-at-all"})
    for variable, value in env.items():
        assert redactor.redact(f"x {value} y") == f"x [REDACTED:{ENV_SECRETS[variable]}] y"
    assert "not-a-credential-at-all" in redactor.redact("not-a-credential-at-all")


def test_short_environment_values_are_skipped_not_refused():
    redactor = Redactor()
    register_environment_secrets(redactor, {"AWS_SECRET_ACCESS_KEY": "testing", "GITHUB_TOKEN": ""})
    assert redactor.redact("testing") == "testing"


def test_the_setup_is_idempotent(logging_state):
    redactor = Redactor()
    env = {"SLACK_BOT_TOKEN": "xoxb-idempotent-0123456789"}
    configure_process_logging(redactor, environ=env)
    compiled = redactor._compiled
    for _ in range(3):
        configure_process_logging(redactor, environ=env)
    assert redactor._compiled is compiled  # nothing registered twice, nothing recompiled
    for handler in logging.getLogger().handlers:
        assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
    for name in redaction._WIRE_LEAVES:
        assert sum(isinstance(f, redaction._WireFilter) for f in logging.getLogger(name).filters) == 1
    logging.getLogger("bot.t").warning("once")
    assert logging_state.getvalue().count("once") == 1


def test_uncaught_exceptions_print_redacted(aws):
    code = textwrap.dedent(
        """
        import threading
        from commands.redaction import configure_process_logging
        configure_process_logging()
        t = threading.Thread(target=lambda: (_ for _ in ()).throw(RuntimeError("thread saw " + TOKEN)))
        t.start(); t.join()
        raise RuntimeError("main saw " + TOKEN)
        """
    ).replace("TOKEN", repr(PLANTED_SESSION_TOKEN))
    env = {**os.environ, "AWS_SESSION_TOKEN": PLANTED_SESSION_TOKEN, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=50, check=False
    )
    assert done.returncode != 0
    assert "thread saw [REDACTED:aws_session_token]" in done.stderr
    assert "main saw [REDACTED:aws_session_token]" in done.stderr
    assert PLANTED_SESSION_TOKEN not in done.stderr


# --- worker processes ------------------------------------------------------------------------


def _worker(queue) -> None:  # runs in the child process
    stream = io.StringIO()
    sys.stderr = stream  # where basicConfig's handler writes, when the child has no handler yet
    configure_process_logging()
    configure_process_logging()  # the run function may call it again: nothing doubles
    logging.getLogger("botocore.parsers").setLevel(logging.DEBUG)
    logging.getLogger("botocore.parsers").debug('Response body: {"SecretString": "%s"}', "worker-planted-body")
    logging.getLogger("bot.worker").warning("worker holds %s", os.environ["GITHUB_TOKEN"])
    root = logging.getLogger()
    filters = [sum(isinstance(f, RedactingFilter) for f in h.filters) for h in root.handlers]
    for handler in root.handlers:
        handler.flush()
    queue.put((stream.getvalue(), filters))


# Each start method in a fresh interpreter: a forkserver is one per process, and the test run's own
# (the worker pool's, with its preload) must not be started or shaped by this test.
WORKER_PARENT = textwrap.dedent(
    """
    import json, multiprocessing, sys
    from commands.redaction import configure_process_logging
    from tests.test_logging_redaction import _worker
    method = sys.argv[1]
    if method == "fork":  # a forked child inherits the parent's setup and handlers, then runs it again
        configure_process_logging()
    ctx = multiprocessing.get_context(method)
    queue = ctx.Queue()
    proc = ctx.Process(target=_worker, args=(queue,))
    proc.start()
    out, filters = queue.get(timeout=40)
    proc.join(timeout=10)
    print(json.dumps({"out": out, "filters": filters, "exitcode": proc.exitcode}))
    """
)


@pytest.mark.parametrize("method", ["spawn", "forkserver", "fork"])
def test_a_worker_process_sets_itself_up(method):
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    token = f"worker-env-token-{uuid.uuid4().hex}"
    env = {**os.environ, "GITHUB_TOKEN": token, "CUTOVER_LOG_LEVEL": "DEBUG", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", WORKER_PARENT, method],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=55,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["exitcode"] == 0
    written = result["out"] + done.stderr  # a forked child writes through the parent's handler
    assert "worker holds [REDACTED:github_token]" in written
    assert token not in written
    assert "worker-planted-body" not in written
    assert result["filters"] and all(n == 1 for n in result["filters"])
