"""commands.state: the store's contract, on a real SQLite file, with real threads and processes.

`StoreContract` is the backend-independent suite; tests/test_state_dynamodb.py runs the same class
against DynamoDB (moto over HTTP). A subclass provides two fixtures: `store` (a fresh, empty store
whose `url` opens the same store elsewhere) and `child_env` (environment variables a child process
needs to open it). Child processes are spawned (fresh interpreters, nothing shared but the store).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from commands.state import (
    AlreadyDecided,
    ApprovalExpired,
    ApprovalNotApproved,
    ApprovalNotFound,
    ApprovalRequest,
    ApprovalStatus,
    ApprovalUsed,
    ApprovalVoided,
    LockHeld,
    LockHolder,
    LockLost,
    RunAlreadyFinished,
    RunNotFound,
    RunRecord,
    RunStatus,
    SelfApproval,
    SqliteStore,
    StateError,
    StateStore,
    StoreConfigError,
    StoreUnavailable,
    WatchState,
    open_store,
)

SPAWN = multiprocessing.get_context("spawn")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def holder(run_id: str, who: str = "U0ALICE", command: str = "canary", surface: str = "slack") -> LockHolder:
    return LockHolder(run_id=run_id, command=command, requested_by=who, surface=surface)


def request(approval_id: str, *, expires_at: datetime | None = None, **over: Any) -> ApprovalRequest:
    fields: dict[str, Any] = {
        "approval_id": approval_id,
        "env": "prod",
        "command": "enable-outbound",
        "params": {"pr": 42, "dry_run": False},
        "head_sha": "a" * 40,
        "evidence_sha256": "b" * 64,
        "requested_by": "U0ALICE",
        "expires_at": expires_at or datetime.now(UTC) + timedelta(minutes=30),
        "channel": "C0CUTOVER",
    }
    fields.update(over)
    return ApprovalRequest(**fields)


def run(run_id: str, command: str = "preflight", *, at: datetime = T0, env: str = "prod", **over: Any) -> RunRecord:
    fields: dict[str, Any] = {
        "run_id": run_id,
        "env": env,
        "command": command,
        "started_at": at,
        "requested_by": "U0ALICE",
        "surface": "slack",
        "pr": 42,
        "head_sha": "c" * 40,
    }
    fields.update(over)
    return RunRecord(**fields)


# --- child processes (module-level so spawned interpreters can import them) -------------------------


def _open_in_child(url: str, env_vars: dict[str, str]) -> StateStore:
    os.environ.update(env_vars)
    return open_store(url)


def _lock_racer(
    url: str,
    env_vars: dict[str, str],
    seconds: float,
    witness: str,
    barrier: Any,
    results: Any,
) -> None:
    """Take and release the lock for `seconds`; while holding it, own an O_EXCL witness file.

    If two processes ever hold the lock at once, the second cannot create the witness: an overlap.
    """
    store = _open_in_child(url, env_vars)
    store.check_reachable()  # connect (and, for DynamoDB, build the client) before the race starts
    me = f"racer-{os.getpid()}"
    taken = refused = overlaps = not_current = 0
    barrier.wait(timeout=30)
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        i += 1
        try:
            lease = store.acquire("prod", holder(f"{me}-{i}", who=me), lease_s=10)
        except LockHeld:
            refused += 1
            continue
        try:
            fd = os.open(witness, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            overlaps += 1
        else:
            os.close(fd)
            time.sleep(0.0005)  # hold it a moment: the other racer is trying right now
            if not store.is_current(lease):
                not_current += 1
            os.remove(witness)
        taken += 1
        assert store.release(lease)
        time.sleep(random.random() * 0.002)  # let the other racer in now and then, at a random moment
    results.put({"taken": taken, "refused": refused, "overlaps": overlaps, "not_current": not_current})


def _hold_forever(url: str, env_vars: dict[str, str], lease_s: float, ready: str) -> None:
    store = _open_in_child(url, env_vars)
    store.acquire("prod", holder("doomed", who="U0DOOMED"), lease_s=lease_s)
    Path(ready).write_text("held")
    time.sleep(120)  # killed long before this


def _decider(url: str, env_vars: dict[str, str], ids: list[str], who: str, barrier: Any, results: Any) -> None:
    store = _open_in_child(url, env_vars)
    for approval_id in ids:
        barrier.wait(timeout=30)
        try:
            store.decide(approval_id, who, "approved")
            results.put((approval_id, who, "won", None))
        except AlreadyDecided as exc:
            results.put((approval_id, who, "lost", exc.by))


def _reader(url: str, env_vars: dict[str, str], results: Any) -> None:
    store = _open_in_child(url, env_vars)
    last = store.last_run("prod", "preflight", RunStatus.PASS)
    approval = store.get_approval("ap-persist")
    results.put((last.run_id if last else None, approval.status.value if approval else None))


def _join_all(procs: list[Any], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(0.1, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
            raise AssertionError("a child process did not finish in time")
        assert p.exitcode == 0, f"child exited {p.exitcode}"


def _drain(queue: Any, count: int) -> list[Any]:
    return [queue.get(timeout=30) for _ in range(count)]


# --- the contract ----------------------------------------------------------------------------------


class StoreContract:
    """What every StateStore does. Subclasses provide the `store` and `child_env` fixtures."""

    race_seconds = 3.0  # each process races this long (long enough to overlap on a loaded machine)
    race_iterations = 150  # attempts per thread in the threaded race
    processes = 2

    # runs --------------------------------------------------------------------------------------

    def test_a_run_is_recorded_started_and_finished(self, store: StateStore) -> None:
        store.record_run_start(run("r1", at=T0))
        assert store.get_run("prod", "r1").status == RunStatus.RUNNING
        assert store.last_run("prod", "preflight", RunStatus.PASS) is None

        done = store.record_run_finish(
            "prod",
            "r1",
            RunStatus.PASS,
            finished_at=T0 + timedelta(seconds=20),
            evidence_url="https://github.com/acme/rp-mw/pull/42#c1",
            evidence_sha256="d" * 64,
            summary="9/9 checks passed",
        )
        assert done.status == RunStatus.PASS
        again = store.get_run("prod", "r1")
        assert again == done
        assert again.finished_at == T0 + timedelta(seconds=20)
        assert again.finished_at.tzinfo is not None and again.started_at.utcoffset() == timedelta(0)
        assert again.evidence_sha256 == "d" * 64 and again.pr == 42 and again.head_sha == "c" * 40
        assert store.last_run("prod", "preflight", "PASS") == done

    def test_finishing_twice_or_an_unknown_run_is_refused(self, store: StateStore) -> None:
        store.record_run_start(run("r1"))
        store.record_run_finish("prod", "r1", "FAIL", finished_at=T0 + timedelta(seconds=5))
        with pytest.raises(RunAlreadyFinished, match="already finished as FAIL"):
            store.record_run_finish("prod", "r1", "PASS")
        with pytest.raises(RunNotFound):
            store.record_run_finish("prod", "nope", "PASS")
        with pytest.raises(StateError, match="already recorded"):
            store.record_run_start(run("r1"))
        with pytest.raises(StateError, match="not RUNNING"):
            store.record_run_finish("prod", "r1", "RUNNING")

    def test_last_run_is_the_newest_by_start_and_skips_dry_runs(self, store: StateStore) -> None:
        for i, (status, dry) in enumerate([("PASS", False), ("FAIL", False), ("PASS", True), ("PASS", False)]):
            at = T0 + timedelta(minutes=i)
            store.record_run_start(run(f"p{i}", at=at, dry_run=dry))
            store.record_run_finish("prod", f"p{i}", status, finished_at=at + timedelta(seconds=30))
        store.record_run_start(run("c0", "canary", at=T0 + timedelta(minutes=9)))
        store.record_run_start(run("other-env", at=T0 + timedelta(minutes=9), env="dev"))

        assert store.last_run("prod", "preflight").run_id == "p3"
        assert store.last_run("prod", "preflight", RunStatus.FAIL).run_id == "p1"
        assert store.last_run("prod", "preflight", include_dry_run=True).run_id == "p3"
        store.record_run_start(run("p4", at=T0 + timedelta(minutes=5), dry_run=True))
        assert store.last_run("prod", "preflight").run_id == "p3"
        assert store.last_run("prod", "preflight", include_dry_run=True).run_id == "p4"
        assert store.last_run("prod", "canary").run_id == "c0"
        assert store.last_run("prod", "rollback") is None

        assert [r.run_id for r in store.runs("prod", limit=3)] == ["c0", "p4", "p3"]
        assert [r.run_id for r in store.runs("prod", 10, command="preflight")] == ["p4", "p3", "p2", "p1", "p0"]
        assert [r.run_id for r in store.runs("dev")] == ["other-env"]

    def test_a_refusal_is_recorded_as_a_finished_run(self, store: StateStore) -> None:
        store.record_run_start(
            run("rf1", "canary", status=RunStatus.REFUSED, finished_at=T0, summary="no PASS preflight")
        )
        assert store.get_run("prod", "rf1").status == RunStatus.REFUSED
        entry = store.audit_trail("prod", 1)[0]
        assert (entry.action, entry.run_id) == ("run.refused", "rf1")
        assert "no PASS preflight" in entry.detail

    # audit -------------------------------------------------------------------------------------

    def test_every_transition_writes_one_audit_entry(self, store: StateStore) -> None:
        store.record_run_start(run("r1", "canary"))
        lease = store.acquire("prod", holder("r1"), lease_s=30)
        store.record_confirmation("prod", "r1", "rule-enabled", "U0ALICE", "slack")
        store.release(lease)
        store.record_run_finish("prod", "r1", "PASS", evidence_url="https://example.test/e")
        store.create_approval(request("ap1"))
        store.decide("ap1", "U0BOSS", "approved")
        with pytest.raises(AlreadyDecided):
            store.decide("ap1", "U0OTHER", "rejected")
        store.consume("ap1", "r2", actor="U0ALICE", surface="actions")
        rollback = store.preempt("prod", holder("r3", command="rollback"), lease_s=30)
        store.release(rollback)
        store.audit("prod", "U0ALICE", "note", "cli", detail="by hand")

        trail = store.audit_trail("prod", 100)
        assert [e.action for e in reversed(trail)] == [
            "run.start",
            "lock.take",
            "confirm",
            "lock.release",
            "run.finish",
            "approval.request",
            "approval.decide",
            "approval.refused",
            "approval.use",
            "lock.preempt",
            "lock.release",
            "note",
        ]
        assert all(e.at.tzinfo is not None for e in trail)
        finish = next(e for e in trail if e.action == "run.finish")
        assert finish.evidence_url == "https://example.test/e" and finish.run_id == "r1"
        refused = next(e for e in trail if e.action == "approval.refused")
        assert refused.actor == "U0OTHER" and "already approved by U0BOSS" in refused.detail
        use = next(e for e in trail if e.action == "approval.use")
        assert (use.actor, use.surface, use.run_id) == ("U0ALICE", "actions", "r2")
        assert [e.action for e in store.audit_trail("prod", 2)] == ["note", "lock.release"]
        assert store.audit_trail("dev") == []

    # the lock ----------------------------------------------------------------------------------

    def test_a_held_lock_refuses_with_the_holder_named(self, store: StateStore) -> None:
        lease = store.acquire("prod", holder("run-a", who="U0ALICE"), lease_s=30)
        with pytest.raises(LockHeld) as caught:
            store.acquire("prod", holder("run-b", who="U0BOB"), lease_s=30)
        err = caught.value
        assert err.holder.run_id == "run-a" and err.holder.requested_by == "U0ALICE"
        assert "run-a" in str(err) and "U0ALICE" in str(err) and "canary" in str(err)
        assert "/rollback prod" in str(err)
        assert err.expires_at == lease.expires_at
        assert store.lock_holder("prod").holder == lease.holder
        assert store.lock_holder("dev") is None
        other = store.acquire("dev", holder("run-c"), lease_s=30)  # locks are per environment
        assert store.is_current(other) and store.is_current(lease)

    def test_an_expired_lease_is_ignored_and_taken_over(self, store: StateStore) -> None:
        now = datetime.now(UTC)
        old = store.acquire("prod", holder("crashed"), lease_s=0.5, now=now)
        assert store.lock_holder("prod", now=now + timedelta(seconds=0.4)) is not None
        assert store.lock_holder("prod", now=now + timedelta(seconds=0.5)) is None
        later = now + timedelta(seconds=0.6)
        assert not store.is_current(old, now=later)
        new = store.acquire("prod", holder("next"), lease_s=30, now=later)
        assert store.is_current(new, now=later)
        with pytest.raises(LockLost):
            store.renew(old, now=later)
        assert store.release(old, now=later) is False
        assert "expired lease" in store.audit_trail("prod", 1)[0].detail

    def test_renew_extends_our_lease_and_keeps_others_out(self, store: StateStore) -> None:
        now = datetime.now(UTC)
        lease = store.acquire("prod", holder("r1"), lease_s=0.5, now=now)
        renewed = store.renew(lease, now=now + timedelta(seconds=0.4))
        assert renewed.expires_at == now + timedelta(seconds=0.9)
        assert store.is_current(renewed, now=now + timedelta(seconds=0.8))
        with pytest.raises(LockHeld):
            store.acquire("prod", holder("r2"), lease_s=1, now=now + timedelta(seconds=0.8))
        longer = store.renew(renewed, lease_s=60, now=now + timedelta(seconds=0.8))
        assert store.lock_holder("prod", now=now + timedelta(seconds=30)).expires_at == longer.expires_at

    def test_release_frees_only_our_own_lock(self, store: StateStore) -> None:
        lease = store.acquire("prod", holder("r1"), lease_s=30)
        assert store.release(lease) is True
        assert store.lock_holder("prod") is None
        assert store.release(lease) is False  # twice: nothing to free
        again = store.acquire("prod", holder("r2"), lease_s=30)
        assert store.release(lease) is False  # an old lease cannot free the new holder's lock
        assert store.is_current(again)

    def test_preempt_takes_the_lock_and_the_old_holder_notices(self, store: StateStore) -> None:
        victim = store.acquire("prod", holder("canary-run", who="U0ALICE"), lease_s=30)
        rollback = store.preempt("prod", holder("rb-run", who="U0BOB", command="rollback"), lease_s=30)
        assert rollback.preempted is not None and rollback.preempted.holder.run_id == "canary-run"
        assert store.is_current(rollback)
        assert not store.is_current(victim)
        with pytest.raises(LockLost) as caught:
            store.renew(victim)
        assert caught.value.now_held_by.holder.run_id == "rb-run"
        assert "rb-run" in str(caught.value)
        assert store.release(victim) is False
        assert store.lock_holder("prod").holder.run_id == "rb-run"
        entry = store.audit_trail("prod", 1)[0]
        assert entry.action == "lock.preempt" and entry.actor == "U0BOB"
        assert "canary-run" in entry.detail and "U0ALICE" in entry.detail
        # preempting a free lock works too, and a second rollback preempts the first
        free = store.preempt("dev", holder("rb2", command="rollback"), lease_s=30)
        assert free.preempted is None
        assert store.preempt("prod", holder("rb3", command="rollback"), lease_s=30).preempted.holder.run_id == "rb-run"

    def test_threads_racing_for_the_lock_never_both_hold_it(self, store: StateStore, tmp_path: Path) -> None:
        witness = tmp_path / "held"
        overlaps: list[str] = []
        taken = [0] * 4
        barrier = threading.Barrier(4)

        def racer(n: int) -> None:
            barrier.wait()
            for i in range(self.race_iterations // 3):
                try:
                    lease = store.acquire("prod", holder(f"t{n}-{i}"), lease_s=10)
                except LockHeld:
                    continue
                try:
                    fd = os.open(witness, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    overlaps.append(f"t{n}-{i}")
                else:
                    os.close(fd)
                    time.sleep(0.001)  # hold it a moment: the others are trying right now
                    if not store.is_current(lease):
                        overlaps.append(f"t{n}-{i} lost the lock while holding it")
                    os.remove(witness)
                taken[n] += 1
                store.release(lease)

        threads = [threading.Thread(target=racer, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert overlaps == []
        assert sum(taken) > 0

    def test_processes_racing_for_the_lock_never_both_hold_it(
        self, store: StateStore, child_env: dict[str, str], tmp_path: Path
    ) -> None:
        witness = str(tmp_path / "held")
        store.check_reachable()  # the file or table exists before the racers start
        barrier = SPAWN.Barrier(self.processes)
        results = SPAWN.Queue()
        procs = [
            SPAWN.Process(target=_lock_racer, args=(store.url, child_env, self.race_seconds, witness, barrier, results))
            for _ in range(self.processes)
        ]
        for p in procs:
            p.start()
        reports = _drain(results, self.processes)
        _join_all(procs)
        assert all(r["overlaps"] == 0 for r in reports), reports
        assert all(r["not_current"] == 0 for r in reports), reports
        assert all(r["taken"] > 0 for r in reports), reports
        assert sum(r["refused"] for r in reports) > 0, f"the racers never contended: {reports}"
        assert store.lock_holder("prod") is None

    def test_a_killed_holder_frees_the_lock_when_its_lease_runs_out(
        self, store: StateStore, child_env: dict[str, str], tmp_path: Path
    ) -> None:
        ready = tmp_path / "ready"
        proc = SPAWN.Process(target=_hold_forever, args=(store.url, child_env, 1.0, str(ready)))
        proc.start()
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert time.monotonic() < deadline and proc.is_alive(), "the holder never took the lock"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
        assert proc.exitcode == -signal.SIGKILL

        info = store.lock_holder("prod")
        assert info is not None and info.holder.run_id == "doomed"
        if datetime.now(UTC) < info.expires_at - timedelta(seconds=0.2):
            with pytest.raises(LockHeld, match="doomed"):
                store.acquire("prod", holder("eager"), lease_s=5)
        time.sleep(max(0.0, (info.expires_at - datetime.now(UTC)).total_seconds()) + 0.05)
        lease = store.acquire("prod", holder("after"), lease_s=5)
        assert store.is_current(lease)
        assert (
            "expired lease" in store.audit_trail("prod", 1)[0].detail
            and "doomed" in store.audit_trail("prod", 1)[0].detail
        )

    # approvals ---------------------------------------------------------------------------------

    def test_an_approval_is_created_listed_and_decided(self, store: StateStore) -> None:
        created = store.create_approval(request("ap1"))
        assert created.status == ApprovalStatus.PENDING and created.created_at.tzinfo is not None
        assert store.get_approval("ap1") == created
        assert store.get_approval("missing") is None
        with pytest.raises(StateError, match="already exists"):
            store.create_approval(request("ap1"))
        assert [a.approval_id for a in store.pending_approvals("prod")] == ["ap1"]

        store.set_approval_message("ap1", "C0OTHER", "1712.000100")
        got = store.get_approval("ap1")
        assert (got.channel, got.message_ts) == ("C0OTHER", "1712.000100")
        assert got.params == {"pr": 42, "dry_run": False}

        decided = store.decide("ap1", "U0BOSS", "approved")
        assert decided.status == ApprovalStatus.APPROVED and decided.decided_by == "U0BOSS"
        assert store.get_approval("ap1") == decided
        assert store.pending_approvals("prod") == []
        with pytest.raises(ApprovalNotFound):
            store.decide("missing", "U0BOSS", "approved")
        with pytest.raises(ApprovalNotFound):
            store.set_approval_message("missing", "C", "1")

    def test_a_second_decider_is_told_who_decided_first(self, store: StateStore) -> None:
        store.create_approval(request("ap1"))
        store.decide("ap1", "U0BOSS", "rejected")
        with pytest.raises(AlreadyDecided) as caught:
            store.decide("ap1", "U0OTHERBOSS", "approved")
        assert (caught.value.by, caught.value.decision) == ("U0BOSS", "rejected")
        assert "U0BOSS" in str(caught.value) and "rejected" in str(caught.value)
        assert store.get_approval("ap1").status == ApprovalStatus.REJECTED

    def test_an_expired_approval_cannot_be_decided(self, store: StateStore) -> None:
        expires = datetime.now(UTC) + timedelta(minutes=30)
        store.create_approval(request("ap1", expires_at=expires))
        with pytest.raises(ApprovalExpired):
            store.decide("ap1", "U0BOSS", "approved", expires)
        with pytest.raises(ApprovalExpired):
            store.decide("ap1", "U0BOSS", "approved", expires + timedelta(seconds=1))
        assert store.get_approval("ap1").status == ApprovalStatus.PENDING
        assert store.pending_approvals("prod", now=expires) == []
        assert store.decide("ap1", "U0BOSS", "approved", expires - timedelta(seconds=1)).status == "approved"

    def test_the_requester_cannot_approve_their_own_request(self, store: StateStore) -> None:
        store.create_approval(request("ap1", requested_by="U0ALICE"))
        with pytest.raises(SelfApproval):
            store.decide("ap1", "U0ALICE", "approved")
        assert store.decide("ap1", "U0ALICE", "rejected").status == "rejected"  # withdrawing is fine

    def test_an_approval_is_used_once(self, store: StateStore) -> None:
        store.create_approval(request("ap1"))
        with pytest.raises(ApprovalNotApproved):
            store.consume("ap1", "run-1")
        store.decide("ap1", "U0BOSS", "approved")
        used = store.consume("ap1", "run-1")
        assert used.used_by_run == "run-1" and used.used_at is not None
        with pytest.raises(ApprovalUsed) as caught:
            store.consume("ap1", "run-2")
        assert caught.value.run_id == "run-1"
        with pytest.raises(ApprovalUsed):
            store.consume("ap1", "run-1")  # the same run twice is refused too
        with pytest.raises(ApprovalUsed):
            store.void("ap1", "too late")
        store.create_approval(request("ap2"))
        store.decide("ap2", "U0BOSS", "rejected")
        with pytest.raises(ApprovalNotApproved, match="rejected"):
            store.consume("ap2", "run-3")
        with pytest.raises(ApprovalNotFound):
            store.consume("missing", "run-4")

    def test_an_old_approval_can_be_refused_at_use(self, store: StateStore) -> None:
        store.create_approval(request("ap1"))
        decided = store.decide("ap1", "U0BOSS", "approved")
        with pytest.raises(ApprovalExpired):
            store.consume("ap1", "run-1", now=decided.decided_at + timedelta(seconds=61), max_age_s=60)
        assert store.consume("ap1", "run-1", now=decided.decided_at + timedelta(seconds=59), max_age_s=60)

    def test_a_voided_approval_cannot_be_decided_or_used(self, store: StateStore) -> None:
        store.create_approval(request("ap1"))
        voided = store.void("ap1", "superseded by a new request")
        assert voided.status == ApprovalStatus.VOID and voided.void_reason == "superseded by a new request"
        assert store.void("ap1", "again") == voided  # idempotent
        with pytest.raises(ApprovalVoided, match="superseded"):
            store.decide("ap1", "U0BOSS", "approved")
        store.create_approval(request("ap2"))
        store.decide("ap2", "U0BOSS", "approved")
        store.void("ap2", "the PR head moved")
        with pytest.raises(ApprovalVoided):
            store.consume("ap2", "run-1")
        assert store.pending_approvals("prod") == []

    def test_an_approval_is_bound_to_what_was_approved(self, store: StateStore) -> None:
        a = store.create_approval(request("ap1"))
        same = {"env": "prod", "command": "enable-outbound", "head_sha": "a" * 40, "evidence_sha256": "b" * 64}
        assert a.mismatch(params={"dry_run": False, "pr": 42}, **same) is None
        assert "params" in a.mismatch(params={"pr": 43, "dry_run": False}, **same)
        assert "head_sha" in a.mismatch(params=a.params, **{**same, "head_sha": "f" * 40})
        assert "env" in a.mismatch(params=a.params, **{**same, "env": "dev"})

    def test_threads_deciding_at_once_have_exactly_one_winner(self, store: StateStore) -> None:
        ids = [f"apt{i}" for i in range(6)]
        for approval_id in ids:
            store.create_approval(request(approval_id))
        deciders = [f"U0BOSS{n}" for n in range(6)]
        barrier = threading.Barrier(len(deciders))
        outcomes: list[tuple[str, str, str, str | None]] = []
        lock = threading.Lock()

        def decide(who: str) -> None:
            for approval_id in ids:
                barrier.wait()
                try:
                    store.decide(approval_id, who, "approved")
                    result = (approval_id, who, "won", None)
                except AlreadyDecided as exc:
                    result = (approval_id, who, "lost", exc.by)
                with lock:
                    outcomes.append(result)

        threads = [threading.Thread(target=decide, args=(who,)) for who in deciders]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        _assert_one_winner(store, ids, outcomes, len(deciders))

    def test_processes_deciding_at_once_have_exactly_one_winner(
        self, store: StateStore, child_env: dict[str, str]
    ) -> None:
        ids = [f"app{i}" for i in range(4)]
        for approval_id in ids:
            store.create_approval(request(approval_id))
        deciders = [f"U0BOSS{n}" for n in range(3)]
        barrier = SPAWN.Barrier(len(deciders))
        results = SPAWN.Queue()
        procs = [
            SPAWN.Process(target=_decider, args=(store.url, child_env, ids, who, barrier, results)) for who in deciders
        ]
        for p in procs:
            p.start()
        outcomes = _drain(results, len(ids) * len(deciders))
        _join_all(procs)
        _assert_one_winner(store, ids, outcomes, len(deciders))

    # watches and confirmations -----------------------------------------------------------------

    def test_a_watch_is_saved_updated_listed_and_cleared(self, store: StateStore) -> None:
        watch = WatchState(
            env="prod",
            run_id="w1",
            started_at=T0,
            ends_at=T0 + timedelta(minutes=15),
            poll_seconds=10,
            requested_by="U0ALICE",
            channel="C0CUTOVER",
            message_ts="1712.1",
            pr=42,
        )
        store.save_watch(watch)
        store.save_watch(watch.model_copy(update={"env": "dev", "run_id": "w2", "poll_seconds": 0.5}))
        polled = watch.model_copy(update={"last_poll_at": T0 + timedelta(seconds=10)})
        store.save_watch(polled)
        watches = sorted(store.active_watches(), key=lambda w: w.env)
        assert [w.run_id for w in watches] == ["w2", "w1"]
        assert watches[1] == polled and watches[0].poll_seconds == 0.5
        assert store.clear_watch("prod", "w1") is True
        assert store.clear_watch("prod", "w1") is False
        assert [w.run_id for w in store.active_watches()] == ["w2"]

    def test_the_first_confirmation_of_a_step_counts(self, store: StateStore) -> None:
        assert store.confirmation("r1", "rule-paused") is None
        first = store.record_confirmation("prod", "r1", "rule-paused", "U0ALICE", "slack", now=T0)
        repeat = store.record_confirmation("prod", "r1", "rule-paused", "U0BOB", "cli", now=T0 + timedelta(minutes=1))
        assert repeat == first and first.confirmed_by == "U0ALICE" and first.at == T0
        assert store.confirmation("r1", "rule-paused") == first
        assert store.confirmation("r1", "rule-enabled") is None
        assert [e.action for e in store.audit_trail("prod")] == ["confirm"]

    # the store as a whole ----------------------------------------------------------------------

    def test_state_survives_reopening_and_other_processes_see_it(
        self, store: StateStore, child_env: dict[str, str]
    ) -> None:
        store.record_run_start(run("persisted", at=T0))
        store.record_run_finish("prod", "persisted", "PASS", finished_at=T0 + timedelta(seconds=9))
        store.create_approval(request("ap-persist"))
        store.decide("ap-persist", "U0BOSS", "approved")
        lease = store.acquire("prod", holder("holding"), lease_s=60)
        store.close()

        reopened = open_store(store.url)
        assert reopened.last_run("prod", "preflight", "PASS").run_id == "persisted"
        assert reopened.get_approval("ap-persist").decided_by == "U0BOSS"
        assert reopened.is_current(lease)
        assert len(reopened.audit_trail("prod")) == 5

        results = SPAWN.Queue()
        proc = SPAWN.Process(target=_reader, args=(store.url, child_env, results))
        proc.start()
        assert results.get(timeout=30) == ("persisted", "approved")
        _join_all([proc])

    def test_check_reachable_passes_on_a_working_store(self, store: StateStore) -> None:
        assert isinstance(store, StateStore)
        assert store.check_reachable() is None

    def test_naive_times_are_refused(self, store: StateStore) -> None:
        with pytest.raises(ValueError, match="naive"):
            store.acquire("prod", holder("r1"), lease_s=1, now=datetime(2026, 1, 1, 12, 0))
        with pytest.raises(ValueError, match="timezone"):
            store.record_run_start(run("r1", at=datetime(2026, 1, 1, 12, 0)))

    def test_names_that_would_break_keys_are_refused(self, store: StateStore) -> None:
        with pytest.raises(StateError, match="invalid env"):
            store.acquire("prod#x", holder("r1"), lease_s=1)
        with pytest.raises(StateError, match="invalid approval id"):
            store.create_approval(request("a b"))


def _assert_one_winner(store: StateStore, ids: list[str], outcomes: list[Any], deciders: int) -> None:
    assert len(outcomes) == len(ids) * deciders
    for approval_id in ids:
        mine = [o for o in outcomes if o[0] == approval_id]
        winners = [o[1] for o in mine if o[2] == "won"]
        assert len(winners) == 1, f"{approval_id}: {mine}"
        losers = [o for o in mine if o[2] == "lost"]
        assert len(losers) == deciders - 1
        assert all(o[3] == winners[0] for o in losers), f"{approval_id}: a loser was told a wrong winner: {mine}"
        assert store.get_approval(approval_id).decided_by == winners[0]


# --- SQLite ----------------------------------------------------------------------------------------


class TestSqliteContract(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[StateStore]:
        s = open_store(f"sqlite:///{tmp_path}/state/cutover.db")  # an absolute path: sqlite:////tmp/...
        yield s
        s.close()

    @pytest.fixture
    def child_env(self) -> dict[str, str]:
        return {}


def test_urls_name_relative_and_absolute_files(tmp_path: Path) -> None:
    rel = open_store("sqlite:///var/cutover.db", base_dir=tmp_path)
    assert isinstance(rel, SqliteStore) and rel.path == tmp_path / "var" / "cutover.db"
    absolute = open_store(f"sqlite:////{tmp_path.relative_to('/')}/abs.db")
    assert absolute.path == tmp_path / "abs.db"
    cwd = open_store("sqlite:///var/cutover.db")
    assert cwd.path == Path.cwd() / "var" / "cutover.db"
    assert not (tmp_path / "var").exists()  # nothing is created before first use
    rel.check_reachable()
    assert (tmp_path / "var" / "cutover.db").is_file()


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("", "empty"),
        ("var/cutover.db", "not a store URL"),
        ("postgres://db/cutover", "unknown store 'postgres'"),
        ("sqlite://var/cutover.db", "no host"),
        ("sqlite:///", "no database file"),
        ("sqlite:///var/", "no database file"),
        ("sqlite:///:memory:", "in-memory"),
        ("sqlite:///x.db?mode=ro", "no query"),
        ("dynamodb://", "not a DynamoDB table name"),
        ("dynamodb://a", "not a DynamoDB table name"),
        ("dynamodb://bad name", "not a DynamoDB table name"),
        ("dynamodb://table/extra", "name only the table"),
        ("dynamodb://table?colour=blue", "unknown option colour"),
        ("dynamodb://table?region=mars", "not an AWS region"),
    ],
)
def test_a_bad_state_url_is_a_clear_value_error(url: str, says: str) -> None:
    with pytest.raises(StoreConfigError, match=says) as caught:
        open_store(url)
    assert isinstance(caught.value, ValueError)
    assert "sqlite:///" in str(caught.value) or "dynamodb" in str(caught.value) or "region" in str(caught.value)


def test_the_file_uses_wal_and_a_busy_timeout(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/deep/er/c.db")
    store.check_reachable()
    conn = sqlite3.connect(tmp_path / "deep" / "er" / "c.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    conn2 = store._connect()
    try:
        assert conn2.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
    finally:
        conn2.close()


def test_a_writer_waits_for_another_writer_instead_of_failing(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/c.db")
    store.check_reachable()
    blocker = sqlite3.connect(tmp_path / "c.db", isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")
    timer = threading.Timer(0.3, lambda: blocker.execute("COMMIT"))
    timer.start()
    try:
        started = time.monotonic()
        store.acquire("prod", holder("r1"), lease_s=5)
        assert time.monotonic() - started >= 0.25
    finally:
        timer.join()
        blocker.close()


def test_an_unwritable_location_is_reported_by_check_reachable(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    store = open_store(f"sqlite:///{tmp_path}/a-file/cutover.db")
    with pytest.raises(StoreUnavailable, match="a-file"):
        store.check_reachable()
