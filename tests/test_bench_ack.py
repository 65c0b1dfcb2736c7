"""bench/ack.py keeps working as the app changes: a tiny burst through the real Bolt app (threaded server,
signed requests, the loopback SlackFake) beside the bare Bolt app, and every command answered and finished.

No latency is asserted here (timings belong to the bench itself); only counts that could fail: each
command acked 200 and queued, each queued run's final message in the channel, none lost.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_every_command_is_acked_and_finished_beside_the_bare_app(capsys: pytest.CaptureFixture[str]) -> None:
    ack = load("ack")
    rc = ack.main(["-n", "6", "--rounds", "2", "--run-seconds", "0.05", "--server", "threaded", "--memory", "0"])
    out = capsys.readouterr().out
    figures = json.loads(out.strip().splitlines()[-1])
    bot, bare = figures["latency"]["6"]["bot"], figures["latency"]["6"]["bare"]
    assert (bot["sent"], bot["answered"], bot["queued"], bot["final"], bot["lost"]) == (12, 12, 12, 12, 0), out
    assert (bare["sent"], bare["answered"], bare["lost"]) == (12, 12, 0), out
    assert figures["targets"] == {"0 lost at 6 concurrent": "PASS"}, out
    assert rc == 0


def test_a_full_queue_is_an_answer_not_a_loss() -> None:
    ack = load("ack")
    tally = ack.Tally("bot", 3)
    tally.add([ack.Answer(200, 0.01, "queued"), ack.Answer(200, 0.01, "busy"), ack.Answer(0, 10.0, "other")])
    tally.finals = 1
    assert (tally.ok, tally.queued, tally.busy, tally.lost) == (2, 1, 1, 1)  # only the unanswered one is lost
    tally.finals = 0
    assert tally.lost == 2  # a queued run without its final message is lost too


def test_the_summary_rejects_an_unknown_bench(capsys: pytest.CaptureFixture[str]) -> None:
    run_all = load("run_all")
    sys_argv = sys.argv
    sys.argv = ["run_all.py", "--only", "ack,nonsense"]
    try:
        with pytest.raises(SystemExit) as exit_info:
            run_all.main()
    finally:
        sys.argv = sys_argv
    assert exit_info.value.code == 2
    assert "unknown bench nonsense" in capsys.readouterr().err
