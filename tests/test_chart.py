"""The run chart: drawn from the report's events and the worker's metrics, free of identifiers, in the
bundle and its manifest, posted in the run's Slack thread, and never loaded by the Slack app's start-up."""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from commands.chart import CHART_FILE, LABELS, Mark, Series, Span, draw, marks_from_report, safe_label, window
from commands.config import Tokens, load_config
from commands.execute import execute
from commands.report import Status
from commands.request import RunRequest
from integrations.sandbox.env import ENGINEER, Sandbox, Scenario
from tests.factories import check, report
from tests.slack_support import CHANNEL, served_bot
from tests.test_enable_outbound_support import wait_for

ROOT = Path(__file__).resolve().parent.parent
ENV = "chart-env"


def png_text(png: bytes) -> dict[str, str]:
    """Every text chunk (tEXt, zTXt, iTXt) of a PNG: its metadata, where an identifier could hide."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    found: dict[str, str] = {}
    at = 8
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        kind, data = png[at + 4 : at + 8], png[at + 8 : at + 8 + length]
        if kind == b"tEXt":
            key, _, value = data.partition(b"\0")
            found[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"zTXt":
            key, _, rest = data.partition(b"\0")
            found[key.decode("latin-1")] = zlib.decompress(rest[1:]).decode("latin-1")
        elif kind == b"iTXt":
            key, _, rest = data.partition(b"\0")
            compressed, rest = rest[0], rest[2:]
            _, _, rest = rest.partition(b"\0")  # language tag
            _, _, text = rest.partition(b"\0")  # translated keyword
            found[key.decode("latin-1")] = (zlib.decompress(text) if compressed else text).decode("utf-8")
        at += 12 + length
    return found


# --- pure parts --------------------------------------------------------------------------------


def test_draw_makes_a_png_whose_metadata_says_nothing_but_generic_words():
    now = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    series = [Series("invocations", [(now + timedelta(seconds=i), float(i % 3)) for i in range(20)]),
              Series("errors", [(now + timedelta(seconds=7), 1.0)], complete=False)]  # fmt: skip
    png = draw(
        series,
        [Mark(now + timedelta(seconds=5), "outbound on", "flag"), Mark(now + timedelta(seconds=6), "canary ticket")],
        [Span(now + timedelta(seconds=8), now + timedelta(seconds=15), "watch window")],
        title="Enable outbound: worker invocations and errors",
        start=now - timedelta(seconds=5),
        end=now + timedelta(seconds=25),
        period_s=1,
    )
    assert png.startswith(b"\x89PNG")
    text = png_text(png)
    assert "Software" not in text  # matplotlib would name itself and its version
    assert text == {
        "Title": "cutover run chart",
        "Description": "worker invocations and errors per period, with the run's events marked",
    }


def test_only_words_from_the_vocabulary_can_reach_a_chart():
    assert safe_label("canary ticket") == "canary ticket"
    assert safe_label("ticket 1042 for owner@example.com") == "event"
    assert all(re.fullmatch(r"[a-z]+( [a-z]+)*(: [A-Z_]+)?", label) for label in LABELS)  # words, no ids


def test_marks_and_windows_come_from_the_report_steps_data():
    t0 = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    at = lambda s: (t0 + timedelta(seconds=s)).isoformat()  # noqa: E731
    r = report(
        check("outbound_flag", value=True, written=True, modified_at=at(10), effective_at=at(11)),
        check("test_ticket", created_at=at(12), ticket="sha256:abc"),
        check("processed", processed_at=at(14)),
        check("watch", window_start=at(15), window_end=at(30)),
        check("rule_paused", confirmed_at=at(31)),
        check("no_invocations", window_start=at(32), window_end=at(40)),
        check(
            "extra",
            alarm_transitions=[{"at": at(20), "state": "ALARM"}],
            chart_marks=[{"at": at(21), "label": "rp-mw-prod-worker", "kind": "flag"}],
        ),
        check("outbound_flag", status=Status.PASS, value=False, written=False, modified_at=at(1)),  # nothing written
        command="enable-outbound",
    )
    marks, spans = marks_from_report(r)
    assert [(m.label, m.at - t0) for m in marks] == [
        ("outbound on", timedelta(seconds=10)),
        ("flag in effect", timedelta(seconds=11)),
        ("canary ticket", timedelta(seconds=12)),
        ("ticket processed", timedelta(seconds=14)),
        ("rule paused", timedelta(seconds=31)),
        ("event", timedelta(seconds=21)),  # an identifier as a label becomes "event"
        ("alarm: ALARM", timedelta(seconds=20)),
    ]
    assert [(s.label, s.start - t0, s.end - t0) for s in spans] == [
        ("watch window", timedelta(seconds=15), timedelta(seconds=30)),
        ("quiet window", timedelta(seconds=32), timedelta(seconds=40)),
    ]


def test_the_window_covers_the_run_and_its_marks_and_reads_per_minute_when_long():
    r = report(check())
    start, end, period = window(r, [Mark(r.started_at - timedelta(seconds=30), "outbound on")], [])
    assert start <= r.started_at - timedelta(seconds=30) and end >= r.finished_at
    assert period in (1, 5)  # seconds-long: high resolution
    long = [Span(r.started_at, r.started_at + timedelta(minutes=20), "watch window")]
    start, end, period = window(r, [], long)
    assert period >= 60 and (end - start) / timedelta(seconds=period) <= 120
    assert start.timestamp() % period == 0


# --- a real run on the sandbox ------------------------------------------------------------------


@pytest.fixture(scope="module")
def chart_env(sandbox: Sandbox, tmp_path_factory):
    if ENV not in sandbox.envs:
        sandbox.add_env(ENV, Scenario(approval_required=(), rule_enabled=True))
    directory = tmp_path_factory.mktemp("chart")
    config = load_config(sandbox.write_config(directory, evidence_dir=str(directory / "evidence")))
    return sandbox.envs[ENV], config


def test_a_rollback_posts_its_chart_in_the_runs_slack_thread_and_keeps_it_in_the_bundle(sandbox, chart_env):
    from bot.terminal.cli import main

    env, config = chart_env
    assert env.worker is not None
    wait = env.worker.invocations + 3
    while env.worker.invocations < wait:  # the worker has been invoking: the chart has bars before the pause
        env.worker.wait_for("invocation", timeout_s=5)
    env.set_rule(enabled=False, by="tester")
    with served_bot(execute, config=config, fake=sandbox.slack, tokens=Tokens()) as h:
        assert h.command("/rollback", ENV, user=ENGINEER).json()["text"] == f"Rollback {ENV} queued"
        [message] = h.final_messages(1, timeout_s=30)
        assert f"PASS rollback {ENV}" in message.all_text()
        [uploaded] = wait_for(lambda: h.fake.files(CHANNEL), what="the chart in the run's thread")
        assert uploaded.thread_ts == message.ts  # in the run's thread, not the channel
        assert uploaded.filename == CHART_FILE and f"Rollback {ENV}" in (uploaded.title or "")
        assert len(h.fake.calls("files.getUploadURLExternal")) == 1
    [bundle] = [p.parent for p in (Path(config.evidence_dir) / ENV).rglob(CHART_FILE)]
    png = (bundle / CHART_FILE).read_bytes()
    assert uploaded.content == png  # the same bytes as the proof
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["files"][CHART_FILE]["size"] == len(png)
    assert main(["verify", str(bundle)]) == 0
    metadata = json.dumps(png_text(png))
    for value in [*sandbox.planted(), env.function_name, manifest["run_id"], ENGINEER]:
        assert value not in metadata


def test_a_preflight_bundle_has_no_chart(sandbox, config, tmp_path):
    outcome = execute(RunRequest("preflight", "prod"), config=config, evidence_root=tmp_path)
    assert CHART_FILE not in outcome.bundle.files
    assert CHART_FILE not in json.loads(outcome.bundle.files["manifest.json"])["files"]


# --- start-up --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "import bot.slack.app",
        "import bot.slack.wsgi; assert bot.slack.wsgi.application",  # the app built, as gunicorn does
        "import commands.chart, commands.execute, commands.publish",
    ],
)
def test_matplotlib_is_never_imported_by_the_slack_app_start_up(code):
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SLACK_BOT_TOKEN": "xoxb-0-startup",
        "SLACK_SIGNING_SECRET": "0" * 32,
        "SLACK_API_URL": "http://127.0.0.1:9/api/",
        "CUTOVER_CONFIG": str(ROOT / "cutover.example.toml"),
    }
    heavy = "('matplotlib', 'numpy', 'PIL')"
    probe = f"{code}\nimport sys\nprint(sorted(m for m in sys.modules if m.split('.')[0] in {heavy}))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
