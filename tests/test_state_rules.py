"""commands.state.phases: DESIGN's phase rules and the status line, over a real SQLite store, at a fixed `now`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from commands.state import LockHolder, RunRecord, StateStore, open_store
from commands.state.phases import phase, why_not

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
AGES = {"preflight": 60, "canary": 60}
_seq = iter(range(10_000))


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return open_store(f"sqlite:///{tmp_path}/cutover.db")


def ran(
    store: StateStore,
    command: str,
    status: str,
    minutes_ago: float,
    *,
    env: str = "prod",
    dry_run: bool = False,
    took_s: float = 30,
) -> RunRecord:
    """A run that started `minutes_ago` and finished `took_s` later (RUNNING: not finished)."""
    run_id = f"{command[:3]}{next(_seq)}"
    started = NOW - timedelta(minutes=minutes_ago)
    store.record_run_start(
        RunRecord(
            run_id=run_id,
            env=env,
            command=command,
            started_at=started,
            requested_by="U0ALICE",
            surface="slack",
            dry_run=dry_run,
        )
    )
    if status == "RUNNING":
        return store.get_run(env, run_id)
    return store.record_run_finish(env, run_id, status, finished_at=started + timedelta(seconds=took_s))


# --- always allowed ----------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["preflight", "rollback"])
def test_preflight_and_rollback_are_always_allowed(store: StateStore, command: str) -> None:
    assert why_not(store, "prod", command, NOW, AGES) is None
    ran(store, "enable-outbound", "PASS", 1)
    ran(store, "preflight", "FAIL", 0.5)
    assert why_not(store, "prod", command, NOW, AGES) is None


def test_a_command_without_a_phase_rule_may_run_at_any_time(store: StateStore) -> None:
    # Which commands exist is the registry's to say (the gate refuses an unknown one, tests/test_foundation.py);
    # the phase rules only order the cutover's own steps.
    assert why_not(store, "prod", "hello", NOW, AGES) is None


# --- canary ------------------------------------------------------------------------------------


def test_canary_needs_a_pass_preflight(store: StateStore) -> None:
    assert why_not(store, "prod", "canary", NOW, AGES) == (
        "no PASS preflight for prod in the last 60 min: run /preflight prod first"
    )
    ran(store, "preflight", "PASS", 5)
    assert why_not(store, "prod", "canary", NOW, AGES) is None


def test_canary_refuses_a_preflight_older_than_the_max_age(store: StateStore) -> None:
    ran(store, "preflight", "PASS", 61, took_s=30)  # finished 60.5 min ago
    reason = why_not(store, "prod", "canary", NOW, AGES)
    assert reason is not None
    assert reason.startswith("no PASS preflight for prod in the last 60 min")
    assert "the last one passed 60 min ago" in reason and reason.endswith("run /preflight prod first")
    assert why_not(store, "prod", "canary", NOW, {"preflight": 90, "canary": 60}) is None


def test_the_max_age_is_measured_to_the_minute_and_may_be_fractional(store: StateStore) -> None:
    ran(store, "preflight", "PASS", 0.1, took_s=0)  # exactly 6 s ago
    assert why_not(store, "prod", "canary", NOW, {"preflight": 0.1}) is not None  # 6 s is not younger than 6 s
    assert why_not(store, "prod", "canary", NOW - timedelta(seconds=1), {"preflight": 0.1}) is None
    ages = SimpleNamespace(preflight=0.2, canary=0.2)  # the config's MaxAges model has these attributes
    assert why_not(store, "prod", "canary", NOW, ages) is None


def test_canary_refuses_when_the_newest_preflight_failed(store: StateStore) -> None:
    ran(store, "preflight", "PASS", 20)
    failed = ran(store, "preflight", "FAIL", 10)
    reason = why_not(store, "prod", "canary", NOW, AGES)
    assert reason is not None and "the last preflight for prod failed" in reason
    assert failed.run_id in reason and "run /preflight prod again" in reason
    ran(store, "preflight", "PASS", 2)
    assert why_not(store, "prod", "canary", NOW, AGES) is None


def test_dry_runs_refusals_and_other_envs_do_not_count(store: StateStore) -> None:
    ran(store, "preflight", "PASS", 5, dry_run=True)
    ran(store, "preflight", "PASS", 5, env="dev")
    ran(store, "preflight", "REFUSED", 4)
    ran(store, "preflight", "RUNNING", 1)
    assert why_not(store, "prod", "canary", NOW, AGES) is not None
    assert why_not(store, "dev", "canary", NOW, AGES) is None


# --- enable-outbound ---------------------------------------------------------------------------


def test_enable_outbound_needs_a_fresh_pass_canary(store: StateStore) -> None:
    ran(store, "preflight", "PASS", 30)
    assert why_not(store, "prod", "enable-outbound", NOW, AGES) == (
        "no PASS canary for prod in the last 60 min: run /canary prod first"
    )
    ran(store, "canary", "PASS", 70)
    assert "the last one passed 70 min ago" in why_not(store, "prod", "enable-outbound", NOW, AGES)
    ran(store, "canary", "PASS", 10)
    assert why_not(store, "prod", "enable-outbound", NOW, AGES) is None


def test_enable_outbound_is_refused_after_a_rollback(store: StateStore) -> None:
    ran(store, "preflight", "PASS", 30)
    canary = ran(store, "canary", "PASS", 20)
    rollback = ran(store, "rollback", "PASS", 5)
    reason = why_not(store, "prod", "enable-outbound", NOW, AGES)
    assert reason is not None
    assert reason.startswith("prod was rolled back 5 min ago")
    assert rollback.run_id in reason and canary.run_id in reason
    assert reason.endswith("run /preflight prod and /canary prod again")


@pytest.mark.parametrize("status", ["FAIL", "INTERRUPTED", "RUNNING"])
def test_any_started_rollback_after_the_canary_counts(store: StateStore, status: str) -> None:
    ran(store, "canary", "PASS", 20)
    ran(store, "rollback", status, 5)
    assert "rolled back" in why_not(store, "prod", "enable-outbound", NOW, AGES)


def test_a_rollback_before_the_canary_or_a_dry_run_one_does_not_count(store: StateStore) -> None:
    ran(store, "rollback", "PASS", 40)
    ran(store, "canary", "PASS", 20)
    ran(store, "rollback", "PASS", 5, dry_run=True)
    assert why_not(store, "prod", "enable-outbound", NOW, AGES) is None


def test_enable_outbound_is_refused_after_a_failed_preflight(store: StateStore) -> None:
    ran(store, "preflight", "PASS", 30)
    ran(store, "canary", "PASS", 20)
    failed = ran(store, "preflight", "FAIL", 3)
    reason = why_not(store, "prod", "enable-outbound", NOW, AGES)
    assert reason is not None and reason.startswith("a preflight for prod failed")
    assert failed.run_id in reason and "/preflight prod and /canary prod again" in reason
    ran(store, "preflight", "PASS", 2)  # a later PASS does not undo it: the canary must be run again
    assert why_not(store, "prod", "enable-outbound", NOW, AGES) is not None
    ran(store, "canary", "PASS", 1)
    assert why_not(store, "prod", "enable-outbound", NOW, AGES) is None


def test_enable_outbound_is_refused_when_the_newest_canary_failed(store: StateStore) -> None:
    ran(store, "canary", "PASS", 20)
    ran(store, "canary", "FAIL", 10)
    assert "the last canary for prod failed" in why_not(store, "prod", "enable-outbound", NOW, AGES)


def test_a_dry_run_canary_never_opens_the_outbound(store: StateStore) -> None:
    ran(store, "canary", "PASS", 5, dry_run=True)
    assert why_not(store, "prod", "enable-outbound", NOW, AGES) is not None


def test_the_rules_read_a_fresh_store_after_a_restart(store: StateStore, tmp_path: Path) -> None:
    ran(store, "preflight", "PASS", 5)
    reopened = open_store(f"sqlite:///{tmp_path}/cutover.db")
    assert why_not(reopened, "prod", "canary", NOW, AGES) is None


# --- phase ------------------------------------------------------------------------------------


def _phase(store: StateStore) -> Any:
    return phase(store, "prod", NOW)


def test_phase_of_an_env_without_runs(store: StateStore) -> None:
    p = _phase(store)
    assert (p.name, p.text, p.since, p.age, p.run) == ("none", "no runs yet", None, None, None)


@pytest.mark.parametrize(
    ("runs", "name", "text"),
    [
        ([("preflight", "PASS", 5.5)], "preflight-passed", "preflight passed 5 min ago"),
        ([("preflight", "FAIL", 5.5)], "preflight-failed", "preflight failed 5 min ago"),
        ([("preflight", "PASS", 30), ("canary", "PASS", 10.5)], "canary-passed", "canary passed 10 min ago"),
        ([("canary", "PASS", 30), ("enable-outbound", "PASS", 3.5)], "outbound-on", "outbound on (enabled 3 min ago)"),
        ([("enable-outbound", "PASS", 30), ("rollback", "PASS", 2.5)], "rolled-back", "rolled back 2 min ago"),
        ([("rollback", "FAIL", 2.5)], "rollback-failed", "rollback FAILED 2 min ago: run /rollback prod again"),
        (
            [("enable-outbound", "PASS", 30), ("preflight", "PASS", 1.5)],
            "outbound-on",
            "outbound on (enabled 30 min ago); preflight passed 60 s ago",
        ),
        ([("enable-outbound", "PASS", 3 * 60 + 0.5)], "outbound-on", "outbound on (enabled 3 h ago)"),
    ],
)
def test_phase_names_the_newest_step_and_its_age(
    store: StateStore, runs: list[tuple[str, str, float]], name: str, text: str
) -> None:
    for command, status, minutes in runs:
        last = ran(store, command, status, minutes)
    p = _phase(store)
    assert (p.name, p.text) == (name, text)
    if not (runs[-1][0] == "preflight" and len(runs) > 1):  # else the older mutating run sets the phase
        assert p.run == last and p.since == last.finished_at
        assert p.age == NOW - last.finished_at


def test_phase_shows_a_run_in_progress_while_it_holds_the_lock(store: StateStore) -> None:
    ran(store, "preflight", "PASS", 20)
    canary = ran(store, "canary", "RUNNING", 2)
    store.acquire(
        "prod",
        LockHolder(run_id=canary.run_id, command="canary", requested_by="U0ALICE"),
        600,
        now=NOW - timedelta(minutes=2),
    )
    p = _phase(store)
    assert p.name == "canary-running" and p.running == canary
    assert p.text == "canary running (started 2 min ago); before it: preflight passed 20 min ago"


def test_a_running_run_without_the_lock_is_shown_as_never_finished(store: StateStore) -> None:
    ran(store, "preflight", "PASS", 20)
    canary = ran(store, "canary", "RUNNING", 2)
    p = _phase(store)
    assert p.name == "preflight-passed" and p.running is None
    assert p.text == f"preflight passed 20 min ago; canary run {canary.run_id} started 2 min ago never finished"


def test_phase_ignores_dry_runs_and_refusals(store: StateStore) -> None:
    ran(store, "canary", "PASS", 10)
    ran(store, "rollback", "PASS", 5, dry_run=True)
    ran(store, "enable-outbound", "REFUSED", 1)
    assert _phase(store).name == "canary-passed"
